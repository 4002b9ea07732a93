//! Bounded waiting. Under TCG the guest TSC follows the host's, so a few billion ticks are
//! about a second; the bounds here only need to be generous, never exact.

/// How long a loaded host may hold back something the guest waits for (a vCPU answering an
/// IPI, a device timer's message): a wait bounded by this that runs out is a lost message or
/// a CPU that did not answer. On a 2-core host running other builds, 100 ms was seen to be
/// too short for a 32-vCPU machine.
pub const LATE_MS: u64 = 1000;

/// TSC ticks per millisecond assumed for timeouts (a 3 GHz host).
const TICKS_PER_MS: u64 = 3_000_000;

fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Polls `done` until it holds or about `ms` milliseconds passed; returns its last value.
pub fn wait_until(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let end = rdtsc() + ms * TICKS_PER_MS;
    while rdtsc() < end {
        if done() {
            return true;
        }
        crate::port::pause();
    }
    done()
}

/// Waits about `ms` milliseconds.
pub fn delay(ms: u64) {
    wait_until(ms, || false);
}
