//! IMS (interrupt message store): message storage the device defines itself, outside the
//! PCI MSI and MSI-X capabilities.
//!
//! To the core an IMS store is one more [`MsgStore`](genmsi::MsgStore), bound in the
//! device's [`SlotId::Secondary`](genmsi::SlotId::Secondary) slot (see
//! [`pci_create_ims_domain`](crate::pci::pci_create_ims_domain)); the default slot keeps
//! MSI-X. IMS stores take any free index with a cookie, at any time, and grow and shrink
//! while the device's other interrupts deliver. Two device layouts are provided:
//!
//! - [`ImsTableStore`]: an on-device table of 16-byte entries (address, data, a control word
//!   with a mask bit and a PASID field); the cookie is the PASID the interrupt is tagged with.
//! - [`QueueStore`]: the message kept inside each queue's context structure; the cookie is
//!   the queue id, and the store never touches the context's other fields.
//!
//! Both keep their state in the device's memory through [`Mmio`](crate::Mmio), so a
//! simulator sees exactly what the store wrote, and both offer the device side (`raise`,
//! `replay`) that such a simulator runs.

mod queue;
mod table;

pub use queue::{QueueContexts, QueueInterrupt, QueueStore};
pub use table::{ImsEntry, ImsTable, ImsTableStore};

use crate::bar::{Bar, MmioError};
use crate::error::Reason;
use core::fmt;

/// Why an IMS store refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImsError {
    /// A BAR access failed.
    Mmio(MmioError),
    /// The storage does not fit in its BAR (or the BAR is not implemented).
    RegionOutsideBar {
        /// The BAR.
        bar: Bar,
        /// The region's offset.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A layout that cannot hold a message where it says (misaligned, or outside the stride).
    BadLayout {
        /// The offending offset or size.
        value: u64,
    },
    /// The index is beyond the store.
    IndexOutOfRange {
        /// The index.
        index: u32,
        /// The store's size.
        size: u32,
    },
    /// The PASID does not fit the 20-bit field.
    PasidTooWide {
        /// The cookie given as PASID.
        pasid: u64,
    },
    /// A queue store index needs a queue id as its cookie.
    NoQueue {
        /// The index.
        index: u32,
    },
    /// The device has no such queue.
    QueueOutOfRange {
        /// The cookie given as queue id.
        queue: u64,
        /// The number of queues.
        queues: u32,
    },
    /// The queue already has an interrupt.
    QueueBusy {
        /// The queue.
        queue: u32,
        /// The index it is bound to.
        index: u32,
    },
    /// The index is not bound to a queue.
    NotBound {
        /// The index.
        index: u32,
    },
    /// The address is not dword aligned.
    MisalignedAddress {
        /// The address.
        address: u64,
    },
}

impl From<MmioError> for ImsError {
    fn from(e: MmioError) -> Self {
        ImsError::Mmio(e)
    }
}

impl Reason for ImsError {
    fn reason(&self) -> &'static str {
        match self {
            ImsError::Mmio(_) => "IMS: BAR access failed",
            ImsError::RegionOutsideBar { .. } => "IMS: storage outside its BAR",
            ImsError::BadLayout { .. } => "IMS: layout cannot hold a message",
            ImsError::IndexOutOfRange { .. } => "IMS: index beyond the store",
            ImsError::PasidTooWide { .. } => "IMS: PASID wider than 20 bits",
            ImsError::NoQueue { .. } => "IMS: a queue interrupt needs a queue id cookie",
            ImsError::QueueOutOfRange { .. } => "IMS: no such queue",
            ImsError::QueueBusy { .. } => "IMS: the queue already has an interrupt",
            ImsError::NotBound { .. } => "IMS: index not bound to a queue",
            ImsError::MisalignedAddress { .. } => "IMS: address not dword aligned",
        }
    }
}

impl fmt::Display for ImsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({self:?})", self.reason())
    }
}

impl core::error::Error for ImsError {}

/// Message Address bits 1:0 must be zero in both layouts (they follow MSI-X, 7.7.2.5).
fn check_address(address: u64) -> Result<(), ImsError> {
    match address & 0x3 {
        0 => Ok(()),
        _ => Err(ImsError::MisalignedAddress { address }),
    }
}

/// Checks that `offset..offset + len` lies in `bar`.
fn check_region<M: crate::Mmio + ?Sized>(
    bars: &M,
    bar: Bar,
    offset: u64,
    len: u64,
) -> Result<(), ImsError> {
    match (offset.checked_add(len), bars.bar_len(bar)) {
        (Some(end), Some(bar_len)) if end <= bar_len => Ok(()),
        _ => Err(ImsError::RegionOutsideBar { bar, offset, len }),
    }
}
