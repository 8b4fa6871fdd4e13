"""mini-run: a container runtime you write yourself, one mechanism per lab (labs 8-14, 18, 28).

    python mini_run.py [options] ROOTFS COMMAND [ARG...]

runs COMMAND as a container whose root filesystem is the directory ROOTFS. It uses only
Python's standard library and the libc calls Python 3.11 lacks (``unshare``,
``sethostname``, ``mount``, ``pivot_root``), from pyvmm's cffi bindings, and for the
network (lab 28) netlink through pyroute2, as pyvmm's own runtime does. Each lab adds
one mechanism; the options are all here from the start, each used from its lab on.
Compare what you write with pyvmm's own runtime, ``vmm/container/``.
"""

import argparse
import errno
import os
import shutil
import sys
import tempfile

from vmm.container.linux._libc import ffi, lib

from vmm.container.linux.libc import check, mount, umount2

CGROUP_ROOT = "/sys/fs/cgroup"
CLONE_NEWUSER = 0x10000000  # <linux/sched.h>: a new user namespace (lab 14)
NOBODY = 65534  # the host's "nobody": who the container's root is on the host (lab 14)
CPU_PERIOD_US = 100_000  # the CFS period the --cpus quota is a share of


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mini_run", description=__doc__.splitlines()[0])
    p.add_argument("--hostname", default="mini-run", help="lab 9: the container's hostname")
    p.add_argument("--upper", help="lab 11: the writable layer (default: a fresh temporary one)")
    p.add_argument("--memory", type=int, help="lab 12: memory limit in MiB")
    p.add_argument("--pids", type=int, help="lab 12: at most this many processes")
    p.add_argument("--cpus", type=float, help="lab 12: CPU time, in CPUs (0.5: half of one)")
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="SRC:DST[:ro]",
        help="lab 13: a host directory (SRC absolute) or a named volume (SRC a name) at DST",
    )
    p.add_argument("--volumes", default="volumes", help="lab 13: where named volumes live")
    p.add_argument("--userns", action="store_true", help="lab 14: root inside, nobody outside")
    p.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="SYSCALL",
        help="lab 18: a system call the container may not make (seccomp)",
    )
    p.add_argument(
        "--errno", type=int, default=errno.EPERM, help="lab 18: what a denied call fails with"
    )
    p.add_argument("--net", metavar="BRIDGE", help="lab 28: join this bridge through a veth")
    p.add_argument("--ip", metavar="ADDRESS/PREFIX", help="lab 28: eth0's address")
    p.add_argument("--gateway", metavar="ADDRESS", help="lab 28: the default route's next hop")
    p.add_argument("root", help="the root filesystem, a directory")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    args = p.parse_args(argv)
    if not args.command:
        p.error("no command given")
    if args.net and not args.ip:
        p.error("--net needs --ip ADDRESS/PREFIX")
    return args


# --- lab 12: cgroups ---------------------------------------------------------------------


