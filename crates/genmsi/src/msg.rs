//! The message: what a device writes to raise an interrupt.

use core::fmt;

/// One interrupt message: to raise the interrupt, the device writes `data` to `address`.
///
/// Devices treat both fields as opaque. Only domains compose and translate messages; the
/// device's [`MsgStore`](crate::MsgStore) only keeps them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Msg {
    /// The address the device writes to.
    pub address: u64,
    /// The value it writes.
    pub data: u32,
}

impl Msg {
    /// A message from its two parts.
    pub const fn new(address: u64, data: u32) -> Self {
        Msg { address, data }
    }

    /// The all-zero message written into a store slot that no longer routes anywhere.
    pub const ZERO: Msg = Msg::new(0, 0);
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msg({:#x} <- {:#x})", self.address, self.data)
    }
}
