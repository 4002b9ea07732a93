//! Interrupts counted per CPU and vector, by a handler that any check can install.

use crate::smp::MAX_CPUS;
use core::sync::atomic::{AtomicU32, Ordering};

static COUNTS: [[AtomicU32; 256]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; 256] }; MAX_CPUS];

/// A vector handler that counts and signals EOI (for edge-triggered sources).
pub fn count_and_eoi(vector: u8, cpu: u32) {
    COUNTS[cpu as usize][vector as usize].fetch_add(1, Ordering::Relaxed);
    crate::lapic::eoi();
}

/// Counts one interrupt of `vector` on `cpu` (for handlers that do their own EOI).
pub fn record(vector: u8, cpu: u32) {
    COUNTS[cpu as usize][vector as usize].fetch_add(1, Ordering::Relaxed);
}

/// Interrupts of `vector` counted on `cpu`.
pub fn on(cpu: u32, vector: u8) -> u32 {
    COUNTS[cpu as usize][vector as usize].load(Ordering::Relaxed)
}

/// Interrupts of `vector` counted on all CPUs.
pub fn total(vector: u8) -> u32 {
    (0..MAX_CPUS as u32).map(|c| on(c, vector)).sum()
}
