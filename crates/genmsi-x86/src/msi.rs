//! MSI address/data formats: compatibility format (Intel SDM Vol. 3A 11.11) and remappable
//! format (VT-d specification 5.1.2.2).
//!
//! [`MsiFormat::parse`] decodes any message a device may write to the interrupt address range;
//! [`CompatMsi::emit`] and [`RemappableMsi::emit`] compose them. Every bit is declared once in
//! `field`.

use crate::apic::{DeliveryMode, DestMode, Trigger, Vector};
use genmsi::Msg;

mod field {
    //! Bit positions. Address: SDM Vol. 3A 11.11.1 (Figure 11-24) and VT-d 5.1.2.2 (Figure 5-12).
    //! Data: SDM Vol. 3A 11.11.2 (Figure 11-25) and VT-d 5.1.2.2 (Figure 5-13).

    /// Address bits 31:20 must be 0xFEE: the interrupt address range.
    pub const ADDR_BASE: u64 = 0xFEE0_0000;
    /// Address bits 31:20.
    pub const ADDR_BASE_MASK: u64 = 0xFFF0_0000;
    /// Compatibility: bits 19:12, destination id.
    pub const DEST_SHIFT: u32 = 12;
    /// Remappable: bits 19:5, `handle[14:0]`.
    pub const HANDLE_LO_SHIFT: u32 = 5;
    /// Remappable: bit 4, interrupt format (1 = remappable).
    pub const FORMAT: u64 = 1 << 4;
    /// Compatibility: bit 3, redirection hint. Remappable: bit 3, SHV (subhandle valid).
    pub const RH_OR_SHV: u64 = 1 << 3;
    /// Compatibility: bit 2, destination mode. Remappable: bit 2, `handle[15]`.
    pub const DM_OR_HANDLE15: u64 = 1 << 2;
    /// Compatibility: bits 11:4 are reserved (bit 4 is the format bit in both formats).
    pub const COMPAT_RESERVED: u64 = 0xFF0;
    /// Address bits 63:40 carry destination bits 31:8 for x2APIC ids. This is the form Linux
    /// composes for an interrupt-remapping parent; a device without remapping must see 0 here
    /// (a write above 4 GiB is not an interrupt).
    pub const EXT_DEST_SHIFT: u32 = 32;
    /// Address bits 39:32 are reserved.
    pub const HIGH_RESERVED: u64 = 0xFF_0000_0000;

    /// Data bits 7:0, vector.
    pub const VECTOR_MASK: u32 = 0xFF;
    /// Data bits 10:8, delivery mode.
    pub const DELIVERY_SHIFT: u32 = 8;
    /// Data bit 14, level (1 = assert).
    pub const LEVEL_ASSERT: u32 = 1 << 14;
    /// Data bit 15, trigger mode (1 = level).
    pub const TRIGGER_LEVEL: u32 = 1 << 15;
    /// Data bits 13:11 and 31:16 are reserved.
    pub const DATA_RESERVED: u32 = 0xFFFF_3800;
    /// Remappable data bits 15:0, subhandle.
    pub const SUBHANDLE_MASK: u32 = 0xFFFF;
}

/// Why a message is not a well-formed interrupt message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// The address is outside 0xFEExxxxx (it would be an ordinary memory write).
    NotInterruptAddress(u64),
    /// Reserved address bits are set (the bits are given).
    ReservedAddressBits(u64),
    /// Reserved data bits are set (the bits are given).
    ReservedDataBits(u32),
}

/// A compatibility-format MSI (SDM Vol. 3A 11.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompatMsi {
    /// Destination APIC id: bits 7:0 in address bits 19:12, bits 31:8 in address bits 63:40.
    pub dest: u32,
    /// Redirection hint.
    pub redirection_hint: bool,
    /// Destination mode.
    pub dest_mode: DestMode,
    /// Vector.
    pub vector: Vector,
    /// Delivery mode.
    pub delivery: DeliveryMode,
    /// Trigger mode.
    pub trigger: Trigger,
    /// Level: assert (only meaningful for level-triggered messages).
    pub assert: bool,
}

impl CompatMsi {
    /// A fixed, edge-triggered, physical-destination message: what the vector domain composes.
    pub const fn fixed(dest: u32, vector: Vector) -> Self {
        CompatMsi {
            dest,
            redirection_hint: false,
            dest_mode: DestMode::Physical,
            vector,
            delivery: DeliveryMode::Fixed,
            trigger: Trigger::Edge,
            assert: false,
        }
    }

    /// Composes the message.
    pub fn emit(&self) -> Msg {
        let mut address = field::ADDR_BASE
            | u64::from(self.dest & 0xFF) << field::DEST_SHIFT
            | u64::from(self.dest & !0xFF) << field::EXT_DEST_SHIFT;
        if self.redirection_hint {
            address |= field::RH_OR_SHV;
        }
        if self.dest_mode.is_logical() {
            address |= field::DM_OR_HANDLE15;
        }
        let mut data =
            u32::from(self.vector.0) | u32::from(self.delivery.bits()) << field::DELIVERY_SHIFT;
        if self.assert {
            data |= field::LEVEL_ASSERT;
        }
        if self.trigger.is_level() {
            data |= field::TRIGGER_LEVEL;
        }
        Msg::new(address, data)
    }
}

