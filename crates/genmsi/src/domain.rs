//! Domains: the translators between a device's message and the CPU.
//!
//! A hierarchy is a chain of domains from a device's store down to a root: for example
//! `device MSI-X domain -> interrupt-remapping domain -> vector domain`. The device level is
//! built into the core (it binds a [`MsgStore`](crate::MsgStore)); every level below it is a
//! [`Domain`] registered with [`IrqSystem::add_domain`](crate::IrqSystem::add_domain).
//!
//! The core walks the chain for every operation, so a domain only does its own part:
//!
//! 1. `alloc` runs root first: each level reserves its own resource (a vector, a remap entry) for
//!    all irqs of the request, or nothing. If a level fails, the core frees the levels already
//!    done, in reverse order.
//! 2. `activate` runs root first: the root composes a message for the CPU block, each level above
//!    receives its parent's [`Composed`] and returns the message *it* wants its child to write
//!    (an interrupt-remapping level programs its entry from the parent's message and returns a
//!    remappable message). The device level writes the last one into the store.
//! 3. `set_affinity` goes to the root, which picks a new target and returns the new message;
//!    the levels above rewrite from it as in `activate`. The store is rewritten only if the
//!    message it holds changes.
//! 4. `deactivate` and `free` run top down, the mirror of the above.

use crate::{CpuMask, DeviceId, Irq, Msg, Result, StoreCaps};
use core::any::Any;

/// Identifies a domain registered with an [`IrqSystem`](crate::IrqSystem).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u32);

/// Information about the device an irq belongs to, for domains that check sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceMeta {
    /// The requester id (bus/device/function, or an alias) the device's message writes carry,
    /// used by an interrupt-remapping domain to program its source check.
    pub requester_id: Option<u16>,
    /// When set, the writes may carry any requester id on these buses (a device behind a
    /// PCIe-to-PCI bridge, which may tag its writes with the bridge's alias or pass its own id
    /// through), so a remapping domain verifies the bus range instead of `requester_id`.
    pub requester_buses: Option<BusRange>,
}

impl DeviceMeta {
    /// A device whose writes carry exactly `requester_id`.
    pub const fn requester(requester_id: u16) -> Self {
        DeviceMeta {
            requester_id: Some(requester_id),
            requester_buses: None,
        }
    }
}

/// An inclusive range of bus numbers, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BusRange {
    /// The first bus.
    pub first: u8,
    /// The last bus (not below `first` for a non-empty range).
    pub last: u8,
}

impl BusRange {
    /// True when `bus` is in the range.
    pub const fn contains(&self, bus: u8) -> bool {
        self.first <= bus && bus <= self.last
    }
}

/// One irq of an allocation request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqRequest {
    /// The irq number.
    pub irq: Irq,
    /// The generation of this allocation of the number: what a table the delivery path reads
    /// maps, as an [`IrqRef`](crate::IrqRef), so that a stale lookup is refused after reuse.
    pub generation: u32,
    /// The store index it is for.
    pub index: u32,
    /// The CPUs it may target (already restricted to online CPUs).
    pub affinity: CpuMask,
    /// Kernel-managed: the affinity is fixed, resources are reserved per CPU of the mask and the
    /// irq is shut down when its CPUs go offline.
    pub managed: bool,
    /// The source is level-triggered (an IO-APIC pin wired to a level line); the message must
    /// say so, so that the CPU acknowledges the source on end of interrupt.
    pub level: bool,
}

/// An allocation request as a domain sees it.
#[derive(Clone, Copy, Debug)]
pub struct AllocRequest<'a> {
    /// The device the irqs belong to.
    pub device: DeviceId,
    /// What is known about the device.
    pub meta: &'a DeviceMeta,
    /// The irqs, in index order.
    pub irqs: &'a [IrqRequest],
    /// The irqs form one power-of-two block whose messages may differ only in the low data
    /// bits (multi-message MSI): the domain must allocate its resource as one aligned block.
    pub block: bool,
    /// What the device's store can do.
    pub store: StoreCaps,
    /// This domain is the device domain's immediate parent: the message it composes is what
    /// the device writes, with no translator in between.
    pub direct: bool,
}

