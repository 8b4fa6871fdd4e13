/*
 * workload: the one static executable pyvmm runs on the host, in a container and in
 * the tiny guest kernel, so that the three numbers compare the same work.
 *
 * Usage: workload PATH
 *
 * PATH holds 512-byte blocks. Block 0 starts with the 8 ASCII bytes "PYVMMWL1" and a
 * little-endian u64 data length N; the data start at block 1. The workload computes
 * the SHA-256 of the N data bytes, writes "workload: bytes=N sha256=HEX\n",
 * zero-padded to 512 bytes, into the block right after the data, fsyncs, prints the
 * same line and exits 0. No magic: exit 1. Anything else wrong: exit 2.
 *
 * No libc: the tiny guest kernel implements exactly the Linux system calls used here
 * (openat, pread64, pwrite64, write, fsync, exit_group) and nothing of the usual
 * process start-up (no auxv, no TLS), so the program brings its own _start and makes
 * raw system calls. It is built with -mgeneral-regs-only so that it runs even where
 * the kernel has not enabled SSE state; SHA-256 is scalar integer work anyway.
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;

#define BLOCK 512
#define CHUNK (1 << 20) /* read size: large, so the guest's per-request cost is amortised */

/* Linux x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
#define SYS_write 1
#define SYS_pread64 17
#define SYS_pwrite64 18
#define SYS_fsync 74
#define SYS_exit_group 231
#define SYS_openat 257

#define AT_FDCWD (-100)
#define O_RDWR 2

/*
 * _start: the kernel enters with %rsp pointing at argc, then argv[] (SysV x86-64 ABI,
 * 3.4.1). Pass that pointer on with the stack 16-byte aligned, as a C call expects.
 */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start_c\n"
	"	ud2\n");

