//! The MSI-X capability (PCI Express Base Specification 7.7.2) as a message store, with
//! dynamic allocation: new entries while the others are enabled and delivering.
//!
//! The capability in configuration space only locates things: the table (16 bytes per
//! vector: address, upper address, data, vector control) and the Pending Bit Array each live
//! in a memory BAR, named by a BAR Indicator Register (BIR) and an offset. The flow, as the
//! core drives it:
//!
//! 1. `prepare(i)` masks table entry `i` (its Vector Control Mask Bit, 7.7.2.8).
//! 2. `enable()` on the first allocation sets MSI-X Enable *with* Function Mask in one write,
//!    masks every entry of the table (firmware may have left some unmasked), and disables
//!    INTx. The function is enabled but sends nothing.
//! 3. `write_msg(i)` programs entry `i` while it is masked (the core masks a live entry first,
//!    [`StoreCaps::write_masked`]; the store checks again, because an entry's address and data
//!    must not change while it is unmasked, 6.1.4.6).
//! 4. `unmask(i)` clears the entry's Mask Bit; the first unmask also clears Function Mask:
//!    by then that entry is programmed and every other entry is masked on its own.
//! 5. Later allocations (dynamic MSI-X) do 1, 3 and 4 for one entry: no other entry, and not
//!    the control register, is written.
//! 6. `disable()` after the last free masks the table and clears MSI-X Enable.

use crate::bar::{self, Bar, MaskBit, Mmio, MmioError};
use crate::cap::{check_fits, CapError, CapId};
use crate::config::{set_intx_disable, ConfigError, ConfigSpace};
use crate::error::{to_core, Reason};
use crate::signal::Signal;
use core::fmt;
use genmsi::{Msg, MsgStore, StoreCaps};

/// Register offsets and bits, each declared once.
mod field {
    /// Capability ID byte; the MSI-X ID is 0x11 (7.7.2.1).
    pub const ID: u16 = 0x00;
    /// Message Control, a word at +0x02 (7.7.2.2).
    pub const CONTROL: u16 = 0x02;
    /// Table Offset/Table BIR, a dword at +0x04 (7.7.2.3).
    pub const TABLE: u16 = 0x04;
    /// PBA Offset/PBA BIR, a dword at +0x08 (7.7.2.4).
    pub const PBA: u16 = 0x08;
    /// The capability is 12 bytes (7.7.2).
    pub const CAP_SIZE: u16 = 0x0C;

    /// Control bits 10:0: Table Size, encoded as N - 1 (7.7.2.2).
    pub const TABLE_SIZE: u16 = 0x07FF;
    /// Control bit 14: Function Mask (7.7.2.2).
    pub const FUNCTION_MASK: u16 = 1 << 14;
    /// Control bit 15: MSI-X Enable (7.7.2.2).
    pub const ENABLE: u16 = 1 << 15;

    /// Table/PBA register bits 2:0: BIR (7.7.2.3, 7.7.2.4).
    pub const BIR: u32 = 0x7;
    /// Table/PBA register bits 31:3: the offset in the BAR, QWORD aligned (7.7.2.3, 7.7.2.4).
    pub const OFFSET: u32 = !BIR;

    /// A table entry is 16 bytes: Message Address at +0, Upper Address at +4, Data at +8,
    /// Vector Control at +0xC (7.7.2.5 to 7.7.2.8).
    pub const ENTRY_SIZE: u64 = 16;
    /// Vector Control's offset in an entry (7.7.2.8).
    pub const VECTOR_CONTROL: u64 = 0x0C;
    /// Vector Control bit 0: Mask Bit; set after reset (7.7.2.8).
    pub const MASK_BIT: u32 = 1 << 0;
    /// Message Address bits 1:0 must be zero (7.7.2.5).
    pub const ADDRESS_ALIGN: u64 = 0x3;
    /// The PBA holds one bit per vector, in QWORDs (7.7.2.9).
    pub const PBA_BITS_PER_QWORD: u32 = 64;
}

