//! Errors of the core and of the domains stacked in it.

use crate::{CpuMask, DeviceId, DomainId, Irq, SlotId};
use core::fmt;

/// A feature a store or a domain does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// The store cannot take new indices once it is enabled (classic PCI MSI, MSI-X without
    /// dynamic allocation).
    AllocAfterEnable,
    /// The store has no per-index storage that can be picked freely (allocate at any index).
    AnyIndex,
    /// The store needs a power-of-two, aligned block starting at index 0 (multi-message MSI).
    BlockOnly,
    /// The domain cannot change affinity.
    Affinity,
}

/// Everything the core and its domains can refuse. Every variant means: nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The index is already allocated in this device domain.
    IndexInUse {
        /// The index asked for.
        index: u32,
    },
    /// The index is beyond what the store can hold.
    IndexOutOfRange {
        /// The index asked for.
        index: u32,
        /// The store's number of indices.
        limit: u32,
    },
    /// The index is not allocated (free of something never allocated, or already freed).
    NotAllocated {
        /// The index asked for.
        index: u32,
    },
    /// Every index of the store is in use.
    StoreFull {
        /// The store's number of indices.
        limit: u32,
    },
    /// A request for zero interrupts, or a block size the store cannot take.
    InvalidCount {
        /// The count asked for.
        count: u32,
    },
    /// The store or a domain cannot do this.
    NotSupported(Unsupported),
    /// No irq numbers are left.
    NoIrqNumbers {
        /// How many were asked for.
        requested: u32,
    },
    /// The irq number is not allocated.
    UnknownIrq(Irq),
    /// No such device.
    UnknownDevice(DeviceId),
    /// No such domain.
    UnknownDomain(DomainId),
    /// The device has no domain in that slot.
    SlotEmpty {
        /// The device.
        device: DeviceId,
        /// The slot.
        slot: SlotId,
    },
    /// The device already has a domain in that slot.
    SlotOccupied {
        /// The device.
        device: DeviceId,
        /// The slot.
        slot: SlotId,
    },
    /// The domain still has child domains or irqs and cannot be removed.
    DomainBusy(DomainId),
    /// An affinity that names no usable (online, existing) CPU.
    EmptyAffinity,
    /// The irq is allocated but not active, and the operation needs it active.
    NotActive(Irq),
    /// No interrupt vectors are free on any CPU of the mask.
    NoVectors {
        /// The CPUs that were tried.
        cpus: CpuMask,
    },
    /// The remapping table has no free block of the requested size.
    NoRemapEntries {
        /// The number of entries asked for.
        requested: u32,
    },
    /// The handler registry is full.
    NoHandlerSlots,
    /// A domain refused for a reason of its own hardware.
    Domain {
        /// The domain's name.
        domain: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// A configuration beyond the documented limits (a system of zero CPUs, or more CPUs,
    /// irqs or handlers than the core can hold).
    InvalidConfig {
        /// What was wrong.
        reason: &'static str,
    },
    /// The message store refused (a hardware access failed, or its state forbids it).
    Store {
        /// The store index concerned.
        index: u32,
        /// What was wrong.
        reason: &'static str,
    },
}

/// The result type of the core.
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    /// True for a pool found empty (irq numbers, vectors, remapping entries): an allocation
    /// reclaims what has passed its grace and tries again before it reports one.
    pub fn is_exhaustion(&self) -> bool {
        matches!(
            self,
            Error::NoIrqNumbers { .. } | Error::NoVectors { .. } | Error::NoRemapEntries { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::IndexInUse { index } => write!(f, "index {index} is already allocated"),
            Error::IndexOutOfRange { index, limit } => {
                write!(f, "index {index} is out of range (the store has {limit})")
            }
            Error::NotAllocated { index } => write!(f, "index {index} is not allocated"),
            Error::StoreFull { limit } => write!(f, "all {limit} indices are in use"),
            Error::InvalidCount { count } => write!(f, "cannot allocate a block of {count}"),
            Error::NotSupported(what) => write!(f, "not supported: {what:?}"),
            Error::NoIrqNumbers { requested } => write!(f, "no {requested} free irq numbers"),
            Error::UnknownIrq(irq) => write!(f, "irq {} is not allocated", irq.0),
            Error::UnknownDevice(d) => write!(f, "no device {}", d.0),
            Error::UnknownDomain(d) => write!(f, "no domain {}", d.0),
            Error::SlotEmpty { device, slot } => {
                write!(f, "device {} has no domain in slot {slot:?}", device.0)
            }
            Error::SlotOccupied { device, slot } => {
                write!(
                    f,
                    "device {} already has a domain in slot {slot:?}",
                    device.0
                )
            }
            Error::DomainBusy(d) => write!(f, "domain {} still has users", d.0),
            Error::EmptyAffinity => f.write_str("the affinity names no usable CPU"),
            Error::NotActive(irq) => write!(f, "irq {} is not active", irq.0),
            Error::NoVectors { cpus } => write!(f, "no free vector on CPUs {cpus}"),
            Error::NoRemapEntries { requested } => {
                write!(f, "no free block of {requested} remapping entries")
            }
            Error::NoHandlerSlots => f.write_str("the handler registry is full"),
            Error::Domain { domain, reason } => write!(f, "domain {domain}: {reason}"),
            Error::InvalidConfig { reason } => write!(f, "invalid configuration: {reason}"),
            Error::Store { index, reason } => write!(f, "store index {index}: {reason}"),
        }
    }
}

impl core::error::Error for Error {}
