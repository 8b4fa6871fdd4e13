/* The process entry of the demo programs (SysV x86-64 ABI 3.4.1): the kernel leaves RSP
 * pointing at argc, then argv[]. Call main(argc, argv) and pass its result to
 * exit_group, as a C library's crt1 would. */
.globl _start
_start:
    movq (%rsp), %rdi
    leaq 8(%rsp), %rsi
    andq $-16, %rsp
    call main
    movl %eax, %edi
    movl $231, %eax /* exit_group */
    syscall
