//! The IO-APIC as a message store: each redirection table entry holds one pin's message
//! (82093AA IO-APIC datasheet 3.2.4; remapped format: VT-d 5.1.5.1).

use crate::apic::{DeliveryMode, DestMode, Trigger, Vector};
use crate::msi::MsiFormat;
use alloc::vec::Vec;
use genmsi::{Error, Msg, MsgStore, Result, StoreCaps};

/// Indirect register access (IOREGSEL at +0x00, IOWIN at +0x10 on real hardware).
pub trait IoApicRegs: Send {
    /// Reads indirect register `reg`.
    fn read(&mut self, reg: u8) -> u32;
    /// Writes indirect register `reg`.
    fn write(&mut self, reg: u8, value: u32);
}

mod field {
    //! Register numbers and RTE bits: 82093AA 3.2 (registers), 3.2.4 (RTE); VT-d 5.1.5.1.

    /// Version register: bits 23:16 hold the highest redirection entry number.
    pub const VERSION: u8 = 0x01;
    /// RTE n occupies registers 0x10 + 2n (bits 31:0) and 0x11 + 2n (bits 63:32).
    pub const RTE_BASE: u8 = 0x10;
    /// Bits 7:0: vector.
    pub const VECTOR: u64 = 0xFF;
    /// Bits 10:8: delivery mode.
    pub const DELIVERY_SHIFT: u32 = 8;
    /// Bit 11: destination mode (compatibility) / interrupt index bit 15 (remapped).
    pub const DM_OR_INDEX15: u64 = 1 << 11;
    /// Bit 12: delivery status (read only).
    pub const DELIVERY_STATUS: u64 = 1 << 12;
    /// Bit 13: polarity (1 = active low).
    pub const POLARITY_LOW: u64 = 1 << 13;
    /// Bit 14: remote IRR (read only).
    pub const REMOTE_IRR: u64 = 1 << 14;
    /// Bit 15: trigger mode (1 = level).
    pub const TRIGGER_LEVEL: u64 = 1 << 15;
    /// Bit 16: mask.
    pub const MASK: u64 = 1 << 16;
    /// Bit 48: interrupt format (1 = remappable), VT-d 5.1.5.1.
    pub const FORMAT: u64 = 1 << 48;
    /// Bits 63:49: interrupt index bits 14:0 (remapped).
    pub const INDEX_SHIFT: u32 = 49;
    /// Bits 63:56: destination (compatibility).
    pub const DEST_SHIFT: u32 = 56;
}

/// The most pins an IO-APIC's 8-bit register select can address.
pub const MAX_PINS: u32 = 120;

/// How a pin is wired (from the firmware's interrupt source overrides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinConfig {
    /// Trigger mode.
    pub trigger: Trigger,
    /// Active low.
    pub active_low: bool,
}

impl PinConfig {
    /// ISA default: edge, active high.
    pub const EDGE_HIGH: PinConfig = PinConfig {
        trigger: Trigger::Edge,
        active_low: false,
    };
    /// PCI INTx: level, active low.
    pub const LEVEL_LOW: PinConfig = PinConfig {
        trigger: Trigger::Level,
        active_low: true,
    };
}

/// A decoded redirection table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rte {
    /// Compatibility format.
    Compat {
        /// Vector.
        vector: Vector,
        /// Delivery mode.
        delivery: DeliveryMode,
        /// Destination mode.
        dest_mode: DestMode,
        /// Destination APIC id.
        dest: u8,
        /// Pin wiring.
        pin: PinConfig,
        /// Masked.
        masked: bool,
    },
    /// Remapped format: the pin names an IRTE.
    Remapped {
        /// The IRTE index.
        index: u16,
        /// The vector (the IO-APIC matches it against EOIs).
        vector: Vector,
        /// Pin wiring.
        pin: PinConfig,
        /// Masked.
        masked: bool,
    },
}

impl Rte {
    /// Encodes the entry (read-only bits 12 and 14 are 0).
    pub fn encode(&self) -> u64 {
        let wiring = |pin: &PinConfig, masked: bool| {
            let mut v = 0;
            if pin.active_low {
                v |= field::POLARITY_LOW;
            }
            if pin.trigger.is_level() {
                v |= field::TRIGGER_LEVEL;
            }
            if masked {
                v |= field::MASK;
            }
            v
        };
        match self {
            Rte::Compat {
                vector,
                delivery,
                dest_mode,
                dest,
                pin,
                masked,
            } => {
                let mut v = u64::from(vector.0)
                    | u64::from(delivery.bits()) << field::DELIVERY_SHIFT
                    | u64::from(*dest) << field::DEST_SHIFT
                    | wiring(pin, *masked);
                if dest_mode.is_logical() {
                    v |= field::DM_OR_INDEX15;
                }
                v
            }
            Rte::Remapped {
                index,
                vector,
                pin,
                masked,
            } => {
                let mut v = u64::from(vector.0)
                    | field::FORMAT
                    | u64::from(index & 0x7FFF) << field::INDEX_SHIFT
                    | wiring(pin, *masked);
                if index & 0x8000 != 0 {
                    v |= field::DM_OR_INDEX15;
                }
                v
            }
        }
    }

