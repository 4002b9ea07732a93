//! Application processors: start-up with INIT-SIPI-SIPI, then an idle loop that handles
//! interrupts.
//!
//! 1. The BSP copies the real-mode trampoline (see `boot.rs`) to `TRAMPOLINE_PAGE`, leaves a
//!    stack in `AP_BOOT_STACK` and the CPU index in `AP_BOOT_CPU`, and sends INIT, then two
//!    start-up IPIs naming that page (Intel SDM Vol. 3, 9.4.4).
//! 2. The AP reaches `ap_main` in long mode, loads its own GDT/TSS and the shared IDT, enables
//!    its local APIC, marks itself online and idles in `hlt` with interrupts on.
//!
//! QEMU numbers the APIC ids of `-smp N` as 0..N, so CPU index and APIC id coincide.

use crate::lapic;
use alloc::vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The page the start-up IPI names (physical 0x8000, free low memory).
const TRAMPOLINE_PAGE: u8 = 0x08;
/// Stack size of an application processor.
const AP_STACK: usize = 64 * 1024;
/// The most CPUs the kernel starts.
pub const MAX_CPUS: usize = 8;

/// Read by `ap_start64` in `boot.rs`: the stack of the AP being started.
#[no_mangle]
static AP_BOOT_STACK: AtomicU64 = AtomicU64::new(0);
static AP_BOOT_CPU: AtomicU32 = AtomicU32::new(0);
static ONLINE: AtomicU32 = AtomicU32::new(1);

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

/// Starts CPUs `1..count`, one at a time; returns how many CPUs are online afterwards.
pub fn start_aps(count: u32) -> u32 {
    let code = crate::boot::ap_trampoline();
    let dest = (u64::from(TRAMPOLINE_PAGE) << 12) as *mut u8;
    // SAFETY: the trampoline page is free low RAM below the kernel, identity mapped; nothing
    // else lives there once the PVH start info has been read.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), dest, code.len()) };
    for cpu in 1..count.min(MAX_CPUS as u32) {
        let stack = alloc::boxed::Box::leak(vec![0u8; AP_STACK].into_boxed_slice());
        let top = (stack.as_ptr() as u64 + AP_STACK as u64) & !0xf;
        AP_BOOT_STACK.store(top, Ordering::SeqCst);
        AP_BOOT_CPU.store(cpu, Ordering::SeqCst);
        let before = online();
        lapic::send_init(cpu);
        lapic::send_startup(cpu, TRAMPOLINE_PAGE);
        if !wait_until(|| online() > before, 2_000_000) {
            lapic::send_startup(cpu, TRAMPOLINE_PAGE);
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
