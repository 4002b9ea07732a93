//! The MSI capability (PCI Express Base Specification 7.7.1) as a message store.
//!
//! MSI keeps one address and one data register in configuration space. A function granted
//! `n` vectors (Multiple Message Enable, a power of two up to 32) sends vector `i` by putting
//! `i` in the low `log2(n)` bits of the data (6.1.4.2). So the store takes a power-of-two block
//! from index 0 ([`StoreCaps::block_only`]) and accepts only messages that differ in those low
//! data bits. Per-vector masking and pending bits are optional (7.7.1.7, 7.7.1.8).
//!
//! The flow, as the core drives it:
//!
//! 1. `prepare(i)` for each index of the block masks vector `i` (when masking exists).
//! 2. `enable()` programs Multiple Message Enable and sets the Command register's Interrupt
//!    Disable; MSI Enable itself stays clear, so the function sends nothing yet.
//! 3. The first `write_msg` programs address and data, then sets MSI Enable: the registers
//!    are complete before the function may use them. Later indices only check that their
//!    message fits the block.
//! 4. `disable()` after the last free clears MSI Enable and gives the pin back to INTx.

use crate::cap::{check_fits, CapError, CapId};
use crate::config::{set_intx_disable, ConfigError, ConfigSpace};
use crate::error::{to_core, Reason};
use crate::signal::Signal;
use core::fmt;
use genmsi::{Msg, MsgStore, StoreCaps};

/// Register offsets and bits, each declared once.
mod field {
    /// Capability ID byte; the MSI ID is 0x05 (7.7.1.1).
    pub const ID: u16 = 0x00;
    /// Message Control, a word at +0x02 (7.7.1.2).
    pub const CONTROL: u16 = 0x02;
    /// Message Address, bits 31:2 of the address at +0x04; bits 1:0 are reserved zero (7.7.1.3).
    pub const ADDRESS: u16 = 0x04;
    /// Message Upper Address at +0x08, 64-bit capable functions only (7.7.1.4).
    pub const ADDRESS_HI: u16 = 0x08;
    /// Message Data at +0x08 (32-bit) or +0x0C (64-bit), a word (7.7.1.5).
    pub const DATA_32: u16 = 0x08;
    /// See [`DATA_32`].
    pub const DATA_64: u16 = 0x0C;
    /// Mask Bits at +0x0C (32-bit) or +0x10 (64-bit), with per-vector masking (7.7.1.7).
    pub const MASK_32: u16 = 0x0C;
    /// See [`MASK_32`].
    pub const MASK_64: u16 = 0x10;
    /// Pending Bits, the dword after Mask Bits (7.7.1.8).
    pub const PENDING_AFTER_MASK: u16 = 0x04;
    /// The capability's size: 0x0A, +4 for a 64-bit address, +0x0A for masking (7.7.1).
    pub const SIZE_32: u16 = 0x0A;
    /// See [`SIZE_32`].
    pub const SIZE_64: u16 = 0x0E;
    /// See [`SIZE_32`].
    pub const SIZE_32_MASK: u16 = 0x14;
    /// See [`SIZE_32`].
    pub const SIZE_64_MASK: u16 = 0x18;

    /// Control bit 0: MSI Enable (7.7.1.2).
    pub const ENABLE: u16 = 1 << 0;
    /// Control bits 3:1: Multiple Message Capable, log2 of the vectors requested (7.7.1.2).
    pub const MMC_SHIFT: u16 = 1;
    /// Control bits 6:4: Multiple Message Enable, log2 of the vectors granted (7.7.1.2).
    pub const MME_SHIFT: u16 = 4;
    /// Width mask of the two multiple-message fields.
    pub const MM_MASK: u16 = 0x7;
    /// Control bit 7: 64 bit Address Capable (7.7.1.2).
    pub const ADDR64: u16 = 1 << 7;
    /// Control bit 8: Per-Vector Masking Capable (7.7.1.2).
    pub const PER_VECTOR_MASK: u16 = 1 << 8;
    /// Message Data holds 16 bits (7.7.1.5).
    pub const DATA_MASK: u32 = 0xFFFF;
    /// Address bits 1:0 must be zero (7.7.1.3).
    pub const ADDRESS_ALIGN: u64 = 0x3;
}

