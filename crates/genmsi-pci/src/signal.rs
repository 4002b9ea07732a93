//! What a function does when it raises an interrupt: the device side of every store in this
//! crate, for simulators and tests.

use genmsi::Msg;

/// The outcome of a function raising one of its interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The function wrote this message: the interrupt is on its way.
    Sent(Msg),
    /// The vector is masked: the function latched its pending bit and sends it on unmask.
    Pending,
    /// The mechanism is not enabled (or the vector is not part of it): nothing is sent.
    Disabled,
}