static i64 syscall3(i64 n, i64 a, i64 b, i64 c)
{
	i64 ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static i64 syscall4(i64 n, i64 a, i64 b, i64 c, i64 d)
{
	i64 ret;
	register i64 r10 __asm__("r10") = d;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

static __attribute__((noreturn)) void exit_group(int status)
{
	for (;;)
		syscall3(SYS_exit_group, status, 0, 0);
}

static u64 string_length(const char *s)
{
	u64 n = 0;
	while (s[n])
		n++;
	return n;
}

static void write_all(int fd, const char *s, u64 n)
{
	while (n) {
		i64 r = syscall3(SYS_write, fd, (i64)s, (i64)n);
		if (r <= 0)
			return; /* nowhere left to report a console failure */
		s += r;
		n -= (u64)r;
	}
}

/* One message line "workload: A B C\n" (NULL parts skipped), then exit. */
static __attribute__((noreturn)) void die(int status, const char *a, const char *b,
					  const char *c)
{
	const char *parts[] = {"workload: ", a, b, c, "\n"};
	for (unsigned i = 0; i < sizeof parts / sizeof parts[0]; i++)
		if (parts[i])
			write_all(1, parts[i], string_length(parts[i]));
	exit_group(status);
}

/* pread64 until n bytes or end of file; returns the bytes read, or -errno. */
static i64 read_full(int fd, u8 *buf, u64 n, u64 offset)
{
	u64 done = 0;
	while (done < n) {
		i64 r = syscall4(SYS_pread64, fd, (i64)(buf + done), (i64)(n - done),
				 (i64)(offset + done));
		if (r < 0)
			return r;
		if (r == 0)
			break;
		done += (u64)r;
	}
	return (i64)done;
}

/* SHA-256, FIPS 180-4 section 6.2. */
struct sha256 {
	u32 h[8];
	u64 length;
};

static const u32 K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_blocks(struct sha256 *s, const u8 *p, u64 nblocks)
{
	u32 w[64];
	while (nblocks--) {
		for (int i = 0; i < 16; i++)
			w[i] = (u32)p[4 * i] << 24 | (u32)p[4 * i + 1] << 16 |
			       (u32)p[4 * i + 2] << 8 | p[4 * i + 3];
		for (int i = 16; i < 64; i++) {
			u32 s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
			u32 s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
			w[i] = w[i - 16] + s0 + w[i - 7] + s1;
		}
		u32 a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
		u32 e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
		for (int i = 0; i < 64; i++) {
			u32 t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) +
				 K[i] + w[i];
			u32 t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
			h = g;
			g = f;
			f = e;
			e = d + t1;
			d = c;
			c = b;
			b = a;
			a = t1 + t2;
		}
		s->h[0] += a;
		s->h[1] += b;
		s->h[2] += c;
		s->h[3] += d;
		s->h[4] += e;
		s->h[5] += f;
		s->h[6] += g;
		s->h[7] += h;
		s->length += 64;
		p += 64;
	}
}

/* Hash the last n (< 64) bytes at p with the padding, and write the digest as hex. */
static void sha256_final(struct sha256 *s, const u8 *p, u64 n, char *hex)
{
	u8 tail[128] = {0};
	u64 bits = (s->length + n) * 8;
	u64 len = n < 56 ? 64 : 128;
	for (u64 i = 0; i < n; i++)
		tail[i] = p[i];
	tail[n] = 0x80;
	for (int i = 0; i < 8; i++)
		tail[len - 1 - i] = (u8)(bits >> (8 * i));
	sha256_blocks(s, tail, len / 64);
	for (int i = 0; i < 64; i++)
		hex[i] = "0123456789abcdef"[(s->h[i / 8] >> (28 - 4 * (i % 8))) & 15];
}

static char *put_decimal(char *out, u64 v)
{
	char digits[20];
	int n = 0;
	do
		digits[n++] = (char)('0' + v % 10);
	while (v /= 10);
	while (n)
		*out++ = digits[--n];
	return out;
}

static char *put_string(char *out, const char *s)
{
	while (*s)
		*out++ = *s++;
	return out;
}

static u8 buffer[CHUNK] __attribute__((aligned(4096)));
static char line[BLOCK] __attribute__((aligned(64)));

__attribute__((noreturn, used)) void start_c(u64 *sp)
{
	u64 argc = sp[0];
	char **argv = (char **)(sp + 1);
	if (argc < 2)
		die(2, "usage: workload PATH", 0, 0);
	const char *path = argv[1];

	i64 fd = syscall4(SYS_openat, AT_FDCWD, (i64)path, O_RDWR, 0);
	if (fd < 0)
		die(2, "cannot open ", path, " read-write");

	i64 got = read_full((int)fd, buffer, BLOCK, 0);
	if (got < 0)
		die(2, "cannot read ", path, 0);
	static const char magic[8] = "PYVMMWL1";
	for (int i = 0; i < 8; i++)
		if (got <= i || buffer[i] != (u8)magic[i])
			die(1, path, ": not a workload image (no PYVMMWL1 header)", 0);
	if (got < 16)
		die(2, path, ": short read of the header block", 0);
	u64 total = 0;
	for (int i = 0; i < 8; i++)
		total |= (u64)buffer[8 + i] << (8 * i);
	/* Keeps every offset below 2^63, so pread64's signed offset cannot overflow. */
	if (total > (1UL << 62))
		die(2, path, ": data length in the header is absurd", 0);

	struct sha256 s = {{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f,
			    0x9b05688c, 0x1f83d9ab, 0x5be0cd19},
			   0};
	char hex[64];
	u64 done = 0, n;
	for (;;) { /* every chunk but the last is CHUNK bytes, a whole number of blocks */
		n = total - done < CHUNK ? total - done : CHUNK;
		got = read_full((int)fd, buffer, n, BLOCK + done);
		if (got < 0)
			die(2, "cannot read ", path, 0);
		if ((u64)got < n)
			die(2, path, ": short read: the data length runs past the end of the file",
			    0);
		done += n;
		if (done == total)
			break;
		sha256_blocks(&s, buffer, n / 64);
	}
	u64 whole = n / 64 * 64;
	sha256_blocks(&s, buffer, whole / 64);
	sha256_final(&s, buffer + whole, n - whole, hex);

	char *end = put_string(line, "workload: bytes=");
	end = put_decimal(end, total);
	end = put_string(end, " sha256=");
	for (int i = 0; i < 64; i++)
		*end++ = hex[i];
	*end++ = '\n';

	u64 result = BLOCK + (total + BLOCK - 1) / BLOCK * BLOCK;
	if (syscall4(SYS_pwrite64, fd, (i64)line, BLOCK, (i64)result) != BLOCK)
		die(2, "cannot write the result block to ", path, 0);
	if (syscall3(SYS_fsync, fd, 0, 0) < 0)
		die(2, "cannot fsync ", path, 0);
	write_all(1, line, (u64)(end - line));
	exit_group(0);
}
