//! BAR (memory-mapped) access: the trait the MSI-X and IMS stores use to reach tables that
//! live in a function's memory BARs, and a byte-array implementation.

use alloc::vec::Vec;
use core::fmt;

/// A Base Address Register index, `0..=5` (PCI Express Base Specification 7.5.1.2.1).
///
/// The MSI-X Table BIR and PBA BIR name a BAR this way (7.7.2.3, 7.7.2.4).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bar(u8);

impl Bar {
    /// The number of BARs of a Type 0 function.
    pub const COUNT: u8 = 6;

    /// A BAR index; panics (at compile time in const context) unless `index < 6`.
    pub const fn new(index: u8) -> Self {
        assert!(index < Self::COUNT, "a BAR index is 0..=5");
        Bar(index)
    }

    /// A BAR index, or the bad value back.
    pub const fn try_new(index: u8) -> Result<Self, u8> {
        if index < Self::COUNT {
            Ok(Bar(index))
        } else {
            Err(index)
        }
    }

    /// The index.
    pub const fn index(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BAR{}", self.0)
    }
}

/// Why a BAR access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The function does not implement (or the platform did not map) this BAR.
    NoBar {
        /// The BAR.
        bar: Bar,
    },
    /// The access reaches beyond the BAR.
    OutOfRange {
        /// The BAR.
        bar: Bar,
        /// The offset of the access.
        offset: u64,
        /// The BAR's size.
        len: u64,
    },
    /// The offset is not dword aligned.
    Misaligned {
        /// The BAR.
        bar: Bar,
        /// The offset of the access.
        offset: u64,
    },
    /// The platform could not complete the access.
    Failed {
        /// The BAR.
        bar: Bar,
        /// The offset of the access.
        offset: u64,
    },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmioError::NoBar { bar } => write!(f, "{bar:?} is not mapped"),
            MmioError::OutOfRange { bar, offset, len } => {
                write!(f, "{bar:?} offset {offset:#x} is beyond its {len:#x} bytes")
            }
            MmioError::Misaligned { bar, offset } => {
                write!(f, "{bar:?} offset {offset:#x} is not dword aligned")
            }
            MmioError::Failed { bar, offset } => write!(f, "{bar:?} access at {offset:#x} failed"),
        }
    }
}

impl core::error::Error for MmioError {}

/// A function's memory BARs, accessed by naturally aligned dwords.
///
/// Every MSI-X implementation must accept dword accesses to its table and PBA (7.7.2), so
/// dwords are all this trait asks for. Implemented by the bare-metal kernel (mapped BARs,
/// volatile accesses), by the simulator, and by [`ByteBars`] in tests.
pub trait Mmio {
    /// The size of `bar` in bytes, or `None` when it is not implemented.
    fn bar_len(&self, bar: Bar) -> Option<u64>;
    /// Reads the dword at `offset` in `bar`.
    fn read_u32(&self, bar: Bar, offset: u64) -> Result<u32, MmioError>;
    /// Writes the dword at `offset` in `bar`.
    fn write_u32(&mut self, bar: Bar, offset: u64, value: u32) -> Result<(), MmioError>;
}

/// Memory BARs kept in byte arrays (tests, simple simulators). Little endian.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ByteBars {
    bars: [Option<Vec<u8>>; Bar::COUNT as usize],
}

impl ByteBars {
    /// No BAR implemented.
    pub fn new() -> Self {
        ByteBars::default()
    }

    /// Adds (or replaces) `bar` as `len` zero bytes.
    pub fn with_bar(mut self, bar: Bar, len: usize) -> Self {
        self.bars[usize::from(bar.0)] = Some(alloc::vec![0; len]);
        self
    }

    /// The bytes of `bar`, if implemented.
    pub fn bytes(&self, bar: Bar) -> Option<&[u8]> {
        self.bars[usize::from(bar.0)].as_deref()
    }

    /// The bytes of `bar`, writable.
    pub fn bytes_mut(&mut self, bar: Bar) -> Option<&mut [u8]> {
        self.bars[usize::from(bar.0)].as_deref_mut()
    }

    fn range(&self, bar: Bar, offset: u64) -> Result<core::ops::Range<usize>, MmioError> {
        let bytes = self.bytes(bar).ok_or(MmioError::NoBar { bar })?;
        if offset % 4 != 0 {
            return Err(MmioError::Misaligned { bar, offset });
        }
        let len = bytes.len() as u64;
        match offset.checked_add(4) {
            Some(end) if end <= len => Ok(offset as usize..end as usize),
            _ => Err(MmioError::OutOfRange { bar, offset, len }),
        }
    }
}

impl Mmio for ByteBars {
    fn bar_len(&self, bar: Bar) -> Option<u64> {
        self.bytes(bar).map(|b| b.len() as u64)
    }

    fn read_u32(&self, bar: Bar, offset: u64) -> Result<u32, MmioError> {
        let r = self.range(bar, offset)?;
        let bytes = self.bytes(bar).expect("range checked the BAR");
        let mut dword = [0u8; 4];
        dword.copy_from_slice(&bytes[r]);
        Ok(u32::from_le_bytes(dword))
    }

