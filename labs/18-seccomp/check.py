"""Lab 18's checks: with --deny, the container's system calls meet a seccomp filter.

The check's own probe, a static program copied into the image, makes each system call
it is asked for directly (syscall(2), so that no libc wrapper substitutes another
call) and prints what the kernel answered; the kernel's own word that a filter is on is
the Seccomp line of its /proc/self/status. The errno the filter must return is the
check's choice, one no call here fails with by itself.
"""

import errno
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, mini, rootfs  # noqa: E402, F401

from vmm.course.labs import Check, CheckFailed, tail  # noqa: E402

TITLE = "mini-run 8: seccomp, the system calls a container may make"
CONCEPT = "a seccomp filter built with libseccomp: denied calls fail with an errno of ours"
PROBE = "/bin/seccomp-probe"
SECCOMP_MODE_FILTER = "2"  # proc(5), /proc/PID/status "Seccomp": 2 is a BPF filter
# Error numbers nothing in the probe meets by itself (and not EPERM, the default).
ERRNOS = (errno.EXDEV, errno.EPROTO, errno.ENOTSUP, errno.EBADE, errno.ENOKEY, errno.ETXTBSY)

_PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

static long call(const char *name)
{
    struct utsname u;
    char buf[256];
    if (!strcmp(name, "mkdir"))
        return syscall(SYS_mkdir, "/seccomp-probe", 0755);
    if (!strcmp(name, "uname"))
        return syscall(SYS_uname, &u);
    if (!strcmp(name, "getcwd"))
        return syscall(SYS_getcwd, buf, sizeof buf);
    if (!strcmp(name, "chdir"))
        return syscall(SYS_chdir, "/");
    if (!strcmp(name, "mount"))
        return syscall(SYS_mount, "none", "/tmp", "tmpfs", 0L, "");
    return -2;
}

int main(int argc, char **argv)
{
    char line[256];
    for (int i = 1; i < argc; i++) {
        long r = call(argv[i]);
        if (r == -2)
            return 2;
        if (r < 0)
            printf("%s errno %d\n", argv[i], errno);
        else
            printf("%s ok\n", argv[i]);
    }
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Seccomp:", 8))
            fputs(line, stdout);
    return 0;
}
"""


def _probe(workdir: Path) -> None:
    """The probe, built static into the image (rootfs/bin), as the container runs it."""
    target = rootfs(workdir) / PROBE.lstrip("/")
    with tempfile.TemporaryDirectory(prefix="pyvmm-lab-probe-") as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text(_PROBE_C)
        cc = ["gcc", "-static", "-O1", "-o", str(target), str(source)]
        build = subprocess.run(cc, capture_output=True, text=True)
    if build.returncode:
        raise CheckFailed(f"the probe did not build:\n{tail(build)}")


def _run(workdir: Path, deny: list[str], error: int, calls: list[str]) -> dict[str, str]:
    """Run the probe in a container with ``deny`` filtered; each call's answer, and
    under "Seccomp:" the kernel's filter mode for the probe."""
    _probe(workdir)
    options = [f"--deny={name}" for name in deny] + [f"--errno={error}"]
    proc = mini(workdir, *options, PROBE, *calls)
    if proc.returncode > 128:  # as a shell reports a signal: 128 + its number
        killed = signal.Signals(proc.returncode - 128)
        why = (
            ": a denied call fails with SCMP_ACT_ERRNO(errno), it does not kill"
            if killed == signal.SIGSYS  # seccomp(2): what SECCOMP_RET_KILL_* delivers
            else ""
        )
        raise CheckFailed(f"the container was killed by {killed.name}{why}\n{tail(proc)}")
    if proc.returncode != 0:
        raise CheckFailed(
            f"the container did not run the probe (status {proc.returncode}):\n{tail(proc)}"
        )
    # "mkdir errno 18", "uname ok", and the status line "Seccomp:\t2"
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if len(line.split()) > 1)


def _answer(answers: dict[str, str], call: str) -> str:
    return answers.get(call, "no answer")


def denied_call_fails_with_errno(workdir: Path) -> str:
    error = secrets.choice(ERRNOS)
    answers = _run(workdir, ["mkdir", "chdir"], error, ["mkdir", "chdir"])
    want = f"errno {error}"
    for call in ("mkdir", "chdir"):
        if _answer(answers, call) != want:
            raise CheckFailed(
                f"with --deny={call} --errno={error}, {call} answered "
                f"'{_answer(answers, call)}', not '{want}' ({errno.errorcode[error]}); "
                f"the probe's seccomp mode: {answers.get('Seccomp:', 'none')}"
            )
    if answers.get("Seccomp:") != SECCOMP_MODE_FILTER:
        raise CheckFailed(f"the probe's /proc/self/status says Seccomp: {answers.get('Seccomp:')}")
    return f"mkdir and chdir fail with {errno.errorcode[error]} ({error}); Seccomp: 2"


def allowed_calls_still_work(workdir: Path) -> str:
    error = secrets.choice(ERRNOS)
    answers = _run(workdir, ["mkdir"], error, ["uname", "getcwd", "chdir", "mkdir"])
    broken = [c for c in ("uname", "getcwd", "chdir") if _answer(answers, c) != "ok"]
    if broken:
        said = ", ".join(f"{c}: {_answer(answers, c)}" for c in broken)
        raise CheckFailed(f"with only mkdir denied, other calls fail too ({said})")
    if _answer(answers, "mkdir") != f"errno {error}":
        raise CheckFailed(f"with --deny=mkdir, mkdir answered '{_answer(answers, 'mkdir')}'")
    return "uname, getcwd and chdir work while mkdir is denied"


def filter_comes_last(workdir: Path) -> str:
    error = secrets.choice(ERRNOS)
    answers = _run(workdir, ["mount", "pivot_root"], error, ["mount"])
    if _answer(answers, "mount") != f"errno {error}":
        raise CheckFailed(f"with --deny=mount, mount answered '{_answer(answers, 'mount')}'")
    return "the runtime mounts and pivots; the command's mount fails"


CHECKS = [
    Check(
        "a denied call fails with the chosen errno",
        "seccomp_init(SCMP_ACT_ALLOW), one rule per name with pyvmm_act_errno(error), the "
        "program exported with seccomp_export_bpf and loaded (no_new_privs, then "
        "pyvmm_seccomp_set_filter)",
        denied_call_fails_with_errno,
    ),
    Check(
        "the calls not denied still work",
        "the default action is to allow: the filter lists what fails, not what works",
        allowed_calls_still_work,
    ),
    Check(
        "the filter comes last: the runtime's own mount and pivot_root are not filtered",
        "load it in the child after pivot_root, just before execvp: every call after the "
        "load is filtered, the runtime's own too",
        filter_comes_last,
    ),
]