    /// Decodes an entry (read-only status bits are ignored).
    pub fn decode(v: u64) -> Rte {
        let pin = PinConfig {
            trigger: Trigger::from_bit(v & field::TRIGGER_LEVEL != 0),
            active_low: v & field::POLARITY_LOW != 0,
        };
        let masked = v & field::MASK != 0;
        let vector = Vector((v & field::VECTOR) as u8);
        if v & field::FORMAT != 0 {
            let hi = if v & field::DM_OR_INDEX15 != 0 {
                0x8000
            } else {
                0
            };
            Rte::Remapped {
                index: (v >> field::INDEX_SHIFT) as u16 & 0x7FFF | hi,
                vector,
                pin,
                masked,
            }
        } else {
            Rte::Compat {
                vector,
                delivery: DeliveryMode::from_bits((v >> field::DELIVERY_SHIFT) as u8),
                dest_mode: DestMode::from_bit(v & field::DM_OR_INDEX15 != 0),
                dest: (v >> field::DEST_SHIFT) as u8,
                pin,
                masked,
            }
        }
    }

    /// The hardware side: the message the IO-APIC sends when the pin fires. Compatibility
    /// entries become a compatibility-format MSI (SDM Vol. 3A 11.11) with the pin's trigger mode
    /// and the level asserted; remapped entries become a remappable-format request naming the
    /// entry's index, SHV clear, with the vector in the data (VT-d 5.1.5.1).
    pub fn message(&self) -> Msg {
        match *self {
            Rte::Compat {
                vector,
                delivery,
                dest_mode,
                dest,
                pin,
                ..
            } => crate::msi::CompatMsi {
                dest: u32::from(dest),
                redirection_hint: false,
                dest_mode,
                vector,
                delivery,
                trigger: pin.trigger,
                assert: true,
            }
            .emit(),
            Rte::Remapped { index, vector, .. } => {
                let mut m = crate::msi::RemappableMsi {
                    handle: index,
                    subhandle: None,
                }
                .emit();
                m.data = u32::from(vector.0);
                m
            }
        }
    }

    /// The read-only bits (delivery status, remote IRR) of a raw entry: (delivery status, remote IRR).
    pub fn status(v: u64) -> (bool, bool) {
        (v & field::DELIVERY_STATUS != 0, v & field::REMOTE_IRR != 0)
    }
}

/// An IO-APIC's redirection table as a [`MsgStore`]: index = pin.
#[derive(Debug)]
pub struct IoApicStore<R: IoApicRegs> {
    regs: R,
    pins: Vec<PinConfig>,
}

impl<R: IoApicRegs> IoApicStore<R> {
    /// A store over `regs`; the number of pins comes from the version register. Every pin starts
    /// masked and edge/active-high until [`IoApicStore::set_pin`] says otherwise.
    pub fn new(mut regs: R) -> Self {
        // The version register can claim up to 256 entries, but the 8-bit register select
        // reaches RTE 119 at most (0x10 + 2 * 119 + 1 = 0xFF).
        let max = ((regs.read(field::VERSION) >> 16) & 0xFF).min(MAX_PINS - 1);
        let pins = alloc::vec![PinConfig::EDGE_HIGH; max as usize + 1];
        let mut s = IoApicStore { regs, pins };
        for pin in 0..=max {
            s.write_rte(pin, field::MASK);
        }
        s
    }

    /// Records how `pin` is wired (before it is allocated).
    pub fn set_pin(&mut self, pin: u32, config: PinConfig) -> Result<()> {
        let limit = self.pins.len() as u32;
        let p = self
            .pins
            .get_mut(pin as usize)
            .ok_or(Error::IndexOutOfRange { index: pin, limit })?;
        *p = config;
        Ok(())
    }

