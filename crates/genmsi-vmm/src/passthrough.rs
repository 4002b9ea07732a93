//! A passed-through function's MSI-X under the VMM: the guest programs an emulated table, the
//! host vectors follow it **on demand**.
//!
//! Every guest access to the capability, the table or the PBA is trapped
//! ([`PassthroughMsix::config_write`], [`PassthroughMsix::mmio_write`]...) and applied to the
//! [`MsixEmulation`]; what it changed drives the host:
//!
//! 1. **Enable.** When the guest sets MSI-X Enable, the host function is enabled too, with
//!    host vector 0 allocated (reserved only, its entry masked, unless guest entry 0 is live):
//!    a function must see MSI-X enabled when its driver enables it, even with every vector
//!    masked, and the host's MSI-X store is enabled by its first vector.
//! 2. **Unmask.** When guest entry `i` becomes live (its Mask Bit cleared, or Function Mask
//!    cleared, or Enable set, with `i` unmasked), exactly host vector `i` is allocated with
//!    allocate-at-index (dynamic MSI-X: no other vector is touched, all keep delivering), or
//!    activated if it was reserved; the route `host irq -> guest message` is set; what the
//!    function latched in its PBA for `i` meanwhile is sent now, and the guest's own pending
//!    bit for `i` is injected.
//! 3. **Mask.** A guest mask leaves the host vector alone: its interrupts set the emulated PBA
//!    bit and are injected when the guest unmasks the entry.
//! 4. **Message.** A new guest address or data only changes the route: the host vector and
//!    its entry are untouched, so no interrupt can fall into a gap.
//! 5. **Shrink.** [`PassthroughMsix::shrink`] frees the host vectors whose guest entries have
//!    been masked for `shrink_after` ticks of [`PassthroughMsix::advance_clock`]. Vector 0 is
//!    only deactivated: the host store disables MSI-X when its last vector goes, and a disabled
//!    function drops what it raises. A freed vector's entry is masked on the host, so its
//!    interrupts latch in the host PBA (the guest's PBA reads show them) until the guest
//!    unmasks it again.
//! 6. **Budget.** Host vectors beyond `budget` are refused with [`Error::Budget`]; the entry
//!    stays live but unbacked (its interrupts latch in the host PBA) until
//!    [`PassthroughMsix::sync`] succeeds.
//! 7. **Disable.** Clearing the guest's Enable frees every host vector and disables the host
//!    function.
//!
//! In [`Mode::Baseline`] the same traps drive the old strategy instead (see [`crate::baseline`]).

use crate::error::{AccessError, Region, Result};
use crate::guest::{Counters, GuestMsix, Injection, Route, RouteTable};
use crate::host::HostNic;
use crate::msix_emul::{Effect, MsixEmulation, MsixLayout};
use crate::Error;
use genmsi::{Irq, Msg};
use genmsi_pci::Bar;
use serde::Serialize;

/// How host vectors follow the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// Exactly the entry the guest unmasks, at its index, while the others deliver.
    OnDemand,
    /// Disable MSI-X, free every vector, re-enable with more (older VFIO).
    Baseline,
}

/// The VMM's settings for one passed-through function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassthroughConfig {
    /// The strategy.
    pub mode: Mode,
    /// Host vectors this function may hold.
    pub budget: u32,
    /// Free the host vector of an entry the guest has masked for this many ticks.
    pub shrink_after: Option<u64>,
    /// While the host function has MSI-X disabled, the device raises its traffic once per this
    /// many host vector operations (the baseline's re-enable window; see [`crate::baseline`]).
    pub ops_per_round: u32,
    /// Keep every injected message ([`PassthroughMsix::injected`]).
    pub record: bool,
}

impl PassthroughConfig {
    /// `mode` with a budget of 2,048 vectors, no shrinking, a device round per 16 operations,
    /// no recording.
    pub const fn new(mode: Mode) -> Self {
        PassthroughConfig {
            mode,
            budget: 2048,
            shrink_after: None,
            ops_per_round: 16,
            record: false,
        }
    }
}

/// What backs one guest entry on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// No host vector.
    None,
    /// Allocated, not active: the host entry is masked.
    Reserved(Irq),
    /// Allocated and active.
    Active(Irq),
}

