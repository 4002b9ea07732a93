//! The infrastructure itself: interrupts reach handlers on every CPU.

use crate::{check, cpu, lapic, smp, time};
use core::sync::atomic::{AtomicU32, Ordering};

const TEST_VECTOR: u8 = 0x40;
static HITS: [AtomicU32; smp::MAX_CPUS] = [const { AtomicU32::new(0) }; smp::MAX_CPUS];

fn on_test_vector(_vector: u8, cpu: u32) {
    HITS[cpu as usize].fetch_add(1, Ordering::Relaxed);
    lapic::eoi();
}

/// Sends a self-IPI to each CPU and checks each counted it once. (That the requested CPUs
/// came online is checked by `main` before any suite runs.)
pub fn run() {
    cpu::set_vector_handler(TEST_VECTOR, on_test_vector);
    for target in 0..smp::online() {
        lapic::send_fixed(smp::apic_id(target), TEST_VECTOR);
    }
    let all = time::wait_until(time::LATE_MS, || {
        (0..smp::online()).all(|c| HITS[c as usize].load(Ordering::Relaxed) == 1)
    });
    check!(
        "boot: an IPI reaches every CPU exactly once",
        all,
        "hits {:?}",
        HITS.iter()
            .map(|h| h.load(Ordering::Relaxed))
            .collect::<alloc::vec::Vec<_>>()
    );
}
