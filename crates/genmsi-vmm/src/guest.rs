//! The guest side shared by the passed-through and the mediated device: the emulated MSI-X,
//! the route table from host irqs to guest messages, and the injection record.
//!
//! 1. A host irq fires; the [`RouteTable`] names the guest entry and the guest message it
//!    carries (KVM's MSI routing entry: the VMM updates it when the guest rewrites the entry).
//! 2. [`GuestMsix::deliver`] injects the message if the entry is live, else sets the entry's
//!    emulated pending bit; a second interrupt on a set bit coalesces with it.
//! 3. When an entry becomes live, [`GuestMsix::flush`] injects its pending interrupt with the
//!    entry's current message and clears the bit (PCIe Base 6.1.4.5).
//!
//! [`Counters`] add up: every interrupt the device raised was injected, is pending (in the
//! host's or the guest's PBA), coalesced with a pending one, or was lost, blocked or spurious.

use crate::host::{Arrival, Raise};
use crate::msix_emul::{Effect, MsixEmulation};
use crate::ring::Ring;
use genmsi::{Irq, Msg};
use serde::Serialize;
use std::collections::HashMap;

/// Where a host irq goes: a guest entry and the message to inject for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The guest's MSI-X entry.
    pub entry: u32,
    /// The guest message (the entry's address and data).
    pub msg: Msg,
}

/// Host irq -> guest route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: HashMap<Irq, Route>,
}

impl RouteTable {
    /// Routes `irq` to `route`, replacing what it routed to.
    pub fn set(&mut self, irq: Irq, route: Route) {
        self.routes.insert(irq, route);
    }

    /// Changes the message of `irq`'s route (the guest rewrote the entry).
    pub fn set_msg(&mut self, irq: Irq, msg: Msg) {
        if let Some(r) = self.routes.get_mut(&irq) {
            r.msg = msg;
        }
    }

    /// Removes `irq`'s route.
    pub fn remove(&mut self, irq: Irq) {
        self.routes.remove(&irq);
    }

    /// Removes every route.
    pub fn clear(&mut self) {
        self.routes.clear();
    }

    /// `irq`'s route.
    pub fn get(&self, irq: Irq) -> Option<Route> {
        self.routes.get(&irq).copied()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when nothing is routed.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// What happened to the interrupts the device raised; they add up (see [`Counters::balanced`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Interrupts the device raised.
    pub raised: u64,
    /// Guest interrupts injected (directly, or later from a pending bit).
    pub injected: u64,
    /// Raised while a pending bit (host or guest) was already set: merged into that one.
    pub coalesced: u64,
    /// Never reach the guest: raised while MSI-X was disabled (the function writes nothing and
    /// latches nothing), or while the guest had MSI-X disabled.
    pub lost: u64,
    /// Blocked by the host's interrupt remapping.
    pub blocked: u64,
    /// Arrived at a host irq with no route, or at no irq.
    pub spurious: u64,
}

impl Counters {
    /// True when every raised interrupt is accounted for, given the pending bits now set in
    /// the host's and the guest's PBAs.
    pub fn balanced(&self, pending: u64) -> bool {
        self.raised
            == self.injected + self.coalesced + self.lost + self.blocked + self.spurious + pending
    }
}

/// What became of one interrupt handed to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Injected now.
    Injected,
    /// The entry is not live: its pending bit latched.
    Latched,
    /// The entry's pending bit was set already.
    Coalesced,
    /// The guest has MSI-X disabled: the function may not signal it.
    Dropped,
}

/// Injected messages a recording keeps (the newest; a bounded log, see [`Ring`]).
pub const RECORDED: usize = 4096;

/// The guest's MSI-X and what was injected into it.
#[derive(Clone, Debug)]
pub struct GuestMsix {
    emul: MsixEmulation,
    /// The counters.
    pub counters: Counters,
    log: Option<Ring<(u32, Msg)>>,
}

impl GuestMsix {
    /// The guest side of `emul`; with `record`, the latest [`RECORDED`] injected messages
    /// are kept (the counters count them all).
    pub fn new(emul: MsixEmulation, record: bool) -> Self {
        GuestMsix {
            emul,
            counters: Counters::default(),
            log: record.then(|| Ring::new(RECORDED)),
        }
    }

    /// The emulated MSI-X.
    pub fn emul(&self) -> &MsixEmulation {
        &self.emul
    }

    /// The emulated MSI-X, for trapped writes.
    pub fn emul_mut(&mut self) -> &mut MsixEmulation {
        &mut self.emul
    }

    /// The latest injected (entry, message), oldest first, if recording.
    pub fn injected(&self) -> Vec<(u32, Msg)> {
        self.log
            .as_ref()
            .map_or_else(Vec::new, |log| log.iter().copied().collect())
    }

    fn inject(&mut self, entry: u32, msg: Msg) {
        self.counters.injected += 1;
        if let Some(log) = &mut self.log {
            log.push((entry, msg));
        }
    }

    /// The device raised one interrupt and the host saw `raise`; a message it sent arrives
    /// through `arrive` and goes along its route.
    pub fn raised(
        &mut self,
        raise: Raise,
        arrive: impl FnOnce(&Msg) -> Arrival,
        routes: &RouteTable,
    ) -> Option<Injection> {
        self.counters.raised += 1;
        match raise {
            Raise::Sent(msg) => return self.arrived(arrive(&msg), routes),
            Raise::Latched { coalesced: true } => self.counters.coalesced += 1,
            Raise::Latched { coalesced: false } => {}
            Raise::Dropped => self.counters.lost += 1,
        }
        None
    }

    /// A message the function sent (raised now, or latched and sent on unmask) arrived at the
    /// host as `arrival`; a handled irq goes along its route.
    pub fn arrived(&mut self, arrival: Arrival, routes: &RouteTable) -> Option<Injection> {
        match arrival {
            Arrival::Handled(irq) => match routes.get(irq) {
                Some(route) => return Some(self.deliver(route)),
                None => self.counters.spurious += 1,
            },
            Arrival::Blocked(_) => self.counters.blocked += 1,
            Arrival::Spurious => self.counters.spurious += 1,
        }
        None
    }

    /// A host pending bit was merged into the guest's emulated one for the same entry (one
    /// pending bit visible to the guest means one interrupt).
    pub fn merged_pending(&mut self) {
        self.counters.coalesced += 1;
    }

    /// An interrupt for `route` arrived from the host.
    pub fn deliver(&mut self, route: Route) -> Injection {
        let entry = route.entry;
        if !self.emul.control().enabled() {
            self.counters.lost += 1;
            return Injection::Dropped;
        }
        if self.emul.is_live(entry) {
            self.inject(entry, route.msg);
            return Injection::Injected;
        }
        if self.emul.set_pending(entry) {
            self.counters.coalesced += 1;
            return Injection::Coalesced;
        }
        Injection::Latched
    }

    /// Injects `entry`'s pending interrupt if it is live now; true when it did.
    pub fn flush(&mut self, entry: u32) -> bool {
        if !self.emul.is_live(entry) || !self.emul.take_pending(entry) {
            return false;
        }
        let msg = self.emul.msg(entry);
        self.inject(entry, msg);
        true
    }

    /// After a trapped write: flushes the entries it made live.
    pub fn settle(&mut self, effect: &Effect) {
        match *effect {
            Effect::Entry(c) if c.is_live && !c.was_live => {
                self.flush(c.index);
            }
            Effect::Control { .. } => {
                for i in 0..self.emul.layout().vectors {
                    self.flush(i);
                }
            }
            _ => {}
        }
    }
}