/// Why the MSI-X capability or store refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixError {
    /// A configuration access failed.
    Config(ConfigError),
    /// A BAR access failed.
    Mmio(MmioError),
    /// The capability does not fit in configuration space.
    Cap(CapError),
    /// The capability at `offset` is not MSI-X.
    NotMsix {
        /// Its offset.
        offset: u16,
        /// The ID found there.
        id: u8,
    },
    /// A BIR names no BAR (6 and 7 are reserved).
    ReservedBir {
        /// The BIR value.
        bir: u8,
    },
    /// The table or PBA does not fit in its BAR (or the BAR is not implemented).
    RegionOutsideBar {
        /// The BAR.
        bar: Bar,
        /// The region's offset.
        offset: u32,
        /// Its length.
        len: u64,
    },
    /// The table and the PBA overlap.
    Overlap {
        /// The BAR they share.
        bar: Bar,
    },
    /// The index is beyond the table.
    IndexOutOfRange {
        /// The index.
        index: u32,
        /// The table size.
        size: u32,
    },
    /// The address is not dword aligned.
    MisalignedAddress {
        /// The address.
        address: u64,
    },
}

impl From<ConfigError> for MsixError {
    fn from(e: ConfigError) -> Self {
        MsixError::Config(e)
    }
}

impl From<MmioError> for MsixError {
    fn from(e: MmioError) -> Self {
        MsixError::Mmio(e)
    }
}

impl Reason for MsixError {
    fn reason(&self) -> &'static str {
        match self {
            MsixError::Config(_) => "MSI-X: configuration access failed",
            MsixError::Mmio(_) => "MSI-X: BAR access failed",
            MsixError::Cap(_) => "MSI-X: capability does not fit",
            MsixError::NotMsix { .. } => "MSI-X: not an MSI-X capability",
            MsixError::ReservedBir { .. } => "MSI-X: reserved BIR",
            MsixError::RegionOutsideBar { .. } => "MSI-X: table or PBA outside its BAR",
            MsixError::Overlap { .. } => "MSI-X: table and PBA overlap",
            MsixError::IndexOutOfRange { .. } => "MSI-X: index beyond the table",
            MsixError::MisalignedAddress { .. } => "MSI-X: address not dword aligned",
        }
    }
}

impl fmt::Display for MsixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({self:?})", self.reason())
    }
}

impl core::error::Error for MsixError {}

/// The raw Message Control register (7.7.2.2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MsixControl(pub u16);

impl MsixControl {
    /// The number of table entries (Table Size + 1).
    pub const fn table_size(self) -> u32 {
        (self.0 & field::TABLE_SIZE) as u32 + 1
    }
    /// Function Mask.
    pub const fn function_mask(self) -> bool {
        self.0 & field::FUNCTION_MASK != 0
    }
    /// MSI-X Enable.
    pub const fn enabled(self) -> bool {
        self.0 & field::ENABLE != 0
    }
    /// With Function Mask set or cleared.
    pub const fn with_function_mask(self, on: bool) -> Self {
        MsixControl(set_bits(self.0, field::FUNCTION_MASK, on))
    }
    /// With MSI-X Enable set or cleared.
    pub const fn with_enabled(self, on: bool) -> Self {
        MsixControl(set_bits(self.0, field::ENABLE, on))
    }
}

const fn set_bits(raw: u16, bits: u16, on: bool) -> u16 {
    match on {
        true => raw | bits,
        false => raw & !bits,
    }
}

impl fmt::Debug for MsixControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MsixControl({:#06x} size {}{}{})",
            self.0,
            self.table_size(),
            if self.enabled() { " Enable" } else { "" },
            if self.function_mask() {
                " FunctionMask"
            } else {
                ""
            },
        )
    }
}

/// Where the table or the PBA lives: a BAR and a QWORD-aligned offset (7.7.2.3, 7.7.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// The BAR.
    pub bar: Bar,
    /// The offset in the BAR (bits 2:0 are zero).
    pub offset: u32,
}

impl Region {
    /// Decodes a Table or PBA register; BIR values 6 and 7 are reserved.
    pub fn parse(raw: u32) -> Result<Self, MsixError> {
        let bir = (raw & field::BIR) as u8;
        let bar = Bar::try_new(bir).map_err(|bir| MsixError::ReservedBir { bir })?;
        Ok(Region {
            bar,
            offset: raw & field::OFFSET,
        })
    }