impl Backing {
    fn irq(self) -> Option<Irq> {
        match self {
            Backing::None => None,
            Backing::Reserved(irq) | Backing::Active(irq) => Some(irq),
        }
    }
}

/// Work done for the guest's unmasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnmaskStats {
    /// Guest writes that made an entry live.
    pub unmasks: u64,
    /// Host vectors allocated, freed, activated or deactivated while handling them.
    pub touched: u64,
    /// The most any one of them touched.
    pub max_touched: u64,
}

/// One passed-through function's MSI-X under the VMM (see the module docs).
#[derive(Debug)]
pub struct PassthroughMsix {
    pub(crate) host: HostNic,
    pub(crate) guest: GuestMsix,
    pub(crate) config: PassthroughConfig,
    pub(crate) backing: Vec<Backing>,
    pub(crate) routes: RouteTable,
    /// Baseline: host vectors `0..count` are enabled.
    pub(crate) count: u32,
    masked_since: Vec<Option<u64>>,
    clock: u64,
    traffic: Vec<u32>,
    unmask_stats: UnmaskStats,
}

impl PassthroughMsix {
    /// The VMM side of `host`, showing the guest its MSI-X layout (next pointer 0).
    pub fn new(host: HostNic, config: PassthroughConfig) -> Result<Self> {
        let layout = MsixLayout::of_host(host.cap(), 0)?;
        let n = layout.vectors as usize;
        Ok(PassthroughMsix {
            host,
            guest: GuestMsix::new(MsixEmulation::new(layout), config.record),
            config,
            backing: vec![Backing::None; n],
            routes: RouteTable::default(),
            count: 0,
            masked_since: vec![None; n],
            clock: 0,
            traffic: Vec::new(),
            unmask_stats: UnmaskStats::default(),
        })
    }

    /// The host function.
    pub fn host(&self) -> &HostNic {
        &self.host
    }

    /// The guest's emulated MSI-X.
    pub fn guest(&self) -> &MsixEmulation {
        self.guest.emul()
    }

    /// The counters of interrupts raised and what became of them.
    pub fn counters(&self) -> Counters {
        self.guest.counters
    }

    /// Work per unmask.
    pub fn unmask_stats(&self) -> UnmaskStats {
        self.unmask_stats
    }

    /// The latest injected (entry, message), oldest first, when recording.
    pub fn injected(&self) -> Vec<(u32, Msg)> {
        self.guest.injected()
    }

    /// Pending bits set now: the guest's emulated PBA and the host function's PBA.
    pub fn pending(&self) -> u64 {
        let host = (0..self.guest().layout().vectors)
            .filter(|&i| self.host.pending(i))
            .count() as u64;
        self.guest().pending_count() + host
    }

    /// The host irq backing guest entry `index`, and whether it is active.
    pub fn backing(&self, index: u32) -> Option<(Irq, bool)> {
        match self.backing.get(index as usize)? {
            Backing::None => None,
            Backing::Reserved(irq) => Some((*irq, false)),
            Backing::Active(irq) => Some((*irq, true)),
        }
    }

    /// The route of a host irq.
    pub fn route(&self, irq: Irq) -> Option<Route> {
        self.routes.get(irq)
    }

    // ---- trapped guest accesses ----