/// What a level hands to the level above it on activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Composed {
    /// The message the child should write.
    pub msg: Msg,
    /// The CPU the interrupt will arrive on, when this level knows it (the root does).
    pub effective_cpu: Option<u32>,
    /// A message the store must hold before `msg`, when a store that cannot update its message
    /// atomically moves in two steps: every mix of the old, interim and new halves it may send
    /// meanwhile must still arrive somewhere valid.
    pub interim: Option<Msg>,
}

impl Composed {
    /// A composed message without an interim step.
    pub const fn new(msg: Msg, effective_cpu: Option<u32>) -> Self {
        Composed {
            msg,
            effective_cpu,
            interim: None,
        }
    }
}

/// One level of an interrupt domain hierarchy (see the module docs for the walk).
///
/// Each method gets `&mut self` under the system's configuration lock. A method that returns
/// an error must leave the domain exactly as it was.
pub trait Domain: Any + Send {
    /// A short name for reports and errors.
    fn name(&self) -> &'static str;

    /// Reserves this level's resources for every irq of `req`, or for none.
    fn alloc(&mut self, req: &AllocRequest<'_>) -> Result<()>;

    /// Releases what [`Domain::alloc`] reserved for `irqs` (deactivated already).
    fn free(&mut self, irqs: &[Irq]);

    /// Commits hardware resources for `irq` and composes the message for the level above;
    /// `parent` is what the level below composed (`None` at the root).
    fn activate(&mut self, irq: Irq, parent: Option<&Composed>) -> Result<Composed>;

    /// Undoes [`Domain::activate`]; the resources of [`Domain::alloc`] stay reserved.
    fn deactivate(&mut self, irq: Irq);

    /// Moves `irq` to a CPU of `mask` (at the root, `parent` is `None`) or follows a parent that
    /// moved (`parent` is its new message). The default follows the parent by activating again
    /// and refuses at the root.
    fn set_affinity(
        &mut self,
        irq: Irq,
        mask: &CpuMask,
        parent: Option<&Composed>,
    ) -> Result<Composed> {
        let _ = mask;
        match parent {
            Some(p) => self.activate(irq, Some(p)),
            None => Err(crate::Error::NotSupported(crate::Unsupported::Affinity)),
        }
    }

    /// The message this level currently composes for `irq`, from its parent's (`None` at the
    /// root); `None` when `irq` is not active here.
    fn compose_msg(&self, irq: Irq, parent: Option<&Composed>) -> Option<Composed>;

    /// The irq was masked at its source.
    fn mask(&mut self, irq: Irq) {
        let _ = irq;
    }

    /// The irq was unmasked at its source.
    fn unmask(&mut self, irq: Irq) {
        let _ = irq;
    }

    /// `cpu` went offline: every irq has already been moved off it or shut down.
    fn cpu_offline(&mut self, cpu: u32) {
        let _ = cpu;
    }

    /// `cpu` came online.
    fn cpu_online(&mut self, cpu: u32) {
        let _ = cpu;
    }

    /// The embedder's grace clock advanced (see [`grace`](crate::grace)): stamp the resources
    /// this level holds in quarantine and give back those whose grace has passed. Returns how
    /// many went back to their pool.
    fn advance_grace(&mut self, clock: crate::GraceClock) -> u32 {
        let _ = clock;
        0
    }

    /// Gives back what has passed its grace at the last [`Domain::advance_grace`] and is still
    /// held (an allocation found a pool empty); stamps nothing. Returns how many went back.
    fn reclaim(&mut self) -> u32 {
        0
    }

    /// Resources this level holds in quarantine (freed, grace not over yet).
    fn held(&self) -> u32 {
        0
    }
}
