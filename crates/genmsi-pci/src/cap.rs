//! The capability lists: the conventional list at 0x40..0x100 and the extended list from
//! 0x100, walked without ever trusting the device.
//!
//! A list is read from the device, so it can be anything: a pointer back to an earlier
//! capability (a loop), a pointer into the header, a pointer past the end of a short space.
//! Each walk remembers every dword it visited, so it stops with a typed [`CapError`] at the
//! first bad pointer, after at most one step per dword of the space: it never hangs and never
//! panics.

use crate::config::{header, ConfigError, ConfigSpace, EXTENDED_SIZE};
use core::fmt;

/// A conventional capability ID (PCI Code and ID Assignment Specification, chapter 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapId {
    /// 0x01: PCI Power Management.
    PowerManagement,
    /// 0x05: Message Signalled Interrupts (PCI Express Base Specification 7.7.1).
    Msi,
    /// 0x09: vendor specific.
    VendorSpecific,
    /// 0x10: PCI Express (7.5.3).
    PciExpress,
    /// 0x11: MSI-X (7.7.2).
    MsiX,
    /// Any other ID, kept as read.
    Unknown(u8),
}

impl From<u8> for CapId {
    fn from(id: u8) -> Self {
        match id {
            0x01 => CapId::PowerManagement,
            0x05 => CapId::Msi,
            0x09 => CapId::VendorSpecific,
            0x10 => CapId::PciExpress,
            0x11 => CapId::MsiX,
            other => CapId::Unknown(other),
        }
    }
}

impl From<CapId> for u8 {
    fn from(id: CapId) -> Self {
        match id {
            CapId::PowerManagement => 0x01,
            CapId::Msi => 0x05,
            CapId::VendorSpecific => 0x09,
            CapId::PciExpress => 0x10,
            CapId::MsiX => 0x11,
            CapId::Unknown(other) => other,
        }
    }
}

/// An extended capability ID (PCI Code and ID Assignment Specification, chapter 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtCapId {
    /// 0x0001: Advanced Error Reporting.
    AdvancedErrorReporting,
    /// 0x0003: Device Serial Number.
    DeviceSerialNumber,
    /// 0x000E: Alternative Routing-ID Interpretation.
    AlternativeRoutingId,
    /// 0x0010: Single Root I/O Virtualization.
    SrIov,
    /// 0x001B: Process Address Space ID (the PASIDs an IMS entry may carry).
    Pasid,
    /// Any other ID, kept as read.
    Unknown(u16),
}

impl From<u16> for ExtCapId {
    fn from(id: u16) -> Self {
        match id {
            0x0001 => ExtCapId::AdvancedErrorReporting,
            0x0003 => ExtCapId::DeviceSerialNumber,
            0x000E => ExtCapId::AlternativeRoutingId,
            0x0010 => ExtCapId::SrIov,
            0x001B => ExtCapId::Pasid,
            other => ExtCapId::Unknown(other),
        }
    }
}

impl From<ExtCapId> for u16 {
    fn from(id: ExtCapId) -> Self {
        match id {
            ExtCapId::AdvancedErrorReporting => 0x0001,
            ExtCapId::DeviceSerialNumber => 0x0003,
            ExtCapId::AlternativeRoutingId => 0x000E,
            ExtCapId::SrIov => 0x0010,
            ExtCapId::Pasid => 0x001B,
            ExtCapId::Unknown(other) => other,
        }
    }
}

/// Layout of the capability headers.
mod field {
    /// Conventional header byte 0: Capability ID; byte 1: Next Capability Pointer
    /// (PCI Express Base Specification 7.5.1.1.11 and each capability's header).
    pub const NEXT: u16 = 1;
    /// Pointer bits 1:0 are reserved; software masks them off (7.5.1.1.11).
    pub const POINTER_MASK: u8 = 0xFC;
    /// Extended header bits 15:0: Capability ID (7.6.3).
    pub const EXT_ID_MASK: u32 = 0xFFFF;
    /// Extended header bits 19:16: Capability Version (7.6.3).
    pub const EXT_VERSION_SHIFT: u32 = 16;
    /// Extended header bits 31:20: Next Capability Offset, bits 1:0 masked off (7.6.3).
    pub const EXT_NEXT_SHIFT: u32 = 20;
    /// Mask of the Next Capability Offset after shifting.
    pub const EXT_NEXT_MASK: u32 = 0xFFC;
}

