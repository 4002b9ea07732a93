//! VT-d interrupt remapping formats: the 128-bit IRTE (VT-d specification 9.10), fault reasons
//! (VT-d 7.1.3, Table "Interrupt Remapping Fault Conditions"), and the invalidation descriptors
//! (VT-d 6.5.2.7 interrupt entry cache invalidate, 6.5.2.8 invalidation wait).

use crate::apic::{DeliveryMode, DestMode, Trigger, Vector};

mod field {
    //! IRTE bit positions, VT-d 9.10 (Figure 9-36: remapped format). Low quadword bits 63:0,
    //! high quadword bits 127:64.

    /// Bit 0: present.
    pub const P: u64 = 1 << 0;
    /// Bit 1: fault processing disable.
    pub const FPD: u64 = 1 << 1;
    /// Bit 2: destination mode (1 = logical).
    pub const DM: u64 = 1 << 2;
    /// Bit 3: redirection hint.
    pub const RH: u64 = 1 << 3;
    /// Bit 4: trigger mode (1 = level).
    pub const TM: u64 = 1 << 4;
    /// Bits 7:5: delivery mode.
    pub const DLM_SHIFT: u32 = 5;
    /// Bits 11:8: available to software.
    pub const AVAIL_SHIFT: u32 = 8;
    /// Bits 14:12: reserved.
    pub const LOW_RESERVED: u64 = 0x7 << 12 | 0xFF << 24;
    /// Bit 15: IRTE mode (1 = posted; this crate programs remapped entries only).
    pub const IM: u64 = 1 << 15;
    /// Bits 23:16: vector.
    pub const V_SHIFT: u32 = 16;
    /// Bits 63:32: destination id.
    pub const DST_SHIFT: u32 = 32;
    /// xAPIC mode: only DST bits 15:8 (IRTE bits 47:40) hold the APIC id; the rest is reserved.
    pub const XAPIC_DST_RESERVED: u32 = 0xFFFF_00FF;
    /// High quadword bits 15:0 (IRTE 79:64): source id.
    pub const SID_MASK: u64 = 0xFFFF;
    /// High quadword bits 17:16 (IRTE 81:80): source-id qualifier.
    pub const SQ_SHIFT: u32 = 16;
    /// High quadword bits 19:18 (IRTE 83:82): source validation type.
    pub const SVT_SHIFT: u32 = 18;
    /// High quadword bits 63:20 (IRTE 127:84): reserved.
    pub const HIGH_RESERVED: u64 = !0xF_FFFF;
}

/// Source validation type (IRTE bits 83:82).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Svt {
    /// 00: no requester-id verification.
    None,
    /// 01: verify the requester id against SID, under the SQ mask.
    RequesterId,
    /// 10: verify that the requester's bus is in `SID[15:8]`..=`SID[7:0]`.
    BusRange,
    /// 11: reserved.
    Reserved,
}

impl Svt {
    const fn from_bits(b: u64) -> Self {
        match b & 3 {
            0 => Svt::None,
            1 => Svt::RequesterId,
            2 => Svt::BusRange,
            _ => Svt::Reserved,
        }
    }
    const fn bits(self) -> u64 {
        match self {
            Svt::None => 0,
            Svt::RequesterId => 1,
            Svt::BusRange => 2,
            Svt::Reserved => 3,
        }
    }
}

/// Interrupt remapping fault reasons (VT-d 7.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultReason {
    /// 0x20: reserved fields set in the interrupt request.
    RequestReserved,
    /// 0x21: the interrupt index exceeds the table size.
    IndexOutOfRange,
    /// 0x22: the IRTE's present bit is clear.
    NotPresent,
    /// 0x23: the table could not be read.
    TableAccess,
    /// 0x24: reserved fields set in the IRTE (or a format this unit does not support).
    EntryReserved,
    /// 0x25: a compatibility-format request blocked (GSTS.CFIS clear).
    CompatBlocked,
    /// 0x26: the requester id failed the IRTE's source validation.
    SourceId,
}

