//! A guest's MSI-X over any host backend ([`MsiBackend`]), with the three strategies a VMM can
//! follow.
//!
//! Every trapped guest access goes to the [`MsixEmulation`]; what it changed drives the
//! backend:
//!
//! 1. **Enable.** [`Strategy::OnDemand`] backs nothing yet; [`Strategy::Eager`] backs every
//!    advertised entry (masked), in one batch; [`Strategy::Baseline`] backs the block
//!    `0..=highest live entry` (at least entry 0).
//! 2. **Unmask** of entry `i` (its Mask Bit cleared, or Function Mask cleared, or Enable set):
//!    on demand, exactly entry `i` is backed if it is not, then unmasked, with every other entry
//!    left as it is. The baseline, for an `i` beyond its block, releases the whole block
//!    (committed: the function is disabled), then backs `0..=i` again (older VFIO).
//! 3. **Mask**: the backend holds the entry's interrupts; a guest PBA read shows what it holds.
//! 4. **Message** change of a backed entry: [`MsiBackend::set_msg`].
//! 5. **Disable** or [`VirtMsix::unplug`]: every entry is released.
//! 6. **Shrink** ([`VirtMsix::shrink`]): masked entries that hold nothing are released.
//! 7. [`Strategy::Queues`] (IMS for a mediated device): an entry has host resources while the
//!    device's source behind it exists ([`VirtMsix::back_entry`] when the guest creates the
//!    queue, [`VirtMsix::release_entry`] when it destroys it), not at unmask; unmask and mask
//!    only let a backed entry deliver or hold. A guest disable masks every backed entry and
//!    keeps it: the queues outlive the guest's MSI-X Enable.
//!
//! Batched changes are committed once per trapped access.

use crate::backend::{Budget, MsiBackend};
use crate::error::{AccessError, Error, Region, Result};
use crate::msix_emul::{Effect, MsixEmulation, MsixLayout};
use genmsi_pci::Bar;
use serde::Serialize;
use std::time::{Duration, Instant};

/// When host resources follow the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Exactly the entry the guest unmasks, at its first unmask.
    OnDemand,
    /// Every advertised entry at enable.
    Eager,
    /// A block `0..n`, grown by disabling, releasing all and re-enabling with more.
    Baseline,
    /// IMS: exactly the entries whose source (a device queue) exists, backed when it is
    /// created and released when it is destroyed (see the module docs, step 7).
    Queues,
}

/// Host work done for the guest's unmasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct UnmaskWork {
    /// Guest writes that made one or more entries live.
    pub unmasks: u64,
    /// Host time spent in the backend for them.
    pub host: Duration,
    /// The longest one.
    pub max: Duration,
}

/// One guest function's MSI-X over a backend (see the module docs).
#[derive(Debug)]
pub struct VirtMsix<B> {
    emul: MsixEmulation,
    backend: B,
    strategy: Strategy,
    /// Baseline: entries `0..block` are backed.
    block: u32,
    work: UnmaskWork,
    /// Entries live now, and the most at once.
    live: (u32, u32),
}

impl<B: MsiBackend> VirtMsix<B> {
    /// A function showing `layout` to the guest, backed by `backend`.
    pub fn new(layout: MsixLayout, backend: B, strategy: Strategy) -> Self {
        VirtMsix {
            emul: MsixEmulation::new(layout),
            backend,
            strategy,
            block: 0,
            work: UnmaskWork::default(),
            live: (0, 0),
        }
    }

    /// The guest-visible state.
    pub fn emul(&self) -> &MsixEmulation {
        &self.emul
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, for the device side of an in-process model.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Host work for unmasks so far.
    pub fn unmask_work(&self) -> UnmaskWork {
        self.work
    }

    /// The most entries the guest had live (unmasked, enabled) at once.
    pub fn live_max(&self) -> u32 {
        self.live.1
    }

    /// The backend's budget and use.
    pub fn budget(&self) -> Budget {
        self.backend.budget()
    }

    /// A guest read of the MSI-X capability, `offset` from its start.
    pub fn config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        self.emul.config_read(offset, data)
    }