    /// The raw entry of `pin`, or [`Error::IndexOutOfRange`] past the IO-APIC's pins.
    pub fn read_rte(&mut self, pin: u32) -> Result<u64> {
        let limit = self.pins.len() as u32;
        if pin >= limit {
            return Err(Error::IndexOutOfRange { index: pin, limit });
        }
        let reg = field::RTE_BASE + 2 * pin as u8;
        Ok(u64::from(self.regs.read(reg)) | u64::from(self.regs.read(reg + 1)) << 32)
    }

    /// Writes an entry: the high half first, so the low half (with mask and vector) completes
    /// it; a masked pin never fires in between.
    fn write_rte(&mut self, pin: u32, v: u64) {
        let reg = field::RTE_BASE + 2 * pin as u8;
        self.regs.write(reg + 1, (v >> 32) as u32);
        self.regs.write(reg, v as u32);
    }

    /// The registers.
    pub fn regs(&mut self) -> &mut R {
        &mut self.regs
    }

    fn pin(&self, index: u32) -> Result<PinConfig> {
        self.pins.get(index as usize).copied().ok_or(Error::Store {
            index,
            reason: "no such IO-APIC pin",
        })
    }

    fn set_mask(&mut self, pin: u32, masked: bool) -> Result<()> {
        let v = self.read_rte(pin)?;
        let v = if masked {
            v | field::MASK
        } else {
            v & !field::MASK
        };
        self.write_rte(pin, v & !(field::DELIVERY_STATUS | field::REMOTE_IRR));
        Ok(())
    }
}

impl<R: IoApicRegs + 'static> MsgStore for IoApicStore<R> {
    fn name(&self) -> &'static str {
        "ioapic"
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps {
            max_index: self.pins.len() as u32,
            per_vector_mask: true,
            alloc_after_enable: true,
            write_masked: true,
            block_only: false,
            any_index: false,
        }
    }

    fn write_msg(&mut self, index: u32, msg: &Msg) -> Result<()> {
        let pin = self.pin(index)?;
        let masked = self.read_rte(index)? & field::MASK != 0;
        let bad = |reason| Error::Store { index, reason };
        let rte = if *msg == Msg::ZERO {
            field::MASK
        } else {
            match MsiFormat::parse(msg).map_err(|_| bad("not an interrupt message"))? {
                MsiFormat::Compat(c) => Rte::Compat {
                    vector: c.vector,
                    delivery: c.delivery,
                    dest_mode: c.dest_mode,
                    dest: u8::try_from(c.dest)
                        .map_err(|_| bad("destination above 255 needs remapping"))?,
                    pin,
                    masked,
                }
                .encode(),
                MsiFormat::Remappable(r) => Rte::Remapped {
                    index: u16::try_from(r.index()).map_err(|_| bad("remap index too large"))?,
                    vector: Vector(msg.data as u8),
                    pin,
                    masked,
                }
                .encode(),
            }
        };
        self.write_rte(index, rte);
        Ok(())
    }

    fn mask(&mut self, index: u32) -> Result<()> {
        self.set_mask(index, true)
    }

    fn unmask(&mut self, index: u32) -> Result<()> {
        self.set_mask(index, false)
    }

    fn is_level(&self, index: u32) -> bool {
        self.pins
            .get(index as usize)
            .is_some_and(|p| p.trigger.is_level())
    }
}

/// An IO-APIC register file in memory (a software model for tests and simulators): 24 pins by
/// default, version 0x20.
#[derive(Clone, Debug)]
pub struct IoApicModel {
    /// The indirect registers, by number.
    pub regs: Vec<u32>,
}

impl IoApicModel {
    /// A model with `pins` pins (1..=[`MAX_PINS`]).
    pub fn new(pins: u32) -> Self {
        let pins = pins.clamp(1, MAX_PINS);
        let mut regs = alloc::vec![0u32; 0x10 + 2 * pins as usize];
        regs[usize::from(field::VERSION)] = (pins - 1) << 16 | 0x20;
        IoApicModel { regs }
    }

    /// The raw entry of `pin`; zero past the model's pins (a register that does not exist
    /// reads as zero, as through [`IoApicRegs::read`]).
    pub fn rte(&self, pin: u32) -> u64 {
        let r = usize::from(field::RTE_BASE) + 2 * pin as usize;
        let reg = |r: usize| u64::from(self.regs.get(r).copied().unwrap_or(0));
        reg(r) | reg(r + 1) << 32
    }
}

impl IoApicRegs for IoApicModel {
    fn read(&mut self, reg: u8) -> u32 {
        self.regs.get(usize::from(reg)).copied().unwrap_or(0)
    }