    fn write_u32(&mut self, bar: Bar, offset: u64, value: u32) -> Result<(), MmioError> {
        let r = self.range(bar, offset)?;
        let bytes = self.bytes_mut(bar).expect("range checked the BAR");
        bytes[r].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

/// Reads `bar` at `offset` and writes it back with `clear` bits cleared and `set` bits set;
/// the write is skipped when nothing changes.
pub(crate) fn modify_u32<M: Mmio + ?Sized>(
    mmio: &mut M,
    bar: Bar,
    offset: u64,
    clear: u32,
    set: u32,
) -> Result<(), MmioError> {
    let old = mmio.read_u32(bar, offset)?;
    let new = (old & !clear) | set;
    if new != old {
        mmio.write_u32(bar, offset, new)?;
    }
    Ok(())
}

/// Writes a message as the three dwords every table in this crate uses: address bits 31:0,
/// address bits 63:32, data (MSI-X 7.7.2.5 to 7.7.2.7; the IMS layouts follow it).
pub(crate) fn write_msg_dwords<M: Mmio + ?Sized>(
    mmio: &mut M,
    bar: Bar,
    offset: u64,
    msg: &genmsi::Msg,
) -> Result<(), MmioError> {
    mmio.write_u32(bar, offset, msg.address as u32)?;
    mmio.write_u32(bar, offset + 4, (msg.address >> 32) as u32)?;
    mmio.write_u32(bar, offset + 8, msg.data)
}

/// Reads the four dwords of a 16-byte table entry at `offset`.
pub(crate) fn read_entry<M: Mmio + ?Sized>(
    mmio: &M,
    bar: Bar,
    offset: u64,
) -> Result<[u32; 4], MmioError> {
    let mut dwords = [0u32; 4];
    for (i, d) in dwords.iter_mut().enumerate() {
        *d = mmio.read_u32(bar, offset + 4 * i as u64)?;
    }
    Ok(dwords)
}

/// The message held in the first three dwords of an entry.
pub(crate) fn msg_of(dwords: &[u32; 4]) -> genmsi::Msg {
    genmsi::Msg::new(u64::from(dwords[1]) << 32 | u64::from(dwords[0]), dwords[2])
}

/// Where a table entry's mask lives: a bit of a dword, with its polarity (MSI-X and the IMS
/// table have a Mask bit; a queue context has an Interrupt Enable bit).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MaskBit {
    pub(crate) bar: Bar,
    pub(crate) at: u64,
    pub(crate) bit: u32,
    /// True when a set bit means masked.
    pub(crate) set_masks: bool,
}

impl MaskBit {
    pub(crate) fn is_masked<M: Mmio + ?Sized>(&self, mmio: &M) -> Result<bool, MmioError> {
        let set = mmio.read_u32(self.bar, self.at)? & self.bit != 0;
        Ok(set == self.set_masks)
    }

    pub(crate) fn set<M: Mmio + ?Sized>(
        &self,
        mmio: &mut M,
        masked: bool,
    ) -> Result<(), MmioError> {
        match masked == self.set_masks {
            true => modify_u32(mmio, self.bar, self.at, 0, self.bit),
            false => modify_u32(mmio, self.bar, self.at, self.bit, 0),
        }
    }
}

/// Writes `msg` at `at` (three dwords); when `live` and the entry is unmasked, the entry is
/// masked around the write, so the function never sends half of an old and half of a new
/// message.
pub(crate) fn write_msg_masked<M: Mmio + ?Sized>(
    mmio: &mut M,
    at: u64,
    msg: &genmsi::Msg,
    mask: MaskBit,
    live: bool,
) -> Result<(), MmioError> {
    let guard = live && !mask.is_masked(mmio)?;
    if guard {
        mask.set(mmio, true)?;
    }
    write_msg_dwords(mmio, mask.bar, at, msg)?;
    if guard {
        mask.set(mmio, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_indices_are_0_to_5() {
        assert_eq!(Bar::try_new(5), Ok(Bar::new(5)));
        assert_eq!(Bar::try_new(6), Err(6));
        assert_eq!(alloc::format!("{:?}", Bar::new(4)), "BAR4");
    }

    #[test]
    fn byte_bars_check_every_access() {
        let mut bars = ByteBars::new().with_bar(Bar::new(2), 16);
        bars.write_u32(Bar::new(2), 12, 0xAABB_CCDD).unwrap();
        assert_eq!(
            &bars.bytes(Bar::new(2)).unwrap()[12..],
            &[0xDD, 0xCC, 0xBB, 0xAA]
        );
        let b = Bar::new(2);
        assert_eq!(
            bars.read_u32(b, 16),
            Err(MmioError::OutOfRange {
                bar: b,
                offset: 16,
                len: 16
            })
        );
        assert_eq!(
            bars.read_u32(b, u64::MAX - 3),
            Err(MmioError::OutOfRange {
                bar: b,
                offset: u64::MAX - 3,
                len: 16
            })
        );
        assert_eq!(
            bars.read_u32(b, 2),
            Err(MmioError::Misaligned { bar: b, offset: 2 })
        );
        assert_eq!(
            bars.read_u32(Bar::new(0), 0),
            Err(MmioError::NoBar { bar: Bar::new(0) })
        );
    }
}
