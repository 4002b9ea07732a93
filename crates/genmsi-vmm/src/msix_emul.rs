//! The guest's view of a function's MSI-X: capability, table and Pending Bit Array, emulated
//! register by register (PCI Express Base Specification 7.7.2).
//!
//! The VMM traps every guest access to the capability (configuration space) and to the table
//! and PBA (a BAR) and hands it here. [`MsixEmulation`] keeps the guest-visible state and
//! answers each access with exact PCI semantics, then says what changed ([`Effect`]) so the
//! VMM can act on the host: an entry became able to deliver ("live"), stopped, or its message
//! changed; Enable or Function Mask flipped.
//!
//! The rules, each one tested below and checked against a reference model by a property test:
//!
//! 1. **Capability** (12 bytes): 1-, 2- and 4-byte accesses, naturally aligned. The ID (0x11),
//!    next pointer, Table Size and the Table and PBA Offset/BIR registers are read only; Message
//!    Control bits 13:11 are reserved and read 0; only Function Mask (bit 14) and MSI-X Enable
//!    (bit 15) take writes (7.7.2.2).
//! 2. **Table**: 4- and 8-byte accesses, naturally aligned (7.7.2: software must use aligned
//!    full DWORD or QWORD accesses), so an access never straddles two entries. Message Address
//!    bits 1:0 read 0 (7.7.2.5); Upper Address and Data are read/write; Vector Control has only
//!    the Mask Bit, set at reset; its other bits are reserved and read 0 (7.7.2.8, no TPH
//!    Steering Tags).
//! 3. **PBA**: 4- and 8-byte aligned reads; bits past the last vector read 0; writes are
//!    dropped (7.7.2.9: read only).
//! 4. Anything else (another size, a misaligned offset, a range past the region's end) is
//!    answered with all ones for a read and nothing for a write, and reported as an
//!    [`AccessError`]. Nothing panics and nothing changes half way.
//! 5. An entry is **live** (the function may send it) when MSI-X is enabled, Function Mask is
//!    clear and its Mask Bit is clear. Otherwise an interrupt of the entry sets its pending bit
//!    ([`MsixEmulation::set_pending`]), delivered when it becomes live (6.1.4.5).

use crate::error::{AccessError, Region, Result};
use crate::Error;
use core::fmt;
use genmsi::Msg;
use genmsi_pci::msix::{MsixCap, MsixControl, MsixError, Region as BarRegion};
use genmsi_pci::Bar;

/// Register offsets and bits of the guest-visible registers, each declared once.
mod field {
    use genmsi_pci::msix::MsixControl;

    /// Capability ID of MSI-X (7.7.2.1).
    pub const CAP_ID: u8 = 0x11;
    /// The capability is 12 bytes (7.7.2).
    pub const CAP_SIZE: u64 = 12;
    /// Next Capability Pointer, a byte at +1 (7.7.2.1).
    pub const NEXT: usize = 1;
    /// Message Control, a word at +2 (7.7.2.2).
    pub const CONTROL: usize = 2;
    /// Table Offset/Table BIR, a dword at +4 (7.7.2.3).
    pub const TABLE: usize = 4;
    /// PBA Offset/PBA BIR, a dword at +8 (7.7.2.4).
    pub const PBA: usize = 8;
    /// Message Control bits software writes: Function Mask (14) and MSI-X Enable (15);
    /// Table Size (10:0) is read only and bits 13:11 are reserved (7.7.2.2).
    pub const CONTROL_WRITABLE: u16 = MsixControl(0).with_enabled(true).with_function_mask(true).0;
    /// Capability access sizes: configuration transactions of 1, 2 or 4 bytes.
    pub const CAP_SIZES: [usize; 3] = [1, 2, 4];

