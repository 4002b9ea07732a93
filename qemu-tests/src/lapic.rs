//! The local APIC (Intel SDM Vol. 3, chapter 11): enable, EOI, and the inter-processor
//! interrupts that start the application processors.
//!
//! Two modes: xAPIC (registers in MMIO at 0xFEE00000, 8-bit APIC ids) and x2APIC (registers in
//! MSRs 0x800 + offset / 16, 32-bit APIC ids, SDM 11.12). [`use_x2apic`] picks x2APIC before the
//! first [`init`]: the kernel does so when an APIC id the firmware lists does not fit in 8 bits.

use crate::mmio::MmioRegion;
use crate::port::{outb, rdmsr, wrmsr};
use core::sync::atomic::{AtomicBool, Ordering};

/// The xAPIC register page.
const LAPIC_BASE: u64 = 0xfee0_0000;
const IA32_APIC_BASE: u32 = 0x1b;
/// `IA32_APIC_BASE` bit 11: the APIC is enabled.
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
/// `IA32_APIC_BASE` bit 10: x2APIC mode (entered from xAPIC mode, SDM 11.12.5).
const APIC_EXTD: u64 = 1 << 10;
/// The first x2APIC register MSR; register at MMIO offset `o` is MSR `X2APIC_MSR + o / 16`.
const X2APIC_MSR: u32 = 0x800;
/// CPUID.1:ECX bit 21: x2APIC supported.
const CPUID_X2APIC: u32 = 1 << 21;

static X2APIC: AtomicBool = AtomicBool::new(false);

/// True when the CPU supports x2APIC mode.
pub fn x2apic_supported() -> bool {
    let leaf = core::arch::x86_64::__cpuid(1);
    leaf.ecx & CPUID_X2APIC != 0
}

/// Every CPU runs its local APIC in x2APIC mode from its [`init`] on.
pub fn use_x2apic() {
    X2APIC.store(true, Ordering::SeqCst);
}

/// True when the local APICs run in x2APIC mode.
pub fn x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

fn read(reg: u64) -> u32 {
    if x2apic() {
        rdmsr(X2APIC_MSR + (reg >> 4) as u32) as u32
    } else {
        regs().read32(reg)
    }
}

fn write(reg: u64, value: u32) {
    if x2apic() {
        wrmsr(X2APIC_MSR + (reg >> 4) as u32, u64::from(value));
    } else {
        regs().write32(reg, value);
    }
}

const REG_ID: u64 = 0x20;
const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
/// Interrupt Request Register: eight 32-bit registers, 16 bytes apart (SDM 11.8.4).
const REG_IRR: u64 = 0x200;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
const REG_LVT_LINT0: u64 = 0x350;
const REG_LVT_LINT1: u64 = 0x360;

/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// LVT bit 16: masked.
const LVT_MASKED: u32 = 1 << 16;
/// ICR bit 12: delivery status (send pending).
const ICR_PENDING: u32 = 1 << 12;
/// ICR delivery mode INIT, level assert.
const ICR_INIT: u32 = (0b101 << 8) | (1 << 14);
/// ICR delivery mode start-up.
const ICR_STARTUP: u32 = 0b110 << 8;

/// The spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;

fn regs() -> MmioRegion {
    MmioRegion::new(LAPIC_BASE, 0x1000)
}

/// Enables the calling CPU's local APIC, accepts every priority, and masks LINT0/LINT1 so
/// that the legacy PIC's ExtINT cannot reach it. On the BSP, also masks both 8259 PICs.
pub fn init(bsp: bool) {
    if bsp {
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
    wrmsr(IA32_APIC_BASE, rdmsr(IA32_APIC_BASE) | APIC_GLOBAL_ENABLE);
    if x2apic() {
        wrmsr(IA32_APIC_BASE, rdmsr(IA32_APIC_BASE) | APIC_EXTD);
    }
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_TPR, 0);
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
}

/// The calling CPU's APIC id (xAPIC: ID register bits 31:24; x2APIC: all 32 bits).
pub fn id() -> u32 {
    if x2apic() {
        read(REG_ID)
    } else {
        read(REG_ID) >> 24
    }
}

/// Signals end of interrupt for the highest in-service vector.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// True when `vector` is pending in the calling CPU's IRR (accepted, not yet in service). A
/// CPU can read only its own IRR, so only the CPU that owns a vector can ask this of it.
pub fn irr_pending(vector: u8) -> bool {
    let reg = REG_IRR + 0x10 * u64::from(vector / 32);
    read(reg) & (1 << (vector % 32)) != 0
}

fn send_ipi(apic_id: u32, command: u32) {
    if x2apic() {
        // One 64-bit ICR (MSR 0x830), destination in bits 63:32; no delivery status to poll.
        wrmsr(
            X2APIC_MSR + (REG_ICR_LOW >> 4) as u32,
            (u64::from(apic_id) << 32) | u64::from(command),
        );
        return;
    }
    let r = regs();
    r.write32(REG_ICR_HIGH, apic_id << 24);
    r.write32(REG_ICR_LOW, command);
    while r.read32(REG_ICR_LOW) & ICR_PENDING != 0 {
        crate::port::pause();
    }
}

/// Sends INIT to `apic_id`.
pub fn send_init(apic_id: u32) {
    send_ipi(apic_id, ICR_INIT);
}

/// Sends a start-up IPI: the target starts in real mode at `page << 12`.
pub fn send_startup(apic_id: u32, page: u8) {
    send_ipi(apic_id, ICR_STARTUP | u32::from(page));
}

/// Sends a fixed interrupt on `vector` to `apic_id`.
pub fn send_fixed(apic_id: u32, vector: u8) {
    send_ipi(apic_id, u32::from(vector));
}
