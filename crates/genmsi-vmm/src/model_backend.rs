//! The in-process host model behind [`MsiBackend`]: each backed guest entry is one host vector
//! of a [`HostNic`] (through `genmsi-pci`'s dynamic MSI-X), routed to the guest's message.
//!
//! 1. **Enable**: the host function's MSI-X is enabled with vector 0 reserved as the anchor
//!    (as a VMM enables the physical function when the guest does, before any entry is
//!    unmasked): from here a raise on any entry latches in the host PBA until that entry is
//!    backed and unmasked. **Back** entry `i`: host vector `i` allocated, reserved (its host
//!    entry masked); entry 0 takes over the anchor.
//! 2. **Unmask**: the host vector is activated (programmed and unmasked), and what the
//!    function latched in its PBA meanwhile is sent: one delivery, as PCIe 6.1.4.5 says.
//! 3. **Mask**: deactivated; the function latches in its PBA, which is the pending state.
//! 4. **Message** change: the route only; the host vector is untouched.
//! 5. **Release**: the host vector is freed (vector 0 goes back to being the anchor); the
//!    function's PBA keeps what it latched. The anchor goes, and the host function is
//!    disabled, only when nothing is backed and the guest's MSI-X is disabled.
//! 6. The device side is [`ModelBackend::raise`]: the function raises entry `i`, the message
//!    travels through the host's irq stack and its route to the guest, counted per entry and
//!    kept in a bounded log of arrivals ([`ModelBackend::take_arrivals`]).

use crate::backend::{Budget, MsiBackend};
use crate::error::{Error, Result};
use crate::guest::{Route, RouteTable};
use crate::host::{Arrival, HostNic, Raise};
use crate::ring::Ring;
use genmsi::{Irq, Msg};

/// What became of one raise on the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRaise {
    /// Delivered to the guest: the entry and message of its route.
    Injected(Route),
    /// Latched in the function's PBA (entry masked or unbacked).
    Latched,
    /// The function's MSI-X is disabled: nothing sent or latched.
    Dropped,
    /// The host did not deliver it to a routed irq (blocked or spurious).
    Lost(Arrival),
}

/// The host model behind [`MsiBackend`] (see the module docs).
#[derive(Debug)]
pub struct ModelBackend {
    nic: HostNic,
    routes: RouteTable,
    /// The host irq of each backed entry, and whether the entry is unmasked.
    backing: Vec<Option<(Irq, bool)>>,
    /// Host vector 0 held only to keep the function enabled.
    anchor: Option<Irq>,
    budget: Budget,
    /// Deliveries to the guest per entry.
    injected: Vec<u64>,
    /// The latest deliveries, with their routes.
    arrivals: Ring<Route>,
    /// Messages the host delivered to no routed irq.
    lost: u64,
    /// The guest's MSI-X Enable, as [`MsiBackend::enable`] last set it.
    enabled: bool,
}

/// Deliveries [`ModelBackend`] keeps for [`ModelBackend::take_arrivals`].
const ARRIVALS_KEPT: usize = 4096;

impl ModelBackend {
    /// The backend of `nic`, holding at most `budget` host vectors.
    pub fn new(nic: HostNic, budget: u32) -> Self {
        let n = nic.cap().table_size as usize;
        ModelBackend {
            nic,
            routes: RouteTable::default(),
            backing: vec![None; n],
            anchor: None,
            budget: Budget {
                limit: budget,
                ..Budget::default()
            },
            injected: vec![0; n],
            arrivals: Ring::new(ARRIVALS_KEPT),
            lost: 0,
            enabled: false,
        }
    }

    /// The latest deliveries to the guest (at most 4,096 kept; [`Ring::total`] of
    /// [`ModelBackend::arrival_log`] counts them all), oldest first, taken.
    pub fn take_arrivals(&mut self) -> Vec<Route> {
        self.arrivals.drain()
    }

    /// The log of deliveries.
    pub fn arrival_log(&self) -> &Ring<Route> {
        &self.arrivals
    }

    /// Messages the host delivered to no routed irq (blocked, spurious, unrouted).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The host function.
    pub fn nic(&self) -> &HostNic {
        &self.nic
    }