    /// A guest write to the MSI-X capability.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let before: Vec<bool> = self.live_entries();
        let effect = self.emul.config_write(offset, data)?;
        self.apply(effect, &before)
    }

    /// A guest read of `bar` at `offset`. A PBA read shows the interrupts the backend holds
    /// for masked entries.
    pub fn mmio_read(&self, bar: Bar, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        self.emul.mmio_read(bar, offset, data)?;
        if let Ok((Region::Pba, at)) = self.emul.locate(bar, offset) {
            let first = (at * 8) as u32;
            let vectors = self.emul.layout().vectors;
            for (bit, i) in (first..vectors).take(data.len() * 8).enumerate() {
                if self.backend.pending(i) {
                    data[bit / 8] |= 1 << (bit % 8);
                }
            }
        }
        Ok(())
    }

    /// A guest write to `bar` at `offset`.
    pub fn mmio_write(&mut self, bar: Bar, offset: u64, data: &[u8]) -> Result<()> {
        let effect = self.emul.mmio_write(bar, offset, data)?;
        self.apply(effect, &[])
    }

    fn live_entries(&self) -> Vec<bool> {
        (0..self.emul.layout().vectors)
            .map(|i| self.emul.is_live(i))
            .collect()
    }

    /// Acts on a trapped write (the guest-visible state is committed already: a posted write
    /// cannot fail; an error says what the host could not follow). `live_before` is each
    /// entry's liveness before a control write.
    fn apply(&mut self, effect: Effect, live_before: &[bool]) -> Result<()> {
        self.live.0 = match effect {
            Effect::None => self.live.0,
            Effect::Entry(c) => self.live.0 + u32::from(c.is_live) - u32::from(c.was_live),
            Effect::Control { .. } => self.live_entries().iter().filter(|&&l| l).count() as u32,
        };
        self.live.1 = self.live.1.max(self.live.0);
        let result = match effect {
            Effect::None => Ok(()),
            Effect::Entry(c) => {
                let mut r = Ok(());
                if c.msg_changed && self.backend.is_backed(c.index) {
                    r = self.backend.set_msg(c.index, self.emul.msg(c.index));
                }
                match (c.was_live, c.is_live) {
                    (false, true) => r.and_then(|()| self.unmasked(&[c.index])),
                    (true, false) => r.and_then(|()| self.mask(c.index)),
                    _ => r,
                }
            }
            Effect::Control { before, after } if before.enabled() && !after.enabled() => {
                let r = self.backend.enable(false);
                match self.strategy {
                    Strategy::Queues => r.and_then(|()| self.mask_all()),
                    _ => r.and_then(|()| self.release_all()),
                }
            }
            Effect::Control { before, .. } => {
                let enabled = !before.enabled();
                let mut r = Ok(());
                if enabled {
                    r = self.enabled().and_then(|()| self.backend.enable(true));
                }
                let vectors = self.emul.layout().vectors;
                let was = |i: u32| live_before.get(i as usize).copied().unwrap_or(false);
                let now: Vec<u32> = (0..vectors)
                    .filter(|&i| self.emul.is_live(i) && !was(i))
                    .collect();
                let masked: Vec<u32> = (0..vectors)
                    .filter(|&i| was(i) && !self.emul.is_live(i))
                    .collect();
                for i in masked {
                    r = r.and_then(|()| self.mask(i));
                }
                r.and_then(|()| self.unmasked(&now))
            }
        };
        let committed = self.backend.commit();
        result.and(committed)
    }

    fn mask(&mut self, index: u32) -> Result<()> {
        match self.backend.is_backed(index) {
            true => self.backend.mask(index),
            false => Ok(()),
        }
    }

    /// MSI-X Enable was set.
    fn enabled(&mut self) -> Result<()> {
        match self.strategy {
            Strategy::OnDemand | Strategy::Queues => Ok(()),
            Strategy::Eager => {
                for i in 0..self.emul.layout().vectors {
                    self.backend.back(i, self.emul.msg(i))?;
                }
                Ok(())
            }
            Strategy::Baseline => {
                let top = (0..self.emul.layout().vectors)
                    .rev()
                    .find(|&i| self.emul.is_live(i))
                    .unwrap_or(0);
                self.back_block(top + 1)
            }
        }
    }

    /// Entries `live` became live (one guest write): host work is timed.
    fn unmasked(&mut self, live: &[u32]) -> Result<()> {
        if live.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let result = self.back_and_unmask(live);
        let took = start.elapsed();
        self.work.unmasks += 1;
        self.work.host += took;
        self.work.max = self.work.max.max(took);
        result
    }

    fn back_and_unmask(&mut self, live: &[u32]) -> Result<()> {
        match self.strategy {
            Strategy::OnDemand | Strategy::Eager => {
                // An entry refused (budget) stays live but unbacked; the others go ahead.
                let mut refused = Ok(());
                let mut backed = Vec::with_capacity(live.len());
                for &i in live {
                    let r = match self.backend.is_backed(i) {
                        true => Ok(()),
                        false => self.backend.back(i, self.emul.msg(i)),
                    };
                    match r {
                        Ok(()) => backed.push(i),
                        Err(e) => refused = refused.and(Err(e)),
                    }
                }
                self.backend.commit()?;
                for i in backed {
                    self.backend.unmask(i)?;
                }
                refused
            }
            // Only what a queue backs delivers; a live entry without one has no source.
            Strategy::Queues => {
                let backed: Vec<u32> = live
                    .iter()
                    .copied()
                    .filter(|&i| self.backend.is_backed(i))
                    .collect();
                self.unmask_live(backed.into_iter())
            }
            Strategy::Baseline => {
                let top = live.iter().copied().max().unwrap_or(0);
                if top >= self.block {
                    let budget = self.backend.budget();
                    if top + 1 > budget.limit {
                        // Refused before anything is torn down.
                        return Err(Error::Budget {
                            index: top,
                            budget: budget.limit,
                            in_use: budget.in_use,
                        });
                    }
                    let old = self.block;
                    // Disable the function (what the device raises is dropped from here),
                    // free everything, enable again with the bigger block.
                    self.backend.enable(false)?;
                    self.release_all()?;
                    self.backend.commit()?;
                    let grown = self.back_block(top + 1);
                    if grown.is_err() {
                        // Put back what the guest had; report the refusal.
                        self.back_block(old)?;
                    }
                    self.backend.enable(true)?;
                    let block = self.block;
                    return self.unmask_live(0..block).and(grown);
                }
                self.unmask_live(live.iter().copied())
            }
        }
    }

    /// Backs `0..count` (masked), for the baseline.
    fn back_block(&mut self, count: u32) -> Result<()> {
        for i in 0..count {
            if let Err(e) = self.backend.back(i, self.emul.msg(i)) {
                for k in 0..i {
                    self.backend.release(k)?;
                }
                return Err(e);
            }
        }
        self.block = count;
        Ok(())
    }

    fn unmask_live(&mut self, entries: impl Iterator<Item = u32>) -> Result<()> {
        self.backend.commit()?;
        for i in entries {
            if self.emul.is_live(i) {
                self.backend.unmask(i)?;
            }
        }
        Ok(())
    }

    /// Masks every backed entry (a queue's interrupt while the guest has MSI-X disabled).
    fn mask_all(&mut self) -> Result<()> {
        for i in 0..self.emul.layout().vectors {
            self.mask(i)?;
        }
        Ok(())
    }

    /// Releases every backed entry.
    fn release_all(&mut self) -> Result<()> {
        for i in 0..self.emul.layout().vectors {
            if self.backend.is_backed(i) {
                self.backend.release(i)?;
            }
        }
        self.block = 0;
        Ok(())
    }

    /// Releases the backed entries the guest has masked that hold no interrupt; returns how
    /// many. Not in the baseline, whose block is all or nothing, nor with [`Strategy::Queues`],
    /// where an entry is backed exactly while its queue exists.
    pub fn shrink(&mut self) -> Result<u32> {
        if matches!(self.strategy, Strategy::Baseline | Strategy::Queues) {
            return Ok(0);
        }
        let mut released = 0;
        for i in 0..self.emul.layout().vectors {
            let idle = !self.emul.is_live(i) && !self.backend.pending(i);
            if idle && self.backend.is_backed(i) {
                self.backend.release(i)?;
                released += 1;
            }
        }
        self.backend.commit()?;
        Ok(released)
    }

    /// Entries live in the guest that have no host resources (after a budget refusal) get
    /// them now, if the budget allows.
    pub fn sync(&mut self) -> Result<()> {
        let live: Vec<u32> = (0..self.emul.layout().vectors)
            .filter(|&i| self.emul.is_live(i) && !self.backend.is_backed(i))
            .collect();
        let result = self.unmasked(&live);
        result.and(self.backend.commit())
    }

    /// Releases every entry's host resources now (the function is reset or goes away); a
    /// later unmask backs entries again.
    pub fn release(&mut self) -> Result<()> {
        self.release_all()?;
        self.backend.commit()
    }

    /// [`Strategy::Queues`]: the source behind entry `index` (a queue) was created; the
    /// entry gets host resources with the guest's message, and delivers if the guest has it
    /// live. Refused with nothing held if it is backed already
    /// ([`Error::Queue`]), beyond the table, or beyond the backend's budget.
    pub fn back_entry(&mut self, index: u32) -> Result<()> {
        if self.strategy != Strategy::Queues {
            return Err(Error::NotQueues {
                strategy: self.strategy,
            });
        }
        if self.backend.is_backed(index) {
            return Err(Error::Queue {
                queue: index,
                exists: true,
            });
        }
        let backed = self.backend.back(index, self.emul.msg(index));
        let result = match backed {
            Ok(()) if self.emul.is_live(index) => self.unmasked(&[index]),
            other => other,
        };
        result.and(self.backend.commit())
    }

    /// [`Strategy::Queues`]: the queue behind entry `index` was destroyed; its host resources
    /// go (an interrupt it held goes with the queue). [`Error::Queue`] if it had none.
    pub fn release_entry(&mut self, index: u32) -> Result<()> {
        if self.strategy != Strategy::Queues {
            return Err(Error::NotQueues {
                strategy: self.strategy,
            });
        }
        if !self.backend.is_backed(index) {
            return Err(Error::Queue {
                queue: index,
                exists: false,
            });
        }
        let result = self.backend.release(index);
        result.and(self.backend.commit())
    }

    /// The function goes away: its MSI-X is disabled and every entry released; the backend
    /// is handed back.
    pub fn unplug(mut self) -> Result<B> {
        self.backend.enable(false)?;
        self.release()?;
        Ok(self.backend)
    }
}
