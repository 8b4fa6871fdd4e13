"""Lab 13's wrong solutions: mounts that look right on the first try."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "MS_RDONLY on the first bind, which the kernel ignores",
        "mini_run.py",
        expect=":ro",
        edits=(
            (
                "    mount(src, target, None, lib.MS_BIND | lib.MS_REC)\n    if readonly:\n"
                "        mount(None, target, None, lib.MS_REMOUNT | lib.MS_BIND | lib.MS_RDONLY)\n",
                "    flags = lib.MS_BIND | lib.MS_REC | (lib.MS_RDONLY if readonly else 0)\n"
                "    mount(src, target, None, flags)\n",
            ),
        ),
    ),
    Mutant(
        "a new volume starts empty",
        "mini_run.py",
        expect="image's /etc",
        edits=(
            (
                "            shutil.copytree(target, volume, symlinks=True)\n",
                "            os.makedirs(volume)\n",
            ),
        ),
    ),
    Mutant(
        "a copy of the host's directory instead of a bind mount",
        "mini_run.py",
        expect="did not reach the host",
        edits=(
            (
                "    mount(src, target, None, lib.MS_BIND | lib.MS_REC)\n",
                "    shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)\n",
            ),
        ),
    ),
]
