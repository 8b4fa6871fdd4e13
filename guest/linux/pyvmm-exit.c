/* pyvmm-exit: the last thing the Linux guest's /init runs, in one of two ways:
 *
 *   pyvmm-exit STATUS                      hand STATUS to pyvmm's exit port
 *   pyvmm-exit run [--wait LINE] N PROGRAM [ARG...]
 *       say "init: running PROGRAM ARG...", run N copies of PROGRAM at once, wait for
 *       them all, then hand on the last failing copy's status (as a shell's `wait`
 *       gives it: 128+N for signal N). With --wait, first say LINE (vmm/guests/linux.py's
 *       WAIT_LINE, given by /init) and read one line from standard input.
 *
 * The exit port (0x501, vmm/devices/power.py) ends the VM with that status: Linux
 * without ACPI can only halt on "poweroff", and a halted vCPU never exits to the VMM.
 * ioperm(2) grants this process the one port; no libc, so the binary is tiny.
 *
 * Why the workload is started here and not by the shell: a shell starts a program with
 * fork(), which copies its page tables and then every page either side writes before
 * the child's exec, and it waits in a process whose memory (busybox's) must be torn
 * down when it execs. Under PVM that is all ring-0 work, emulated an instruction at a
 * time, and it was a fifth of a restored guest's time to its result line and most of
 * its time from there to its exit (docs/state.md). vfork(2) lends the child the
 * parent's memory until the child's execve, so nothing is copied; and a snapshot taken
 * at the wait holds this small process, already exec'd, not the shell. */
#define EXIT_PORT 0x501
#define MAX_COPIES 99
#define SYS_read 0
#define SYS_write 1
#define SYS_vfork 58
#define SYS_execve 59
#define SYS_exit 60
#define SYS_wait4 61
#define SYS_ioperm 173

static long syscall4(long nr, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

/* The child returns from this system call on the parent's stack, so it must only
 * execve or exit; returns_twice tells the compiler as much (as for setjmp). */
__attribute__((returns_twice)) static inline long sys_vfork(void)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(SYS_vfork) : "rcx", "r11", "memory");
    return ret;
}

static unsigned long length(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

static void put(int fd, const char *s)
{
    syscall4(SYS_write, fd, (long)s, length(s), 0);
}

static void say(const char *a, const char *b)
{
    put(2, a);
    put(2, b);
    put(2, "\n");
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* One line from standard input: up to its newline, or to the end of the input. */
static void read_line(void)
{
    char c = 0;
    while (c != '\n' && syscall4(SYS_read, 0, (long)&c, 1, 0) == 1)
        ;
}

/* A decimal number, or -1 for anything else (empty, a sign, a letter, too long). */
static long number(const char *p)
{
    long n = 0;
    if (!*p)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || n > 1000)
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

static __attribute__((noreturn)) void exit_vm(long status)
{
    if (syscall4(SYS_ioperm, EXIT_PORT, 1, 1, 0) == 0)
        __asm__ volatile("outb %0, %1" : : "a"((unsigned char)status), "Nd"((unsigned short)EXIT_PORT));
    syscall4(SYS_exit, 127, 0, 0, 0); /* only if the port did not stop the VM */
    __builtin_unreachable();
}

/* wait4's status word, as a shell's $? reads it: the exit code, or 128 + the signal. */
static long shell_status(int wstatus)
{
    return (wstatus & 0x7f) ? 128 + (wstatus & 0x7f) : (wstatus >> 8) & 0xff;
}

static long run_copies(long copies, char **argv, char **envp)
{
    long pids[MAX_COPIES], status = 0;
    for (long i = 0; i < copies; i++) {
        long pid = sys_vfork();
        if (pid == 0) {
            syscall4(SYS_execve, (long)argv[0], (long)argv, (long)envp, 0);
            say("pyvmm-exit: cannot run ", argv[0]);
            syscall4(SYS_exit, 127, 0, 0, 0);
        }
        if (pid < 0) {
            say("pyvmm-exit: vfork failed for ", argv[0]);
            copies = i;
            status = 126;
            break;
        }
        pids[i] = pid;
    }
    for (long i = 0; i < copies; i++) {
        int wstatus = 0;
        if (syscall4(SYS_wait4, pids[i], (long)&wstatus, 0, 0) == pids[i] && wstatus)
            status = shell_status(wstatus);
    }
    return status;
}

static __attribute__((noreturn)) void run_command(long argc, char **argv, char **envp)
{
    const char *wait_line = 0;
    if (argc > 1 && same(argv[0], "--wait")) {
        wait_line = argv[1];
        argv += 2, argc -= 2;
    }
    long copies = argc > 0 ? number(argv[0]) : -1;
    if (argc < 2 || copies < 1 || copies > MAX_COPIES) {
        say("pyvmm-exit: usage: run [--wait LINE] N PROGRAM [ARG...], N from 1 to 99; got ",
            argc > 0 ? argv[0] : "nothing");
        exit_vm(2);
    }
    if (wait_line) {
        put(1, wait_line);
        put(1, "\n");
        read_line();
    }
    put(1, "init: running");
    for (long i = 1; i < argc; i++) {
        put(1, " ");
        put(1, argv[i]);
    }
    put(1, "\n");
    exit_vm(run_copies(copies, argv + 1, envp));
}

__attribute__((used)) void run(long argc, char **argv)
{
    char **envp = argv + argc + 1; /* after argv's NULL (System V ABI, process entry) */
    if (argc > 1 && same(argv[1], "run"))
        run_command(argc - 2, argv + 2, envp);
    long status = argc > 1 ? number(argv[1]) : 0;
    exit_vm(status < 0 ? 0 : status);
}

__attribute__((naked, noreturn)) void _start(void)
{
    /* argc at (%rsp), argv after it (System V ABI, process entry) */
    __asm__ volatile("movq (%rsp), %rdi\n\tleaq 8(%rsp), %rsi\n\tandq $-16, %rsp\n\tcall run\n\tud2");
}
