//! Grace periods: nothing a freed allocation owned is reused while a write to it can still land.
//!
//! A device's message write is a posted write: the device issues it and moves on, and the write
//! travels through the fabric for a while before it reaches the interrupt-remapping unit or a
//! CPU's local APIC. Masking the device's slot and clearing its message stops *new* writes,
//! not the ones already on their way; and a write that reached a CPU sits in its IRR (or ISR)
//! until the CPU runs the interrupt entry, which looks the vector up only then. If the vector,
//! the remapping entry or the irq number were handed to a new owner in the meantime, the old
//! write would be handled as the new owner's interrupt. Linux relies on the driver to quiesce
//! its device first; genmsi does not.
//!
//! So every level holds what a freed (or deactivated) allocation owned in *quarantine* and gives
//! it back to its pool only after a grace period:
//!
//! 1. **Free.** The irq is masked at its store, its message cleared, marked inactive on the
//!    delivery side, and the deliveries running on it are waited for. Each level then holds its
//!    resource instead of releasing it: the vector domain leaves a *freed marker* in the CPU's
//!    vector table (a write that still arrives is counted as [`Delivery::Stale`], never handled
//!    by anyone), the remapping domain leaves its entry not present (a write that still arrives
//!    is blocked with "entry not present"), and the core keeps the irq number.
//! 2. **The platform's bound.** The embedder states how long a posted write may take to land, on
//!    a monotonic clock of its own choosing (nanoseconds, TSC ticks, simulation steps):
//!    [`IrqSystem::set_write_latency`](crate::IrqSystem::set_write_latency). It is a property of
//!    the platform (the longest a write may stay in the fabric, bridges and root complex
//!    included), not of a driver.
//! 3. **The clock.** The embedder calls [`IrqSystem::advance_grace`](crate::IrqSystem::advance_grace)
//!    with the current time, periodically (a timer, or the cleanup it runs for moves) or
//!    whenever it likes. A resource held since the previous advance is stamped with this one's
//!    time: an upper bound of the moment it was freed, so a resource is never released early,
//!    however seldom the clock advances. Optionally the embedder gives the system a clock to
//!    read itself ([`IrqSystem::set_grace_clock`](crate::IrqSystem::set_grace_clock)).
//! 4. **Release.** Once `write_latency` has passed since its stamp, no write to a held resource
//!    is still in the fabric: the irq number and the remapping entry go back to their pools at
//!    that advance. A vector also needs its CPU to have looked: the write may have landed in the
//!    IRR and wait there. The vector domain gives a held vector back at a cleanup pass that
//!    finds it pending in neither the IRR nor the ISR of its CPU (the same check that releases
//!    the old vector of a move).
//! 5. **Exhaustion.** When an allocation finds a pool empty, it advances the grace itself (with
//!    the embedder's clock, if given, and the vector domain's IRR probe, if given) and tries
//!    once more before it fails.
//!
//! Held resources are never lost from view: [`Stats`](crate::Stats) counts them and
//! [`IrqSystem::dump`](crate::IrqSystem::dump) shows them per domain.
//!
//! [`Delivery::Stale`]: crate::Delivery::Stale

use alloc::vec::Vec;

/// The embedder's clock as the levels see it at an advance, with the platform's bound on
/// posted-write latency (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraceClock {
    /// The current time on the embedder's monotonic clock (any unit).
    pub now: u64,
    /// The platform's bound, in the same unit: a write a device issued at time `t` has reached
    /// the remapping unit or a CPU's IRR by `t + write_latency`.
    pub write_latency: u64,
}

impl GraceClock {
    /// True when a resource stamped at `since` has passed its grace at this time.
    pub fn expired(&self, since: u64) -> bool {
        self.now.saturating_sub(since) >= self.write_latency && since <= self.now
    }
}

/// One held resource.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held<T> {
    item: T,
    /// The time of the first advance after it was held (`None`: none yet).
    since: Option<u64>,
}

/// Resources held back after their release until their grace has passed (see the module
/// docs): what each level keeps instead of giving a freed resource back at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine<T> {
    held: Vec<Held<T>>,
    clock: GraceClock,
    /// Resources that went back to their pool so far.
    released: u64,
}

