//! Errors the VMM sees: what a trapped guest access did wrong, and why the host side refused.
//!
//! A guest access that breaks a PCI rule is never fatal: the emulation answers it in a defined
//! way (reads return all ones, writes are dropped) and reports an [`AccessError`] so the VMM
//! can log it. Host-side refusals ([`Error`]) leave the guest-visible state as the guest wrote
//! it (a posted write cannot fail) and tell the VMM what the host could not do.

use crate::{Counters, Mode};
use core::fmt;
use genmsi_pci::{ImsError, MsixError, PciError};

/// Which guest-visible register block an access went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// The MSI-X capability in configuration space.
    Capability,
    /// The MSI-X table.
    Table,
    /// The Pending Bit Array.
    Pba,
}

/// A guest access the emulation answered in its defined way instead of performing it.
///
/// For every variant: a read returned all ones, a write changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// The access size is not one the region takes (1, 2 or 4 bytes for the capability;
    /// 4 or 8 for the table and the PBA, PCIe Base 7.7.2).
    BadSize {
        /// The region.
        region: Region,
        /// The offset of the access in the region.
        offset: u64,
        /// Its size in bytes.
        len: usize,
    },
    /// The offset is not a multiple of the size.
    Misaligned {
        /// The region.
        region: Region,
        /// The offset of the access in the region.
        offset: u64,
        /// Its size in bytes.
        len: usize,
    },
    /// The access reaches beyond the region.
    OutOfRange {
        /// The region.
        region: Region,
        /// The offset of the access in the region.
        offset: u64,
        /// Its size in bytes.
        len: usize,
    },
    /// A write to the PBA, which is read only (7.7.2.9).
    ReadOnly {
        /// The offset of the write in the PBA.
        offset: u64,
    },
    /// The BAR access hits neither the table nor the PBA: it belongs to the device.
    Unclaimed {
        /// The BAR index.
        bar: u8,
        /// The offset in the BAR.
        offset: u64,
    },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AccessError::BadSize {
                region,
                offset,
                len,
            } => write!(f, "{region:?}: {len}-byte access at {offset:#x} refused"),
            AccessError::Misaligned {
                region,
                offset,
                len,
            } => write!(
                f,
                "{region:?}: {len}-byte access at {offset:#x} is misaligned"
            ),
            AccessError::OutOfRange {
                region,
                offset,
                len,
            } => write!(
                f,
                "{region:?}: {len}-byte access at {offset:#x} is out of range"
            ),
            AccessError::ReadOnly { offset } => write!(f, "PBA write at {offset:#x} dropped"),
            AccessError::Unclaimed { bar, offset } => {
                write!(f, "BAR{bar} offset {offset:#x} is not MSI-X")
            }
        }
    }
}

impl std::error::Error for AccessError {}

/// Why the VMM could not do what the guest asked of the host, or could not set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A trapped access broke a PCI rule (see [`AccessError`]).
    Access(AccessError),
    /// The host device's vector budget is spent: entry `index` stays unbacked (its interrupts
    /// latch in the host PBA) until vectors are freed.
    Budget {
        /// The guest entry (or mediated queue) that needed a host vector.
        index: u32,
        /// The budget, in host vectors.
        budget: u32,
        /// Host vectors in use.
        in_use: u32,
    },
    /// The host irq layer refused (no vectors on any CPU, no remap entries...).
    Host(genmsi::Error),
    /// A `pci_*` convenience refused.
    Pci(PciError),
    /// The host MSI-X capability is unusable.
    Msix(MsixError),
    /// The host IMS store is unusable.
    Ims(ImsError),
    /// A host device layout that cannot be built (a table size of 0 or above 2048).
    Layout {
        /// The offending number of vectors or queues.
        vectors: u32,
    },
    /// The operation does not exist in this mode (shrinking in the baseline).
    NotInMode {
        /// The mode the device runs in.
        mode: Mode,
    },
    /// The counters of a run do not add up: an interrupt went unaccounted (a bug).
    Unbalanced(Counters),
    /// A KVM ioctl (or an eventfd call of the KVM backend) failed.
    Kvm {
        /// The call.
        op: &'static str,
        /// The error number it returned.
        errno: i32,
    },
    /// The VFIO backend refused (see [`VfioError`]).
    Vfio(VfioError),
    /// The VM's GSI routing table is full (`KVM_MAX_IRQ_ROUTES` less the irqchip's routes).
    Routes {
        /// MSI routes the VM may hold.
        limit: u32,
    },
    /// The entry has no host resources (or is past the table).
    NotBacked {
        /// The entry.
        index: u32,
    },
    /// Queue operations ([`VirtMsix::back_entry`](crate::VirtMsix::back_entry)) need
    /// [`Strategy::Queues`](crate::Strategy::Queues).
    NotQueues {
        /// The strategy the function runs with.
        strategy: crate::virt::Strategy,
    },
    /// The mediated device has no such queue, or it already exists.
    Queue {
        /// The guest queue id.
        queue: u32,
        /// True when the queue exists already (create), false when it does not (destroy).
        exists: bool,
    },
}

