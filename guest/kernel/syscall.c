/* The system-call table: Linux's numbers and calling convention (arch/x86/entry/syscalls/
 * syscall_64.tbl), so an unmodified static Linux executable runs on this kernel. */
#include "kernel.h"

#define SYS_write 1
#define SYS_exit 60
#define SYS_exit_group 231
#define ENOSYS 38
#define EBADF 9
#define EFAULT 14

/* Is [p, p+n) memory that the program may pass us? (Only ring-3 pages qualify.) */
int user_range_ok(uint64_t p, uint64_t n);

static int64_t sys_write(uint64_t fd, uint64_t buf, uint64_t count)
{
    if (fd != 1 && fd != 2)
        return -EBADF;
    if (!user_range_ok(buf, count))
        return -EFAULT;
    uart_write((const char *)buf, count);
    return count;
}

void syscall_dispatch(struct trap_frame *f)
{
    int64_t ret;
    switch (f->rax) {
    case SYS_write: ret = sys_write(f->rdi, f->rsi, f->rdx); break;
    case SYS_exit:
    case SYS_exit_group: power_off((int)f->rdi);
    default: ret = -ENOSYS;
    }
    f->rax = ret;
}