/// The largest block a function can request: encoding 101b, 32 vectors (7.7.1.2).
pub const MAX_VECTORS: u32 = 32;

/// Why the MSI capability or store refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// A configuration access failed.
    Config(ConfigError),
    /// The capability does not fit in configuration space.
    Cap(CapError),
    /// The capability at `offset` is not MSI.
    NotMsi {
        /// Its offset.
        offset: u16,
        /// The ID found there.
        id: u8,
    },
    /// Multiple Message Capable holds a reserved encoding (110b or 111b).
    ReservedMultipleMessage {
        /// The field's value.
        value: u8,
    },
    /// The index is outside the function's vectors or the enabled block.
    IndexOutOfRange {
        /// The index.
        index: u32,
        /// The vectors usable now.
        vectors: u32,
    },
    /// The block to enable is not a power of two the function can take.
    BadBlock {
        /// Its size.
        count: u32,
    },
    /// The function has no per-vector masking.
    NoPerVectorMask,
    /// The address is not dword aligned.
    MisalignedAddress {
        /// The address.
        address: u64,
    },
    /// A 32-bit-only function cannot hold an address above 4 GiB.
    AddressTooWide {
        /// The address.
        address: u64,
    },
    /// Message Data holds 16 bits.
    DataTooWide {
        /// The data.
        data: u32,
    },
    /// The message's low data bits do not name its index in the block.
    DataIndexMismatch {
        /// The index.
        index: u32,
        /// The data.
        data: u32,
    },
    /// The message differs from the block's other live messages in more than the low data bits.
    BlockMismatch {
        /// The index.
        index: u32,
        /// The message refused.
        msg: Msg,
    },
}

impl From<ConfigError> for MsiError {
    fn from(e: ConfigError) -> Self {
        MsiError::Config(e)
    }
}

impl Reason for MsiError {
    fn reason(&self) -> &'static str {
        match self {
            MsiError::Config(_) => "MSI: configuration access failed",
            MsiError::Cap(_) => "MSI: capability does not fit",
            MsiError::NotMsi { .. } => "MSI: not an MSI capability",
            MsiError::ReservedMultipleMessage { .. } => "MSI: reserved Multiple Message Capable",
            MsiError::IndexOutOfRange { .. } => "MSI: index outside the block",
            MsiError::BadBlock { .. } => "MSI: block is not a power of two the function takes",
            MsiError::NoPerVectorMask => "MSI: no per-vector masking",
            MsiError::MisalignedAddress { .. } => "MSI: address not dword aligned",
            MsiError::AddressTooWide { .. } => "MSI: 64-bit address on a 32-bit function",
            MsiError::DataTooWide { .. } => "MSI: data wider than 16 bits",
            MsiError::DataIndexMismatch { .. } => "MSI: low data bits do not name the index",
            MsiError::BlockMismatch { .. } => {
                "multi-message MSI: messages must differ only in the low data bits"
            }
        }
    }
}

impl fmt::Display for MsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({self:?})", self.reason())
    }
}

impl core::error::Error for MsiError {}

/// The raw Message Control register (7.7.1.2): accessors decode, setters keep other bits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MsiControl(pub u16);