/// Why the VFIO backend (`vfio::VfioMsix`, Linux, feature `vfio`) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfioError {
    /// A VFIO ioctl or a read or write of the device file failed.
    Io {
        /// The call.
        op: &'static str,
        /// The error number it returned (or the unexpected value).
        errno: i32,
    },
    /// The IOMMU group is not viable (a function of it is bound to a host driver).
    NotViable {
        /// The group.
        group: u32,
    },
    /// The function has no MSI-X capability.
    NoMsix,
    /// The function has no such region (BAR), or the access reaches beyond it.
    NoRegion,
    /// The host kernel cannot add an MSI-X vector while MSI-X is enabled: VFIO reports
    /// `VFIO_IRQ_INFO_NORESIZE` (Linux before 6.5, or a device without dynamic MSI-X). Its
    /// vectors are the block it enabled; growing it means disabling MSI-X and enabling it
    /// with more (the baseline, `Growth::Reenable`).
    NoResize {
        /// The entry that needed a host vector.
        index: u32,
        /// The vectors MSI-X was enabled with (0: the on-demand growth was asked for).
        enabled: u32,
    },
    /// The entry is past the function's MSI-X table.
    OutOfRange {
        /// The entry.
        index: u32,
        /// The table's entries.
        vectors: u32,
    },
}

impl fmt::Display for VfioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VfioError::Io { op, errno } => write!(f, "{op} failed: errno {errno}"),
            VfioError::NotViable { group } => write!(f, "IOMMU group {group} is not viable"),
            VfioError::NoMsix => write!(f, "the function has no MSI-X capability"),
            VfioError::NoRegion => write!(f, "no such region, or beyond its end"),
            VfioError::NoResize { index, enabled } => write!(
                f,
                "the host kernel cannot add MSI-X vector {index} while MSI-X is enabled \
                 (VFIO_IRQ_INFO_NORESIZE: dynamic MSI-X needs Linux 6.5); its vectors are the \
                 {enabled} it was enabled with, grow them by disabling and re-enabling"
            ),
            VfioError::OutOfRange { index, vectors } => {
                write!(f, "entry {index} is past the {vectors}-entry MSI-X table")
            }
        }
    }
}

impl std::error::Error for VfioError {}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! from_error {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(e)
            }
        }
    )*};
}
from_error!(
    Access(AccessError),
    Host(genmsi::Error),
    Msix(MsixError),
    Ims(ImsError),
    Vfio(VfioError)
);

impl From<PciError> for Error {
    /// A core refusal passed up by a `pci_*` convenience is the host's refusal.
    fn from(e: PciError) -> Self {
        match e {
            PciError::Core(e) => Error::Host(e),
            e => Error::Pci(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Access(e) => write!(f, "guest access: {e}"),
            Error::Budget {
                index,
                budget,
                in_use,
            } => write!(
                f,
                "entry {index} needs a host vector: budget {budget} spent ({in_use} in use)"
            ),
            Error::Host(e) => write!(f, "host: {e}"),
            Error::Pci(e) => write!(f, "host PCI: {e}"),
            Error::Msix(e) => write!(f, "host MSI-X: {e}"),
            Error::Ims(e) => write!(f, "host IMS: {e}"),
            Error::Layout { vectors } => write!(f, "cannot lay out {vectors} vectors"),
            Error::NotInMode { mode } => write!(f, "not available in {mode:?} mode"),
            Error::Unbalanced(c) => write!(f, "interrupts unaccounted for: {c:?}"),
            Error::Kvm { op, errno } => write!(f, "{op} failed: errno {errno}"),
            Error::Vfio(e) => write!(f, "VFIO: {e}"),
            Error::Routes { limit } => write!(f, "the VM's {limit} MSI routes are all in use"),
            Error::NotBacked { index } => write!(f, "entry {index} has no host resources"),
            Error::NotQueues { strategy } => {
                write!(
                    f,
                    "queue operations need the Queues strategy, not {strategy:?}"
                )
            }
            Error::Queue {
                queue,
                exists: true,
            } => write!(f, "queue {queue} exists already"),
            Error::Queue {
                queue,
                exists: false,
            } => write!(f, "queue {queue} does not exist"),
        }
    }
}

impl std::error::Error for Error {}