    /// Encodes the register.
    pub fn emit(&self) -> u32 {
        (self.offset & field::OFFSET) | u32::from(self.bar.index())
    }
}

/// One table entry as read (7.7.2.5 to 7.7.2.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixEntry {
    /// Address and data.
    pub msg: Msg,
    /// Vector Control, raw: bit 0 is the Mask Bit; the other bits are kept as read.
    pub vector_control: u32,
}

impl MsixEntry {
    /// Decodes the entry's four dwords.
    pub fn from_dwords(dwords: [u32; 4]) -> Self {
        MsixEntry {
            msg: bar::msg_of(&dwords),
            vector_control: dwords[3],
        }
    }

    /// Encodes the entry's four dwords.
    pub fn to_dwords(&self) -> [u32; 4] {
        [
            self.msg.address as u32,
            (self.msg.address >> 32) as u32,
            self.msg.data,
            self.vector_control,
        ]
    }

    /// The Mask Bit.
    pub fn masked(&self) -> bool {
        self.vector_control & field::MASK_BIT != 0
    }
}

/// A located, checked MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCap {
    /// The capability's offset in configuration space.
    pub offset: u16,
    /// Table entries.
    pub table_size: u32,
    /// Where the table is.
    pub table: Region,
    /// Where the Pending Bit Array is.
    pub pba: Region,
}

impl MsixCap {
    /// Reads and checks the MSI-X capability at `offset`: both regions must lie inside
    /// implemented BARs and must not overlap.
    pub fn read<C: ConfigSpace + ?Sized, M: Mmio + ?Sized>(
        cfg: &C,
        bars: &M,
        offset: u16,
    ) -> Result<Self, MsixError> {
        check_fits(cfg, offset, field::CAP_SIZE).map_err(MsixError::Cap)?;
        let id = cfg.read_u8(offset + field::ID)?;
        if CapId::from(id) != CapId::MsiX {
            return Err(MsixError::NotMsix { offset, id });
        }
        let control = MsixControl(cfg.read_u16(offset + field::CONTROL)?);
        let cap = MsixCap {
            offset,
            table_size: control.table_size(),
            table: Region::parse(cfg.read_u32(offset + field::TABLE)?)?,
            pba: Region::parse(cfg.read_u32(offset + field::PBA)?)?,
        };
        let table_end = cap.check_region(bars, cap.table, cap.table_len())?;
        let pba_end = cap.check_region(bars, cap.pba, cap.pba_len())?;
        let table_start = u64::from(cap.table.offset);
        let pba_start = u64::from(cap.pba.offset);
        if cap.table.bar == cap.pba.bar && table_start < pba_end && pba_start < table_end {
            return Err(MsixError::Overlap { bar: cap.table.bar });
        }
        Ok(cap)
    }

    fn check_region<M: Mmio + ?Sized>(
        &self,
        bars: &M,
        r: Region,
        len: u64,
    ) -> Result<u64, MsixError> {
        let end = u64::from(r.offset) + len;
        match bars.bar_len(r.bar) {
            Some(bar_len) if end <= bar_len => Ok(end),
            _ => Err(MsixError::RegionOutsideBar {
                bar: r.bar,
                offset: r.offset,
                len,
            }),
        }
    }

    /// The table's length in bytes.
    pub fn table_len(&self) -> u64 {
        u64::from(self.table_size) * field::ENTRY_SIZE
    }

    /// The PBA's length in bytes: one bit per entry, rounded up to QWORDs (7.7.2.9).
    pub fn pba_len(&self) -> u64 {
        u64::from(self.table_size.div_ceil(field::PBA_BITS_PER_QWORD)) * 8
    }

    /// Message Control's offset.
    pub const fn control(&self) -> u16 {
        self.offset.saturating_add(field::CONTROL)
    }

    /// Reads Message Control.
    pub fn read_control<C: ConfigSpace + ?Sized>(&self, cfg: &C) -> Result<MsixControl, MsixError> {
        Ok(MsixControl(cfg.read_u16(self.control())?))
    }

    fn check_index(&self, index: u32) -> Result<(), MsixError> {
        match index < self.table_size {
            true => Ok(()),
            false => Err(MsixError::IndexOutOfRange {
                index,
                size: self.table_size,
            }),
        }
    }