impl MsiControl {
    /// MSI Enable.
    pub const fn enabled(self) -> bool {
        self.0 & field::ENABLE != 0
    }
    /// Multiple Message Capable, raw (log2 of the vectors requested; 6 and 7 are reserved).
    pub const fn multiple_message_capable(self) -> u8 {
        ((self.0 >> field::MMC_SHIFT) & field::MM_MASK) as u8
    }
    /// Multiple Message Enable, raw (log2 of the vectors granted).
    pub const fn multiple_message_enable(self) -> u8 {
        ((self.0 >> field::MME_SHIFT) & field::MM_MASK) as u8
    }
    /// 64 bit Address Capable.
    pub const fn addr64(self) -> bool {
        self.0 & field::ADDR64 != 0
    }
    /// Per-Vector Masking Capable.
    pub const fn per_vector_mask(self) -> bool {
        self.0 & field::PER_VECTOR_MASK != 0
    }
    /// With MSI Enable set or cleared.
    pub const fn with_enabled(self, on: bool) -> Self {
        match on {
            true => MsiControl(self.0 | field::ENABLE),
            false => MsiControl(self.0 & !field::ENABLE),
        }
    }
    /// With Multiple Message Enable set to `log2` (3 bits).
    pub const fn with_multiple_message_enable(self, log2: u8) -> Self {
        let cleared = self.0 & !(field::MM_MASK << field::MME_SHIFT);
        MsiControl(cleared | ((log2 as u16 & field::MM_MASK) << field::MME_SHIFT))
    }
}

impl fmt::Debug for MsiControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MsiControl({:#06x}{} capable 2^{} enabled 2^{}{}{})",
            self.0,
            if self.enabled() { " Enable" } else { "" },
            self.multiple_message_capable(),
            self.multiple_message_enable(),
            if self.addr64() { " 64-bit" } else { "" },
            if self.per_vector_mask() { " PVM" } else { "" },
        )
    }
}

/// The checked form of what Message Control says about the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiFeatures {
    /// Vectors the function requests (1, 2, 4, ..., 32).
    pub vectors: u32,
    /// It takes a 64-bit address.
    pub addr64: bool,
    /// It has Mask Bits and Pending Bits.
    pub per_vector_mask: bool,
}

impl MsiFeatures {
    /// Decodes the read-only fields; a reserved Multiple Message Capable is an error.
    pub fn parse(control: MsiControl) -> Result<Self, MsiError> {
        let mmc = control.multiple_message_capable();
        if u32::from(mmc) > MAX_VECTORS.trailing_zeros() {
            return Err(MsiError::ReservedMultipleMessage { value: mmc });
        }
        Ok(MsiFeatures {
            vectors: 1 << mmc,
            addr64: control.addr64(),
            per_vector_mask: control.per_vector_mask(),
        })
    }

    /// Writes the read-only fields into `control`, keeping its other bits.
    pub fn emit(&self, control: MsiControl) -> MsiControl {
        let keep = control.0
            & !(field::MM_MASK << field::MMC_SHIFT | field::ADDR64 | field::PER_VECTOR_MASK);
        let mut raw = keep | ((self.vectors.trailing_zeros() as u16) << field::MMC_SHIFT);
        if self.addr64 {
            raw |= field::ADDR64;
        }
        if self.per_vector_mask {
            raw |= field::PER_VECTOR_MASK;
        }
        MsiControl(raw)
    }

    /// The capability's size in bytes.
    pub const fn size(&self) -> u16 {
        match (self.addr64, self.per_vector_mask) {
            (false, false) => field::SIZE_32,
            (true, false) => field::SIZE_64,
            (false, true) => field::SIZE_32_MASK,
            (true, true) => field::SIZE_64_MASK,
        }
    }
}

/// A located, checked MSI capability: where each register is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCap {
    /// The capability's offset in configuration space.
    pub offset: u16,
    /// What the function can do.
    pub features: MsiFeatures,
}

impl MsiCap {
    /// Reads and checks the MSI capability at `offset` (found with [`crate::cap::find`]).
    pub fn read<C: ConfigSpace + ?Sized>(cfg: &C, offset: u16) -> Result<Self, MsiError> {
        check_fits(cfg, offset, field::SIZE_32).map_err(MsiError::Cap)?;
        let id = cfg.read_u8(offset + field::ID)?;
        if CapId::from(id) != CapId::Msi {
            return Err(MsiError::NotMsi { offset, id });
        }
        let features = MsiFeatures::parse(MsiControl(cfg.read_u16(offset + field::CONTROL)?))?;
        check_fits(cfg, offset, features.size()).map_err(MsiError::Cap)?;
        Ok(MsiCap { offset, features })
    }