    /// Deliveries to the guest for entry `index`.
    pub fn injected(&self, index: u32) -> u64 {
        self.injected.get(index as usize).copied().unwrap_or(0)
    }

    fn irq(&self, index: u32) -> Result<(Irq, bool)> {
        self.backing
            .get(index as usize)
            .copied()
            .flatten()
            .ok_or(Error::NotBacked { index })
    }

    fn held(&mut self, delta: i32) {
        self.budget.in_use = self.budget.in_use.saturating_add_signed(delta);
        self.budget.max_in_use = self.budget.max_in_use.max(self.budget.in_use);
    }

    fn arrive(&mut self, msg: &Msg) -> ModelRaise {
        match self.nic.deliver(msg) {
            Arrival::Handled(irq) => match self.routes.get(irq) {
                Some(route) => {
                    if let Some(n) = self.injected.get_mut(route.entry as usize) {
                        *n += 1;
                    }
                    self.arrivals.push(route);
                    ModelRaise::Injected(route)
                }
                None => {
                    self.lost += 1;
                    ModelRaise::Lost(Arrival::Handled(irq))
                }
            },
            other => {
                self.lost += 1;
                ModelRaise::Lost(other)
            }
        }
    }

    /// The device side: the function raises entry `index`.
    pub fn raise(&mut self, index: u32) -> Result<ModelRaise> {
        Ok(match self.nic.raise(index)? {
            Raise::Sent(msg) => self.arrive(&msg),
            Raise::Latched { .. } => ModelRaise::Latched,
            Raise::Dropped => ModelRaise::Dropped,
        })
    }
}

impl MsiBackend for ModelBackend {
    fn back(&mut self, index: u32, msg: Msg) -> Result<()> {
        if index as usize >= self.backing.len() {
            return Err(Error::NotBacked { index });
        }
        if self.is_backed(index) {
            return self.set_msg(index, msg);
        }
        // Host vectors this takes: none for entry 0 over the anchor, two for the first
        // vector other than 0 (vector 0 enables the function).
        let need = match (self.anchor.is_some(), index, self.nic.allocated()) {
            (true, 0, _) => 0,
            (_, i, 0) if i != 0 => 2,
            _ => 1,
        };
        if self.budget.in_use + need > self.budget.limit {
            return Err(Error::Budget {
                index,
                budget: self.budget.limit,
                in_use: self.budget.in_use,
            });
        }
        let irq = match (self.anchor.take(), index) {
            (Some(anchor), 0) => anchor,
            (anchor, _) => {
                if anchor.is_none() && self.nic.allocated() == 0 {
                    // The function's first vector enables its MSI-X: vector 0, reserved.
                    let first = self.nic.enable(1, false)?[0];
                    self.held(1);
                    if index == 0 {
                        first
                    } else {
                        self.anchor = Some(first);
                        self.alloc(index)?
                    }
                } else {
                    self.anchor = anchor;
                    self.alloc(index)?
                }
            }
        };
        self.routes.set(irq, Route { entry: index, msg });
        self.backing[index as usize] = Some((irq, false));
        Ok(())
    }

    fn set_msg(&mut self, index: u32, msg: Msg) -> Result<()> {
        let (irq, _) = self.irq(index)?;
        self.routes.set_msg(irq, msg);
        Ok(())
    }

    fn unmask(&mut self, index: u32) -> Result<()> {
        let (irq, unmasked) = self.irq(index)?;
        if unmasked {
            return Ok(());
        }
        self.nic.activate(irq)?;
        self.backing[index as usize] = Some((irq, true));
        if let Some(msg) = self.nic.replay(index)? {
            self.arrive(&msg);
        }
        Ok(())
    }

    fn mask(&mut self, index: u32) -> Result<()> {
        let (irq, unmasked) = self.irq(index)?;
        if unmasked {
            self.nic.deactivate(irq)?;
            self.backing[index as usize] = Some((irq, false));
        }
        Ok(())
    }

    fn release(&mut self, index: u32) -> Result<()> {
        let (irq, _) = self.irq(index)?;
        self.mask(index)?;
        self.routes.remove(irq);
        self.backing[index as usize] = None;
        match index {
            // Vector 0 keeps the function enabled.
            0 => self.anchor = Some(irq),
            _ => {
                self.nic.free(index)?;
                self.held(-1);
            }
        }
        self.drop_idle_anchor()
    }