impl FaultReason {
    /// The fault reason code the hardware records.
    pub const fn code(self) -> u8 {
        match self {
            FaultReason::RequestReserved => 0x20,
            FaultReason::IndexOutOfRange => 0x21,
            FaultReason::NotPresent => 0x22,
            FaultReason::TableAccess => 0x23,
            FaultReason::EntryReserved => 0x24,
            FaultReason::CompatBlocked => 0x25,
            FaultReason::SourceId => 0x26,
        }
    }

    /// The reason of a code, if it is an interrupt remapping one.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x20 => FaultReason::RequestReserved,
            0x21 => FaultReason::IndexOutOfRange,
            0x22 => FaultReason::NotPresent,
            0x23 => FaultReason::TableAccess,
            0x24 => FaultReason::EntryReserved,
            0x25 => FaultReason::CompatBlocked,
            0x26 => FaultReason::SourceId,
            _ => return None,
        })
    }
}

/// A remapped-format IRTE (VT-d 9.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Irte {
    /// Present.
    pub present: bool,
    /// Fault processing disable: faults of this entry are not recorded.
    pub fpd: bool,
    /// Destination mode.
    pub dest_mode: DestMode,
    /// Redirection hint.
    pub redirection_hint: bool,
    /// Trigger mode.
    pub trigger: Trigger,
    /// Delivery mode.
    pub delivery: DeliveryMode,
    /// Software-available bits 11:8.
    pub avail: u8,
    /// Vector.
    pub vector: Vector,
    /// The destination APIC id (placed in `DST[15:8]` in xAPIC mode, `DST[31:0]` in x2APIC mode).
    pub dest: u32,
    /// Source id (a requester id, or a bus range for [`Svt::BusRange`]).
    pub sid: u16,
    /// Source-id qualifier: how many low function bits to ignore (0..=3).
    pub sq: u8,
    /// Source validation type.
    pub svt: Svt,
}

/// Why a raw IRTE does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteError {
    /// Reserved bits are set: `(low, high)` masks of them.
    Reserved(u64, u64),
    /// A posted-format entry (IM = 1).
    Posted,
    /// The destination does not fit the mode (an id above 255 in xAPIC mode).
    Destination(u32),
}

impl Irte {
    /// An empty (not present) entry.
    pub const NOT_PRESENT: [u64; 2] = [0, 0];

    /// A present, fixed-delivery, physical-destination entry checked against requester id `sid`
    /// (all 16 bits), or unchecked when `sid` is `None`.
    pub const fn new(vector: Vector, dest: u32, trigger: Trigger, sid: Option<u16>) -> Self {
        Irte {
            present: true,
            fpd: false,
            dest_mode: DestMode::Physical,
            redirection_hint: false,
            trigger,
            delivery: DeliveryMode::Fixed,
            avail: 0,
            vector,
            dest,
            sid: match sid {
                Some(s) => s,
                None => 0,
            },
            sq: 0,
            svt: match sid {
                Some(_) => Svt::RequesterId,
                None => Svt::None,
            },
        }
    }

    /// The same entry checked by bus instead (SVT = 10): a requester whose bus is in
    /// `first..=last` passes, whatever its device and function. SID holds the range as
    /// `first << 8 | last`; SQ does not apply and is 0 (VT-d 9.10).
    pub const fn verify_buses(self, first: u8, last: u8) -> Self {
        Irte {
            sid: (first as u16) << 8 | last as u16,
            sq: 0,
            svt: Svt::BusRange,
            ..self
        }
    }

    /// Encodes the entry; `x2apic` selects the destination layout (extended interrupt mode).
    pub fn emit(&self, x2apic: bool) -> Result<[u64; 2], IrteError> {
        let dst = match x2apic {
            true => self.dest,
            false if self.dest <= 0xFF => self.dest << 8,
            false => return Err(IrteError::Destination(self.dest)),
        };
        let mut low = u64::from(self.vector.0) << field::V_SHIFT
            | u64::from(self.delivery.bits()) << field::DLM_SHIFT
            | u64::from(self.avail & 0xF) << field::AVAIL_SHIFT
            | u64::from(dst) << field::DST_SHIFT;
        for (on, bit) in [
            (self.present, field::P),
            (self.fpd, field::FPD),
            (self.dest_mode.is_logical(), field::DM),
            (self.redirection_hint, field::RH),
            (self.trigger.is_level(), field::TM),
        ] {
            if on {
                low |= bit;
            }
        }
        let high = u64::from(self.sid)
            | u64::from(self.sq & 3) << field::SQ_SHIFT
            | self.svt.bits() << field::SVT_SHIFT;
        Ok([low, high])
    }

