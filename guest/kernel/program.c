/* Loading and starting the ring-3 program: a static Linux x86-64 ELF executable that
 * the VMM left in memory (boot_info.program_addr). The file is untrusted: every header
 * field is checked against its size before use (ELF-64 Object File Format, 3 and 4). */
#include "kernel.h"

#define PT_LOAD 1
#define ET_EXEC 2
#define EM_X86_64 62
#define USER_BASE 0x400000ull /* where static executables are linked by default */
#define PAGE_2M (2ull << 20)
#define MAX_ARGS 16

struct elf64_ehdr {
    unsigned char ident[16];
    uint16_t type, machine;
    uint32_t version;
    uint64_t entry, phoff, shoff;
    uint32_t flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};

struct elf64_phdr {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

/* What ring 3 may hand to a system call: exactly the 2 MiB pages it can touch itself
 * (its segments and its stack), one bit a page, so a check costs a few instructions. */
#define USER_PAGES (64ull << 30 >> 21) /* as far as the VMM's identity map goes */
static uint64_t user_pages[USER_PAGES / 64];

static void add_user_range(uint64_t start, uint64_t end, int writable)
{
    for (uint64_t pg = start >> 21; pg <= (end - 1) >> 21; pg++)
        user_pages[pg / 64] |= 1ull << (pg % 64);
    map_user(start, end, writable);
}

int user_range_ok(uint64_t p, uint64_t n)
{
    uint64_t last = p + n - 1;
    if (n == 0)
        return 1;
    if (last < p || last >> 21 >= USER_PAGES)
        return 0;
    for (uint64_t pg = p >> 21; pg <= last >> 21; pg++)
        if (!(user_pages[pg / 64] >> (pg % 64) & 1))
            return 0;
    return 1;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }

/* Arguments for the program: the command-line words after "--", as Linux passes them to
 * init. Splits the command line in place. */
static int split_args(char *cmdline, char **argv)
{
    int argc = 0, after_dashes = 0;
    argv[argc++] = "program";
    for (char *p = cmdline; *p && argc < MAX_ARGS;) {
        while (is_space(*p))
            *p++ = 0;
        if (!*p)
            break;
        char *word = p;
        while (*p && !is_space(*p))
            p++;
        if (after_dashes)
            argv[argc++] = word;
        else if (p - word == 2 && word[0] == '-' && word[1] == '-')
            after_dashes = 1;
    }
    if (*cmdline == 0 || argc < MAX_ARGS)
        argv[argc] = 0;
    return argc;
}

/* The initial stack of a Linux process (SysV x86-64 ABI, 3.4.1): argc, argv[], NULL,
 * envp[] (empty), NULL, auxv (just AT_NULL); the strings above them. */
static uint64_t build_stack(uint64_t top, int argc, char **argv)
{
    uint64_t sp = top, ptrs[MAX_ARGS];
    for (int i = argc - 1; i >= 0; i--) {
        size_t n = strlen(argv[i]) + 1;
        sp -= n;
        memcpy((void *)sp, argv[i], n);
        ptrs[i] = sp;
    }
    sp &= ~15ull;
    uint64_t words = 1 + argc + 1 + 1 + 2; /* argc, argv, NULL, envp NULL, AT_NULL pair */
    sp -= words * 8;
    sp &= ~15ull;
    uint64_t *s = (uint64_t *)sp;
    *s++ = argc;
    for (int i = 0; i < argc; i++)
        *s++ = ptrs[i];
    *s++ = 0; /* end of argv */
    *s++ = 0; /* empty environment */
    *s++ = 0; /* auxv: AT_NULL */
    *s++ = 0;
    return sp;
}

void run_program(const struct boot_info *bi)
{
    const unsigned char *image = (const unsigned char *)bi->program_addr;
    uint64_t size = bi->program_size;
    const struct elf64_ehdr *eh = (const void *)image;
    if (!image || size < sizeof(*eh))
        panic("no program to run");
    if (memcmp(eh->ident, "\177ELF\2\1", 6) || eh->type != ET_EXEC || eh->machine != EM_X86_64)
        panic("program is not a static x86-64 ELF executable");
    if (eh->phentsize != sizeof(struct elf64_phdr) || eh->phoff > size ||
        (uint64_t)eh->phnum * sizeof(struct elf64_phdr) > size - eh->phoff)
        panic("program headers are outside the file");

    /* The stack is the 2 MiB just below where the VMM put the file; segments go below it. */
    uint64_t stack_top = bi->program_addr & ~(PAGE_2M - 1);
    uint64_t stack_base = stack_top - PAGE_2M;
    const struct elf64_phdr *ph = (const void *)(image + eh->phoff);
    for (int i = 0; i < eh->phnum; i++) {
        if (ph[i].type != PT_LOAD || ph[i].memsz == 0)
            continue;
        uint64_t va = ph[i].vaddr, end = va + ph[i].memsz;
        if (ph[i].filesz > ph[i].memsz || ph[i].offset > size || ph[i].filesz > size - ph[i].offset)
            panic("program segment is outside the file");
        if (va < USER_BASE || end < va || end > stack_base)
            panic("program segment is outside user memory");
        memcpy((void *)va, image + ph[i].offset, ph[i].filesz);
        /* No memset of the rest (.bss): RAM the VMM loaded nothing into is zero (the
         * boot-info contract), and under PVM a ring-0 "rep stosb" is emulated a byte at
         * a time: clearing the workload's 1 MiB buffer would cost most of a second. */
        add_user_range(va, end, 1);
    }
    add_user_range(stack_base, stack_top, 1);

    static char cmdline[4096];
    static char *argv[MAX_ARGS + 1];
    uint64_t n = bi->cmdline_len < sizeof(cmdline) - 1 ? bi->cmdline_len : sizeof(cmdline) - 1;
    memcpy(cmdline, (const void *)bi->cmdline_addr, n);
    cmdline[n] = 0;
    int argc = split_args(cmdline, argv);
    uint64_t sp = build_stack(stack_top, argc, argv);
    enter_user(eh->entry, sp);
}