    /// Entry `index`'s offset in the table's BAR.
    pub fn entry_offset(&self, index: u32) -> Result<u64, MsixError> {
        self.check_index(index)?;
        Ok(u64::from(self.table.offset) + u64::from(index) * field::ENTRY_SIZE)
    }

    /// The dword of the PBA holding `index`'s bit, and the bit.
    pub fn pba_bit(&self, index: u32) -> Result<(u64, u32), MsixError> {
        self.check_index(index)?;
        Ok((
            u64::from(self.pba.offset) + u64::from(index / 32) * 4,
            1 << (index % 32),
        ))
    }

    /// Reads entry `index`.
    pub fn read_entry<M: Mmio + ?Sized>(
        &self,
        bars: &M,
        index: u32,
    ) -> Result<MsixEntry, MsixError> {
        let at = self.entry_offset(index)?;
        Ok(MsixEntry::from_dwords(bar::read_entry(
            bars,
            self.table.bar,
            at,
        )?))
    }

    /// Reads `index`'s pending bit.
    pub fn pending<M: Mmio + ?Sized>(&self, bars: &M, index: u32) -> Result<bool, MsixError> {
        let (at, bit) = self.pba_bit(index)?;
        Ok(bars.read_u32(self.pba.bar, at)? & bit != 0)
    }

    fn mask_bit(&self, index: u32) -> Result<MaskBit, MsixError> {
        Ok(MaskBit {
            bar: self.table.bar,
            at: self.entry_offset(index)? + field::VECTOR_CONTROL,
            bit: field::MASK_BIT,
            set_masks: true,
        })
    }

    fn set_entry_mask<M: Mmio + ?Sized>(
        &self,
        bars: &mut M,
        index: u32,
        masked: bool,
    ) -> Result<(), MsixError> {
        Ok(self.mask_bit(index)?.set(bars, masked)?)
    }

    /// The device side: the function raises vector `index`. With MSI-X disabled nothing is
    /// sent; with the vector or the function masked the PBA bit latches; otherwise the
    /// entry's message is sent.
    pub fn raise<C: ConfigSpace + ?Sized, M: Mmio + ?Sized>(
        &self,
        cfg: &C,
        bars: &mut M,
        index: u32,
    ) -> Result<Signal, MsixError> {
        let control = self.read_control(cfg)?;
        if !control.enabled() {
            return Ok(Signal::Disabled);
        }
        let entry = self.read_entry(bars, index)?;
        if entry.masked() || control.function_mask() {
            let (at, bit) = self.pba_bit(index)?;
            bar::modify_u32(bars, self.pba.bar, at, 0, bit)?;
            return Ok(Signal::Pending);
        }
        Ok(Signal::Sent(entry.msg))
    }

    /// The device side: sends vector `index` if its PBA bit is set and it is no longer
    /// masked, clearing the bit.
    pub fn replay<C: ConfigSpace + ?Sized, M: Mmio + ?Sized>(
        &self,
        cfg: &C,
        bars: &mut M,
        index: u32,
    ) -> Result<Option<Msg>, MsixError> {
        if !self.pending(bars, index)? {
            return Ok(None);
        }
        let control = self.read_control(cfg)?;
        let entry = self.read_entry(bars, index)?;
        if !control.enabled() || control.function_mask() || entry.masked() {
            return Ok(None);
        }
        let (at, bit) = self.pba_bit(index)?;
        bar::modify_u32(bars, self.pba.bar, at, bit, 0)?;
        Ok(Some(entry.msg))
    }
}

/// The MSI-X capability of one function as a [`MsgStore`]; the table and PBA live in its
/// BARs, the control register in its configuration space.
#[derive(Debug)]
pub struct MsixStore<C, M> {
    cfg: C,
    bars: M,
    cap: MsixCap,
    dynamic: bool,
    last_error: Option<MsixError>,
}

impl<C: ConfigSpace, M: Mmio> MsixStore<C, M> {
    /// The store of the MSI-X capability at `offset`, with dynamic allocation.
    pub fn new(cfg: C, bars: M, offset: u16) -> Result<Self, MsixError> {
        let cap = MsixCap::read(&cfg, &bars, offset)?;
        Ok(MsixStore {
            cfg,
            bars,
            cap,
            dynamic: true,
            last_error: None,
        })
    }

