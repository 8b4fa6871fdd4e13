"""Lab 11's wrong solutions: a writable root that is not an overlay."""

from labmutant import Mutant

_OVERLAY = """    options = f"lowerdir={args.root},upperdir={upper},workdir={workdir}/work"
    mount("overlay", f"{workdir}/merged", "overlay", 0, options)
    new_root = f"{workdir}/merged"
"""

MUTANTS = [
    Mutant(
        "a copy of the image as the root",  # writes land in upper, but a deletion is gone
        "mini_run.py",
        expect="whiteout",
        edits=(
            (
                _OVERLAY,
                "    shutil.copytree(args.root, upper, symlinks=True, dirs_exist_ok=True)\n"
                "    new_root = upper\n",
            ),
        ),
    ),
    Mutant(
        "the layers swapped: the image as the upper layer",
        "mini_run.py",
        expect="image",
        edits=(("lowerdir={args.root},upperdir={upper}", "lowerdir={upper},upperdir={args.root}"),),
    ),
]
