"""Wrong network set-ups for mini-run (lab 28): each leaves out one of the steps between
a new network namespace and a container on the bridge."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "the veth's peer left on the host",
        "mini_run.py",
        "eth0",
        edits=(
            (
                '        ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_pid=pid)\n',
                "",
            ),
        ),
    ),
    Mutant(
        "the host end up but on no bridge",
        "mini_run.py",
        "on the bridge",
        edits=(
            (
                'ipr.link("set", index=host_index, master=found[0], state="up")',
                'ipr.link("set", index=host_index, state="up")',
            ),
        ),
    ),
    Mutant(
        "no default route",
        "mini_run.py",
        "default route",
        edits=(
            (
                '            ipr.route("add", dst="default", gateway=gateway)\n',
                "            pass\n",
            ),
        ),
    ),
    Mutant(
        "lo left down",
        "mini_run.py",
        "lo is down",
        edits=(
            ('        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")\n', ""),
        ),
    ),
]
