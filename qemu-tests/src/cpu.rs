//! Per-CPU descriptor tables and interrupt entry.
//!
//! - Every CPU gets its own GDT and TSS; the TSS's IST1 names a private interrupt stack, and
//!   every IDT gate switches to it. The precompiled `core` assumes the System V red zone below
//!   `%rsp`, so an interrupt must never push onto the interrupted stack.
//! - The 256 entry stubs push the vector (and a zero error code where the CPU pushes none), save
//!   the general registers and the SSE state (`fxsave`), and call [`interrupt_entry`].
//! - Vectors 0-31 are exceptions: fatal, reported as a failed check. Other vectors run the
//!   handler installed with [`set_vector_handler`]; none installed means a stray interrupt,
//!   which is counted ([`stray_count`]).

use crate::port::{rdmsr, wrmsr};
use alloc::boxed::Box;
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Kernel code selector.
const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
const KERNEL_DS: u16 = 0x10;
/// TSS selector.
const TSS_SEL: u16 = 0x18;
/// `IA32_GS_BASE`: holds this CPU's index (the kernel uses no `%gs`-relative data).
const MSR_GS_BASE: u32 = 0xc000_0101;
/// Interrupt stack size per CPU.
const IST_STACK: usize = 32 * 1024;

global_asm!(
    r#"
    .section .text.isr, "ax"
    .balign 16
    .global isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    pushq $vec
    .else
    pushq $0
    pushq $vec
    .endif
    jmp isr_common
    .set vec, vec + 1
    .endr

isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rbx
    pushq %rbp
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rbp
    subq $512, %rsp
    andq $-16, %rsp
    fxsave (%rsp)
    movq %rbp, %rdi
    cld
    call interrupt_entry
    fxrstor (%rsp)
    movq %rbp, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rbp
    popq %rbx
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp
    iretq
    .text
"#,
    options(att_syntax)
);

extern "C" {
    static isr_stubs: u8;
}

/// What the entry stub leaves on the interrupt stack.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    /// `%r15` down to `%rax`, in push order reversed.
    pub regs: [u64; 15],
    /// The vector.
    pub vector: u64,
    /// The CPU's error code, or zero.
    pub error: u64,
    /// Interrupted instruction.
    pub rip: u64,
    /// Interrupted code segment.
    pub cs: u64,
    /// Interrupted flags.
    pub rflags: u64,
    /// Interrupted stack pointer.
    pub rsp: u64,
    /// Interrupted stack segment.
    pub ss: u64,
}

/// A vector handler: runs in interrupt context on `cpu` with interrupts off, and must send
/// the LAPIC EOI itself (level-triggered sources need it after the device is quiet).
pub type VectorHandler = fn(vector: u8, cpu: u32);

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static STRAY: AtomicU64 = AtomicU64::new(0);

/// Installs `handler` for `vector` on every CPU (the IDT is shared).
pub fn set_vector_handler(vector: u8, handler: VectorHandler) {
    HANDLERS[vector as usize].store(handler as usize, Ordering::Release);
}

/// Interrupts that arrived on a vector without a handler.
pub fn stray_count() -> u64 {
    STRAY.load(Ordering::Relaxed)
}

#[no_mangle]
extern "C" fn interrupt_entry(frame: &mut Frame) {
    let vector = frame.vector as u8;
    let cpu = current_cpu();
    if vector < 32 {
        let cr2: u64;
        // SAFETY: reading CR2 has no side effects.
        unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
        crate::println!(
            "[FAIL] exception {vector} on cpu {cpu}: error {:#x} rip {:#x} rsp {:#x} cr2 {cr2:#x}",
            frame.error,
            frame.rip,
            frame.rsp
        );
        crate::port::qemu_exit(crate::EXIT_FAILURE);
    }
    if vector == crate::lapic::SPURIOUS_VECTOR {
        return;
    }
    match HANDLERS[vector as usize].load(Ordering::Acquire) {
        0 => {
            STRAY.fetch_add(1, Ordering::Relaxed);
            crate::lapic::eoi();
        }
        f => {
            // SAFETY: non-zero entries are only ever stored from a `VectorHandler`.
            let handler: VectorHandler = unsafe { core::mem::transmute::<usize, VectorHandler>(f) };
            handler(vector, cpu);
        }
    }
}

/// The 64-bit TSS (Intel SDM Vol. 3, 8.7).
#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

/// One IDT gate (Intel SDM Vol. 3, 6.14.1).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

#[repr(C, packed)]
struct TablePointer {
    limit: u16,
    base: u64,
}

static IDT: spin::Once<&'static [Gate; 256]> = spin::Once::new();

fn idt() -> &'static [Gate; 256] {
    IDT.call_once(|| {
        // SAFETY: `isr_stubs` is the start of 256 stubs of 16 bytes each (`.balign 16`).
        let base = core::ptr::addr_of!(isr_stubs) as u64;
        let gates = core::array::from_fn(|v| {
            let offset = base + 16 * v as u64;
            Gate {
                offset_low: offset as u16,
                selector: KERNEL_CS,
                ist: 1,
                // Present, DPL 0, 64-bit interrupt gate: IF is cleared on entry.
                type_attr: 0x8e,
                offset_mid: (offset >> 16) as u16,
                offset_high: (offset >> 32) as u32,
                _reserved: 0,
            }
        });
        Box::leak(Box::new(gates))
    })
}

/// Loads a fresh GDT, TSS and the shared IDT on the calling CPU and records its index.
pub fn init(cpu: u32) {
    let stack = Box::leak(alloc::vec![0u8; IST_STACK].into_boxed_slice());
    let stack_top = (stack.as_ptr() as u64 + IST_STACK as u64) & !0xf;
    let tss: &'static Tss = Box::leak(Box::new(Tss {
        _reserved0: 0,
        rsp: [0; 3],
        _reserved1: 0,
        ist: [stack_top, 0, 0, 0, 0, 0, 0],
        _reserved2: 0,
        _reserved3: 0,
        iomap_base: core::mem::size_of::<Tss>() as u16,
    }));
    let tss_base = tss as *const Tss as u64;
    let tss_limit = core::mem::size_of::<Tss>() as u64 - 1;
    // Available 64-bit TSS descriptor (type 9, present), Intel SDM Vol. 3, 8.2.3.
    let tss_low = (tss_limit & 0xffff)
        | ((tss_base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((tss_base >> 24) & 0xff) << 56);
    let tss_high = tss_base >> 32;
    let gdt: &'static [u64; 5] = Box::leak(Box::new([
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        tss_low,
        tss_high,
    ]));
    let gdt_ptr = TablePointer {
        limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16,
        base: gdt.as_ptr() as u64,
    };
    let idt_ptr = TablePointer {
        limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        base: idt().as_ptr() as u64,
    };
    // SAFETY: the GDT, TSS and IDT are leaked, so they live forever; the GDT's code and data
    // descriptors match the ones the boot code runs on, so reloading the segment registers
    // (CS through a far return) keeps executing the same flat address space.
    unsafe {
        asm!(
            "lgdt [{gdt}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            "lidt [{idt}]",
            gdt = in(reg) &gdt_ptr,
            idt = in(reg) &idt_ptr,
            cs = in(reg) u64::from(KERNEL_CS),
            ds = in(reg) KERNEL_DS,
            tss = in(reg) TSS_SEL,
            tmp = lateout(reg) _,
        );
    }
    wrmsr(MSR_GS_BASE, u64::from(cpu));
}

/// The index of the calling CPU (0 is the bootstrap processor).
pub fn current_cpu() -> u32 {
    rdmsr(MSR_GS_BASE) as u32
}