    /// A table entry is 16 bytes: four dwords (7.7.2.5 to 7.7.2.8).
    pub const ENTRY_SIZE: u64 = 16;
    /// The dword holding Vector Control (7.7.2.8).
    pub const VECTOR_CONTROL: usize = 3;
    /// Vector Control bit 0: Mask Bit, set after reset (7.7.2.8).
    pub const MASK_BIT: u32 = 1 << 0;
    /// Per dword of an entry, the bits the guest writes: Message Address bits 1:0 are zero
    /// (7.7.2.5); Upper Address and Data are read/write (7.7.2.6, 7.7.2.7); Vector Control has
    /// the Mask Bit only, bits 31:1 are reserved without TPH (7.7.2.8).
    pub const ENTRY_WRITABLE: [u32; 4] = [0xFFFF_FFFC, 0xFFFF_FFFF, 0xFFFF_FFFF, MASK_BIT];
    /// Table and PBA access sizes: aligned DWORD or QWORD (7.7.2).
    pub const MEM_SIZES: [usize; 2] = [4, 8];
    /// The PBA holds one bit per vector in QWORDs (7.7.2.9).
    pub const PBA_BITS_PER_QWORD: u32 = 64;
    /// The largest table: Table Size is 11 bits, N - 1 (7.7.2.2).
    pub const MAX_VECTORS: u32 = 2048;
}

/// Where the guest finds the table and the PBA, and how many vectors there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixLayout {
    /// Table entries, `1..=2048`.
    pub vectors: u32,
    /// The table's BAR and offset.
    pub table: BarRegion,
    /// The PBA's BAR and offset.
    pub pba: BarRegion,
    /// The next capability pointer the guest sees.
    pub next: u8,
}

impl MsixLayout {
    /// The most entries a table has: Table Size is 11 bits, N - 1 (7.7.2.2).
    pub const MAX_VECTORS: u32 = field::MAX_VECTORS;

    /// A checked layout: `1..=2048` vectors, table and PBA not overlapping.
    pub fn new(vectors: u32, table: BarRegion, pba: BarRegion, next: u8) -> Result<Self> {
        if vectors == 0 || vectors > field::MAX_VECTORS {
            return Err(Error::Layout { vectors });
        }
        let layout = MsixLayout {
            vectors,
            table,
            pba,
            next,
        };
        let (t, p) = (u64::from(table.offset), u64::from(pba.offset));
        if table.bar == pba.bar && t < p + layout.pba_len() && p < t + layout.table_len() {
            return Err(Error::Msix(MsixError::Overlap { bar: table.bar }));
        }
        Ok(layout)
    }

    /// The layout of a host function's capability, shown to the guest as it is.
    pub fn of_host(cap: &MsixCap, next: u8) -> Result<Self> {
        Self::new(cap.table_size, cap.table, cap.pba, next)
    }

    /// The table's length in bytes.
    pub fn table_len(&self) -> u64 {
        u64::from(self.vectors) * field::ENTRY_SIZE
    }

    /// The PBA's length in bytes, whole QWORDs (7.7.2.9).
    pub fn pba_len(&self) -> u64 {
        u64::from(self.vectors.div_ceil(field::PBA_BITS_PER_QWORD)) * 8
    }
}

/// What a trapped write changed that the host side must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing the host cares about.
    None,
    /// A table entry was written.
    Entry(EntryChange),
    /// Message Control changed (Enable or Function Mask).
    Control {
        /// Before the write.
        before: MsixControl,
        /// After it.
        after: MsixControl,
    },
}

/// A write to one table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryChange {
    /// The entry.
    pub index: u32,
    /// Live before the write.
    pub was_live: bool,
    /// Live after it.
    pub is_live: bool,
    /// Address or data changed.
    pub msg_changed: bool,
}

/// The emulated MSI-X capability, table and PBA of one guest function (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct MsixEmulation {
    layout: MsixLayout,
    /// Only the writable bits of Message Control.
    control: u16,
    entries: Vec<[u32; 4]>,
    pba: Vec<u64>,
}

impl fmt::Debug for MsixEmulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = (0..self.layout.vectors)
            .filter(|&i| self.is_live(i))
            .count();
        let pending: u32 = self.pba.iter().map(|q| q.count_ones()).sum();
        write!(
            f,
            "MsixEmulation({:?}, {live} live, {pending} pending)",
            self.control()
        )
    }
}

