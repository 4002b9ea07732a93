//! Application processors: start-up with INIT-SIPI-SIPI, then an idle loop that handles
//! interrupts.
//!
//! 1. The BSP copies the real-mode trampoline (see `boot.rs`) to `TRAMPOLINE_PAGE`, leaves a
//!    stack in `AP_BOOT_STACK` and the CPU index in `AP_BOOT_CPU`, and sends INIT, then two
//!    start-up IPIs naming that page (Intel SDM Vol. 3, 9.4.4).
//! 2. The AP reaches `ap_main` in long mode, loads its own GDT/TSS and the shared IDT, enables
//!    its local APIC, marks itself online and idles in `hlt` with interrupts on.
//!
//! The APIC ids come from the firmware's MADT ([`crate::acpi`]): CPU index 0 is the BSP, the
//! others are numbered in table order, and every IPI names the APIC id of its CPU
//! ([`apic_id`]), which need not equal the index.

use crate::lapic;
use alloc::vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The page the start-up IPI names (physical 0x8000, free low memory).
const TRAMPOLINE_PAGE: u8 = 0x08;
/// Stack size of an application processor.
const AP_STACK: usize = 64 * 1024;
/// The most CPUs the kernel starts (per-CPU counters are sized for it).
pub const MAX_CPUS: usize = 64;

/// Read by `ap_start64` in `boot.rs`: the stack of the AP being started.
#[no_mangle]
static AP_BOOT_STACK: AtomicU64 = AtomicU64::new(0);
static AP_BOOT_CPU: AtomicU32 = AtomicU32::new(0);
static ONLINE: AtomicU32 = AtomicU32::new(1);
/// APIC id per CPU index, fixed before the first AP starts.
static APIC_IDS: spin::Once<alloc::vec::Vec<u32>> = spin::Once::new();

/// The APIC id of every CPU index the kernel may start (the BSP's alone until
/// [`start_aps`] read the MADT).
pub fn apic_ids() -> &'static [u32] {
    APIC_IDS.call_once(|| alloc::vec![lapic::id()])
}

/// The APIC id of CPU `cpu`.
pub fn apic_id(cpu: u32) -> u32 {
    apic_ids()[cpu as usize]
}

/// Number of CPUs online.
pub fn online() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

fn wait_until(mut done: impl FnMut() -> bool, spins: u64) -> bool {
    for _ in 0..spins {
        if done() {
            return true;
        }
        crate::port::pause();
    }
    done()
}

/// Starts CPUs `1..count` (at most as many as the MADT lists and [`MAX_CPUS`]), one at a
/// time; returns how many CPUs are online afterwards.
pub fn start_aps(count: u32) -> u32 {
    let bsp = lapic::id();
    let ids = APIC_IDS.call_once(|| {
        let mut ids = alloc::vec![bsp];
        let listed = crate::acpi::apic_ids().unwrap_or_default();
        ids.extend(listed.into_iter().filter(|&id| id != bsp));
        ids.truncate((count as usize).min(MAX_CPUS));
        ids
    });
    let code = crate::boot::ap_trampoline();
    let dest = (u64::from(TRAMPOLINE_PAGE) << 12) as *mut u8;
    // SAFETY: the trampoline page is free low RAM below the kernel, identity mapped; nothing
    // else lives there once the PVH start info has been read.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), dest, code.len()) };
    for (cpu, &apic) in ids.iter().enumerate().skip(1) {
        let cpu = cpu as u32;
        let stack = alloc::boxed::Box::leak(vec![0u8; AP_STACK].into_boxed_slice());
        let top = (stack.as_ptr() as u64 + AP_STACK as u64) & !0xf;
        AP_BOOT_STACK.store(top, Ordering::SeqCst);
        AP_BOOT_CPU.store(cpu, Ordering::SeqCst);
        let before = online();
        lapic::send_init(apic);
        lapic::send_startup(apic, TRAMPOLINE_PAGE);
        if !wait_until(|| online() > before, 2_000_000) {
            lapic::send_startup(apic, TRAMPOLINE_PAGE);
            wait_until(|| online() > before, 20_000_000);
        }
    }
    online()
}

#[no_mangle]
extern "C" fn ap_main() -> ! {
    let cpu = AP_BOOT_CPU.load(Ordering::SeqCst);
    crate::cpu::init(cpu);
    lapic::init(false);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    loop {
        crate::port::sti_hlt();
    }
}