/// Why a capability walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// A configuration read failed.
    Config(ConfigError),
    /// A pointer leads back to a capability already visited.
    Loop {
        /// The capability holding the pointer (0x34: the list head).
        at: u16,
        /// The offset visited twice.
        to: u16,
    },
    /// A pointer leads into the header (below 0x40), or an extended pointer below 0x100.
    IntoHeader {
        /// The capability holding the pointer (0x34: the list head).
        at: u16,
        /// The pointer's value.
        to: u16,
    },
    /// A capability lies (partly) beyond the end of the configuration space.
    Truncated {
        /// The capability's offset.
        offset: u16,
        /// How many bytes it needs from there.
        needed: u16,
        /// The size of the space.
        size: u16,
    },
}

impl From<ConfigError> for CapError {
    fn from(e: ConfigError) -> Self {
        CapError::Config(e)
    }
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CapError::Config(e) => write!(f, "capability walk: {e}"),
            CapError::Loop { at, to } => {
                write!(f, "capability pointer at {at:#x} loops back to {to:#x}")
            }
            CapError::IntoHeader { at, to } => {
                write!(
                    f,
                    "capability pointer at {at:#x} points into the header ({to:#x})"
                )
            }
            CapError::Truncated {
                offset,
                needed,
                size,
            } => write!(
                f,
                "capability at {offset:#x} needs {needed} bytes; the space ends at {size:#x}"
            ),
        }
    }
}

impl core::error::Error for CapError {}

/// Checks that `needed` bytes from `offset` fit in the configuration space, and a capability
/// that starts in conventional space (below 0x100) ends there too.
pub(crate) fn check_fits<C: ConfigSpace + ?Sized>(
    cfg: &C,
    offset: u16,
    needed: u16,
) -> Result<(), CapError> {
    // A conventional capability lives in the first 256 bytes, whatever the space's size:
    // running past 0x100 would reach the extended capabilities.
    let size = if offset < 0x100 {
        cfg.size().min(0x100)
    } else {
        cfg.size()
    };
    match offset.checked_add(needed) {
        Some(end) if end <= size => Ok(()),
        _ => Err(CapError::Truncated {
            offset,
            needed,
            size,
        }),
    }
}

/// A set of visited dwords of a configuration space (1,024 dwords in 4 KiB).
#[derive(Clone, Debug)]
struct Visited([u64; 16]);

impl Visited {
    /// Marks the dword at `offset`; false if it was already marked.
    fn mark(&mut self, offset: u16) -> bool {
        let dword = usize::from(offset / 4) % 1024;
        let (word, bit) = (dword / 64, dword % 64);
        let fresh = self.0[word] & (1 << bit) == 0;
        self.0[word] |= 1 << bit;
        fresh
    }
}

/// One conventional capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Its ID.
    pub id: CapId,
    /// Its offset in configuration space.
    pub offset: u16,
}

/// One extended capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCapability {
    /// Its ID.
    pub id: ExtCapId,
    /// Its version (bits 19:16 of its header).
    pub version: u8,
    /// Its offset in configuration space.
    pub offset: u16,
}

/// What differs between the two lists.
pub trait ListKind {
    /// What the walk yields.
    type Item;
    /// Pointers below this lead into the header.
    const FLOOR: u16;
    /// The size of a capability header in bytes.
    const HEADER: u16;
    /// Reads the capability at `offset`: the item and its next pointer (0: the end).
    fn read<C: ConfigSpace + ?Sized>(
        cfg: &C,
        offset: u16,
    ) -> Result<(Self::Item, u16), ConfigError>;
}

/// The conventional list (7.5.1.1.11): a byte ID and a byte pointer.
#[derive(Clone, Copy, Debug)]
pub struct Conventional;

impl ListKind for Conventional {
    type Item = Capability;
    const FLOOR: u16 = header::HEADER_END;
    const HEADER: u16 = 2;
    fn read<C: ConfigSpace + ?Sized>(
        cfg: &C,
        offset: u16,
    ) -> Result<(Capability, u16), ConfigError> {
        let id = cfg.read_u8(offset)?;
        let next = cfg.read_u8(offset.saturating_add(field::NEXT))? & field::POINTER_MASK;
        let cap = Capability {
            id: id.into(),
            offset,
        };
        Ok((cap, u16::from(next)))
    }
}

/// The extended list (7.6.3): a dword header with ID, version and a 12-bit pointer.
#[derive(Clone, Copy, Debug)]
pub struct Extended;

impl ListKind for Extended {
    type Item = ExtCapability;
    const FLOOR: u16 = header::EXTENDED_START;
    const HEADER: u16 = 4;
    fn read<C: ConfigSpace + ?Sized>(
        cfg: &C,
        offset: u16,
    ) -> Result<(ExtCapability, u16), ConfigError> {
        let raw = cfg.read_u32(offset)?;
        let cap = ExtCapability {
            id: ((raw & field::EXT_ID_MASK) as u16).into(),
            version: ((raw >> field::EXT_VERSION_SHIFT) & 0xF) as u8,
            offset,
        };
        Ok((
            cap,
            ((raw >> field::EXT_NEXT_SHIFT) & field::EXT_NEXT_MASK) as u16,
        ))
    }
}

