/* The system-call table: Linux's numbers and calling convention (arch/x86/entry/syscalls/
 * syscall_64.tbl), so an unmodified static Linux executable runs on this kernel.
 *
 * Files: 0-2 are the console; openat() of /dev/vda, /dev/vdb, ... opens a virtio disk.
 * Every pointer a program passes is checked against the program's own memory first. */
#include "kernel.h"

#define SYS_write 1
#define SYS_close 3
#define SYS_pread64 17
#define SYS_pwrite64 18
/* >>> 5: Linux's number for getpid (arch/x86/entry/syscalls/syscall_64.tbl) */
#define SYS_getpid 39
/* <<< */
#define SYS_exit 60
#define SYS_fsync 74
#define SYS_exit_group 231
#define SYS_openat 257
#define NR_SYSCALLS 258 /* traps.S checks the number against the same bound */

#define ENOENT 2
#define EBADF 9
#define EFAULT 14
#define EINVAL 22
#define EMFILE 24
#define ENOSYS 38
#define ENAMETOOLONG 36

#define MAX_FILES 16
#define FIRST_DISK_FD 3
#define PATH_MAX_LEN 64

/* fd -> disk index + 1 (0: not open); 0-2 are the console and never in this table. */
static int files[MAX_FILES];

typedef int64_t (*syscall_fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);

static int64_t sys_write(uint64_t fd, uint64_t buf, uint64_t count)
{
    if (!user_range_ok(buf, count))
        return -EFAULT;
    if (fd == 1 || fd == 2) {
        uart_write((const char *)buf, count);
        return count;
    }
    if (fd < MAX_FILES && files[fd])
        return -EINVAL; /* a disk is written with pwrite64 */
    return -EBADF;
}

static int64_t sys_openat(uint64_t dirfd, uint64_t path)
{
    (void)dirfd; /* the only paths are absolute */
    char name[PATH_MAX_LEN];
    for (int i = 0;; i++) {
        if (i == PATH_MAX_LEN)
            return -ENAMETOOLONG;
        if (!user_range_ok(path + i, 1))
            return -EFAULT;
        name[i] = ((const char *)path)[i];
        if (!name[i])
            break;
    }
    /* "/dev/vd" followed by one letter naming a disk that exists. */
    if (memcmp(name, "/dev/vd", 7) || !name[7] || name[8] || name[7] < 'a' ||
        name[7] - 'a' >= virtio_blk_count())
        return -ENOENT;
    for (int fd = FIRST_DISK_FD; fd < MAX_FILES; fd++)
        if (!files[fd]) {
            files[fd] = name[7] - 'a' + 1;
            return fd;
        }
    return -EMFILE;
}

static int disk_of(uint64_t fd) { return fd < MAX_FILES && files[fd] ? files[fd] - 1 : -1; }

static int64_t sys_prw(uint64_t fd, uint64_t buf, uint64_t count, uint64_t offset, int write)
{
    int disk = disk_of(fd);
    if (disk < 0)
        return -EBADF;
    if ((int64_t)offset < 0)
        return -EINVAL;
    if (!user_range_ok(buf, count))
        return -EFAULT;
    return virtio_blk_rw(disk, write, (uint8_t *)buf, count, offset);
}

static int64_t sys_pread64(uint64_t fd, uint64_t buf, uint64_t count, uint64_t offset)
{
    return sys_prw(fd, buf, count, offset, 0);
}

static int64_t sys_pwrite64(uint64_t fd, uint64_t buf, uint64_t count, uint64_t offset)
{
    return sys_prw(fd, buf, count, offset, 1);
}

static int64_t sys_fsync(uint64_t fd)
{
    int disk = disk_of(fd);
    return disk < 0 ? -EBADF : virtio_blk_flush(disk);
}

static int64_t sys_close(uint64_t fd)
{
    if (disk_of(fd) < 0)
        return -EBADF;
    files[fd] = 0;
    return 0;
}

static int64_t sys_exit_group(uint64_t status) { power_off((int)status); }

/* >>> 5: sys_getpid: this kernel runs one process, and it is PID 1 (as a container's
 * ... first process is, in its PID namespace) */
static int64_t sys_getpid(void) { return 1; }
/* <<< */

/* Indexed by system-call number from traps.S; an empty slot answers -ENOSYS. Every
 * handler is called with the six argument registers, and one with fewer parameters
 * simply ignores the rest (the x86-64 calling convention makes that safe); the cast
 * through void * says so to the compiler. */
#define HANDLER(f) ((syscall_fn)(void *)(f))
const syscall_fn syscall_table[NR_SYSCALLS] = {
    [SYS_write] = HANDLER(sys_write),
    [SYS_close] = HANDLER(sys_close),
    [SYS_pread64] = HANDLER(sys_pread64),
    [SYS_pwrite64] = HANDLER(sys_pwrite64),
    /* >>> 5: its entry in the table */
    [SYS_getpid] = HANDLER(sys_getpid),
    /* <<< */
    [SYS_exit] = HANDLER(sys_exit_group),
    [SYS_fsync] = HANDLER(sys_fsync),
    [SYS_exit_group] = HANDLER(sys_exit_group),
    [SYS_openat] = HANDLER(sys_openat),
};