    /// Decodes an entry, rejecting reserved bits and the posted format.
    pub fn parse(raw: [u64; 2], x2apic: bool) -> Result<Self, IrteError> {
        let [low, high] = raw;
        let dst = (low >> field::DST_SHIFT) as u32;
        let mut low_reserved = low & field::LOW_RESERVED;
        if !x2apic {
            low_reserved |= u64::from(dst & field::XAPIC_DST_RESERVED) << field::DST_SHIFT;
        }
        let high_reserved = high & field::HIGH_RESERVED;
        if low_reserved != 0 || high_reserved != 0 {
            return Err(IrteError::Reserved(low_reserved, high_reserved));
        }
        if low & field::IM != 0 {
            return Err(IrteError::Posted);
        }
        Ok(Irte {
            present: low & field::P != 0,
            fpd: low & field::FPD != 0,
            dest_mode: DestMode::from_bit(low & field::DM != 0),
            redirection_hint: low & field::RH != 0,
            trigger: Trigger::from_bit(low & field::TM != 0),
            delivery: DeliveryMode::from_bits((low >> field::DLM_SHIFT) as u8),
            avail: ((low >> field::AVAIL_SHIFT) & 0xF) as u8,
            vector: Vector((low >> field::V_SHIFT) as u8),
            dest: if x2apic { dst } else { dst >> 8 },
            sid: (high & field::SID_MASK) as u16,
            sq: ((high >> field::SQ_SHIFT) & 3) as u8,
            svt: Svt::from_bits(high >> field::SVT_SHIFT),
        })
    }

    /// Source validation of a request from `requester` (VT-d 9.10, SVT/SQ): true if allowed.
    pub fn source_ok(&self, requester: u16) -> bool {
        match self.svt {
            Svt::None => true,
            Svt::RequesterId => {
                // SQ 01/10/11 ignore function bits 2, 2:1 and 2:0.
                let ignore: u16 = match self.sq {
                    0 => 0,
                    1 => 0b100,
                    2 => 0b110,
                    _ => 0b111,
                };
                requester & !ignore == self.sid & !ignore
            }
            Svt::BusRange => {
                let bus = (requester >> 8) as u8;
                ((self.sid >> 8) as u8..=self.sid as u8).contains(&bus)
            }
            Svt::Reserved => false,
        }
    }
}

/// A queued-invalidation descriptor the remapping domain asks its [`Invalidate`](crate::Invalidate)
/// to execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvDescriptor {
    /// Interrupt entry cache invalidation (VT-d 6.5.2.7): every entry.
    IecGlobal,
    /// Interrupt entry cache invalidation of `2^mask` entries starting at `index` (aligned).
    IecIndex {
        /// First entry.
        index: u16,
        /// log2 of the number of entries.
        mask: u8,
    },
}

impl InvDescriptor {
    /// The 128-bit descriptor: type 0x4 in bits 3:0, granularity bit 4 (1 = index selective),
    /// index mask bits 31:27, interrupt index bits 47:32 (VT-d 6.5.2.7).
    pub fn encode(&self) -> [u64; 2] {
        match *self {
            InvDescriptor::IecGlobal => [0x4, 0],
            InvDescriptor::IecIndex { index, mask } => [
                0x4 | 1 << 4 | u64::from(mask & 0x1F) << 27 | u64::from(index) << 32,
                0,
            ],
        }
    }

    /// The entries the descriptor covers.
    pub fn covers(&self, entry: u32) -> bool {
        self.entries().is_none_or(|r| r.contains(&entry))
    }