    /// A guest read of the MSI-X capability, `offset` from its start.
    pub fn config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        self.guest().config_read(offset, data)
    }

    /// A guest write to the MSI-X capability.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let effect = self.guest.emul_mut().config_write(offset, data)?;
        self.apply(effect)
    }

    /// A guest read of `bar` at `offset` (table or PBA). A PBA read also shows the bits the
    /// host function latched for entries that have no active host vector.
    pub fn mmio_read(&self, bar: Bar, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        self.guest().mmio_read(bar, offset, data)?;
        if let Ok((Region::Pba, at)) = self.guest().locate(bar, offset) {
            let first = (at * 8) as u32;
            let vectors = self.guest().layout().vectors;
            for (bit, i) in (first..vectors).take(data.len() * 8).enumerate() {
                let active = matches!(self.backing[i as usize], Backing::Active(_));
                if !active && self.host.pending(i) {
                    data[bit / 8] |= 1 << (bit % 8);
                }
            }
        }
        Ok(())
    }

    /// A guest write to `bar` at `offset` (table or PBA).
    pub fn mmio_write(&mut self, bar: Bar, offset: u64, data: &[u8]) -> Result<()> {
        let effect = self.guest.emul_mut().mmio_write(bar, offset, data)?;
        self.apply(effect)
    }

    /// Acts on what a trapped write changed. The guest-visible state is already committed (a
    /// posted write cannot fail); an error says what the host could not follow.
    fn apply(&mut self, effect: Effect) -> Result<()> {
        let result = match effect {
            Effect::None => Ok(()),
            Effect::Entry(c) => {
                let i = c.index as usize;
                if self.guest().masked(c.index) {
                    self.masked_since[i].get_or_insert(self.clock);
                } else {
                    self.masked_since[i] = None;
                }
                if let (true, Some(irq)) = (c.msg_changed, self.backing[i].irq()) {
                    self.routes.set_msg(irq, self.guest().msg(c.index));
                }
                match c.is_live && !c.was_live {
                    true => self.unmasked(c.index),
                    false => Ok(()),
                }
            }
            Effect::Control { before, after } => match (before.enabled(), after.enabled()) {
                (true, false) => self.msix_disabled(),
                (false, true) => self.msix_enabled(),
                _ if before.function_mask() && !after.function_mask() => self.back_live(),
                _ => Ok(()),
            },
        };
        self.guest.settle(&effect);
        result
    }

    /// Guest entry `index` became live.
    fn unmasked(&mut self, index: u32) -> Result<()> {
        let ops = self.host.ops();
        let result = match self.config.mode {
            Mode::OnDemand => self.back(index),
            Mode::Baseline => self.baseline_back(index),
        };
        let touched = self.host.ops() - ops;
        let s = &mut self.unmask_stats;
        s.unmasks += 1;
        s.touched += touched;
        s.max_touched = s.max_touched.max(touched);
        result
    }

    fn msix_enabled(&mut self) -> Result<()> {
        match self.config.mode {
            Mode::OnDemand => {
                self.check_budget(0, 1)?;
                // Reserved first, routed, then activated: the function may send what it
                // latched the moment its entry is unmasked, and that must find its route.
                let irq = self.host.enable(1, false)?[0];
                self.backing[0] = Backing::Reserved(irq);
                self.set_route(0, irq);
                if self.guest().is_live(0) {
                    self.back(0)?;
                }
                self.back_live()
            }
            Mode::Baseline => self.baseline_enable(),
        }
    }

    fn msix_disabled(&mut self) -> Result<()> {
        if self.host.allocated() > 0 {
            self.host.disable()?;
        }
        self.backing.fill(Backing::None);
        self.routes.clear();
        self.count = 0;
        Ok(())
    }

    /// Backs every live entry (after Enable or Function Mask cleared). The baseline grows
    /// once, to the highest live entry.
    fn back_live(&mut self) -> Result<()> {
        if self.config.mode == Mode::Baseline {
            return match self.highest_live() {
                Some(top) => self.unmasked(top),
                None => Ok(()),
            };
        }
        for i in 0..self.guest().layout().vectors {
            if self.guest().is_live(i) {
                self.unmasked(i)?;
            }
        }
        Ok(())
    }

    /// Retries backing every live entry that has no active host vector (after a budget
    /// refusal, once vectors were freed).
    pub fn sync(&mut self) -> Result<()> {
        for i in 0..self.guest().layout().vectors {
            let active = matches!(self.backing[i as usize], Backing::Active(_));
            if self.guest().is_live(i) && !active {
                self.unmasked(i)?;
            }
        }
        Ok(())
    }

    /// Refuses to hold `total` host vectors (for entry `index`) beyond the budget.
    pub(crate) fn check_budget(&self, index: u32, total: u32) -> Result<()> {
        match total <= self.config.budget {
            true => Ok(()),
            false => Err(Error::Budget {
                index,
                budget: self.config.budget,
                in_use: self.host.allocated(),
            }),
        }
    }

    pub(crate) fn set_route(&mut self, index: u32, irq: Irq) {
        let msg = self.guest().msg(index);
        self.routes.set(irq, Route { entry: index, msg });
    }

    /// On demand: exactly host vector `index`, allocated or activated, then what the function
    /// latched for it is sent.
    fn back(&mut self, index: u32) -> Result<()> {
        // The route exists before the host entry is unmasked (see `msix_enabled`).
        let irq = match self.backing[index as usize] {
            Backing::Active(_) => return Ok(()),
            Backing::Reserved(irq) => {
                self.set_route(index, irq);
                self.host.activate(irq)?;
                irq
            }
            Backing::None => {
                self.check_budget(index, self.host.allocated() + 1)?;
                let route = Route {
                    entry: index,
                    msg: self.guest().msg(index),
                };
                self.host.alloc_at_routed(index, &mut self.routes, route)?
            }
        };
        self.backing[index as usize] = Backing::Active(irq);
        self.replay(index)
    }

    /// The function sends what it latched for `index`, now that the host entry is unmasked.
    pub(crate) fn replay(&mut self, index: u32) -> Result<()> {
        if let Some(msg) = self.host.replay(index)? {
            // The guest saw one pending bit for the entry (its PBA read merges the host's bit
            // into the emulated one): if the emulated bit is set, it delivers that one
            // interrupt and the host's copy is the same interrupt, not a second one.
            if self.guest().pending(index) {
                self.guest.merged_pending();
            } else {
                let arrival = self.host.deliver(&msg);
                self.guest.arrived(arrival, &self.routes);
            }
        }
        Ok(())
    }

    // ---- shrink ----

    /// Advances the VMM's clock (for the shrink policy).
    pub fn advance_clock(&mut self, ticks: u64) {
        self.clock += ticks;
    }

    /// Frees the host vectors of entries masked for `shrink_after` ticks or more (vector 0 is
    /// deactivated instead); returns how many host vectors were released.
    pub fn shrink(&mut self) -> Result<u32> {
        if self.config.mode == Mode::Baseline {
            return Err(Error::NotInMode {
                mode: self.config.mode,
            });
        }
        let Some(after) = self.config.shrink_after else {
            return Ok(0);
        };
        let mut released = 0;
        for i in 0..self.guest().layout().vectors {
            let idle = self.masked_since[i as usize].is_some_and(|t| self.clock - t >= after);
            match (idle, self.backing[i as usize]) {
                (true, Backing::Active(irq)) if i == 0 => {
                    self.host.deactivate(irq)?;
                    self.backing[0] = Backing::Reserved(irq);
                }
                (true, Backing::Active(irq) | Backing::Reserved(irq)) if i > 0 => {
                    self.host.free(i)?;
                    self.routes.remove(irq);
                    self.backing[i as usize] = Backing::None;
                }
                _ => continue,
            }
            released += 1;
        }
        Ok(released)
    }

    // ---- the device side ----

    /// The device keeps raising these entries in each [`PassthroughMsix::device_round`].
    pub fn set_traffic(&mut self, entries: Vec<u32>) {
        self.traffic = entries;
    }

    /// Adds one entry to the device's traffic.
    pub fn add_traffic(&mut self, entry: u32) {
        self.traffic.push(entry);
    }

    /// The device raises every entry of its traffic once. A function with MSI-X disabled sends
    /// nothing and latches nothing: it reads its Enable bit once and drops the whole round.
    pub fn device_round(&mut self) -> Result<()> {
        if !self.host.msix_enabled() {
            let n = self.traffic.len() as u64;
            self.guest.counters.raised += n;
            self.guest.counters.lost += n;
            return Ok(());
        }
        for k in 0..self.traffic.len() {
            self.device_raise(self.traffic[k])?;
        }
        Ok(())
    }

    /// The device raises entry `index` once; the message travels through the host to the
    /// guest.
    pub fn device_raise(&mut self, index: u32) -> Result<Option<Injection>> {
        let raise = self.host.raise(index)?;
        let host = &self.host;
        Ok(self.guest.raised(raise, |m| host.deliver(m), &self.routes))
    }
}
