"""Build the cffi bindings to the KVM API from the system's ``<linux/kvm.h>``.

This is cffi's out-of-line API mode: the declarations below are compiled by the C
compiler against the real kernel headers at install time, so every struct layout and
every ioctl number comes from the headers. Where a struct ends in ``...;`` we declare
only the fields we use and let the compiler fill in the rest (padding, unions we do
not touch). Nothing here is a hand-typed offset or ioctl number.
"""

from cffi import FFI

ffibuilder = FFI()

# Integer constants: "..." asks the compiler for the value.
_CONSTANTS = """
KVM_API_VERSION
KVM_GET_API_VERSION KVM_CREATE_VM KVM_CHECK_EXTENSION KVM_GET_VCPU_MMAP_SIZE
KVM_GET_SUPPORTED_CPUID KVM_CREATE_VCPU KVM_SET_USER_MEMORY_REGION KVM_SET_TSS_ADDR
KVM_SET_IDENTITY_MAP_ADDR KVM_CREATE_IRQCHIP KVM_CREATE_PIT2 KVM_IRQ_LINE KVM_IRQFD
KVM_IOEVENTFD KVM_RUN KVM_GET_REGS KVM_SET_REGS KVM_GET_SREGS KVM_SET_SREGS
KVM_GET_MSRS KVM_SET_MSRS KVM_SET_CPUID2 KVM_TRANSLATE KVM_GET_FPU KVM_SET_FPU
KVM_SET_GUEST_DEBUG KVM_GUESTDBG_ENABLE KVM_GUESTDBG_SINGLESTEP KVM_GUESTDBG_USE_SW_BP
KVM_GUESTDBG_USE_HW_BP KVM_CAP_SET_GUEST_DEBUG
KVM_EXIT_UNKNOWN KVM_EXIT_EXCEPTION KVM_EXIT_IO KVM_EXIT_HYPERCALL KVM_EXIT_DEBUG
KVM_EXIT_HLT KVM_EXIT_MMIO KVM_EXIT_IRQ_WINDOW_OPEN KVM_EXIT_SHUTDOWN
KVM_EXIT_FAIL_ENTRY KVM_EXIT_INTR KVM_EXIT_SET_TPR KVM_EXIT_TPR_ACCESS
KVM_EXIT_NMI KVM_EXIT_INTERNAL_ERROR KVM_EXIT_SYSTEM_EVENT
KVM_EXIT_IO_IN KVM_EXIT_IO_OUT
KVM_INTERNAL_ERROR_EMULATION KVM_INTERNAL_ERROR_SIMUL_EX
KVM_INTERNAL_ERROR_DELIVERY_EV KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON
KVM_SYSTEM_EVENT_SHUTDOWN KVM_SYSTEM_EVENT_RESET KVM_SYSTEM_EVENT_CRASH
KVM_CAP_IRQCHIP KVM_CAP_HLT KVM_CAP_USER_MEMORY KVM_CAP_SET_TSS_ADDR KVM_CAP_EXT_CPUID
KVM_CAP_NR_VCPUS KVM_CAP_MAX_VCPUS KVM_CAP_NR_MEMSLOTS KVM_CAP_PIT2 KVM_CAP_IRQFD
KVM_CAP_IOEVENTFD KVM_CAP_IRQ_ROUTING KVM_CAP_READONLY_MEM KVM_CAP_IMMEDIATE_EXIT
KVM_MEM_READONLY KVM_PIT_SPEAKER_DUMMY
KVM_IOEVENTFD_FLAG_DATAMATCH KVM_IOEVENTFD_FLAG_PIO KVM_IOEVENTFD_FLAG_DEASSIGN
KVM_IRQFD_FLAG_DEASSIGN
KVM_GET_MP_STATE KVM_MP_STATE_RUNNABLE KVM_MP_STATE_UNINITIALIZED
KVM_MP_STATE_INIT_RECEIVED KVM_MP_STATE_HALTED KVM_MP_STATE_SIPI_RECEIVED
KVM_GET_IRQCHIP KVM_IRQCHIP_IOAPIC KVM_IOAPIC_NUM_PINS
KVM_CPUID_FEATURES KVM_FEATURE_PV_UNHALT KVM_FEATURE_PV_SEND_IPI KVM_FEATURE_PV_SCHED_YIELD
KVM_GET_MSR_INDEX_LIST KVM_GET_CPUID2
KVM_GET_XSAVE KVM_SET_XSAVE KVM_GET_XCRS KVM_SET_XCRS KVM_GET_LAPIC KVM_SET_LAPIC
KVM_GET_VCPU_EVENTS KVM_SET_VCPU_EVENTS KVM_SET_MP_STATE
KVM_GET_DEBUGREGS KVM_SET_DEBUGREGS KVM_SET_IRQCHIP
KVM_GET_PIT2 KVM_SET_PIT2 KVM_GET_CLOCK KVM_SET_CLOCK KVM_GET_DIRTY_LOG
KVM_CAP_XSAVE KVM_CAP_XCRS KVM_CAP_VCPU_EVENTS KVM_CAP_DEBUGREGS KVM_CAP_ADJUST_CLOCK
KVM_CAP_MP_STATE KVM_CAP_PIT_STATE2 KVM_MEM_LOG_DIRTY_PAGES
KVM_IRQCHIP_PIC_MASTER KVM_IRQCHIP_PIC_SLAVE
"""

