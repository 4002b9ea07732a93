//! The device model of the grow workload: a thread that fires the entries the guest announced,
//! through their irqfds ([`Triggers::fire`]), paced so that every arrival the guest counts is
//! attributable and the local APIC never merges two edges.
//!
//! 1. The guest programs entry `i` with one of ~192 vectors, so entries share vectors. The
//!    device notes the vector of each entry it may fire (the message the guest programmed, read
//!    once when the guest announces the entry) and **never fires a vector while an earlier fire
//!    on it is uncounted**: two edges on one vector could merge in the IRR and look like a loss.
//! 2. A round fires at most one entry per vector (round robin among that vector's entries),
//!    keeping at most [`IN_FLIGHT`] fires uncounted, then waits up to [`ROUND_WAIT`] for the guest's counters
//!    to reach what was fired, then publishes the round to the guest.
//! 3. A vector with a fire still uncounted is never fired again, so no two fires can merge;
//!    after [`LOSS_WAIT`] it no longer takes one of the [`IN_FLIGHT`] places (the device goes on
//!    with the other vectors) and counts in [`DeviceReport::vectors_stalled`].
//! 4. Fires the function refused because its MSI-X was disabled ([`Fire::Dropped`]) are still
//!    fires: lost is `fired - counted`, counted by the guest.

use crate::function::Function;
use crate::guest::{ctrl, layout};
use crate::harness::Events;
use crate::memory::GuestMemory;
use genmsi_vmm::kvm::{Fire, Triggers};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Interrupts fired and not yet counted, at most. With ~192 pending at once, this machine
/// kind's KVM (nested, `kvm_pvm`) left some in the local APIC's IRR for good (measured: IRR
/// bits set, ISR empty, PPR 0 when the guest exited), and with up to ~190 in flight in the
/// grow workload some never arrived; with at most 16 to 64 in flight, none did.
pub const IN_FLIGHT: usize = 16;
/// How long a round waits for the guest to count what it fired.
pub const ROUND_WAIT: Duration = Duration::from_millis(2);
/// After this long uncounted, a fire no longer holds a place in flight.
pub const LOSS_WAIT: Duration = Duration::from_millis(1000);
/// When draining at the end: give up after this long without a new arrival.
pub const DRAIN_WAIT: Duration = Duration::from_millis(1000);

/// What the device did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceReport {
    /// Interrupts the device raised.
    pub fired: u64,
    /// Of those, raised while the function's MSI-X was disabled (nothing sent).
    pub dropped: u64,
    /// Of those, latched in the device (entry without a route).
    pub latched: u64,
    /// Vectors whose last fire was still uncounted after [`LOSS_WAIT`] (at the end: each
    /// holds one lost interrupt; no vector is fired again while uncounted).
    pub vectors_stalled: u64,
    /// Rounds.
    pub rounds: u64,
}

/// The device thread's inputs.
#[derive(Debug)]
pub struct DeviceModel {
    /// What firing writes.
    pub triggers: Arc<Triggers>,
    /// The guest's announcements.
    pub events: Arc<Events>,
    /// Guest RAM (arrival counters, the round counter).
    pub memory: Arc<GuestMemory>,
    /// The function: the vector the guest programmed in an entry is read from its table.
    pub function: Arc<Mutex<Function>>,
    /// Set to stop firing; the device then waits for the last arrivals.
    pub stop: Arc<AtomicBool>,
}

struct Pacing {
    /// Fires sent per vector (what the guest should count).
    expected: [u64; 256],
    /// When each vector was last fired.
    uncounted_since: [Option<Instant>; 256],
}

impl DeviceModel {
    fn counted(&self, vector: usize) -> u64 {
        self.memory
            .u64_at(layout::COUNTS + 8 * vector as u64)
            .load(Ordering::Acquire)
    }

    fn all_counted(&self, pacing: &Pacing) -> bool {
        (0..256).all(|v| self.counted(v) >= pacing.expected[v])
    }

    /// Runs until stopped, then drains.
    pub fn run(self) -> DeviceReport {
        let mut report = DeviceReport::default();
        let mut pacing = Pacing {
            expected: [0; 256],
            uncounted_since: [None; 256],
        };
        let entries = self.events.active.len();
        let mut known = vec![false; entries];
        let mut by_vector: Vec<Vec<u32>> = vec![Vec::new(); 256];
        let mut cursor = [0usize; 256];
        let mut next_vector = 0usize;
        while !self.stop.load(Ordering::Acquire) {
            for (i, seen) in known.iter_mut().enumerate() {
                if !*seen && self.events.active[i].load(Ordering::Acquire) {
                    *seen = true;
                    let f = self.function.lock().unwrap_or_else(|e| e.into_inner());
                    let vector = f.virt().emul().msg(i as u32).data as u8;
                    by_vector[usize::from(vector)].push(i as u32);
                }
            }
            let now = Instant::now();
            let mut fired_vectors = 0;
            // Vectors fired and not counted yet (a presumed loss, older than LOSS_WAIT, no
            // longer holds a place).
            let mut in_flight = (0..256)
                .filter(|&v| {
                    self.counted(v) < pacing.expected[v]
                        && pacing.uncounted_since[v].is_some_and(|t| now - t < LOSS_WAIT)
                })
                .count();
            for k in 0..256 {
                let v = (next_vector + k) % 256;
                if by_vector[v].is_empty() || in_flight >= IN_FLIGHT {
                    continue;
                }
                if self.counted(v) < pacing.expected[v] {
                    continue;
                }
                in_flight += 1;
                let list = &by_vector[v];
                let entry = list[cursor[v] % list.len()];
                cursor[v] += 1;
                report.fired += 1;
                fired_vectors += 1;
                match self.triggers.fire(entry) {
                    Fire::Sent => pacing.expected[v] += 1,
                    Fire::Latched => {
                        report.latched += 1;
                        pacing.expected[v] += 1;
                    }
                    Fire::Dropped => report.dropped += 1,
                }
                pacing.uncounted_since[v] = Some(now);
            }
            next_vector = (next_vector + fired_vectors.max(1)) % 256;
            let start = Instant::now();
            while !self.all_counted(&pacing) && start.elapsed() < ROUND_WAIT {
                std::hint::spin_loop();
                std::thread::yield_now();
            }
            if fired_vectors == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
            report.rounds += 1;
            self.memory
                .u64_at(layout::CTRL + ctrl::ROUNDS)
                .store(report.rounds, Ordering::Release);
        }
        // Drain: wait until everything fired is counted, or nothing more arrives.
        let mut last = (0..256).map(|v| self.counted(v)).sum::<u64>();
        let mut quiet = Instant::now();
        while !self.all_counted(&pacing) && quiet.elapsed() < DRAIN_WAIT {
            std::thread::sleep(Duration::from_millis(1));
            let now = (0..256).map(|v| self.counted(v)).sum::<u64>();
            if now != last {
                last = now;
                quiet = Instant::now();
            }
        }
        report.vectors_stalled = (0..256)
            .filter(|&v| self.counted(v) < pacing.expected[v])
            .count() as u64;
        report
    }
}
