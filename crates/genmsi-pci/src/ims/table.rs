//! An on-device IMS table: 16-byte entries in a BAR, with a PASID per entry.
//!
//! The layout is the device's own (not a PCI format), modelled on the IMS tables of shipping
//! accelerators: the first three dwords as an MSI-X entry, then a control dword.

use super::{check_address, check_region, ImsError};
use crate::bar::{self, Bar, MaskBit, Mmio};
use crate::error::to_core;
use crate::signal::Signal;
use genmsi::{Msg, MsgStore, StoreCaps};

/// The entry layout, each field declared once.
mod field {
    /// Entry size; address bits 31:0 at +0, 63:32 at +4, data at +8.
    pub const ENTRY_SIZE: u64 = 16;
    /// The control dword at +0xC.
    pub const CONTROL: u64 = 0x0C;
    /// Control bit 0: Mask.
    pub const MASK: u32 = 1 << 0;
    /// Control bit 1: Pending, set by the device when it raises a masked entry.
    pub const PENDING: u32 = 1 << 1;
    /// Control bit 3: PASID Enable: message writes carry the PASID below.
    pub const PASID_ENABLE: u32 = 1 << 3;
    /// Control bits 31:12: the PASID (20 bits, as PASIDs are, PCIe 6.20).
    pub const PASID_SHIFT: u32 = 12;
    /// Width mask of the PASID.
    pub const PASID_MASK: u32 = 0xF_FFFF;
}

/// One IMS table entry as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImsEntry {
    /// Address and data.
    pub msg: Msg,
    /// The control dword, raw.
    pub control: u32,
}

impl ImsEntry {
    /// An entry cleared for `pasid`: zero message, masked.
    pub fn cleared(pasid: Option<u32>) -> Self {
        let tag = pasid.map_or(0, |p| {
            field::PASID_ENABLE | (p & field::PASID_MASK) << field::PASID_SHIFT
        });
        ImsEntry {
            msg: Msg::ZERO,
            control: field::MASK | tag,
        }
    }

    /// Decodes the entry's four dwords.
    pub fn from_dwords(dwords: [u32; 4]) -> Self {
        ImsEntry {
            msg: bar::msg_of(&dwords),
            control: dwords[3],
        }
    }

    /// Encodes the entry's four dwords.
    pub fn to_dwords(&self) -> [u32; 4] {
        [
            self.msg.address as u32,
            (self.msg.address >> 32) as u32,
            self.msg.data,
            self.control,
        ]
    }

    /// The Mask bit.
    pub fn masked(&self) -> bool {
        self.control & field::MASK != 0
    }

    /// The Pending bit.
    pub fn pending(&self) -> bool {
        self.control & field::PENDING != 0
    }

    /// The PASID, when PASID Enable is set.
    pub fn pasid(&self) -> Option<u32> {
        (self.control & field::PASID_ENABLE != 0)
            .then_some((self.control >> field::PASID_SHIFT) & field::PASID_MASK)
    }

    /// With Mask set or cleared.
    pub fn with_masked(mut self, masked: bool) -> Self {
        self.control = match masked {
            true => self.control | field::MASK,
            false => self.control & !field::MASK,
        };
        self
    }
}

/// Where the table is: `entries` entries from `offset` in `bar`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImsTable {
    /// The BAR.
    pub bar: Bar,
    /// The table's offset in the BAR (16-byte aligned).
    pub offset: u64,
    /// The number of entries.
    pub entries: u32,
}

impl ImsTable {
    /// Checks that the table lies in an implemented BAR, aligned.
    pub fn check<M: Mmio + ?Sized>(&self, bars: &M) -> Result<(), ImsError> {
        if self.offset % field::ENTRY_SIZE != 0 {
            return Err(ImsError::BadLayout { value: self.offset });
        }
        let len = u64::from(self.entries) * field::ENTRY_SIZE;
        check_region(bars, self.bar, self.offset, len)
    }

    /// Entry `index`'s offset in the BAR.
    pub fn entry_offset(&self, index: u32) -> Result<u64, ImsError> {
        if index >= self.entries {
            return Err(ImsError::IndexOutOfRange {
                index,
                size: self.entries,
            });
        }
        self.offset
            .checked_add(u64::from(index) * field::ENTRY_SIZE)
            .ok_or(ImsError::BadLayout { value: self.offset })
    }

    /// Reads entry `index`.
    pub fn read_entry<M: Mmio + ?Sized>(&self, bars: &M, index: u32) -> Result<ImsEntry, ImsError> {
        let at = self.entry_offset(index)?;
        Ok(ImsEntry::from_dwords(bar::read_entry(bars, self.bar, at)?))
    }

    fn write_entry<M: Mmio + ?Sized>(
        &self,
        bars: &mut M,
        index: u32,
        e: &ImsEntry,
    ) -> Result<(), ImsError> {
        let at = self.entry_offset(index)?;
        // The control dword last: the entry is masked before and while the message changes.
        bars.write_u32(self.bar, at + field::CONTROL, e.control | field::MASK)?;
        bar::write_msg_dwords(bars, self.bar, at, &e.msg)?;
        bars.write_u32(self.bar, at + field::CONTROL, e.control)?;
        Ok(())
    }

    fn mask_bit(&self, index: u32) -> Result<MaskBit, ImsError> {
        Ok(MaskBit {
            bar: self.bar,
            at: self.entry_offset(index)? + field::CONTROL,
            bit: field::MASK,
            set_masks: true,
        })
    }