ffibuilder.cdef(
    "\n".join(f"#define {name} ..." for name in _CONSTANTS.split())
    + """
struct kvm_regs {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
};

struct kvm_segment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint8_t type, present, dpl, db, s, l, g, avl;
    ...;
};

struct kvm_dtable {
    uint64_t base;
    uint16_t limit;
    ...;
};

struct kvm_sregs {
    struct kvm_segment cs, ds, es, fs, gs, ss;
    struct kvm_segment tr, ldt;
    struct kvm_dtable gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8;
    uint64_t efer;
    uint64_t apic_base;
    ...;
};

struct kvm_msr_entry { uint32_t index; uint64_t data; ...; };
struct kvm_msrs { uint32_t nmsrs; struct kvm_msr_entry entries[]; ...; };

struct kvm_cpuid_entry2 {
    uint32_t function, index, flags, eax, ebx, ecx, edx;
    ...;
};
struct kvm_cpuid2 { uint32_t nent; struct kvm_cpuid_entry2 entries[]; ...; };

struct kvm_userspace_memory_region {
    uint32_t slot, flags;
    uint64_t guest_phys_addr, memory_size, userspace_addr;
};

struct kvm_pit_config { uint32_t flags; ...; };
struct kvm_mp_state { uint32_t mp_state; };
/* The IOAPIC's redirection table is a union of bitfields: read through ioapic_redirection. */
struct kvm_irqchip { uint32_t chip_id; ...; };
struct kvm_irq_level { uint32_t irq; uint32_t level; ...; };
struct kvm_irqfd { uint32_t fd, gsi, flags; ...; };
struct kvm_ioeventfd { uint64_t datamatch, addr; uint32_t len; int32_t fd; uint32_t flags; ...; };

struct kvm_translation {
    uint64_t linear_address;
    uint64_t physical_address;
    uint8_t valid, writeable, usermode;
    ...;
};

struct kvm_fpu {
    uint8_t fpr[8][16];
    uint16_t fcw, fsw;
    uint8_t ftwx;
    uint16_t last_opcode;
    uint64_t last_ip, last_dp;
    uint8_t xmm[16][16];
    uint32_t mxcsr;
    ...;
};

/* The state a snapshot saves whole (docs/state.md; kvm_mp_state and kvm_irqchip are
   above): the kernel's structs, sized by the compiler and kept as bytes; pyvmm reads
   only the fields named here. */
struct kvm_msr_list { uint32_t nmsrs; uint32_t indices[]; };
struct kvm_xsave { ...; };
struct kvm_xcrs { ...; };
struct kvm_lapic_state { ...; };
struct kvm_vcpu_events { ...; };
struct kvm_debugregs { ...; };
struct kvm_pit_state2 { ...; };
struct kvm_clock_data { uint64_t clock; uint32_t flags; ...; };
struct kvm_dirty_log { uint32_t slot; void *dirty_bitmap; ...; };

struct kvm_guest_debug_arch { uint64_t debugreg[8]; };
struct kvm_debug_exit_arch { uint32_t exception, pad; uint64_t pc, dr6, dr7; };
struct kvm_guest_debug { uint32_t control; struct kvm_guest_debug_arch arch; ...; };

/* struct kvm_run: only the exit payloads pyvmm decodes (api.rst, section 5). The
   anonymous union must be declared whole for cffi; its 256-byte padding member sizes it. */
struct kvm_run {
    uint8_t request_interrupt_window;
    uint8_t immediate_exit;
    uint32_t exit_reason;
    uint8_t ready_for_interrupt_injection;
    uint8_t if_flag;
    union {
        struct { uint64_t hardware_exit_reason; } hw;
        struct { uint64_t hardware_entry_failure_reason; uint32_t cpu; } fail_entry;
        struct { uint32_t exception, error_code; } ex;
        struct { struct kvm_debug_exit_arch arch; } debug;
        struct { uint8_t direction, size; uint16_t port; uint32_t count; uint64_t data_offset; } io;
        struct { uint64_t phys_addr; uint8_t data[8]; uint32_t len; uint8_t is_write; } mmio;
        struct { uint32_t suberror; uint32_t ndata; uint64_t data[16]; } internal;
        struct { uint32_t type; uint32_t ndata; uint64_t data[16]; } system_event;
        char padding[256];
    };
    ...;
};

int kvm_ioctl(int fd, unsigned long request, void *arg);
int kvm_ioctl_val(int fd, unsigned long request, unsigned long arg);
uint64_t ioapic_redirection(struct kvm_irqchip *chip, int pin);
"""
)

ffibuilder.set_source(
    "vmm.kvm._kvm",
    """
#include <linux/kvm.h>
#include <linux/kvm_para.h>
#include <sys/ioctl.h>

/* ioctl() is variadic; two fixed-signature wrappers keep cffi's calls simple. */
static int kvm_ioctl(int fd, unsigned long request, void *arg)
{
    return ioctl(fd, request, arg);
}
static int kvm_ioctl_val(int fd, unsigned long request, unsigned long arg)
{
    return ioctl(fd, request, arg);
}
/* One IOAPIC redirection entry as the 64 bits the guest wrote (82093AA, 3.2.4). */
static uint64_t ioapic_redirection(struct kvm_irqchip *chip, int pin)
{
    return chip->chip.ioapic.redirtbl[pin].bits;
}
""",
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