    /// Message Control's offset.
    pub const fn control(&self) -> u16 {
        self.offset.saturating_add(field::CONTROL)
    }
    /// Message Address's offset.
    pub const fn address(&self) -> u16 {
        self.offset.saturating_add(field::ADDRESS)
    }
    /// Message Upper Address's offset, on 64-bit functions.
    pub const fn address_hi(&self) -> Option<u16> {
        match self.features.addr64 {
            true => Some(self.offset.saturating_add(field::ADDRESS_HI)),
            false => None,
        }
    }
    /// Message Data's offset.
    pub const fn data(&self) -> u16 {
        self.offset.saturating_add(match self.features.addr64 {
            true => field::DATA_64,
            false => field::DATA_32,
        })
    }
    /// Mask Bits' offset, with per-vector masking.
    pub const fn mask_bits(&self) -> Option<u16> {
        match (self.features.per_vector_mask, self.features.addr64) {
            (false, _) => None,
            (true, false) => Some(self.offset.saturating_add(field::MASK_32)),
            (true, true) => Some(self.offset.saturating_add(field::MASK_64)),
        }
    }
    /// Pending Bits' offset, with per-vector masking.
    pub const fn pending_bits(&self) -> Option<u16> {
        match self.mask_bits() {
            Some(m) => Some(m.saturating_add(field::PENDING_AFTER_MASK)),
            None => None,
        }
    }

    /// Reads Message Control.
    pub fn read_control<C: ConfigSpace + ?Sized>(&self, cfg: &C) -> Result<MsiControl, MsiError> {
        Ok(MsiControl(cfg.read_u16(self.control())?))
    }

    /// The address and data registers as one message (the data of vector 0).
    pub fn read_msg<C: ConfigSpace + ?Sized>(&self, cfg: &C) -> Result<Msg, MsiError> {
        let low = u64::from(cfg.read_u32(self.address())?);
        let high = match self.address_hi() {
            Some(at) => u64::from(cfg.read_u32(at)?),
            None => 0,
        };
        let data = u32::from(cfg.read_u16(self.data())?);
        Ok(Msg::new(high << 32 | low, data))
    }

    fn write_msg<C: ConfigSpace + ?Sized>(&self, cfg: &mut C, msg: &Msg) -> Result<(), MsiError> {
        cfg.write_u32(self.address(), msg.address as u32)?;
        if let Some(at) = self.address_hi() {
            cfg.write_u32(at, (msg.address >> 32) as u32)?;
        }
        cfg.write_u16(self.data(), msg.data as u16)?;
        Ok(())
    }

    fn modify_bit<C: ConfigSpace + ?Sized>(
        cfg: &mut C,
        at: u16,
        index: u32,
        set: bool,
    ) -> Result<(), MsiError> {
        let old = cfg.read_u32(at)?;
        let new = match set {
            true => old | 1 << index,
            false => old & !(1 << index),
        };
        if new != old {
            cfg.write_u32(at, new)?;
        }
        Ok(())
    }

    /// Checks a message against what the registers can hold.
    fn check_msg(&self, msg: &Msg) -> Result<(), MsiError> {
        if msg.address & field::ADDRESS_ALIGN != 0 {
            return Err(MsiError::MisalignedAddress {
                address: msg.address,
            });
        }
        if !self.features.addr64 && msg.address >> 32 != 0 {
            return Err(MsiError::AddressTooWide {
                address: msg.address,
            });
        }
        if msg.data & !field::DATA_MASK != 0 {
            return Err(MsiError::DataTooWide { data: msg.data });
        }
        Ok(())
    }

