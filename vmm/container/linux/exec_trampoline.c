/* pyvmm's last step into a container: execve, from a sealed copy of this program.

   pyvmm runs this from a sealed memfd (exeseal.py) instead of calling execve from
   its own Python process, so that when the kernel resolves /proc/self/exe during
   the container's execve (a "#!/proc/self/exe" script, CVE-2019-5736) it finds this
   sealed copy, never the host's interpreter. runc's runc-dmz did the same.

   argv: FD PATH ARG0 ARG1 ...   PATH is exec'd with ARG0... and the environment
   unchanged. FD (decimal, or -1 for none) is made close-on-exec first: pyvmm's
   report pipe, or the memfd itself when it had to be inherited. If the exec fails,
   "STATUS\nPATH: REASON" is written to FD (or, failing that, "pyvmm: PATH: REASON"
   to stderr) and the status is 127 (not found) or 126 (found, not runnable), the
   shell's and Docker's. Anything else is refused with 127: in particular the
   kernel's "/proc/self/exe SCRIPT ..." when a "#!/proc/self/exe" script comes back.

   No libc: its own _start and raw system calls, so that it is a few hundred bytes and
   runs in any container (as guest/workload/workload.c does). */

/* The kernel's own headers: they need no libc. */
#include <asm/unistd.h>
#include <asm/fcntl.h>
#include <asm-generic/errno.h>

static long sys3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

/* The errors execve(2) lists, in strerror's words. */
static const char *reason(long err)
{
    switch (err) {
    case EPERM: return "Operation not permitted";
    case ENOENT: return "No such file or directory";
    case E2BIG: return "Argument list too long";
    case ENOEXEC: return "Exec format error";
    case ENOMEM: return "Cannot allocate memory";
    case EACCES: return "Permission denied";
    case ENOTDIR: return "Not a directory";
    case ETXTBSY: return "Text file busy";
    case ELOOP: return "Too many levels of symbolic links";
    default: return "exec failed";
    }
}

static char message[4096];
static long used;

static void add(const char *s)
{
    while (*s && used < (long)sizeof(message) - 1)
        message[used++] = *s++;
}

/* The descriptor named by s, -1 for "-1", -2 if s is not one. */
static int descriptor(const char *s)
{
    int n = 0;
    if (s[0] == '-' && s[1] == '1' && !s[2])
        return -1;
    if (!*s)
        return -2;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || n > 100000000)
            return -2;
        n = n * 10 + (*s - '0');
    }
    return n;
}

__attribute__((used, noreturn)) static void start(long *stack)
{
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    char **envp = argv + argc + 1;
    int fd = argc >= 3 ? descriptor(argv[0]) : -2;
    if (fd == -2) {
        add("pyvmm: exec: not started by pyvmm (a #!/proc/self/exe script?)\n");
        sys3(__NR_write, 2, (long)message, used);
        sys3(__NR_exit, 127, 0, 0);
    }
    if (fd >= 0)
        sys3(__NR_fcntl, fd, F_SETFD, FD_CLOEXEC);
    long err = -sys3(__NR_execve, (long)argv[1], (long)(argv + 2), (long)envp);
    int status = err == ENOENT || err == ENOTDIR ? 127 : 126;
    add(status == 127 ? "127\n" : "126\n");
    long start = used;
    add(argv[1]);
    add(": ");
    add(reason(err));
    if (fd < 0 || sys3(__NR_write, fd, (long)message, used) != used) {
        sys3(__NR_write, 2, (long)"pyvmm: ", 7);
        add("\n");
        sys3(__NR_write, 2, (long)(message + start), used - start);
    }
    sys3(__NR_exit, status, 0, 0);
    __builtin_unreachable();
}

__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call start\n hlt\n");