impl<T> Default for Quarantine<T> {
    fn default() -> Self {
        Quarantine {
            held: Vec::new(),
            clock: GraceClock::default(),
            released: 0,
        }
    }
}

impl<T> Quarantine<T> {
    /// An empty quarantine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds `item`; its grace starts at the next advance.
    pub fn hold(&mut self, item: T) {
        self.held.push(Held { item, since: None });
    }

    /// Takes in the embedder's clock: stamps what was held since the last advance with
    /// `clock.now` (a clock that goes back is taken as standing still).
    pub fn advance(&mut self, clock: GraceClock) {
        self.clock = GraceClock {
            now: clock.now.max(self.clock.now),
            write_latency: clock.write_latency,
        };
        let now = self.clock.now;
        for h in &mut self.held {
            h.since.get_or_insert(now);
        }
    }

    /// The clock of the last advance.
    pub fn clock(&self) -> GraceClock {
        self.clock
    }

    /// Removes and returns the held resources whose grace has passed and for which `ready`
    /// says yes (the vector domain asks the CPU's IRR/ISR); the others stay held.
    pub fn release_where(&mut self, mut ready: impl FnMut(&T) -> bool) -> Vec<T> {
        let clock = self.clock;
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            let h = &self.held[i];
            if h.since.is_some_and(|s| clock.expired(s)) && ready(&h.item) {
                out.push(self.held.swap_remove(i).item);
            } else {
                i += 1;
            }
        }
        self.released += out.len() as u64;
        out
    }

    /// Removes and returns the held resources whose grace has passed.
    pub fn release_expired(&mut self) -> Vec<T> {
        self.release_where(|_| true)
    }

    /// Takes back the first held resource `want` accepts, whatever its grace (its owner
    /// reclaims it: a write still arriving is the owner's own).
    pub fn take_back(&mut self, want: impl FnMut(&T) -> bool) -> Option<T> {
        let i = self.held.iter().map(|h| &h.item).position(want)?;
        Some(self.held.swap_remove(i).item)
    }

    /// The held resources, with the time their grace started (`None`: not stamped yet).
    pub fn iter(&self) -> impl Iterator<Item = (&T, Option<u64>)> {
        self.held.iter().map(|h| (&h.item, h.since))
    }

    /// The held resources, to adjust what they carry.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.held.iter_mut().map(|h| &mut h.item)
    }

    /// Number of resources held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Resources given back to their pool since the quarantine was made.
    pub fn released(&self) -> u64 {
        self.released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(now: u64) -> GraceClock {
        GraceClock {
            now,
            write_latency: 10,
        }
    }

    #[test]
    fn a_resource_waits_for_the_bound_after_the_first_advance_that_follows_it() {
        let mut q = Quarantine::new();
        q.advance(clock(100));
        q.hold(7u32);
        // Held at some time after 100: only the next advance bounds that time (120).
        assert!(q.release_expired().is_empty(), "no advance since the hold");
        q.advance(clock(120));
        assert_eq!(q.iter().next(), Some((&7, Some(120))));
        q.advance(clock(129));
        assert!(q.release_expired().is_empty(), "9 < 10 since the stamp");
        q.advance(clock(130));
        assert_eq!(q.release_expired(), [7]);
        assert_eq!((q.len(), q.released()), (0, 1));
    }

    #[test]
    fn a_clock_going_back_stands_still_and_ready_is_asked() {
        let mut q = Quarantine::new();
        q.hold(1u32);
        q.hold(2u32);
        q.advance(clock(50));
        q.advance(clock(5));
        assert_eq!(q.clock().now, 50);
        q.advance(clock(60));
        assert_eq!(q.release_where(|&x| x == 2), [2]);
        assert_eq!(q.take_back(|&x| x == 1), Some(1));
        assert!(q.is_empty());
    }

    #[test]
    fn a_zero_bound_releases_at_the_first_advance() {
        let mut q = Quarantine::new();
        q.hold(3u32);
        q.advance(GraceClock::default());
        assert_eq!(q.release_expired(), [3]);
    }
}
