//! Values of the local APIC's interrupt vocabulary (Intel SDM Vol. 3A, chapter 11).

use core::fmt;

/// An interrupt vector (0..=255). Vectors 0..=31 are exceptions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vector(pub u8);

impl Vector {
    /// The first vector that is not an exception (SDM Vol. 3A 6.2: vectors 0..=31 are reserved).
    pub const FIRST_EXTERNAL: Vector = Vector(0x20);
}

impl fmt::Debug for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vector({:#04x})", self.0)
    }
}

/// A local APIC id (8 bits in xAPIC mode, 32 in x2APIC mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApicId(pub u32);

/// Delivery mode, a 3-bit field of MSI data, IRTEs and IO-APIC entries (SDM Vol. 3A 11.11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// 000: deliver the vector to the destination.
    Fixed,
    /// 001: deliver to the lowest-priority processor of the destination.
    LowestPriority,
    /// 010: system management interrupt.
    Smi,
    /// 100: non-maskable interrupt.
    Nmi,
    /// 101: INIT.
    Init,
    /// 111: external interrupt (8259-compatible).
    ExtInt,
    /// 011 and 110: reserved encodings, kept so that reading hardware never fails.
    Reserved(u8),
}

impl DeliveryMode {
    /// Decodes the 3-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b111 {
            0b000 => DeliveryMode::Fixed,
            0b001 => DeliveryMode::LowestPriority,
            0b010 => DeliveryMode::Smi,
            0b100 => DeliveryMode::Nmi,
            0b101 => DeliveryMode::Init,
            0b111 => DeliveryMode::ExtInt,
            other => DeliveryMode::Reserved(other),
        }
    }

    /// The 3-bit field.
    pub const fn bits(self) -> u8 {
        match self {
            DeliveryMode::Fixed => 0b000,
            DeliveryMode::LowestPriority => 0b001,
            DeliveryMode::Smi => 0b010,
            DeliveryMode::Nmi => 0b100,
            DeliveryMode::Init => 0b101,
            DeliveryMode::ExtInt => 0b111,
            DeliveryMode::Reserved(b) => b & 0b111,
        }
    }
}

/// Trigger mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Edge triggered.
    Edge,
    /// Level triggered: the CPU signals end of interrupt to the source.
    Level,
}

impl Trigger {
    /// From the one-bit field (1 = level).
    pub const fn from_bit(level: bool) -> Self {
        if level {
            Trigger::Level
        } else {
            Trigger::Edge
        }
    }

    /// True for level.
    pub const fn is_level(self) -> bool {
        matches!(self, Trigger::Level)
    }
}

/// Destination mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestMode {
    /// The destination is an APIC id.
    Physical,
    /// The destination is a logical APIC mask.
    Logical,
}

impl DestMode {
    /// From the one-bit field (1 = logical).
    pub const fn from_bit(logical: bool) -> Self {
        if logical {
            DestMode::Logical
        } else {
            DestMode::Physical
        }
    }

    /// True for logical.
    pub const fn is_logical(self) -> bool {
        matches!(self, DestMode::Logical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_modes_round_trip_every_encoding() {
        for bits in 0..8u8 {
            assert_eq!(DeliveryMode::from_bits(bits).bits(), bits);
        }
        assert_eq!(
            DeliveryMode::from_bits(0b011),
            DeliveryMode::Reserved(0b011)
        );
        assert_eq!(DeliveryMode::from_bits(0b100), DeliveryMode::Nmi);
    }
}
