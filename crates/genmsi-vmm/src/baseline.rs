//! The baseline: what older VFIO had to do without dynamic MSI-X.
//!
//! The host could only enable MSI-X with a block of vectors `0..count`. The VMM starts with
//! the fewest it can (vector 0 at enable, or up to the highest live entry), and when the guest
//! unmasks an entry at or beyond `count`:
//!
//! 1. the host's MSI-X shutdown clears MSI-X Enable: from here the function sends nothing;
//! 2. every host vector is freed (`pci_free_irq_vectors`);
//! 3. MSI-X is enabled again with `index + 1` vectors (`pci_alloc_irq_vectors`) and every entry
//!    is programmed and routed again.
//!
//! The work per unmask grows with the number of vectors already in use, and interrupts raised
//! between 1 and 3 are lost: the function writes nothing while MSI-X is disabled, and nothing
//! latches them. The device does not stop meanwhile: it raises its traffic once per
//! `ops_per_round` host vector operations of the window (the frees of step 2), at least once
//! per window. Entries within `0..count` are live on the host all along; a guest mask is
//! emulated with the PBA, as in the on-demand mode.

use crate::error::Result;
use crate::passthrough::{Backing, PassthroughMsix};

impl PassthroughMsix {
    /// The guest enabled MSI-X: vectors `0..=highest live entry`, at least vector 0.
    pub(crate) fn baseline_enable(&mut self) -> Result<()> {
        let count = self.highest_live().map_or(1, |i| i + 1);
        self.check_budget(count - 1, count)?;
        self.enable_block(count)
    }

    /// Guest entry `index` became live: nothing to do below `count`, else disable, free all
    /// and re-enable with `index + 1`.
    pub(crate) fn baseline_back(&mut self, index: u32) -> Result<()> {
        if index < self.count {
            return Ok(());
        }
        self.check_budget(index, index + 1)?;
        let old = self.count;
        self.host.clear_enable()?;
        let freed = self.host.disable()?;
        self.backing.fill(Backing::None);
        self.routes.clear();
        self.count = 0;
        for _ in 0..freed.div_ceil(self.config.ops_per_round.max(1)).max(1) {
            self.device_round()?;
        }
        self.enable_block(index + 1).or_else(|e| {
            // Put back what the guest had, if the host still can; report the refusal.
            match old {
                0 => Err(e),
                old => self.enable_block(old).and(Err(e)),
            }
        })
    }

    /// The highest live guest entry.
    pub(crate) fn highest_live(&self) -> Option<u32> {
        (0..self.guest().layout().vectors)
            .rev()
            .find(|&i| self.guest().is_live(i))
    }

    /// Enables host MSI-X with `0..count`, all active, routes them, and lets the function send
    /// what it latched.
    fn enable_block(&mut self, count: u32) -> Result<()> {
        let irqs = self.host.enable(count, true)?;
        for (i, irq) in (0..).zip(irqs) {
            self.backing[i as usize] = Backing::Active(irq);
            self.set_route(i, irq);
        }
        self.count = count;
        for i in 0..count {
            self.replay(i)?;
        }
        Ok(())
    }
}
