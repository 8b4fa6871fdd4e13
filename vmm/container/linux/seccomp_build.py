"""Build the cffi bindings to libseccomp (Debian's libseccomp-dev), apart from libc's.

A module of its own so that only a container start that installs a filter pays for
loading libseccomp (and only to build a filter: loading one is a plain system call,
in libc_build.py); every action and comparison value comes from <seccomp.h>.
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
    "vmm.container.linux._seccomp",
    """
#include <seccomp.h>

/* SCMP_ACT_ERRNO and SCMP_ACT_TRACE are function-like macros; cffi needs functions. */
static uint32_t pyvmm_act_errno(uint16_t errno_ret) { return SCMP_ACT_ERRNO(errno_ret); }
static uint32_t pyvmm_act_trace(uint16_t msg_num) { return SCMP_ACT_TRACE(msg_num); }
""",
    libraries=["seccomp"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
