//! x86 port I/O and model-specific registers: the only way to reach the legacy devices
//! (COM1, the PCI configuration mechanism #1, the 8259 PICs, QEMU's debug-exit port).

use core::arch::asm;

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port writes have no memory effects visible to Rust; the kernel owns every port.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`; port reads only read device state.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a 16-bit value to an I/O port.
pub fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 32-bit value to an I/O port.
pub fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a 32-bit value from an I/O port.
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as for `inb`.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the kernel reads only architectural MSRs that exist on every x86-64 CPU QEMU models.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the kernel writes only architectural MSRs (APIC base, GS base) with valid values.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack, preserves_flags))
    }
}

/// Disables maskable interrupts on this CPU.
pub fn cli() {
    // SAFETY: only changes RFLAGS.IF.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Enables maskable interrupts on this CPU.
pub fn sti() {
    // SAFETY: only changes RFLAGS.IF; the IDT is loaded before the first call.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Enables interrupts and halts until one arrives (no wake-up is lost between the two).
pub fn sti_hlt() {
    // SAFETY: `sti` takes effect after the next instruction, so `hlt` is entered atomically.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) }
}

/// A hint to the CPU inside busy-wait loops.
pub fn pause() {
    core::hint::spin_loop();
}

/// QEMU's `isa-debug-exit` device at port 0xf4: writing `code` exits with status
/// `(code << 1) | 1`.
pub fn qemu_exit(code: u8) -> ! {
    outb(0xf4, code);
    loop {
        cli();
        // SAFETY: halting with interrupts off only stops this CPU.
        unsafe { asm!("hlt", options(nomem, nostack)) }
    }
}

/// True when maskable interrupts are enabled on this CPU.
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack; touches nothing else.
    unsafe { asm!("pushfq; pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & (1 << 9) != 0
}

/// Runs `f` with interrupts disabled on this CPU (so a handler cannot deadlock on a lock the
/// interrupted code holds), restoring the previous state afterwards.
pub fn cli_guard<T>(f: impl FnOnce() -> T) -> T {
    let enabled = interrupts_enabled();
    cli();
    let out = f();
    if enabled {
        sti();
    }
    out
}
