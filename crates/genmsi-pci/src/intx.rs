//! INTx: the legacy interrupt pins, the last fallback when a function has neither MSI-X nor
//! MSI (or its parent cannot serve them).
//!
//! The bridges' swizzle is the PCI specification's and lives in
//! [`topology`](crate::topology); which irq a pin on the root bus raises is the platform's
//! business (firmware routing tables, the IO-APIC's redirection entries), so this crate only
//! defines the seam: an [`IntxRouter`] that the x86 IO-APIC side or a simulator implements.

use crate::pci::PciAddress;
use core::fmt;
use genmsi::Irq;

/// An interrupt pin, as the Interrupt Pin register names it (7.5.1.1.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntxPin {
    /// INTA# (register value 1).
    A,
    /// INTB# (2).
    B,
    /// INTC# (3).
    C,
    /// INTD# (4).
    D,
}

impl IntxPin {
    /// Decodes the Interrupt Pin register: 0 means the function uses no pin; 5 and above are
    /// reserved.
    pub fn from_register(raw: u8) -> Result<Option<Self>, IntxError> {
        match raw {
            0 => Ok(None),
            1 => Ok(Some(IntxPin::A)),
            2 => Ok(Some(IntxPin::B)),
            3 => Ok(Some(IntxPin::C)),
            4 => Ok(Some(IntxPin::D)),
            value => Err(IntxError::ReservedPin { value }),
        }
    }

    /// The register value (1..=4).
    pub const fn register(self) -> u8 {
        self as u8 + 1
    }

    /// The pin seen on the other side of a bridge for a function in slot `device`: the
    /// standard rotation `(pin - 1 + device) mod 4` (PCI-to-PCI Bridge Architecture
    /// Specification, 9.1).
    pub const fn swizzle(self, device: u8) -> Self {
        match (self as u8 + device % 4) % 4 {
            0 => IntxPin::A,
            1 => IntxPin::B,
            2 => IntxPin::C,
            _ => IntxPin::D,
        }
    }
}

/// Why INTx could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntxError {
    /// The function has no interrupt pin (register value 0).
    NoPin {
        /// The function.
        address: PciAddress,
    },
    /// The Interrupt Pin register holds a reserved value.
    ReservedPin {
        /// The value read.
        value: u8,
    },
    /// The platform has no route for this pin.
    Unrouted {
        /// The function.
        address: PciAddress,
        /// Its pin.
        pin: IntxPin,
    },
    /// The router's irq allocation failed.
    Core(genmsi::Error),
}

impl From<genmsi::Error> for IntxError {
    fn from(e: genmsi::Error) -> Self {
        IntxError::Core(e)
    }
}

impl fmt::Display for IntxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntxError::NoPin { address } => write!(f, "{address} has no interrupt pin"),
            IntxError::ReservedPin { value } => write!(f, "reserved Interrupt Pin value {value}"),
            IntxError::Unrouted { address, pin } => write!(f, "no route for {address} {pin:?}"),
            IntxError::Core(e) => write!(f, "INTx irq: {e}"),
        }
    }
}

impl core::error::Error for IntxError {}

/// Maps an interrupt pin on the root bus to an irq: implemented by the platform (the IO-APIC
/// side, a simulator). Pins are shared, so a router counts its users.
///
/// The conveniences have already swizzled a function's pin through the bridges above it
/// ([`intx_path`](crate::topology::intx_path)): `address` is the function on the root bus the
/// pin arrives at (the function itself on a root bus) and `pin` the pin there.
pub trait IntxRouter {
    /// Routes `pin` of the root-bus function at `address`, returning the irq the pin raises.
    fn route(&mut self, address: PciAddress, pin: IntxPin) -> Result<Irq, IntxError>;
    /// Drops the route [`IntxRouter::route`] returned.
    fn unroute(&mut self, address: PciAddress, pin: IntxPin, irq: Irq);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_register_by_hand() {
        assert_eq!(IntxPin::from_register(0), Ok(None));
        assert_eq!(IntxPin::from_register(1), Ok(Some(IntxPin::A)));
        assert_eq!(IntxPin::from_register(4), Ok(Some(IntxPin::D)));
        assert_eq!(
            IntxPin::from_register(5),
            Err(IntxError::ReservedPin { value: 5 })
        );
        assert_eq!(IntxPin::D.register(), 4);
    }

    #[test]
    fn swizzle_rotates_by_device_number() {
        // INTA# of device 1 arrives as INTB#; INTD# of device 1 wraps to INTA#.
        assert_eq!(IntxPin::A.swizzle(1), IntxPin::B);
        assert_eq!(IntxPin::D.swizzle(1), IntxPin::A);
        assert_eq!(IntxPin::B.swizzle(4), IntxPin::B);
    }
}