    /// Refuses entries after enable (a function known to mishandle table writes while
    /// enabled): every allocation then happens with MSI-X disabled.
    pub fn without_dynamic(mut self) -> Self {
        self.dynamic = false;
        self
    }

    /// True when entries can be allocated and freed while others deliver.
    pub fn dynamic(&self) -> bool {
        self.dynamic
    }

    /// The capability.
    pub fn cap(&self) -> &MsixCap {
        &self.cap
    }

    /// The configuration space.
    pub fn config(&self) -> &C {
        &self.cfg
    }

    /// The BARs.
    pub fn bars(&self) -> &M {
        &self.bars
    }

    /// Configuration space and BARs, writable (the device side in tests).
    pub fn parts_mut(&mut self) -> (&mut C, &mut M) {
        (&mut self.cfg, &mut self.bars)
    }

    /// The full error of the store's last refusal.
    pub fn last_error(&self) -> Option<MsixError> {
        self.last_error
    }

    fn do_write(&mut self, index: u32, msg: &Msg) -> Result<(), MsixError> {
        let at = self.cap.entry_offset(index)?;
        if msg.address & field::ADDRESS_ALIGN != 0 {
            return Err(MsixError::MisalignedAddress {
                address: msg.address,
            });
        }
        let control = self.cap.read_control(&self.cfg)?;
        // An unmasked live entry must not change under the function's feet (6.1.4.6).
        let live = control.enabled() && !control.function_mask();
        let mask = self.cap.mask_bit(index)?;
        Ok(bar::write_msg_masked(&mut self.bars, at, msg, mask, live)?)
    }

    fn do_unmask(&mut self, index: u32) -> Result<(), MsixError> {
        self.cap.set_entry_mask(&mut self.bars, index, false)?;
        let control = self.cap.read_control(&self.cfg)?;
        if control.enabled() && control.function_mask() {
            // The set-up window ends with the first live vector (see the module docs).
            self.cfg
                .write_u16(self.cap.control(), control.with_function_mask(false).0)?;
        }
        Ok(())
    }

    fn mask_all(&mut self) -> Result<(), MsixError> {
        for index in 0..self.cap.table_size {
            self.cap.set_entry_mask(&mut self.bars, index, true)?;
        }
        Ok(())
    }

    fn do_enable(&mut self) -> Result<(), MsixError> {
        let control = self.cap.read_control(&self.cfg)?;
        let on = control.with_enabled(true).with_function_mask(true);
        self.cfg.write_u16(self.cap.control(), on.0)?;
        let rest = self
            .mask_all()
            .and_then(|()| Ok(set_intx_disable(&mut self.cfg, true)?));
        if rest.is_err() {
            // Leave the function as it was: MSI-X off, so that a fallback to MSI is allowed.
            let _ = self.cfg.write_u16(self.cap.control(), control.0);
        }
        rest
    }

    fn do_disable(&mut self) -> Result<(), MsixError> {
        let masked = self.mask_all();
        // Enable goes off even if an entry could not be masked: a disabled function sends
        // nothing, whatever its table says.
        let control = self.cap.read_control(&self.cfg)?;
        let off = control.with_enabled(false).with_function_mask(false);
        self.cfg.write_u16(self.cap.control(), off.0)?;
        set_intx_disable(&mut self.cfg, false)?;
        masked
    }
}

