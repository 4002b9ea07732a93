//! Per-device MSI data: the sparse descriptor store and the per-device domain slots.

use crate::range::RangeAllocator;
use crate::{CpuMask, DeviceMeta, DomainId, Irq, Msg, MsgStore};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;

/// Identifies a device registered with an [`IrqSystem`](crate::IrqSystem).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

/// The per-device domain slots a device has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotId {
    /// The device's standard interrupt store (PCI MSI or MSI-X, an IO-APIC's pins).
    Default,
    /// A second, device-defined store (IMS).
    Secondary,
}

impl SlotId {
    /// Number of slots per device.
    pub const COUNT: usize = 2;
    /// Every slot.
    pub const ALL: [SlotId; Self::COUNT] = [SlotId::Default, SlotId::Secondary];

    pub(crate) fn idx(self) -> usize {
        self as usize
    }
}

/// One MSI descriptor: what the core knows about one allocated store index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsiDesc {
    /// The store index.
    pub index: u32,
    /// The irq number it raises.
    pub irq: Irq,
    /// The message last written to the store (all zero while inactive).
    pub msg: Msg,
    /// The requested affinity.
    pub affinity: CpuMask,
    /// The store's cookie for this index (a queue id, a PASID), if any.
    pub cookie: Option<u64>,
    /// Kernel-managed affinity.
    pub managed: bool,
    /// Masked by its user.
    pub masked: bool,
    /// Activated: the message is live.
    pub active: bool,
    /// The device's meta data (its requester id), shared by all its descriptors.
    pub meta: DeviceMeta,
}

/// A per-device domain: a store bound to a parent domain, with its descriptors.
pub(crate) struct DeviceDomain {
    pub(crate) store: Box<dyn MsgStore>,
    pub(crate) parent: DomainId,
    /// index -> descriptor; sparse (an IMS store may have thousands of indices, few in use).
    pub(crate) descs: BTreeMap<u32, MsiDesc>,
    /// Free indices of the store.
    pub(crate) free: RangeAllocator,
}

impl DeviceDomain {
    pub(crate) fn new(store: Box<dyn MsgStore>, parent: DomainId) -> Self {
        let free = RangeAllocator::new(store.caps().max_index);
        DeviceDomain {
            store,
            parent,
            descs: BTreeMap::new(),
            free,
        }
    }

    /// True once an index is allocated: the store is enabled.
    pub(crate) fn enabled(&self) -> bool {
        !self.descs.is_empty()
    }
}

/// A device: a name, its meta data and its domain slots.
pub(crate) struct Device {
    pub(crate) name: String,
    pub(crate) meta: DeviceMeta,
    pub(crate) slots: [Option<DeviceDomain>; SlotId::COUNT],
}
