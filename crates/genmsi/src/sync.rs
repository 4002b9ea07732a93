//! The atomics of the delivery path, swapped for loom's under `--cfg loom` so that the
//! concurrency models (`crates/genmsi-x86/tests/loom.rs`) explore the real code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One turn of a wait loop on the configuration path (under loom: a yield to the other
/// threads of the model, which is what lets a waiting thread make progress there).
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