    /// The device side: the function raises vector `index`. A masked vector latches its
    /// pending bit; an enabled one sends the register message with `index` in the low bits.
    pub fn raise<C: ConfigSpace + ?Sized>(
        &self,
        cfg: &mut C,
        index: u32,
    ) -> Result<Signal, MsiError> {
        let control = self.read_control(cfg)?;
        let vectors = 1u32 << control.multiple_message_enable().min(5);
        if !control.enabled() || index >= vectors {
            return Ok(Signal::Disabled);
        }
        if let (Some(mask), Some(pending)) = (self.mask_bits(), self.pending_bits()) {
            if cfg.read_u32(mask)? & 1 << index != 0 {
                Self::modify_bit(cfg, pending, index, true)?;
                return Ok(Signal::Pending);
            }
        }
        let msg = self.read_msg(cfg)?;
        Ok(Signal::Sent(Msg::new(
            msg.address,
            (msg.data & !(vectors - 1)) | index,
        )))
    }

    /// The device side: sends vector `index` if it is pending and no longer masked, clearing
    /// its pending bit.
    pub fn replay<C: ConfigSpace + ?Sized>(
        &self,
        cfg: &mut C,
        index: u32,
    ) -> Result<Option<Msg>, MsiError> {
        let (Some(mask), Some(pending)) = (self.mask_bits(), self.pending_bits()) else {
            return Ok(None);
        };
        if index >= MAX_VECTORS
            || cfg.read_u32(pending)? & 1 << index == 0
            || cfg.read_u32(mask)? & 1 << index != 0
        {
            return Ok(None);
        }
        Self::modify_bit(cfg, pending, index, false)?;
        match self.raise(cfg, index)? {
            Signal::Sent(msg) => Ok(Some(msg)),
            _ => Ok(None),
        }
    }
}

/// The MSI capability of one function as a [`MsgStore`]; its state lives in the function's
/// configuration space.
#[derive(Debug)]
pub struct MsiStore<C> {
    cfg: C,
    cap: MsiCap,
    /// Indices prepared by the core (a block from 0).
    prepared: u32,
    /// Indices whose message is live in the registers.
    live: u32,
    last_error: Option<MsiError>,
}

impl<C: ConfigSpace> MsiStore<C> {
    /// The store of the MSI capability at `offset`. MSI must be disabled.
    pub fn new(cfg: C, offset: u16) -> Result<Self, MsiError> {
        let cap = MsiCap::read(&cfg, offset)?;
        Ok(MsiStore {
            cfg,
            cap,
            prepared: 0,
            live: 0,
            last_error: None,
        })
    }

    /// The capability.
    pub fn cap(&self) -> &MsiCap {
        &self.cap
    }

    /// The configuration space.
    pub fn config(&self) -> &C {
        &self.cfg
    }

    /// The configuration space, writable (the device side in tests).
    pub fn config_mut(&mut self) -> &mut C {
        &mut self.cfg
    }

    /// The full error of the store's last refusal.
    pub fn last_error(&self) -> Option<MsiError> {
        self.last_error
    }

    /// The size of the block the core prepared.
    fn block(&self) -> u32 {
        32 - self.prepared.leading_zeros()
    }

    fn check_index(&self, index: u32, vectors: u32) -> Result<u32, MsiError> {
        match index < vectors {
            true => Ok(1 << index),
            false => Err(MsiError::IndexOutOfRange { index, vectors }),
        }
    }

    fn set_mask(&mut self, index: u32, masked: bool) -> Result<(), MsiError> {
        self.check_index(index, self.cap.features.vectors)?;
        let at = self.cap.mask_bits().ok_or(MsiError::NoPerVectorMask)?;
        MsiCap::modify_bit(&mut self.cfg, at, index, masked)
    }