/// Checks an access of `len` bytes at `offset` of a region of `region_len` bytes.
fn check(
    region: Region,
    offset: u64,
    len: usize,
    sizes: &[usize],
    region_len: u64,
) -> Result<(), AccessError> {
    if !sizes.contains(&len) {
        return Err(AccessError::BadSize {
            region,
            offset,
            len,
        });
    }
    if offset % len as u64 != 0 {
        return Err(AccessError::Misaligned {
            region,
            offset,
            len,
        });
    }
    match offset.checked_add(len as u64) {
        Some(end) if end <= region_len => Ok(()),
        _ => Err(AccessError::OutOfRange {
            region,
            offset,
            len,
        }),
    }
}

/// Answers a refused read: all ones.
fn refuse(data: &mut [u8], e: AccessError) -> Result<(), AccessError> {
    data.fill(0xFF);
    Err(e)
}

/// Checks a read into `data` like [`check`]; a refused one reads all ones.
fn check_read(
    region: Region,
    offset: u64,
    data: &mut [u8],
    sizes: &[usize],
    region_len: u64,
) -> Result<(), AccessError> {
    check(region, offset, data.len(), sizes, region_len).or_else(|e| refuse(data, e))
}

impl MsixEmulation {
    /// The state after reset: MSI-X disabled, Function Mask clear, every entry zero and
    /// masked, nothing pending.
    pub fn new(layout: MsixLayout) -> Self {
        let mut entry = [0u32; 4];
        entry[field::VECTOR_CONTROL] = field::MASK_BIT;
        MsixEmulation {
            layout,
            control: 0,
            entries: vec![entry; layout.vectors as usize],
            pba: vec![0; layout.pba_len() as usize / 8],
        }
    }

    /// The layout.
    pub fn layout(&self) -> &MsixLayout {
        &self.layout
    }

    /// Message Control as the guest reads it.
    pub fn control(&self) -> MsixControl {
        MsixControl((self.layout.vectors - 1) as u16 | self.control)
    }

    /// True when entry `index` may send: enabled, no Function Mask, Mask Bit clear.
    pub fn is_live(&self, index: u32) -> bool {
        let c = self.control();
        c.enabled() && !c.function_mask() && !self.masked(index)
    }

    /// The Mask Bit of entry `index` (true for an index past the table).
    pub fn masked(&self, index: u32) -> bool {
        self.entries
            .get(index as usize)
            .is_none_or(|e| e[field::VECTOR_CONTROL] & field::MASK_BIT != 0)
    }

    /// The message the guest programmed in entry `index` (zero past the table).
    pub fn msg(&self, index: u32) -> Msg {
        self.entries.get(index as usize).map_or(Msg::ZERO, |e| {
            Msg::new(u64::from(e[1]) << 32 | u64::from(e[0]), e[2])
        })
    }

    /// The pending bit of entry `index`.
    pub fn pending(&self, index: u32) -> bool {
        self.pba_qword(index)
            .is_some_and(|(q, bit)| self.pba[q] & bit != 0)
    }

    /// The PBA qword and bit of entry `index`; none past the last vector, whose bits read 0.
    fn pba_qword(&self, index: u32) -> Option<(usize, u64)> {
        (index < self.layout.vectors).then(|| (index as usize / 64, 1u64 << (index % 64)))
    }

    /// Sets entry `index`'s pending bit (its interrupt arrived while it was not live);
    /// returns true when it was set already (the interrupts coalesce).
    pub fn set_pending(&mut self, index: u32) -> bool {
        self.update_pending(index, true)
    }

    /// Sets or clears entry `index`'s pending bit, returning whether it was set.
    fn update_pending(&mut self, index: u32, set: bool) -> bool {
        let Some((q, bit)) = self.pba_qword(index) else {
            return false;
        };
        let was = self.pba[q] & bit != 0;
        match set {
            true => self.pba[q] |= bit,
            false => self.pba[q] &= !bit,
        }
        was
    }

    /// Clears entry `index`'s pending bit; returns whether it was set.
    pub fn take_pending(&mut self, index: u32) -> bool {
        self.update_pending(index, false)
    }

    /// Pending bits set, over the whole PBA.
    pub fn pending_count(&self) -> u64 {
        self.pba.iter().map(|q| u64::from(q.count_ones())).sum()
    }