/// A remappable-format MSI (VT-d 5.1.2.2): it names an interrupt remapping table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RemappableMsi {
    /// The handle (16 bits).
    pub handle: u16,
    /// The subhandle, when SHV is set (multi-message MSI: the device puts its index in the low
    /// data bits, which land here).
    pub subhandle: Option<u16>,
}

impl RemappableMsi {
    /// The remap table index the message selects: handle, plus subhandle when valid
    /// (VT-d 5.1.2.2: "interrupt_index = handle + subhandle" when SHV is 1).
    pub fn index(&self) -> u32 {
        u32::from(self.handle) + u32::from(self.subhandle.unwrap_or(0))
    }

    /// Composes the message.
    pub fn emit(&self) -> Msg {
        let mut address = field::ADDR_BASE
            | u64::from(self.handle & 0x7FFF) << field::HANDLE_LO_SHIFT
            | field::FORMAT;
        if self.handle & 0x8000 != 0 {
            address |= field::DM_OR_HANDLE15;
        }
        let mut data = 0;
        if let Some(sub) = self.subhandle {
            address |= field::RH_OR_SHV;
            data = u32::from(sub);
        }
        Msg::new(address, data)
    }
}

/// A decoded interrupt message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsiFormat {
    /// Compatibility format: goes straight to the CPUs (or is blocked when remapping enforces).
    Compat(CompatMsi),
    /// Remappable format: translated through the remap table.
    Remappable(RemappableMsi),
}

