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
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

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
/// Application processor starts (first starts and restarts).
static BOOTS: AtomicU32 = AtomicU32::new(0);
static PARKED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static PARKED_PENDING: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
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
    for cpu in 1..ids.len() as u32 {
        if start_ap(cpu) {
            ONLINE.fetch_add(1, Ordering::AcqRel);
        }
    }
    online()
}

/// Starts (or restarts, after [`park_here`] and [`stop_ap`]) CPU `cpu` with INIT and start-up
/// IPIs; true once it runs its idle loop with interrupts on.
pub fn start_ap(cpu: u32) -> bool {
    let stack = alloc::boxed::Box::leak(vec![0u8; AP_STACK].into_boxed_slice());
    let top = (stack.as_ptr() as u64 + AP_STACK as u64) & !0xf;
    AP_BOOT_STACK.store(top, Ordering::SeqCst);
    AP_BOOT_CPU.store(cpu, Ordering::SeqCst);
    let apic = apic_id(cpu);
    let before = BOOTS.load(Ordering::SeqCst);
    let started = || BOOTS.load(Ordering::SeqCst) > before;
    lapic::send_init(apic);
    lapic::send_startup(apic, TRAMPOLINE_PAGE);
    if !wait_until(started, 2_000_000) {
        lapic::send_startup(apic, TRAMPOLINE_PAGE);
        wait_until(started, 20_000_000);
    }
    started()
}

/// Called on an application processor, in an interrupt handler: stops taking interrupts and
/// halts until [`stop_ap`] sends it INIT. Interrupts accepted but not yet handled stay in its
/// IRR; `pending` is how many of the vectors it was asked about were, recorded for the CPU
/// that parks it.
pub fn park_here(cpu: u32, pending: u32) -> ! {
    PARKED_PENDING[cpu as usize].store(pending, Ordering::SeqCst);
    PARKED[cpu as usize].store(true, Ordering::SeqCst);
    loop {
        crate::port::cli();
        // SAFETY: halting with interrupts off only stops this CPU until INIT.
        unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
    }
}

/// Whether `cpu` has parked, and with how many vectors pending in its IRR.
pub fn parked(cpu: u32) -> Option<u32> {
    PARKED[cpu as usize]
        .load(Ordering::SeqCst)
        .then(|| PARKED_PENDING[cpu as usize].load(Ordering::SeqCst))
}

/// Sends INIT to a parked `cpu`: it waits for a start-up IPI, as at power-on.
pub fn stop_ap(cpu: u32) {
    lapic::send_init(apic_id(cpu));
}

#[no_mangle]
extern "C" fn ap_main() -> ! {
    let cpu = AP_BOOT_CPU.load(Ordering::SeqCst);
    crate::cpu::init(cpu);
    lapic::init(false);
    PARKED[cpu as usize].store(false, Ordering::SeqCst);
    BOOTS.fetch_add(1, Ordering::AcqRel);
    loop {
        crate::port::sti_hlt();
    }
}
