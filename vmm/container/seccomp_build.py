"""Build the cffi bindings to libseccomp (Debian's libseccomp-dev), apart from libc's.

A module of its own so that only a container start that installs a filter pays for
loading libseccomp; every action, comparison and attribute value comes from
<seccomp.h>, and the filter-loading call's from <linux/seccomp.h>.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
typedef void *scmp_filter_ctx;
typedef uint64_t scmp_datum_t;

enum scmp_compare {
    SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT,
    SCMP_CMP_MASKED_EQ, ...
};
struct scmp_arg_cmp {
    unsigned int arg;
    enum scmp_compare op;
    scmp_datum_t datum_a;
    scmp_datum_t datum_b;
};

#define SCMP_ACT_KILL_PROCESS ...
#define SCMP_ACT_KILL_THREAD ...
#define SCMP_ACT_TRAP ...
#define SCMP_ACT_LOG ...
#define SCMP_ACT_ALLOW ...
#define __NR_SCMP_ERROR ...

#define SECCOMP_FILTER_FLAG_TSYNC ...
#define SECCOMP_FILTER_FLAG_LOG ...
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW ...
struct sock_filter { ...; };
struct sock_fprog { unsigned short len; struct sock_filter *filter; };
int pyvmm_seccomp_set_filter(unsigned int flags, struct sock_fprog *prog);

uint32_t pyvmm_act_errno(uint16_t errno_ret);
uint32_t pyvmm_act_trace(uint16_t msg_num);

scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
"""
)
ffibuilder.set_source(
    "vmm.container._seccomp",
    """
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>

/* SCMP_ACT_ERRNO and SCMP_ACT_TRACE are function-like macros; cffi needs functions. */
static uint32_t pyvmm_act_errno(uint16_t errno_ret) { return SCMP_ACT_ERRNO(errno_ret); }
static uint32_t pyvmm_act_trace(uint16_t msg_num) { return SCMP_ACT_TRACE(msg_num); }

/* seccomp(SECCOMP_SET_MODE_FILTER, flags, prog), the call seccomp_load(3) ends in:
   0, or -errno (with TSYNC, a positive id of a thread that could not be synced). */
static int pyvmm_seccomp_set_filter(unsigned int flags, struct sock_fprog *prog)
{
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, prog);
    return r < 0 ? -errno : (int)r;
}
""",
    libraries=["seccomp"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