impl MsiFormat {
    /// Decodes `msg`, rejecting set reserved bits.
    pub fn parse(msg: &Msg) -> Result<Self, MsiError> {
        let a = msg.address;
        if a & field::ADDR_BASE_MASK != field::ADDR_BASE {
            return Err(MsiError::NotInterruptAddress(a));
        }
        if a & field::HIGH_RESERVED != 0 {
            return Err(MsiError::ReservedAddressBits(a & field::HIGH_RESERVED));
        }
        if a & 0b11 != 0 {
            return Err(MsiError::ReservedAddressBits(a & 0b11));
        }
        if a & field::FORMAT != 0 {
            if a >> 32 != 0 {
                return Err(MsiError::ReservedAddressBits(a & !0xFFFF_FFFF));
            }
            let handle = ((a >> field::HANDLE_LO_SHIFT) & 0x7FFF) as u16
                | if a & field::DM_OR_HANDLE15 != 0 {
                    0x8000
                } else {
                    0
                };
            let shv = a & field::RH_OR_SHV != 0;
            // Bits 31:16 are reserved; bits 15:0 are ignored unless SHV is set.
            let reserved = msg.data & !field::SUBHANDLE_MASK;
            if reserved != 0 {
                return Err(MsiError::ReservedDataBits(reserved));
            }
            return Ok(MsiFormat::Remappable(RemappableMsi {
                handle,
                subhandle: shv.then_some((msg.data & field::SUBHANDLE_MASK) as u16),
            }));
        }
        if a & field::COMPAT_RESERVED != 0 {
            return Err(MsiError::ReservedAddressBits(a & field::COMPAT_RESERVED));
        }
        if msg.data & field::DATA_RESERVED != 0 {
            return Err(MsiError::ReservedDataBits(msg.data & field::DATA_RESERVED));
        }
        let d = msg.data;
        Ok(MsiFormat::Compat(CompatMsi {
            dest: ((a >> field::DEST_SHIFT) & 0xFF) as u32
                | (a >> field::EXT_DEST_SHIFT) as u32 & !0xFF,
            redirection_hint: a & field::RH_OR_SHV != 0,
            dest_mode: DestMode::from_bit(a & field::DM_OR_HANDLE15 != 0),
            vector: Vector((d & field::VECTOR_MASK) as u8),
            delivery: DeliveryMode::from_bits((d >> field::DELIVERY_SHIFT) as u8),
            trigger: Trigger::from_bit(d & field::TRIGGER_LEVEL != 0),
            assert: d & field::LEVEL_ASSERT != 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // SDM Vol. 3A 11.11.1/11.11.2, worked by hand: destination APIC id 3, vector 0x41, fixed,
    // edge, physical: address = 0xFEE00000 | 3 << 12 = 0xFEE03000; data = 0x41.
    #[test]
    fn sdm_11_11_fixed_edge_physical() {
        let m = CompatMsi::fixed(3, Vector(0x41)).emit();
        assert_eq!(m, Msg::new(0xFEE0_3000, 0x0000_0041));
    }

    // Destination 0xFF, lowest priority (001), logical (bit 2), redirection hint (bit 3), level
    // (bit 15) asserted (bit 14), vector 0xEC: address 0xFEEFF00C, data 0xC1EC.
    #[test]
    fn sdm_11_11_every_field_set() {
        let c = CompatMsi {
            dest: 0xFF,
            redirection_hint: true,
            dest_mode: DestMode::Logical,
            vector: Vector(0xEC),
            delivery: DeliveryMode::LowestPriority,
            trigger: Trigger::Level,
            assert: true,
        };
        assert_eq!(c.emit(), Msg::new(0xFEEF_F00C, 0xC1EC));
        assert_eq!(MsiFormat::parse(&c.emit()), Ok(MsiFormat::Compat(c)));
    }

    // VT-d 5.1.2.2, worked by hand: handle 0x8005 (bit 15 set) without subhandle:
    // address = 0xFEE00000 | 0x0005 << 5 | 1 << 4 | 1 << 2 = 0xFEE000B4, data 0.
    // Handle 0x10 with subhandle valid: 0xFEE00000 | 0x10 << 5 | 1 << 4 | 1 << 3 = 0xFEE00218,
    // and the device puts index 3 in the data.
    #[test]
    fn vtd_5_1_2_2_remappable_format() {
        let r = RemappableMsi {
            handle: 0x8005,
            subhandle: None,
        };
        assert_eq!(r.emit(), Msg::new(0xFEE0_00B4, 0));
        let s = RemappableMsi {
            handle: 0x10,
            subhandle: Some(0),
        };
        assert_eq!(s.emit(), Msg::new(0xFEE0_0218, 0));
        let from_device = Msg::new(0xFEE0_0218, 3);
        let MsiFormat::Remappable(p) = MsiFormat::parse(&from_device).unwrap() else {
            panic!("remappable")
        };
        assert_eq!(p.index(), 0x13);
    }

    #[test]
    fn malformed_messages_are_rejected_not_misread() {
        assert_eq!(
            MsiFormat::parse(&Msg::new(0x1000, 0)),
            Err(MsiError::NotInterruptAddress(0x1000))
        );
        assert_eq!(
            MsiFormat::parse(&Msg::new(0x1_FEE0_0000, 0)),
            Err(MsiError::ReservedAddressBits(0x1_0000_0000))
        );
        // x2APIC id 0x1234: bits 7:0 = 0x34 at 19:12, bits 31:8 = 0x12 at 63:40.
        let x2 = CompatMsi::fixed(0x1234, Vector(0x30)).emit();
        assert_eq!(x2, Msg::new(0x0000_1200_FEE3_4000, 0x30));
        assert_eq!(
            MsiFormat::parse(&x2),
            Ok(MsiFormat::Compat(CompatMsi::fixed(0x1234, Vector(0x30))))
        );
        assert_eq!(
            MsiFormat::parse(&Msg::new(0xFEE0_0001, 0x30)),
            Err(MsiError::ReservedAddressBits(1))
        );
        assert_eq!(
            MsiFormat::parse(&Msg::new(0xFEE0_0020, 0x30)),
            Err(MsiError::ReservedAddressBits(0x20))
        );
        assert_eq!(
            MsiFormat::parse(&Msg::new(0xFEE0_0000, 0x1_0030)),
            Err(MsiError::ReservedDataBits(0x1_0000))
        );
        assert_eq!(
            MsiFormat::parse(&Msg::new(0xFEE0_0010, 7)),
            Ok(MsiFormat::Remappable(RemappableMsi {
                handle: 0,
                subhandle: None
            })),
            "data bits 15:0 are ignored without SHV"
        );
    }

    proptest! {
        #[test]
        fn compat_round_trips(dest: u32, rh: bool, logical: bool, vector: u8, dm in 0u8..8, level: bool, assert: bool) {
            let c = CompatMsi {
                dest, redirection_hint: rh, dest_mode: DestMode::from_bit(logical), vector: Vector(vector),
                delivery: DeliveryMode::from_bits(dm), trigger: Trigger::from_bit(level), assert,
            };
            prop_assert_eq!(MsiFormat::parse(&c.emit()), Ok(MsiFormat::Compat(c)));
        }

        #[test]
        fn remappable_round_trips(handle: u16, sub: Option<u16>) {
            let r = RemappableMsi { handle, subhandle: sub };
            prop_assert_eq!(MsiFormat::parse(&r.emit()), Ok(MsiFormat::Remappable(r)));
        }

        #[test]
        fn parse_never_panics_and_emit_inverts_it(address: u64, data: u32) {
            let m = Msg::new(address, data);
            match MsiFormat::parse(&m) {
                Ok(MsiFormat::Compat(c)) => prop_assert_eq!(c.emit(), m),
                Ok(MsiFormat::Remappable(r)) => {
                    prop_assert_eq!(r.emit().address, m.address);
                    prop_assert_eq!(MsiFormat::parse(&r.emit()), Ok(MsiFormat::Remappable(r)));
                }
                Err(_) => {}
            }
        }
    }
}