    /// The device side: raises entry `index`: a masked entry latches Pending, an unmasked one
    /// with a message sends it.
    pub fn raise<M: Mmio + ?Sized>(&self, bars: &mut M, index: u32) -> Result<Signal, ImsError> {
        let e = self.read_entry(bars, index)?;
        if e.masked() {
            let at = self.entry_offset(index)? + field::CONTROL;
            bar::modify_u32(bars, self.bar, at, 0, field::PENDING)?;
            return Ok(Signal::Pending);
        }
        Ok(match e.msg {
            Msg::ZERO => Signal::Disabled,
            msg => Signal::Sent(msg),
        })
    }

    /// The device side: sends entry `index` if it is pending and unmasked, clearing Pending.
    pub fn replay<M: Mmio + ?Sized>(
        &self,
        bars: &mut M,
        index: u32,
    ) -> Result<Option<Msg>, ImsError> {
        let e = self.read_entry(bars, index)?;
        if !e.pending() || e.masked() {
            return Ok(None);
        }
        let at = self.entry_offset(index)? + field::CONTROL;
        bar::modify_u32(bars, self.bar, at, field::PENDING, 0)?;
        Ok(Some(e.msg))
    }
}

/// An on-device IMS table as a [`MsgStore`]; the cookie of an index is its PASID.
#[derive(Debug)]
pub struct ImsTableStore<M> {
    bars: M,
    table: ImsTable,
    last_error: Option<ImsError>,
}

impl<M: Mmio> ImsTableStore<M> {
    /// The store of `table`. Every entry is cleared (masked, zero, no PASID): the layout is
    /// the device's, with no reset state the host could rely on.
    pub fn new(mut bars: M, table: ImsTable) -> Result<Self, ImsError> {
        table.check(&bars)?;
        for index in 0..table.entries {
            table.write_entry(&mut bars, index, &ImsEntry::cleared(None))?;
        }
        Ok(ImsTableStore {
            bars,
            table,
            last_error: None,
        })
    }

    /// The table's location.
    pub fn table(&self) -> &ImsTable {
        &self.table
    }

    /// The BARs.
    pub fn bars(&self) -> &M {
        &self.bars
    }

    /// The BARs, writable (the device side in tests).
    pub fn bars_mut(&mut self) -> &mut M {
        &mut self.bars
    }

    /// The full error of the store's last refusal.
    pub fn last_error(&self) -> Option<ImsError> {
        self.last_error
    }

    fn do_prepare(&mut self, index: u32, cookie: Option<u64>) -> Result<(), ImsError> {
        let pasid = match cookie {
            Some(p) if p > u64::from(field::PASID_MASK) => {
                return Err(ImsError::PasidTooWide { pasid: p })
            }
            other => other.map(|p| p as u32),
        };
        self.table
            .write_entry(&mut self.bars, index, &ImsEntry::cleared(pasid))
    }

    fn do_write(&mut self, index: u32, msg: &Msg) -> Result<(), ImsError> {
        check_address(msg.address)?;
        let at = self.table.entry_offset(index)?;
        let mask = self.table.mask_bit(index)?;
        Ok(bar::write_msg_masked(&mut self.bars, at, msg, mask, true)?)
    }

    fn fail(&mut self, index: u32) -> impl FnOnce(ImsError) -> genmsi::Error + '_ {
        move |e| to_core(&mut self.last_error, index, e)
    }
}

impl<M: Mmio + Send + 'static> MsgStore for ImsTableStore<M> {
    fn name(&self) -> &'static str {
        "ims-table"
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps {
            write_masked: true,
            ..StoreCaps::dynamic(self.table.entries)
        }
    }

    fn write_msg(&mut self, index: u32, msg: &Msg) -> genmsi::Result<()> {
        self.do_write(index, msg).map_err(self.fail(index))
    }

    fn mask(&mut self, index: u32) -> genmsi::Result<()> {
        let r = self
            .table
            .mask_bit(index)
            .and_then(|m| Ok(m.set(&mut self.bars, true)?));
        r.map_err(self.fail(index))
    }

    fn unmask(&mut self, index: u32) -> genmsi::Result<()> {
        let r = self
            .table
            .mask_bit(index)
            .and_then(|m| Ok(m.set(&mut self.bars, false)?));
        r.map_err(self.fail(index))
    }

    fn prepare(&mut self, index: u32, cookie: Option<u64>) -> genmsi::Result<()> {
        self.do_prepare(index, cookie).map_err(self.fail(index))
    }

    fn release(&mut self, index: u32) {
        if let Err(e) = self.do_prepare(index, None) {
            self.last_error = Some(e);
        }
    }

    fn is_pending(&self, index: u32) -> bool {
        self.table
            .read_entry(&self.bars, index)
            .is_ok_and(|e| e.pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_by_hand() {
        // Mask (bit 0), PASID Enable (bit 3), PASID 0x12345 in bits 31:12.
        let e = ImsEntry::cleared(Some(0x12345));
        assert_eq!(e.control, 0x1234_5009);
        assert_eq!(e.pasid(), Some(0x12345));
        assert!(e.masked() && !e.pending());
        assert_eq!(e.with_masked(false).control, 0x1234_5008);
        assert_eq!(ImsEntry::cleared(None).control, 0x0000_0001);
    }

    proptest! {
        #[test]
        fn entry_round_trip(dwords in any::<[u32; 4]>()) {
            let e = ImsEntry::from_dwords(dwords);
            prop_assert_eq!(e.to_dwords(), dwords);
            prop_assert_eq!(e.pasid().is_some(), dwords[3] & 8 != 0);
        }

        #[test]
        fn pasid_round_trip(pasid in 0u32..=0xF_FFFF) {
            prop_assert_eq!(ImsEntry::cleared(Some(pasid)).pasid(), Some(pasid));
        }
    }
}
