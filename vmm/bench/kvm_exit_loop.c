/* The floor for pyvmm's exit benchmark: the smallest possible VMM in C.
 *
 * It does what pyvmm does for the same guest (a flat real-mode binary doing N OUTs
 * then an OUT to the exit port), with nothing else: create the VM, one vCPU and 64 MiB,
 * run, count port-I/O exits. It prints two figures in microseconds:
 *   create_to_first_exit  KVM_CREATE_VM .. the first port-I/O exit
 *   per_exit              the loop's time / number of exits
 * Usage: kvm_exit_loop GUEST.bin */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (64 << 20)
#define LOAD_ADDR 0x7c00
#define EXIT_PORT 0x501

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s GUEST.bin\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        die(argv[1]);
    static unsigned char code[65536];
    size_t n = fread(code, 1, sizeof(code), f);
    fclose(f);

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

    double t0 = now_us();
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    unsigned char *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (unsigned long)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
    memcpy(mem + LOAD_ADDR, code, n);
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs sregs;
    ioctl(vcpu, KVM_GET_SREGS, &sregs);
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    ioctl(vcpu, KVM_SET_SREGS, &sregs);
    struct kvm_regs regs = {.rip = LOAD_ADDR, .rflags = 2};
    ioctl(vcpu, KVM_SET_REGS, &regs);

    double first = 0, start = 0;
    long exits = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0)
            die("KVM_RUN");
        if (run->exit_reason != KVM_EXIT_IO) {
            fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
            return 1;
        }
        if (!exits) {
            first = now_us();
            start = first;
        }
        if (run->io.port == EXIT_PORT)
            break;
        exits++;
    }
    double end = now_us();
    printf("create_to_first_exit %.3f\nper_exit %.3f\nexits %ld\n", first - t0,
           (end - start) / exits, exits);
    return 0;
}
