/* Lab 5: a ring-3 program that asks the tiny kernel for its process ID and exits with
 * it. It has no C library: guest/demo/start.S calls main and passes what it returns to
 * the exit_group system call, so `pyvmm boot --program getpid; echo $?` shows it.
 *
 * A Linux x86-64 system call (the ABI, section A.2.1, and syscall(2)): the number in
 * RAX, arguments in RDI, RSI, RDX, R10, R8, R9, the `syscall` instruction, the result in
 * RAX; the CPU itself clobbers RCX (the return address) and R11 (RFLAGS). */

int main(void)
{
    /* >>> 5: make system call 39 (getpid) with inline assembly and return its result:
     * ... __asm__ volatile("syscall" : "=a"(result) : "a"(39L) : "rcx", "r11", "memory") */
    //| return -1;
    long pid;
    __asm__ volatile("syscall" : "=a"(pid) : "a"(39L) : "rcx", "r11", "memory");
    return (int)pid;
    /* <<< */
}
