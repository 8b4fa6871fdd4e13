/* Raw sequential read of a disk, for the disk benchmark: pread64 the whole device in
 * requests of the given size and report how many bytes came back. Like the workload, a
 * static Linux executable with no C library, so it runs on the host as well. */

#define SYS_write 1
#define SYS_pread64 17
#define SYS_exit_group 231
#define SYS_openat 257
#define AT_FDCWD (-100)
#define MAX_CHUNK (1 << 20)

static unsigned char buffer[MAX_CHUNK] __attribute__((aligned(4096)));

static long sys(long nr, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}

static void put(const char *s)
{
    long n = 0;
    while (s[n])
        n++;
    sys(SYS_write, 1, (long)s, n, 0);
}

static void put_number(unsigned long v)
{
    char buf[24];
    int i = sizeof(buf) - 1;
    buf[i] = 0;
    do
        buf[--i] = '0' + v % 10;
    while (v /= 10);
    put(buf + i);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        put("usage: rawread DEVICE CHUNK_BYTES\n");
        return 2;
    }
    unsigned long chunk = 0;
    for (const char *p = argv[2]; *p >= '0' && *p <= '9'; p++)
        chunk = chunk * 10 + (*p - '0');
    if (chunk == 0 || chunk > MAX_CHUNK) {
        put("rawread: chunk must be 1 to 1048576 bytes\n");
        return 2;
    }
    long fd = sys(SYS_openat, AT_FDCWD, (long)argv[1], 0, 0);
    if (fd < 0) {
        put("rawread: cannot open the device\n");
        return 2;
    }
    put("rawread: start\n");
    unsigned long total = 0;
    for (;;) {
        long n = sys(SYS_pread64, fd, (long)buffer, chunk, total);
        if (n <= 0)
            break;
        total += n;
    }
    put("rawread: bytes=");
    put_number(total);
    put("\n");
    return 0;
}
