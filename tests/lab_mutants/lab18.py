"""Wrong seccomp filters of lab 18: each filters, but not as asked."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "kills the caller of a denied call instead of failing it",
        "mini_run.py",
        "SCMP_ACT_ERRNO",
        edits=(
            (
                "action = seccomp.lib.pyvmm_act_errno(error)",
                "action = seccomp.lib.SCMP_ACT_KILL_PROCESS",
            ),
        ),
    ),
    Mutant(
        "fails a denied call with EPERM whatever --errno says",
        "mini_run.py",
        "chosen errno",
        edits=(
            (
                "action = seccomp.lib.pyvmm_act_errno(error)",
                "action = seccomp.lib.pyvmm_act_errno(errno.EPERM)",
            ),
        ),
    ),
    Mutant(
        "an allow-list of the named calls: everything else fails",
        "mini_run.py",
        "not denied still work",
        edits=(
            (
                "ctx = seccomp.lib.seccomp_init(seccomp.lib.SCMP_ACT_ALLOW)",
                "ctx = seccomp.lib.seccomp_init(seccomp.lib.pyvmm_act_errno(error))",
            ),
            (
                "action = seccomp.lib.pyvmm_act_errno(error)",
                "action = seccomp.lib.SCMP_ACT_ALLOW",
            ),
        ),
    ),
    Mutant(
        "loads the filter first thing in the child, before the runtime's own mounts",
        "mini_run.py",
        "the filter comes last",
        edits=(
            (
                "    if args.deny:\n        load_filter(args.filter)\n",
                "",
            ),
            (
                "    if not os.read(go, 1):  # the parent has put us in our cgroup, or died\n"
                "        os._exit(1)\n",
                "    if not os.read(go, 1):  # the parent has put us in our cgroup, or died\n"
                "        os._exit(1)\n"
                "    if args.deny:\n"
                "        load_filter(args.filter)\n",
            ),
        ),
    ),
]