    fn write(&mut self, reg: u8, value: u32) {
        if reg >= field::RTE_BASE {
            if let Some(r) = self.regs.get_mut(usize::from(reg)) {
                // Delivery status and remote IRR are read only.
                let ro = if (reg - field::RTE_BASE) % 2 == 0 {
                    (field::DELIVERY_STATUS | field::REMOTE_IRR) as u32
                } else {
                    0
                };
                *r = (*r & ro) | (value & !ro);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 82093AA 3.2.4, worked by hand: vector 0x39, fixed, physical, active low (bit 13), level
    // (bit 15), unmasked, destination 0x03 in bits 63:56:
    // 0x0300_0000_0000_A039.
    #[test]
    fn ioapic_3_2_4_compat_rte() {
        let r = Rte::Compat {
            vector: Vector(0x39),
            delivery: DeliveryMode::Fixed,
            dest_mode: DestMode::Physical,
            dest: 3,
            pin: PinConfig::LEVEL_LOW,
            masked: false,
        };
        assert_eq!(r.encode(), 0x0300_0000_0000_A039);
        assert_eq!(Rte::decode(r.encode()), r);
    }

    // VT-d 5.1.5.1: remapped RTE for index 0x8003, vector 0x41, edge, active high, masked:
    // bit 48 | (0x0003 << 49) | bit 11 (index[15]) | bit 16 | 0x41 = 0x0007_0000_0001_0841.
    #[test]
    fn vtd_5_1_5_1_remapped_rte() {
        let r = Rte::Remapped {
            index: 0x8003,
            vector: Vector(0x41),
            pin: PinConfig::EDGE_HIGH,
            masked: true,
        };
        assert_eq!(r.encode(), 0x0007_0000_0001_0841);
        assert_eq!(Rte::decode(r.encode()), r);
    }

    // The messages the pins send, worked by hand: the compatibility entry above (dest 3,
    // vector 0x39, level) sends address 0xFEE03000, data 0x39 | 1 << 14 | 1 << 15 = 0xC039;
    // the remapped entry for index 0x8003 sends 0xFEE00000 | 3 << 5 | 1 << 4 | 1 << 2 =
    // 0xFEE00074 with the vector 0x41 as data.
    #[test]
    fn pins_send_the_message_their_entry_describes() {
        let c = Rte::Compat {
            vector: Vector(0x39),
            delivery: DeliveryMode::Fixed,
            dest_mode: DestMode::Physical,
            dest: 3,
            pin: PinConfig::LEVEL_LOW,
            masked: false,
        };
        assert_eq!(c.message(), Msg::new(0xFEE0_3000, 0xC039));
        let r = Rte::Remapped {
            index: 0x8003,
            vector: Vector(0x41),
            pin: PinConfig::EDGE_HIGH,
            masked: false,
        };
        assert_eq!(r.message(), Msg::new(0xFEE0_0074, 0x41));
    }

    #[test]
    fn store_writes_real_entries_and_keeps_mask_state() {
        let mut s = IoApicStore::new(IoApicModel::new(24));
        assert_eq!(s.caps().max_index, 24);
        s.set_pin(20, PinConfig::LEVEL_LOW).unwrap();
        assert!(s.is_level(20) && !s.is_level(3));
        assert_eq!(s.read_rte(20).unwrap(), field::MASK, "pins start masked");
        s.write_msg(20, &Msg::new(0xFEE0_2000, 0x31)).unwrap();
        assert_eq!(
            s.read_rte(20).unwrap(),
            0x0200_0000_0001_A031,
            "written masked, wiring from the pin"
        );
        s.unmask(20).unwrap();
        assert_eq!(s.read_rte(20).unwrap(), 0x0200_0000_0000_A031);
        s.write_msg(20, &Msg::ZERO).unwrap();
        assert_eq!(s.read_rte(20).unwrap(), field::MASK);
        assert!(s.write_msg(24, &Msg::new(0xFEE0_0000, 0x31)).is_err());
        assert!(s.write_msg(1, &Msg::new(0x1000, 0)).is_err());
        assert!(s.set_pin(99, PinConfig::EDGE_HIGH).is_err());
    }

    proptest! {
        #[test]
        fn rte_decode_encode_round_trips(v: u64) {
            // Without the read-only and reserved bits, decode then encode gives the entry back.
            let format = v & field::FORMAT != 0;
            let keep = if format { 0xFFFF_0000_0001_A8FF } else { 0xFF00_0000_0001_AFFF };
            let v = v & keep;
            prop_assert_eq!(Rte::decode(v).encode(), v);
        }
    }
}