/// Where a walk stands.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The pointer read at `at` names `to` (0: the end of the list).
    Follow { at: u16, to: u16 },
    /// The next item is this error, then the end.
    Fail(CapError),
    /// Nothing more.
    Done,
}

/// An iterator over a capability list: each item is a capability or the error that ended the
/// walk. See [`capabilities`] and [`extended_capabilities`].
#[derive(Debug)]
pub struct Walk<'a, C: ?Sized, K> {
    cfg: &'a C,
    step: Step,
    visited: Visited,
    kind: core::marker::PhantomData<K>,
}

/// The conventional capability walk.
pub type Capabilities<'a, C> = Walk<'a, C, Conventional>;
/// The extended capability walk.
pub type ExtCapabilities<'a, C> = Walk<'a, C, Extended>;

impl<'a, C: ConfigSpace + ?Sized, K> Walk<'a, C, K> {
    fn new(cfg: &'a C, step: Step) -> Self {
        Walk {
            cfg,
            step,
            visited: Visited([0; 16]),
            kind: core::marker::PhantomData,
        }
    }
}

/// Walks the conventional capability list of `cfg`.
///
/// The list exists only when Status bit 4 (Capabilities List) is set (7.5.1.1.4); its head is
/// the Capabilities Pointer at 0x34 (7.5.1.1.11).
pub fn capabilities<C: ConfigSpace + ?Sized>(cfg: &C) -> Capabilities<'_, C> {
    let step = match cfg.read_u16(header::STATUS) {
        Ok(status) if status & header::STATUS_CAP_LIST == 0 => Step::Done,
        Ok(_) => match cfg.read_u8(header::CAP_POINTER) {
            Ok(p) => Step::Follow {
                at: header::CAP_POINTER,
                to: u16::from(p & field::POINTER_MASK),
            },
            Err(e) => Step::Fail(e.into()),
        },
        Err(e) => Step::Fail(e.into()),
    };
    Walk::new(cfg, step)
}

/// Walks the extended capability list of `cfg`, which starts at 0x100 in a 4 KiB space
/// (7.6.1). A space of 256 bytes, or a header at 0x100 of all zeros or all ones, has none.
pub fn extended_capabilities<C: ConfigSpace + ?Sized>(cfg: &C) -> ExtCapabilities<'_, C> {
    let first = header::EXTENDED_START;
    let step = if cfg.size() < EXTENDED_SIZE {
        Step::Done
    } else {
        match cfg.read_u32(first) {
            Ok(0) | Ok(u32::MAX) => Step::Done,
            Ok(_) => Step::Follow { at: 0, to: first },
            Err(e) => Step::Fail(e.into()),
        }
    };
    Walk::new(cfg, step)
}

impl<C: ConfigSpace + ?Sized, K: ListKind> Iterator for Walk<'_, C, K> {
    type Item = Result<K::Item, CapError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (at, to) = match core::mem::replace(&mut self.step, Step::Done) {
            Step::Done | Step::Follow { to: 0, .. } => return None,
            Step::Fail(e) => return Some(Err(e)),
            Step::Follow { at, to } => (at, to),
        };
        if to < K::FLOOR {
            return Some(Err(CapError::IntoHeader { at, to }));
        }
        if !self.visited.mark(to) {
            return Some(Err(CapError::Loop { at, to }));
        }
        if let Err(e) = check_fits(self.cfg, to, K::HEADER) {
            return Some(Err(e));
        }
        match K::read(self.cfg, to) {
            Ok((item, next)) => {
                self.step = Step::Follow { at: to, to: next };
                Some(Ok(item))
            }
            Err(e) => Some(Err(e.into())),
        }
    }
}

impl<C: ConfigSpace + ?Sized, K: ListKind> core::iter::FusedIterator for Walk<'_, C, K> {}

/// The offset of the first capability `id`, `None` if the list has none.
pub fn find<C: ConfigSpace + ?Sized>(cfg: &C, id: CapId) -> Result<Option<u16>, CapError> {
    for cap in capabilities(cfg) {
        let cap = cap?;
        if cap.id == id {
            return Ok(Some(cap.offset));
        }
    }
    Ok(None)
}

/// The offset of the first extended capability `id`, `None` if the list has none.
pub fn find_extended<C: ConfigSpace + ?Sized>(
    cfg: &C,
    id: ExtCapId,
) -> Result<Option<u16>, CapError> {
    for cap in extended_capabilities(cfg) {
        let cap = cap?;
        if cap.id == id {
            return Ok(Some(cap.offset));
        }
    }
    Ok(None)
}