    fn is_backed(&self, index: u32) -> bool {
        self.irq(index).is_ok()
    }

    fn pending(&self, index: u32) -> bool {
        self.nic.pending(index)
    }

    fn budget(&self) -> Budget {
        self.budget
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    fn enable(&mut self, on: bool) -> Result<()> {
        self.enabled = on;
        match on {
            // The host function sends (or latches) from the guest's enable on, whether or
            // not an entry is backed yet.
            true if self.nic.allocated() == 0 => {
                if self.budget.in_use >= self.budget.limit {
                    return Err(Error::Budget {
                        index: 0,
                        budget: self.budget.limit,
                        in_use: self.budget.in_use,
                    });
                }
                self.anchor = Some(self.nic.enable(1, false)?[0]);
                self.held(1);
                Ok(())
            }
            true if !self.nic.msix_enabled() => self.nic.set_enable(),
            true => Ok(()),
            false => {
                if self.nic.msix_enabled() {
                    self.nic.clear_enable()?;
                }
                self.drop_idle_anchor()
            }
        }
    }
}

impl ModelBackend {
    /// With nothing backed and the guest's MSI-X disabled, the anchor goes and the host
    /// function is disabled.
    fn drop_idle_anchor(&mut self) -> Result<()> {
        let idle = !self.enabled && self.backing.iter().all(Option::is_none);
        if idle && self.anchor.take().is_some() {
            self.nic.disable()?;
            self.held(-1);
        }
        Ok(())
    }