    fn do_write(&mut self, index: u32, msg: &Msg) -> Result<(), MsiError> {
        let bit = self.check_index(index, self.block())?;
        let others = self.live & !bit;
        if *msg == Msg::ZERO {
            self.live = others;
            if others == 0 {
                self.set_enabled(false)?;
                self.cap.write_msg(&mut self.cfg, msg)?;
            }
            return Ok(());
        }
        self.cap.check_msg(msg)?;
        let low = self.block() - 1;
        if msg.data & low != index {
            return Err(MsiError::DataIndexMismatch {
                index,
                data: msg.data,
            });
        }
        let base = Msg::new(msg.address, msg.data & !low);
        if others != 0 {
            if self.cap.read_msg(&self.cfg)? != base {
                return Err(MsiError::BlockMismatch { index, msg: *msg });
            }
        } else {
            self.cap.write_msg(&mut self.cfg, &base)?;
            // Address and data are complete: only now may the function use them.
            self.set_enabled(true)?;
        }
        self.live = others | bit;
        Ok(())
    }

    fn set_enabled(&mut self, on: bool) -> Result<(), MsiError> {
        let control = self.cap.read_control(&self.cfg)?;
        if control.enabled() != on {
            self.cfg
                .write_u16(self.cap.control(), control.with_enabled(on).0)?;
        }
        Ok(())
    }

    fn do_enable(&mut self) -> Result<(), MsiError> {
        let count = self.block();
        if !count.is_power_of_two() || u64::from(self.prepared) != (1u64 << count) - 1 {
            return Err(MsiError::BadBlock { count });
        }
        let control = self.cap.read_control(&self.cfg)?;
        let control = control
            .with_enabled(false)
            .with_multiple_message_enable(count.trailing_zeros() as u8);
        self.cfg.write_u16(self.cap.control(), control.0)?;
        set_intx_disable(&mut self.cfg, true)?;
        Ok(())
    }

    fn do_disable(&mut self) -> Result<(), MsiError> {
        let control = self.cap.read_control(&self.cfg)?;
        let off = control.with_enabled(false).with_multiple_message_enable(0);
        self.cfg.write_u16(self.cap.control(), off.0)?;
        set_intx_disable(&mut self.cfg, false)?;
        self.live = 0;
        Ok(())
    }
}