    fn cap_image(&self) -> [u8; field::CAP_SIZE as usize] {
        let mut image = [0u8; field::CAP_SIZE as usize];
        image[0] = field::CAP_ID;
        image[field::NEXT] = self.layout.next;
        image[field::CONTROL..field::CONTROL + 2].copy_from_slice(&self.control().0.to_le_bytes());
        image[field::TABLE..field::TABLE + 4]
            .copy_from_slice(&self.layout.table.emit().to_le_bytes());
        image[field::PBA..field::PBA + 4].copy_from_slice(&self.layout.pba.emit().to_le_bytes());
        image
    }

    /// A guest read of the capability: `offset` from the capability's start, `data.len()`
    /// bytes.
    pub fn config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        check_read(
            Region::Capability,
            offset,
            data,
            &field::CAP_SIZES,
            field::CAP_SIZE,
        )?;
        let at = offset as usize;
        data.copy_from_slice(&self.cap_image()[at..at + data.len()]);
        Ok(())
    }

    /// A guest write to the capability: only Function Mask and MSI-X Enable take it.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) -> Result<Effect, AccessError> {
        check(
            Region::Capability,
            offset,
            data.len(),
            &field::CAP_SIZES,
            field::CAP_SIZE,
        )?;
        let before = self.control();
        let mut control = before.0.to_le_bytes();
        let writable = field::CONTROL_WRITABLE.to_le_bytes();
        for (i, &byte) in data.iter().enumerate() {
            let Some(k) = (offset as usize + i).checked_sub(field::CONTROL) else {
                continue;
            };
            if let (Some(c), Some(&w)) = (control.get_mut(k), writable.get(k)) {
                *c = (*c & !w) | (byte & w);
            }
        }
        self.control = u16::from_le_bytes(control) & field::CONTROL_WRITABLE;
        let after = self.control();
        Ok(match after == before {
            true => Effect::None,
            false => Effect::Control { before, after },
        })
    }

    /// A guest read of the table: `offset` from the table's start.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        check_read(
            Region::Table,
            offset,
            data,
            &field::MEM_SIZES,
            self.layout.table_len(),
        )?;
        let entry = &self.entries[(offset / field::ENTRY_SIZE) as usize];
        let first = (offset % field::ENTRY_SIZE / 4) as usize;
        for (chunk, dword) in data.chunks_mut(4).zip(&entry[first..]) {
            chunk.copy_from_slice(&dword.to_le_bytes());
        }
        Ok(())
    }

    /// A guest write to the table: `offset` from the table's start.
    pub fn table_write(&mut self, offset: u64, data: &[u8]) -> Result<Effect, AccessError> {
        check(
            Region::Table,
            offset,
            data.len(),
            &field::MEM_SIZES,
            self.layout.table_len(),
        )?;
        let index = (offset / field::ENTRY_SIZE) as u32;
        let was_live = self.is_live(index);
        let before = self.msg(index);
        let entry = &mut self.entries[index as usize];
        let first = (offset % field::ENTRY_SIZE / 4) as usize;
        for (k, chunk) in data.chunks(4).enumerate() {
            let d = first + k;
            let value = u32::from_le_bytes(chunk.try_into().expect("4-byte chunks"));
            let w = field::ENTRY_WRITABLE[d];
            entry[d] = (entry[d] & !w) | (value & w);
        }
        Ok(Effect::Entry(EntryChange {
            index,
            was_live,
            is_live: self.is_live(index),
            msg_changed: self.msg(index) != before,
        }))
    }

    /// A guest read of the PBA: `offset` from the PBA's start.
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        check_read(
            Region::Pba,
            offset,
            data,
            &field::MEM_SIZES,
            self.layout.pba_len(),
        )?;
        let q = self.pba[(offset / 8) as usize].to_le_bytes();
        let at = (offset % 8) as usize;
        data.copy_from_slice(&q[at..at + data.len()]);
        Ok(())
    }

    /// A guest write to the PBA: checked like a read, then dropped (the PBA is read only).
    pub fn pba_write(&mut self, offset: u64, data: &[u8]) -> Result<Effect, AccessError> {
        check(
            Region::Pba,
            offset,
            data.len(),
            &field::MEM_SIZES,
            self.layout.pba_len(),
        )?;
        Err(AccessError::ReadOnly { offset })
    }

    /// Which region an access at `offset` of `bar` starts in, and its offset there.
    pub fn locate(&self, bar: Bar, offset: u64) -> Result<(Region, u64), AccessError> {
        let inside = |r: BarRegion, len: u64| {
            offset
                .checked_sub(u64::from(r.offset))
                .filter(|&o| r.bar == bar && o < len)
        };
        if let Some(o) = inside(self.layout.table, self.layout.table_len()) {
            return Ok((Region::Table, o));
        }
        if let Some(o) = inside(self.layout.pba, self.layout.pba_len()) {
            return Ok((Region::Pba, o));
        }
        Err(AccessError::Unclaimed {
            bar: bar.index(),
            offset,
        })
    }

    /// A guest read of `bar` at `offset`: the table or the PBA, wherever the access starts.
    pub fn mmio_read(&self, bar: Bar, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        match self.locate(bar, offset) {
            Ok((Region::Table, o)) => self.table_read(o, data),
            Ok((_, o)) => self.pba_read(o, data),
            Err(e) => refuse(data, e),
        }
    }

    /// A guest write to `bar` at `offset`.
    pub fn mmio_write(
        &mut self,
        bar: Bar,
        offset: u64,
        data: &[u8],
    ) -> Result<Effect, AccessError> {
        match self.locate(bar, offset)? {
            (Region::Table, o) => self.table_write(o, data),
            (_, o) => self.pba_write(o, data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: Bar = Bar::new(4);

    /// 8 vectors: the table at 0x2000 of BAR4, the PBA at 0x3000 of BAR4, next pointer 0xA0.
    fn emul() -> MsixEmulation {
        let layout = MsixLayout::new(
            8,
            BarRegion::parse(0x2004).unwrap(),
            BarRegion::parse(0x3004).unwrap(),
            0xA0,
        )
        .unwrap();
        MsixEmulation::new(layout)
    }

    fn read(e: &MsixEmulation, offset: u64, len: usize) -> Result<Vec<u8>, AccessError> {
        let mut data = vec![0; len];
        e.config_read(offset, &mut data).map(|()| data)
    }

    fn table(e: &MsixEmulation, offset: u64, len: usize) -> (Vec<u8>, Result<(), AccessError>) {
        let mut data = vec![0; len];
        let r = e.mmio_read(TABLE, 0x2000 + offset, &mut data);
        (data, r)
    }

    #[test]
    fn capability_reads_by_hand() {
        let e = emul();
        // 7.7.2: ID 0x11, next 0xA0, control 0x0007 (Table Size 7), table 0x2004, PBA 0x3004.
        assert_eq!(read(&e, 0, 4).unwrap(), [0x11, 0xA0, 0x07, 0x00], "dword 0");
        assert_eq!(read(&e, 4, 4).unwrap(), [0x04, 0x20, 0, 0]);
        assert_eq!(read(&e, 8, 4).unwrap(), [0x04, 0x30, 0, 0]);
        assert_eq!(read(&e, 2, 2).unwrap(), [0x07, 0x00]);
        assert_eq!(read(&e, 1, 1).unwrap(), [0xA0]);
    }

    #[test]
    fn capability_refuses_bad_sizes_misalignment_and_range_with_all_ones() {
        let e = emul();
        let region = Region::Capability;
        let mut data = [0u8; 8];
        assert_eq!(
            e.config_read(0, &mut data),
            Err(AccessError::BadSize {
                region,
                offset: 0,
                len: 8
            })
        );
        assert_eq!(data, [0xFF; 8]);
        assert_eq!(
            read(&e, 3, 2),
            Err(AccessError::Misaligned {
                region,
                offset: 3,
                len: 2
            })
        );
        assert_eq!(
            read(&e, 2, 4),
            Err(AccessError::Misaligned {
                region,
                offset: 2,
                len: 4
            })
        );
        assert_eq!(
            read(&e, 12, 4),
            Err(AccessError::OutOfRange {
                region,
                offset: 12,
                len: 4
            })
        );
        assert_eq!(
            read(&e, u64::MAX, 1),
            Err(AccessError::OutOfRange {
                region,
                offset: u64::MAX,
                len: 1
            })
        );
        let mut e = emul();
        assert!(e.config_write(3, &[0xC0, 0]).is_err());
        assert_eq!(e.control().0, 0x0007, "a refused write changes nothing");
    }

    #[test]
    fn only_enable_and_function_mask_take_writes() {
        let mut e = emul();
        // A dword write of all ones over ID, next and control: ID, next, Table Size and the
        // reserved bits 13:11 keep their values; Enable and Function Mask are set.
        let effect = e.config_write(0, &[0xFF; 4]).unwrap();
        assert_eq!(read(&e, 0, 4).unwrap(), [0x11, 0xA0, 0x07, 0xC0]);
        assert_eq!(
            effect,
            Effect::Control {
                before: MsixControl(0x0007),
                after: MsixControl(0xC007)
            }
        );
        // The low control byte is read only: writing it changes nothing.
        assert_eq!(e.config_write(2, &[0x00]).unwrap(), Effect::None);
        // The high byte alone: clear Function Mask, keep Enable.
        e.config_write(3, &[0x80]).unwrap();
        assert_eq!(e.control().0, 0x8007);
        // The Table and PBA registers are read only.
        e.config_write(4, &0xFFFF_FFFFu32.to_le_bytes()).unwrap();
        e.config_write(8, &[0; 4]).unwrap();
        assert_eq!(read(&e, 4, 4).unwrap(), [0x04, 0x20, 0, 0]);
        assert_eq!(read(&e, 8, 4).unwrap(), [0x04, 0x30, 0, 0]);
        // A word write of 0x3800 (reserved bits) over control clears Enable, sets nothing.
        e.config_write(2, &0x3800u16.to_le_bytes()).unwrap();
        assert_eq!(e.control().0, 0x0007);
    }

    #[test]
    fn entries_reset_masked_and_take_dword_and_qword_writes() {
        let mut e = emul();
        // Reset: zero message, Mask Bit set (7.7.2.8).
        assert_eq!(table(&e, 0x38, 8).0, [0, 0, 0, 0, 1, 0, 0, 0]);
        // Entry 3: a qword address write with bits 1:0 set, then data and control in a qword.
        e.mmio_write(TABLE, 0x2030, &0x0000_0001_FEE0_1003u64.to_le_bytes())
            .unwrap();
        assert_eq!(e.msg(3).address, 0x0000_0001_FEE0_1000, "bits 1:0 read 0");
        let eff = e
            .mmio_write(TABLE, 0x2038, &0xFFFF_FFFF_0000_0041u64.to_le_bytes())
            .unwrap();
        // Vector Control all ones: only the Mask Bit is kept (bits 31:1 reserved).
        assert_eq!(table(&e, 0x3C, 4).0, [1, 0, 0, 0]);
        assert_eq!(e.msg(3), Msg::new(0x0000_0001_FEE0_1000, 0x41));
        assert_eq!(
            eff,
            Effect::Entry(EntryChange {
                index: 3,
                was_live: false,
                is_live: false,
                msg_changed: true
            })
        );
        assert_eq!(
            table(&e, 0x30, 8).0,
            [0x00, 0x10, 0xE0, 0xFE, 0x01, 0, 0, 0]
        );
    }

    #[test]
    fn table_refuses_byte_word_misaligned_and_outside_accesses() {
        let mut e = emul();
        let region = Region::Table;
        for (offset, len, err) in [
            (
                0x0C,
                1,
                AccessError::BadSize {
                    region,
                    offset: 0x0C,
                    len: 1,
                },
            ),
            (
                0x0C,
                2,
                AccessError::BadSize {
                    region,
                    offset: 0x0C,
                    len: 2,
                },
            ),
            // A qword at +0xC would straddle entries 0 and 1: misaligned.
            (
                0x0C,
                8,
                AccessError::Misaligned {
                    region,
                    offset: 0x0C,
                    len: 8,
                },
            ),
            (
                0x02,
                4,
                AccessError::Misaligned {
                    region,
                    offset: 2,
                    len: 4,
                },
            ),
        ] {
            let (data, r) = table(&e, offset, len);
            assert_eq!(r, Err(err));
            assert!(data.iter().all(|&b| b == 0xFF));
            let before = e.clone();
            assert_eq!(
                e.mmio_write(TABLE, 0x2000 + offset, &vec![0; len]),
                Err(err)
            );
            assert_eq!(e, before, "a refused write changes nothing");
        }
        // Past the table (8 entries = 0x80 bytes) and not the PBA: not ours.
        let (data, r) = table(&e, 0x80, 4);
        assert_eq!(
            r,
            Err(AccessError::Unclaimed {
                bar: 4,
                offset: 0x2080
            })
        );
        assert_eq!(data, [0xFF; 4]);
        // Another BAR: not ours either.
        assert!(matches!(
            e.mmio_write(Bar::new(0), 0x2000, &[0; 4]),
            Err(AccessError::Unclaimed { bar: 0, .. })
        ));
    }

    #[test]
    fn liveness_follows_enable_function_mask_and_mask_bit() {
        let mut e = emul();
        let unmask = |e: &mut MsixEmulation, i: u64| {
            e.mmio_write(TABLE, 0x2000 + 16 * i + 12, &[0; 4]).unwrap()
        };
        // Unmasked while disabled: not live.
        let eff = unmask(&mut e, 2);
        assert!(matches!(eff, Effect::Entry(c) if !c.was_live && !c.is_live));
        // Enable with Function Mask: still not live.
        e.config_write(3, &[0xC0]).unwrap();
        assert!(!e.is_live(2));
        // Clear Function Mask: entry 2 is live, the others are masked.
        e.config_write(3, &[0x80]).unwrap();
        assert!(e.is_live(2));
        assert!(!(0..8).filter(|&i| i != 2).any(|i| e.is_live(i)));
        let eff = unmask(&mut e, 5);
        assert!(matches!(eff, Effect::Entry(c) if c.index == 5 && !c.was_live && c.is_live));
        // Mask entry 5 again.
        let eff = e.mmio_write(TABLE, 0x2000 + 0x5C, &[1, 0, 0, 0]).unwrap();
        assert!(matches!(eff, Effect::Entry(c) if c.was_live && !c.is_live && !c.msg_changed));
    }

    #[test]
    fn pba_is_read_only_and_reads_set_bits() {
        let mut e = emul();
        assert!(!e.set_pending(5));
        assert!(e.set_pending(5), "a second interrupt coalesces");
        let mut q = [0u8; 8];
        e.mmio_read(TABLE, 0x3000, &mut q).unwrap();
        assert_eq!(q, [0x20, 0, 0, 0, 0, 0, 0, 0]);
        let mut d = [0u8; 4];
        e.mmio_read(TABLE, 0x3004, &mut d).unwrap();
        assert_eq!(d, [0; 4]);
        assert_eq!(
            e.mmio_write(TABLE, 0x3000, &[0; 8]),
            Err(AccessError::ReadOnly { offset: 0 })
        );
        assert!(e.pending(5));
        // The PBA of 8 vectors is one qword: 0x3008 is outside.
        assert!(matches!(
            e.mmio_read(TABLE, 0x3008, &mut d),
            Err(AccessError::Unclaimed { .. })
        ));
        assert!(e.take_pending(5));
        assert!(!e.take_pending(5));
        assert!(!e.set_pending(8), "past the last vector: ignored");
        assert!(!e.pending(8));
    }

    #[test]
    fn layouts_are_checked() {
        let r = |raw| BarRegion::parse(raw).unwrap();
        assert_eq!(
            MsixLayout::new(0, r(0), r(0x1000), 0),
            Err(Error::Layout { vectors: 0 })
        );
        assert_eq!(
            MsixLayout::new(2049, r(0), r(0x9000), 0),
            Err(Error::Layout { vectors: 2049 })
        );
        // 2048 entries end at 0x8000: a PBA at 0x7FF8 overlaps.
        assert_eq!(
            MsixLayout::new(2048, r(0), r(0x7FF8), 0),
            Err(Error::Msix(MsixError::Overlap { bar: Bar::new(0) }))
        );
        let l = MsixLayout::new(2048, r(0), r(0x8000), 0).unwrap();
        assert_eq!((l.table_len(), l.pba_len()), (0x8000, 256));
        assert_eq!(
            MsixLayout::new(65, r(0), r(0x1000), 0).unwrap().pba_len(),
            16
        );
    }
}