    fn alloc(&mut self, index: u32) -> Result<Irq> {
        let irq = self.nic.alloc_at_with(index, false)?;
        self.held(1);
        Ok(irq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{HostMachine, MachineConfig};
    use crate::msix_emul::MsixLayout;
    use crate::virt::{Strategy, VirtMsix};
    use genmsi_pci::{Bar, PciAddress};
    use std::sync::Arc;

    const TABLE: Bar = Bar::new(4);

    fn virt(budget: u32, strategy: Strategy) -> VirtMsix<ModelBackend> {
        let machine = Arc::new(HostMachine::new(MachineConfig::remapped(4)).unwrap());
        let nic = HostNic::new(machine, PciAddress::new(0x3A, 0, 0), 64).unwrap();
        let layout = MsixLayout::of_host(nic.cap(), 0).unwrap();
        let mut v = VirtMsix::new(layout, ModelBackend::new(nic, budget), strategy);
        for i in 0..64u64 {
            v.mmio_write(TABLE, i * 16, &0xFEE0_0000u32.to_le_bytes())
                .unwrap();
            v.mmio_write(TABLE, i * 16 + 8, &(0x30 + i as u32).to_le_bytes())
                .unwrap();
        }
        v.config_write(3, &[0x80]).unwrap();
        v
    }

    fn set_mask(v: &mut VirtMsix<ModelBackend>, i: u64, masked: bool) -> Result<()> {
        v.mmio_write(TABLE, i * 16 + 12, &u32::from(masked).to_le_bytes())
    }

    fn raise(v: &mut VirtMsix<ModelBackend>, i: u32) -> ModelRaise {
        v.backend_mut().raise(i).unwrap()
    }

    #[test]
    fn on_demand_backs_exactly_the_unmasked_entry_and_delivers_a_masked_raise_once() {
        let mut v = virt(64, Strategy::OnDemand);
        // The guest's enable enabled the host function with vector 0 as its anchor: a raise
        // on an entry not backed yet latches in the host PBA.
        assert_eq!(v.budget().in_use, 1, "the anchor only before an unmask");
        assert!(v.backend().nic().msix_enabled());
        assert_eq!(raise(&mut v, 9), ModelRaise::Latched);
        set_mask(&mut v, 5, false).unwrap();
        // Vector 5 and the anchor (vector 0) that keeps the host function enabled.
        assert_eq!(v.budget().in_use, 2);
        assert_eq!(v.backend().nic().allocated(), 2);
        let route = Route {
            entry: 5,
            msg: Msg::new(0xFEE0_0000, 0x35),
        };
        assert_eq!(raise(&mut v, 5), ModelRaise::Injected(route));
        set_mask(&mut v, 5, true).unwrap();
        for _ in 0..3 {
            assert_eq!(raise(&mut v, 5), ModelRaise::Latched);
        }
        let mut pba = [0u8; 8];
        v.mmio_read(TABLE, 0x1000, &mut pba).unwrap();
        assert_eq!(
            pba,
            [0x20, 0x02, 0, 0, 0, 0, 0, 0],
            "the guest sees the host PBA bits (5, and 9 latched unbacked)"
        );
        set_mask(&mut v, 5, false).unwrap();
        assert_eq!(
            v.backend().injected(5),
            2,
            "the latched raise, delivered once"
        );
        set_mask(&mut v, 5, true).unwrap();
        set_mask(&mut v, 5, false).unwrap();
        assert_eq!(v.backend().injected(5), 2, "and only once");
        // Entry 0 takes over the anchor: no new host vector.
        set_mask(&mut v, 0, false).unwrap();
        assert_eq!(v.budget().in_use, 2);
        assert!(matches!(raise(&mut v, 0), ModelRaise::Injected(r) if r.entry == 0));
    }

    #[test]
    fn a_message_change_moves_the_route_only() {
        let mut v = virt(64, Strategy::OnDemand);
        set_mask(&mut v, 7, false).unwrap();
        let ops = v.backend().nic().ops();
        v.mmio_write(TABLE, 7 * 16 + 8, &0x99u32.to_le_bytes())
            .unwrap();
        assert_eq!(v.backend().nic().ops(), ops, "no host vector touched");
        assert!(matches!(raise(&mut v, 7), ModelRaise::Injected(r) if r.msg.data == 0x99));
    }

    #[test]
    fn budget_refusal_leaves_the_entry_latching_and_shrink_frees_vectors() {
        let mut v = virt(3, Strategy::OnDemand);
        for i in 1..=2 {
            set_mask(&mut v, i, false).unwrap();
        }
        assert_eq!(
            set_mask(&mut v, 3, false),
            Err(Error::Budget {
                index: 3,
                budget: 3,
                in_use: 3
            })
        );
        assert_eq!(raise(&mut v, 3), ModelRaise::Latched, "nothing lost");
        set_mask(&mut v, 1, true).unwrap();
        assert_eq!(v.shrink().unwrap(), 1);
        assert_eq!(v.budget().in_use, 2);
        v.sync().unwrap();
        assert_eq!(v.backend().injected(3), 1, "the latched raise, delivered");
        assert_eq!(v.budget().max_in_use, 3);
    }

    #[test]
    fn eager_backs_every_entry_at_enable_and_the_baseline_grows_a_block() {
        let eager = virt(64, Strategy::Eager);
        assert_eq!(eager.budget().in_use, 64);
        let mut base = virt(64, Strategy::Baseline);
        assert_eq!(base.budget().in_use, 1);
        set_mask(&mut base, 9, false).unwrap();
        assert_eq!(base.budget().in_use, 10);
        assert!(matches!(raise(&mut base, 9), ModelRaise::Injected(r) if r.entry == 9));
        // Entries of the block the guest has not unmasked latch.
        assert_eq!(raise(&mut base, 4), ModelRaise::Latched);
        let back = base.unplug().unwrap();
        assert_eq!(back.nic().allocated(), 0);
        assert_eq!(back.budget().in_use, 0);
    }

    #[test]
    fn a_refused_baseline_grow_puts_the_old_block_back_live() {
        let mut base = virt(4, Strategy::Baseline);
        set_mask(&mut base, 2, false).unwrap();
        assert_eq!(base.budget().in_use, 3);
        let ops = base.backend().nic().ops();
        assert_eq!(
            set_mask(&mut base, 9, false),
            Err(Error::Budget {
                index: 9,
                budget: 4,
                in_use: 3
            })
        );
        assert_eq!(base.budget().in_use, 3, "the old block, untouched");
        assert_eq!(base.backend().nic().ops(), ops, "no host vector touched");
        assert!(matches!(raise(&mut base, 2), ModelRaise::Injected(r) if r.entry == 2));
    }
}