impl<C: ConfigSpace + Send + 'static> MsgStore for MsiStore<C> {
    fn name(&self) -> &'static str {
        "msi"
    }

    fn caps(&self) -> StoreCaps {
        let masking = self.cap.features.per_vector_mask;
        StoreCaps {
            max_index: self.cap.features.vectors,
            per_vector_mask: masking,
            alloc_after_enable: false,
            // With Mask Bits, the registers are rewritten with the vector masked.
            write_masked: masking,
            block_only: true,
            any_index: false,
        }
    }

    fn write_msg(&mut self, index: u32, msg: &Msg) -> genmsi::Result<()> {
        self.do_write(index, msg)
            .map_err(|e| to_core(&mut self.last_error, index, e))
    }

    fn mask(&mut self, index: u32) -> genmsi::Result<()> {
        self.set_mask(index, true)
            .map_err(|e| to_core(&mut self.last_error, index, e))
    }

    fn unmask(&mut self, index: u32) -> genmsi::Result<()> {
        self.set_mask(index, false)
            .map_err(|e| to_core(&mut self.last_error, index, e))
    }

    fn prepare(&mut self, index: u32, _cookie: Option<u64>) -> genmsi::Result<()> {
        let prepared = self
            .check_index(index, self.cap.features.vectors)
            .and_then(|bit| {
                if self.cap.features.per_vector_mask {
                    self.set_mask(index, true)?;
                }
                Ok(bit)
            })
            .map_err(|e| to_core(&mut self.last_error, index, e))?;
        self.prepared |= prepared;
        Ok(())
    }

    fn release(&mut self, index: u32) {
        if index < MAX_VECTORS {
            self.prepared &= !(1 << index);
        }
    }

    fn enable(&mut self) -> genmsi::Result<()> {
        self.do_enable()
            .map_err(|e| to_core(&mut self.last_error, 0, e))
    }

    fn disable(&mut self) {
        // Nothing can be undone if the function stops answering; the error stays visible.
        if let Err(e) = self.do_disable() {
            self.last_error = Some(e);
        }
    }

    fn is_pending(&self, index: u32) -> bool {
        match self.cap.pending_bits() {
            Some(at) if index < MAX_VECTORS => self
                .cfg
                .read_u32(at)
                .is_ok_and(|bits| bits & 1 << index != 0),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_bits_by_hand() {
        // 7.7.1.2: 0x0187 = 1_1000_0111b: Enable (bit 0), MMC = 011b (8 vectors, bits 3:1),
        // MME = 000b, 64-bit (bit 7), per-vector masking (bit 8).
        let c = MsiControl(0x0187);
        assert!(c.enabled() && c.addr64() && c.per_vector_mask());
        assert_eq!(c.multiple_message_capable(), 3);
        assert_eq!(c.multiple_message_enable(), 0);
        // Granting 4 vectors puts 010b in bits 6:4: 0x0187 | 0x20.
        assert_eq!(c.with_multiple_message_enable(2).0, 0x01A7);
        assert_eq!(c.with_enabled(false).0, 0x0186);
        let f = MsiFeatures::parse(c).unwrap();
        assert_eq!(
            f,
            MsiFeatures {
                vectors: 8,
                addr64: true,
                per_vector_mask: true
            }
        );
        assert_eq!(f.size(), 0x18);
        // 110b in bits 3:1 is reserved.
        assert_eq!(
            MsiFeatures::parse(MsiControl(0x000C)),
            Err(MsiError::ReservedMultipleMessage { value: 6 })
        );
    }

    #[test]
    fn register_offsets_by_hand() {
        // 7.7.1: a 32-bit capability without masking at 0x50: data at +8, 10 bytes long.
        let f = MsiFeatures::parse(MsiControl(0x0000)).unwrap();
        let cap = MsiCap {
            offset: 0x50,
            features: f,
        };
        assert_eq!(
            (cap.address(), cap.address_hi(), cap.data()),
            (0x54, None, 0x58)
        );
        assert_eq!((cap.mask_bits(), cap.pending_bits()), (None, None));
        // 64-bit with masking at 0x60: upper address +8, data +0xC, mask +0x10, pending +0x14.
        let f = MsiFeatures::parse(MsiControl(0x0180)).unwrap();
        let cap = MsiCap {
            offset: 0x60,
            features: f,
        };
        assert_eq!(cap.address_hi(), Some(0x68));
        assert_eq!(cap.data(), 0x6C);
        assert_eq!(
            (cap.mask_bits(), cap.pending_bits()),
            (Some(0x70), Some(0x74))
        );
        // 32-bit with masking: mask +0xC, pending +0x10, 20 bytes.
        let f = MsiFeatures::parse(MsiControl(0x0100)).unwrap();
        assert_eq!(f.size(), 0x14);
    }

    proptest! {
        #[test]
        fn features_round_trip(raw in any::<u16>()) {
            let c = MsiControl(raw);
            match MsiFeatures::parse(c) {
                Ok(f) => {
                    prop_assert_eq!(f.emit(c), c);
                    prop_assert_eq!(MsiFeatures::parse(f.emit(MsiControl(0))), Ok(f));
                }
                Err(e) => prop_assert_eq!(
                    e,
                    MsiError::ReservedMultipleMessage { value: c.multiple_message_capable() }
                ),
            }
        }

        #[test]
        fn multiple_message_enable_round_trip(raw in any::<u16>(), log2 in 0u8..8) {
            let c = MsiControl(raw).with_multiple_message_enable(log2);
            prop_assert_eq!(c.multiple_message_enable(), log2);
            prop_assert_eq!(c.0 & !0x70, raw & !0x70);
        }
    }
}