    /// The entries an index-selective descriptor covers; `None` for a global one (all).
    pub fn entries(&self) -> Option<core::ops::Range<u32>> {
        match *self {
            InvDescriptor::IecGlobal => None,
            InvDescriptor::IecIndex { index, mask } => {
                // A mask past 31 (not a VT-d value: IM is 5 bits) covers everything above.
                let size = 1u32.checked_shl(u32::from(mask)).unwrap_or(u32::MAX);
                Some(u32::from(index)..u32::from(index).saturating_add(size))
            }
        }
    }
}

/// The invalidation wait descriptor (VT-d 6.5.2.8) with status write: type 0x5 in bits 3:0,
/// SW bit 5, status data in bits 63:32, status address bits 127:66 (dword aligned).
pub fn wait_descriptor(status_addr: u64, status_data: u32) -> [u64; 2] {
    [
        0x5 | 1 << 5 | u64::from(status_data) << 32,
        status_addr & !3,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // VT-d 9.10, worked by hand: present, edge, fixed, physical, vector 0x31, xAPIC
    // destination 2 (DST[15:8] = 2, so bits 47:40 = 0x02), SVT=01, SQ=00, SID=0x00F8
    // (bus 0, device 31, function 0).
    // low  = P(bit 0) | 0x31 << 16 | 0x02 << 40 = 0x0000_0200_0031_0001
    // high = 0x00F8 | 0b01 << 18              = 0x0000_0000_0004_00F8
    #[test]
    fn vtd_9_10_irte_xapic() {
        let e = Irte::new(Vector(0x31), 2, Trigger::Edge, Some(0x00F8));
        assert_eq!(
            e.emit(false),
            Ok([0x0000_0200_0031_0001, 0x0000_0000_0004_00F8])
        );
        assert_eq!(Irte::parse(e.emit(false).unwrap(), false), Ok(e));
    }

    // x2APIC mode: destination 0x0001_0203 in bits 63:32; level trigger (bit 4); lowest
    // priority (001 in bits 7:5 = 0x20); FPD (bit 1); no source check.
    // low = 0x0001_0203 << 32 | 0xEE << 16 | 0x20 | 0x10 | 0x2 | 0x1 = 0x0001_0203_00EE_0033
    #[test]
    fn vtd_9_10_irte_x2apic_level_lowest_priority() {
        let mut e = Irte::new(Vector(0xEE), 0x0001_0203, Trigger::Level, None);
        e.delivery = DeliveryMode::LowestPriority;
        e.fpd = true;
        assert_eq!(e.emit(true), Ok([0x0001_0203_00EE_0033, 0]));
        assert_eq!(e.emit(false), Err(IrteError::Destination(0x0001_0203)));
    }

    #[test]
    fn reserved_and_posted_entries_are_rejected() {
        assert_eq!(
            Irte::parse([1 << 12, 0], true),
            Err(IrteError::Reserved(1 << 12, 0))
        );
        assert_eq!(
            Irte::parse([1, 1 << 20], true),
            Err(IrteError::Reserved(0, 1 << 20))
        );
        assert_eq!(Irte::parse([1 | 1 << 15, 0], true), Err(IrteError::Posted));
        // xAPIC mode: DST bits 7:0 are reserved.
        assert_eq!(
            Irte::parse([1 | 5 << 32, 0], false),
            Err(IrteError::Reserved(5 << 32, 0))
        );
    }

    #[test]
    fn source_validation_follows_sq_and_svt() {
        let mut e = Irte::new(Vector(0x40), 0, Trigger::Edge, Some(0x0108));
        assert!(e.source_ok(0x0108));
        assert!(!e.source_ok(0x0109));
        e.sq = 3;
        assert!(e.source_ok(0x010F), "SQ=11 ignores function bits 2:0");
        assert!(!e.source_ok(0x0110));
        e.sq = 1;
        assert!(e.source_ok(0x010C) && !e.source_ok(0x0109));
        e.svt = Svt::BusRange;
        e.sid = 0x0204;
        assert!(e.source_ok(0x0300) && !e.source_ok(0x0500) && !e.source_ok(0x0100));
        e.svt = Svt::Reserved;
        assert!(!e.source_ok(0x0300));
    }

    // VT-d 9.10, bus-range verification, worked by hand: a device behind a PCIe-to-PCI bridge
    // on bus 1 with its own bus 2 (start bus 1 in SID[15:8], end bus 2 in SID[7:0]); SVT=10,
    // SQ=00. Vector 0x41, x2APIC destination 0x101 (APIC id 257) in bits 63:32.
    // low  = P | 0x41 << 16 | 0x101 << 32 = 0x0000_0101_0041_0001
    // high = 0x0102 | 0b10 << 18          = 0x0000_0000_0008_0102
    #[test]
    fn vtd_9_10_irte_bus_range() {
        let e = Irte::new(Vector(0x41), 0x101, Trigger::Edge, Some(0x0100)).verify_buses(1, 2);
        assert_eq!(
            e.emit(true),
            Ok([0x0000_0101_0041_0001, 0x0000_0000_0008_0102])
        );
        assert_eq!(Irte::parse(e.emit(true).unwrap(), true), Ok(e));
        // The bridge's alias (01:00.0), the device's own id (02:03.0) and any other function on
        // buses 1-2 pass; bus 0 (a device beside the bridge) and bus 3 fail.
        for ok in [0x0100, 0x0218, 0x01FF, 0x0200] {
            assert!(e.source_ok(ok), "{ok:#06x}");
        }
        for bad in [0x0028, 0x00FF, 0x0300] {
            assert!(!e.source_ok(bad), "{bad:#06x}");
        }
        // One bus (several aliases all on bus 3): start = end = 3, high = 0x0303 | 2 << 18.
        let one = Irte::new(Vector(0x41), 0x101, Trigger::Edge, None).verify_buses(3, 3);
        assert_eq!(one.emit(true).unwrap()[1], 0x0000_0000_0008_0303);
    }

    // VT-d 6.5.2.7: index-selective IEC invalidation of 4 entries (IM = 2) at index 0x40:
    // 0x4 | 1 << 4 | 2 << 27 | 0x40 << 32 = 0x0000_0040_1000_0014.
    #[test]
    fn vtd_6_5_2_7_iec_descriptor() {
        let d = InvDescriptor::IecIndex {
            index: 0x40,
            mask: 2,
        };
        assert_eq!(d.encode(), [0x0000_0040_1000_0014, 0]);
        assert!(d.covers(0x43) && !d.covers(0x44));
        assert_eq!(InvDescriptor::IecGlobal.encode(), [0x4, 0]);
        assert_eq!(wait_descriptor(0x1000, 7), [0x0000_0007_0000_0025, 0x1000]);
    }

    #[test]
    fn fault_codes_round_trip() {
        for code in 0x20..=0x26 {
            assert_eq!(FaultReason::from_code(code).unwrap().code(), code);
        }
        assert_eq!(FaultReason::from_code(0x27), None);
    }

    proptest! {
        #[test]
        fn irte_round_trips(vector: u8, dest: u32, level: bool, dm in 0u8..8, sid: u16, sq in 0u8..4, svt in 0u64..4,
                            fpd: bool, rh: bool, logical: bool, avail in 0u8..16, x2apic: bool) {
            let e = Irte {
                present: true, fpd, dest_mode: DestMode::from_bit(logical), redirection_hint: rh,
                trigger: Trigger::from_bit(level), delivery: DeliveryMode::from_bits(dm), avail,
                vector: Vector(vector), dest: if x2apic { dest } else { dest & 0xFF }, sid, sq, svt: Svt::from_bits(svt),
            };
            let raw = e.emit(x2apic).unwrap();
            prop_assert_eq!(Irte::parse(raw, x2apic), Ok(e));
        }

        #[test]
        fn parse_never_panics_and_emit_inverts_it(low: u64, high: u64, x2apic: bool) {
            if let Ok(e) = Irte::parse([low, high], x2apic) {
                prop_assert_eq!(e.emit(x2apic), Ok([low, high]));
            }
        }
    }
}