impl<C, M> MsgStore for MsixStore<C, M>
where
    C: ConfigSpace + Send + 'static,
    M: Mmio + Send + 'static,
{
    fn name(&self) -> &'static str {
        "msix"
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps {
            max_index: self.cap.table_size,
            per_vector_mask: true,
            alloc_after_enable: self.dynamic,
            write_masked: true,
            block_only: false,
            any_index: self.dynamic,
        }
    }

    fn write_msg(&mut self, index: u32, msg: &Msg) -> genmsi::Result<()> {
        self.do_write(index, msg)
            .map_err(|e| to_core(&mut self.last_error, index, e))
    }

    fn mask(&mut self, index: u32) -> genmsi::Result<()> {
        self.cap
            .set_entry_mask(&mut self.bars, index, true)
            .map_err(|e| to_core(&mut self.last_error, index, e))
    }

    fn unmask(&mut self, index: u32) -> genmsi::Result<()> {
        self.do_unmask(index)
            .map_err(|e| to_core(&mut self.last_error, index, e))
    }

    fn prepare(&mut self, index: u32, _cookie: Option<u64>) -> genmsi::Result<()> {
        self.cap
            .set_entry_mask(&mut self.bars, index, true)
            .map_err(|e| to_core(&mut self.last_error, index, e))
    }

    fn release(&mut self, index: u32) {
        if let Err(e) = self.cap.set_entry_mask(&mut self.bars, index, true) {
            self.last_error = Some(e);
        }
    }

    fn enable(&mut self) -> genmsi::Result<()> {
        self.do_enable()
            .map_err(|e| to_core(&mut self.last_error, 0, e))
    }

    fn disable(&mut self) {
        if let Err(e) = self.do_disable() {
            self.last_error = Some(e);
        }
    }

    fn is_pending(&self, index: u32) -> bool {
        self.cap.pending(&self.bars, index).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_bits_by_hand() {
        // 7.7.2.2: 0xC00F: Enable (bit 15), Function Mask (bit 14), Table Size 0xF (16).
        let c = MsixControl(0xC00F);
        assert!(c.enabled() && c.function_mask());
        assert_eq!(c.table_size(), 16);
        assert_eq!(c.with_function_mask(false).0, 0x800F);
        assert_eq!(c.with_enabled(false).0, 0x400F);
        // Table Size 0x7FF: the largest table, 2,048 entries.
        assert_eq!(MsixControl(0x07FF).table_size(), 2048);
    }

    #[test]
    fn regions_by_hand() {
        // 7.7.2.3: 0x0000_2003 = offset 0x2000 in BAR3.
        assert_eq!(
            Region::parse(0x0000_2003),
            Ok(Region {
                bar: Bar::new(3),
                offset: 0x2000
            })
        );
        assert_eq!(
            Region::parse(0x0000_1006),
            Err(MsixError::ReservedBir { bir: 6 })
        );
    }

    #[test]
    fn entry_by_hand() {
        // 7.7.2.5 to 7.7.2.8: address 0xFEE0_1000, upper 0, data 0x41, masked.
        let bytes: [u8; 16] = [
            0x00, 0x10, 0xE0, 0xFE, 0x00, 0x00, 0x00, 0x00, 0x41, 0x00, 0x00, 0x00, 0x01, 0x00,
            0x00, 0x00,
        ];
        let dwords = core::array::from_fn(|i| {
            u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap())
        });
        let e = MsixEntry::from_dwords(dwords);
        assert_eq!(e.msg, Msg::new(0xFEE0_1000, 0x41));
        assert!(e.masked());
    }

    proptest! {
        #[test]
        fn region_round_trip(raw in any::<u32>()) {
            match Region::parse(raw) {
                Ok(r) => {
                    prop_assert_eq!(r.emit(), raw);
                    prop_assert_eq!(Region::parse(r.emit()), Ok(r));
                }
                Err(e) => prop_assert_eq!(e, MsixError::ReservedBir { bir: (raw & 7) as u8 }),
            }
        }

        #[test]
        fn entry_round_trip(dwords in any::<[u32; 4]>()) {
            let e = MsixEntry::from_dwords(dwords);
            prop_assert_eq!(e.to_dwords(), dwords);
            prop_assert_eq!(e.masked(), dwords[3] & 1 == 1);
        }

        #[test]
        fn control_setters_touch_one_bit(raw in any::<u16>(), on in any::<bool>()) {
            let c = MsixControl(raw);
            prop_assert_eq!(c.with_enabled(on).0 & !0x8000, raw & !0x8000);
            prop_assert_eq!(c.with_enabled(on).enabled(), on);
            prop_assert_eq!(c.with_function_mask(on).0 & !0x4000, raw & !0x4000);
            prop_assert_eq!(c.with_function_mask(on).function_mask(), on);
        }
    }
}
