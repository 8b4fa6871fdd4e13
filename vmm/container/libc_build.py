"""Build the cffi bindings to the libc calls the container runtime needs.

Python 3.11 has no os.unshare, os.setns, mount or pivot_root; these come from libc
through cffi's API mode so that every flag value and struct layout comes from the
system headers, never from numbers typed by hand.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
#define CLONE_NEWNS ...
#define CLONE_NEWUTS ...
#define CLONE_NEWIPC ...
#define CLONE_NEWPID ...
#define CLONE_NEWNET ...
#define CLONE_NEWCGROUP ...

#define MS_RDONLY ...
#define MS_NOSUID ...
#define MS_NODEV ...
#define MS_NOEXEC ...
#define MS_REMOUNT ...
#define MS_BIND ...
#define MS_REC ...
#define MS_PRIVATE ...
#define MS_SLAVE ...
#define MNT_DETACH ...

#define PR_SET_NO_NEW_PRIVS ...
#define PR_SET_PDEATHSIG ...
#define PR_CAPBSET_DROP ...
#define PR_CAP_AMBIENT ...
#define PR_CAP_AMBIENT_CLEAR_ALL ...

#define SYS_pivot_root ...
#define SYS_capset ...

#define _LINUX_CAPABILITY_VERSION_3 ...
#define _LINUX_CAPABILITY_U32S_3 ...
#define CAP_CHOWN ...
#define CAP_DAC_OVERRIDE ...
#define CAP_FSETID ...
#define CAP_FOWNER ...
#define CAP_NET_RAW ...
#define CAP_SETGID ...
#define CAP_SETUID ...
#define CAP_SETFCAP ...
#define CAP_SETPCAP ...
#define CAP_NET_BIND_SERVICE ...
#define CAP_SYS_CHROOT ...
#define CAP_KILL ...
#define CAP_AUDIT_WRITE ...

typedef struct { uint32_t version; int pid; ...; } cap_user_header_struct;
typedef struct { uint32_t effective; uint32_t permitted; uint32_t inheritable; }
    cap_user_data_struct;

int unshare(int flags);
int setns(int fd, int nstype);
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
int umount2(const char *target, int flags);
int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
          unsigned long arg5);
int sethostname(const char *name, size_t len);
long syscall(long number, ...);
int pyvmm_loopback_up(void);
long pyvmm_fork_into_cgroup(int cgroup_fd);
"""
)
ffibuilder.set_source(
    "vmm.container._libc",
    """
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <linux/sched.h>

typedef struct __user_cap_header_struct cap_user_header_struct;
typedef struct __user_cap_data_struct cap_user_data_struct;

/* Bring up "lo" in the caller's network namespace; -1 with errno on failure.
   In C because Python's socket module costs milliseconds to import. */
static int pyvmm_loopback_up(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return r;
}

/* fork(), but the child starts life in the cgroup v2 directory open as cgroup_fd
   (clone3 with CLONE_INTO_CGROUP, Linux 5.7): no migration afterwards, and so no
   wait for the RCU grace period a migration can cost. Python's own bookkeeping
   around the fork is done as os.fork does it (PyOS_BeforeFork and friends, which
   need the GIL that cffi released for this call). -1 with errno on failure. */
static long pyvmm_fork_into_cgroup(int cgroup_fd)
{
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (unsigned long)cgroup_fd;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyOS_BeforeFork();
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    int saved = errno;
    if (pid == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil);
    errno = saved;
    return pid;
}
""",
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