class Cgroup:
    """One container's cgroup: a directory per controller on a v1 host, one on v2."""

    def __init__(self, name: str):
        """Make the cgroup's directories (lab 12)."""
        self.v2 = os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers")
        # >>> 12: the cgroup's directories: on v2 one, f"{CGROUP_ROOT}/{name}", after
        # ... switching the controllers on for the root's children (write "+memory +pids
        # ... +cpu" to cgroup.subtree_control); on v1 one per controller, in the memory,
        # ... pids and cpu hierarchies. Make them (os.mkdir) and keep them in self.dirs
        #| self.dirs = {}
        if self.v2:
            _write(f"{CGROUP_ROOT}/cgroup.subtree_control", "+memory +pids +cpu")
            path = f"{CGROUP_ROOT}/{name}"
            self.dirs = {"memory": path, "pids": path, "cpu": path}
        else:
            self.dirs = {c: f"{CGROUP_ROOT}/{c}/{name}" for c in ("memory", "pids", "cpu")}
        for path in set(self.dirs.values()):
            os.mkdir(path)
        # <<<

    def limit(self, memory_mib: int | None, pids: int | None, cpus: float | None) -> None:
        """Set the limits that were given (lab 12)."""
        # >>> 12: write the limits: v2 memory.max, pids.max, cpu.max ("QUOTA PERIOD" in
        # ... microseconds); v1 memory.limit_in_bytes (and memory.memsw.limit_in_bytes
        # ... where it exists, or the container swaps instead of being killed), pids.max,
        # ... cpu.cfs_period_us then cpu.cfs_quota_us
        #| pass
        if memory_mib is not None:
            limit = str(memory_mib << 20)
            if self.v2:
                self.write("memory", "memory.max", limit)
                self.write("memory", "memory.swap.max", "0")
            else:
                self.write("memory", "memory.limit_in_bytes", limit)
                self.write("memory", "memory.memsw.limit_in_bytes", limit)
        if pids is not None:
            self.write("pids", "pids.max", str(pids))
        if cpus is not None:
            quota = int(cpus * CPU_PERIOD_US)
            if self.v2:
                self.write("cpu", "cpu.max", f"{quota} {CPU_PERIOD_US}")
            else:
                self.write("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US))
                self.write("cpu", "cpu.cfs_quota_us", str(quota))
        # <<<

    def add(self, pid: int) -> None:
        """Move a process into the cgroup (lab 12)."""
        # >>> 12: move the process into the cgroup: its pid into cgroup.procs of each directory
        for path in set(self.dirs.values()):
            _write(f"{path}/cgroup.procs", str(pid))
        # <<<

    def report(self) -> None:
        """What the kernel did to the container: OOM kills, and CPU throttling."""
        # >>> 12: print "mini_run: the OOM killer struck" when the oom_kill counter (v2
        # ... memory.events, v1 memory.oom_control) is above 0, and "mini_run: throttled N
        # ... times" with cpu.stat's nr_throttled when a CPU limit throttled the container
        #| pass
        events = self.read("memory", "memory.events" if self.v2 else "memory.oom_control")
        if _field(events, "oom_kill") > 0:
            print("mini_run: the OOM killer struck", file=sys.stderr)
        throttled = _field(self.read("cpu", "cpu.stat"), "nr_throttled")
        if throttled:
            print(f"mini_run: throttled {throttled} times", file=sys.stderr)
        # <<<

    def remove(self) -> None:
        for path in set(self.dirs.values()):
            os.rmdir(path)  # the kernel refuses while a process is left in it

    def write(self, controller: str, name: str, value: str) -> None:
        path = f"{self.dirs[controller]}/{name}"
        if os.path.exists(path):
            _write(path, value)

    def read(self, controller: str, name: str) -> str:
        with open(f"{self.dirs.get(controller, '/nonexistent')}/{name}") as f:
            return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _field(text: str, name: str) -> int:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


# --- lab 13: volumes and bind mounts ------------------------------------------------


def mount_volume(spec: str, volumes: str, new_root: str) -> None:
    """Mount one ``-v SRC:DST[:ro]`` on ``new_root + DST``, before pivot_root."""
    src, dst, *rest = spec.split(":")
    readonly = rest == ["ro"]
    target = new_root + dst
    os.makedirs(target, exist_ok=True)
    # >>> 13: a SRC that does not start with "/" names a volume: the directory
    # ... volumes/SRC, made and, on first use, filled with a copy of what the image has
    # ... at DST (shutil.copytree with dirs_exist_ok); then bind-mount SRC on the target
    # ... (MS_BIND | MS_REC) and, for ":ro", remount it read-only (MS_REMOUNT | MS_BIND |
    # ... MS_RDONLY): a bind mount's flags change only by a remount
    if not src.startswith("/"):
        volume = os.path.abspath(os.path.join(volumes, src))
        if not os.path.isdir(volume):
            shutil.copytree(target, volume, symlinks=True)
        src = volume
    mount(src, target, None, lib.MS_BIND | lib.MS_REC)
    if readonly:
        mount(None, target, None, lib.MS_REMOUNT | lib.MS_BIND | lib.MS_RDONLY)
    # <<<


# --- lab 18: seccomp ----------------------------------------------------------------------


def build_filter(names: list[str], error: int) -> bytes:
    """The seccomp filter, as a BPF program, under which the system calls ``names`` fail
    with errno ``error`` and every other goes through (lab 18). Built by libseccomp in
    the runtime, before the container exists: after pivot_root the child could not load
    libseccomp any more, nor find the modules that call it."""
    # >>> 18: with libseccomp (pyvmm's bindings, seccomp.lib; seccomp(3)): ctx =
    # ... seccomp_init(SCMP_ACT_ALLOW); for each name its number on this architecture
    # ... (seccomp_syscall_resolve_name) and a rule, seccomp_rule_add_array(ctx,
    # ... pyvmm_act_errno(error), nr, 0, seccomp.ffi.NULL) (SCMP_ACT_ERRNO(error) in C);
    # ... then the program, exported with seccomp_export_bpf into an os.memfd_create file,
    # ... and seccomp_release. libseccomp returns -errno
    #| return b""
    from vmm.container.linux import _seccomp as seccomp

    ctx = seccomp.lib.seccomp_init(seccomp.lib.SCMP_ACT_ALLOW)
    fd = os.memfd_create("seccomp-bpf")
    try:
        for name in names:
            nr = seccomp.lib.seccomp_syscall_resolve_name(name.encode())
            if nr == seccomp.lib.__NR_SCMP_ERROR:
                print(f"mini_run: --deny: no system call {name!r} here", file=sys.stderr)
                sys.exit(2)
            action = seccomp.lib.pyvmm_act_errno(error)
            _seccomp_check(seccomp.lib.seccomp_rule_add_array(ctx, action, nr, 0, seccomp.ffi.NULL))
        _seccomp_check(seccomp.lib.seccomp_export_bpf(ctx, fd))
        return os.pread(fd, os.lseek(fd, 0, os.SEEK_END), 0)
    finally:
        os.close(fd)
        seccomp.lib.seccomp_release(ctx)
    # <<<


def _seccomp_check(result: int) -> None:
    if result < 0:  # libseccomp's calls return -errno
        raise OSError(-result, os.strerror(-result))


def load_filter(bpf: bytes) -> None:
    """Load the program into this process, as seccomp_load(3) does (lab 18). The filter
    is inherited across fork and execve and can never be removed: the container's
    command runs under it."""
    # >>> 18: no_new_privs first (lib.prctl(lib.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)), then the
    # ... seccomp(2) call, lib.pyvmm_seccomp_set_filter(0, prog), prog a struct sock_fprog
    # ... (ffi.new, with len and filter) over ffi.from_buffer("struct sock_filter[]", bpf)
    check(lib.prctl(lib.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl no_new_privs")
    program = ffi.from_buffer("struct sock_filter[]", bpf)
    prog = ffi.new("struct sock_fprog *", {"len": len(program), "filter": program})
    check(lib.pyvmm_seccomp_set_filter(0, prog), "seccomp")
    # <<<


# --- lab 28: a veth and a bridge -------------------------------------------------------


def plug(bridge: str, host_end: str, peer: str, pid: int) -> None:
    """In the runtime, on the host: a veth pair, ``host_end`` on ``bridge`` and up, the
    other end (``peer``) moved into the network namespace of process ``pid`` (lab 28).
    Nothing to undo at the end: when the container's namespace goes, the kernel deletes
    the end in it, and a veth pair dies whole."""
    # >>> 28: with pyroute2's IPRoute: the pair (ipr.link("add", ifname=host_end,
    # ... kind="veth", peer=peer)); the host end enslaved to the bridge and up
    # ... (ipr.link("set", index=..., master=..., state="up")); the peer moved into the
    # ... child's namespace (net_ns_pid=pid)
    #| raise NotImplementedError("lab 28: the TODO above")
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            raise SystemExit(f"mini_run: --net {bridge}: no such bridge")
        ipr.link("add", ifname=host_end, kind="veth", peer=peer)
        host_index = ipr.link_lookup(ifname=host_end)[0]
        ipr.link("set", index=host_index, master=found[0], state="up")
        ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_pid=pid)
    # <<<


def configure_inside(peer: str, address: str, gateway: str | None) -> None:
    """In the container, in its own network namespace: ``lo`` up, the veth's end renamed
    ``eth0`` with ``address`` (CIDR) and up, and the default route through ``gateway``
    (lab 28). A new namespace has only ``lo``, and it is down."""
    # >>> 28: with pyroute2's IPRoute: lo up; the peer renamed eth0 (ipr.link("set",
    # ... index=..., ifname="eth0")), its address (ipr.addr("add", index=..., address=ip,
    # ... prefixlen=...)) and up; then, with a gateway, ipr.route("add", dst="default",
    # ... gateway=gateway)
    #| raise NotImplementedError("lab 28: the TODO above")
    from pyroute2 import IPRoute

    ip, _, prefix = address.partition("/")
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        eth0 = ipr.link_lookup(ifname=peer)[0]
        ipr.link("set", index=eth0, ifname="eth0")
        ipr.addr("add", index=eth0, address=ip, prefixlen=int(prefix))
        ipr.link("set", index=eth0, state="up")
        if gateway:
            ipr.route("add", dst="default", gateway=gateway)
    # <<<


# --- the container's side ------------------------------------------------------------


def child(args: argparse.Namespace, go: int, workdir: str) -> None:
    """In the new process: wait for the parent, build the container's world, exec."""
    if not os.read(go, 1):  # the parent has put us in our cgroup, or died
        os._exit(1)
    # >>> 28: with --net, a network namespace of our own (lib.unshare(lib.CLONE_NEWNET)),
    # ... before a user namespace could own it; tell the parent (a byte on
    # ... args.net_ready[1]) and wait (a byte on go) while it plugs the veth in; then
    # ... configure_inside
    #| if args.net:
    #|     raise NotImplementedError("lab 28: the TODO above")
    if args.net:
        check(lib.unshare(lib.CLONE_NEWNET), "unshare net")
        os.write(args.net_ready[1], b"n")
        if not os.read(go, 1):
            os._exit(1)
        configure_inside(args.veth[1], args.ip, args.gateway)
    # <<<
    # >>> 12: with limits, a cgroup namespace (lib.CLONE_NEWCGROUP), now that we are in
    # ... our cgroup: /proc/self/cgroup then shows it as "/", not the host's path to it
    if args.memory is not None or args.pids is not None or args.cpus is not None:
        check(lib.unshare(lib.CLONE_NEWCGROUP), "unshare cgroup")
    # <<<
    # >>> 14: with --userns: a new user namespace (lib.unshare(CLONE_NEWUSER)); tell the
    # ... parent (a byte on args.ready[1]) and wait (a byte on go) while it writes our
    # ... uid and gid maps; become root inside (os.setgroups([]), os.setgid(0),
    # ... os.setuid(0)); then a PID namespace of this user namespace's own (the parent's
    # ... belongs to the host's, and /proc could not be mounted in it) and fork: the
    # ... child goes on as its PID 1, we wait for it and _exit with its status
    #| if args.userns:
    #|     raise NotImplementedError("lab 14: the TODO above")
    if args.userns:
        check(lib.unshare(CLONE_NEWUSER), "unshare user")
        os.write(args.ready[1], b"u")
        os.read(go, 1)
        os.setgroups([])
        os.setgid(0)
        os.setuid(0)
        check(lib.unshare(lib.CLONE_NEWPID), "unshare pid")
        pid = os.fork()
        if pid:
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            os._exit(128 - code if code < 0 else code)
    # <<<
    # >>> 9: new UTS, mount and IPC namespaces for this process alone (lib.unshare with
    # ... CLONE_NEWUTS | CLONE_NEWNS | CLONE_NEWIPC; the parent must keep the host's mount
    # ... table), set the hostname (lib.sethostname, from bytes) and make every mount
    # ... private (mount None on "/" with MS_REC | MS_PRIVATE), so nothing reaches the host
    check(lib.unshare(lib.CLONE_NEWUTS | lib.CLONE_NEWNS | lib.CLONE_NEWIPC), "unshare")
    name = args.hostname.encode()
    check(lib.sethostname(name, len(name)), "sethostname")
    mount(None, "/", None, lib.MS_REC | lib.MS_PRIVATE)
    # <<<
    new_root = args.root
    # >>> 11: an overlay as the root: args.root the read-only lower layer, args.upper
    # ... (or workdir/upper) the writable upper layer, workdir/work overlayfs's scratch
    # ... directory, mounted on workdir/merged; then new_root = workdir/merged
    upper = args.upper or os.path.join(workdir, "upper")
    for d in (upper, f"{workdir}/work", f"{workdir}/merged"):
        os.makedirs(d, exist_ok=True)
    options = f"lowerdir={args.root},upperdir={upper},workdir={workdir}/work"
    mount("overlay", f"{workdir}/merged", "overlay", 0, options)
    new_root = f"{workdir}/merged"
    # <<<
    for spec in args.volume:
        mount_volume(spec, args.volumes, new_root)
    # >>> 10: pivot_root into new_root: bind-mount it on itself (pivot_root wants a mount
    # ... point), mount a fresh proc on new_root/proc, make new_root/.oldroot,
    # ... pivot_root(new_root, new_root/.oldroot) (lib.syscall(lib.SYS_pivot_root, ...):
    # ... syscall is variadic, and cffi passes only C objects there, so each path is
    # ... ffi.new("char[]", path.encode())), chdir("/"), then detach (MNT_DETACH) and
    # ... remove /.oldroot: the host is gone
    mount(new_root, new_root, None, lib.MS_BIND | lib.MS_REC)
    mount("proc", f"{new_root}/proc", "proc", lib.MS_NOSUID | lib.MS_NODEV | lib.MS_NOEXEC)
    os.makedirs(f"{new_root}/.oldroot", exist_ok=True)
    old = f"{new_root}/.oldroot".encode()
    check(
        lib.syscall(
            lib.SYS_pivot_root, ffi.new("char[]", new_root.encode()), ffi.new("char[]", old)
        ),
        "pivot_root",
    )
    os.chdir("/")
    umount2("/.oldroot", lib.MNT_DETACH)
    os.rmdir("/.oldroot")
    # <<<
    # >>> 18: with --deny, load the filter (args.filter, load_filter) last of all: from
    # ... then on every call is filtered, the runtime's own as well as the command's
    #| pass
    if args.deny:
        load_filter(args.filter)
    # <<<
    # >>> 8: replace this process by the command (os.execvp)
    os.execvp(args.command[0], args.command)
    # <<<


# --- the runtime's side ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # >>> 18: with --deny, build the seccomp filter (build_filter) into args.filter, first
    # ... of all: a name libseccomp does not know is the user's error, and nothing exists yet
    #| pass
    if args.deny:
        args.filter = build_filter(args.deny, args.errno)
    # <<<
    workdir = tempfile.mkdtemp(prefix="mini-run-")
    cgroup = None
    # >>> 12: when a limit is given, make the cgroup (Cgroup(f"mini-run-{os.getpid()}"))
    # ... and set its limits, before the child exists
    if args.memory is not None or args.pids is not None or args.cpus is not None:
        cgroup = Cgroup(f"mini-run-{os.getpid()}")
        cgroup.limit(args.memory, args.pids, args.cpus)
    # <<<
    # >>> 9: a new PID namespace (lib.unshare(lib.CLONE_NEWPID)): it is the next child's,
    # ... so unshare before forking; the child makes the other namespaces itself
    check(lib.unshare(lib.CLONE_NEWPID), "unshare")
    # <<<
    go_read, go_write = os.pipe()
    # >>> 28: with --net, a pipe for the child to say it has its network namespace
    # ... (args.net_ready), and the veth's two names (args.veth: host end, peer), of this
    # ... process's PID so that two containers never clash: mrvPID and mrpPID
    #| pass
    if args.net:
        args.net_ready = os.pipe()
        args.veth = (f"mrv{os.getpid()}", f"mrp{os.getpid()}")
    # <<<
    # >>> 14: with --userns, a pipe for the child to say it has its user namespace
    # ... (args.ready), and the working folder handed to NOBODY, who creates the
    # ... overlay's directories there
    #| pass
    if args.userns:
        args.ready = os.pipe()
        os.chown(workdir, NOBODY, NOBODY)
    # <<<
    status = 0
    # >>> 8: fork; in the child call child(args, go_read, workdir), and should it raise,
    # ... print the error and os._exit(127) (close go_write in the child first: if the
    # ... parent dies, the child's read of go_read then ends); in the parent put the child
    # ... in the cgroup (if any) and write a byte to go_write
    pid = os.fork()
    if pid == 0:
        os.close(go_write)
        try:
            child(args, go_read, workdir)
        except BaseException as e:
            print(f"mini_run: {e}", file=sys.stderr)
        os._exit(127)
    if cgroup:
        cgroup.add(pid)
    os.write(go_write, b"g")
    # <<<
    # >>> 28: with --net, wait for the child's byte, plug the veth into its namespace,
    # ... and let it go on
    #| pass
    if args.net:
        os.read(args.net_ready[0], 1)
        plug(args.net, *args.veth, pid)
        os.write(go_write, b"g")
    # <<<
    # >>> 14: with --userns, wait for the child's byte, map root inside to NOBODY outside
    # ... ("0 65534 1" into /proc/PID/uid_map and gid_map), and let it go on
    #| pass
    if args.userns:
        os.read(args.ready[0], 1)
        for kind in ("uid", "gid"):
            _write(f"/proc/{pid}/{kind}_map", f"0 {NOBODY} 1")
        os.write(go_write, b"g")
    # <<<
    # >>> 8: wait for the child, and set status to its exit status, 128 + N when signal N
    # ... killed it (as a shell reports it)
    #| pass
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    status = 128 - code if code < 0 else code
    # <<<
    if cgroup:
        cgroup.report()
        cgroup.remove()
    shutil.rmtree(workdir)  # the default upper layer; the overlay went with the namespace
    return status


if __name__ == "__main__":
    sys.exit(main())
