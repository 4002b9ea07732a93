//! The seam between a guest's emulated MSI-X (or IMS) and the host resources behind each entry.
//!
//! [`MsiBackend`] is what [`VirtMsix`](crate::virt::VirtMsix) needs from the host, entry by
//! entry. The in-process host model and the KVM backend (`crate::kvm`, GSI routes and irqfds)
//! implement it.
//!
//! 1. [`MsiBackend::back`] gives entry `index` its host resources with the guest's message,
//!    **masked**: interrupts the device raises for it are held (pending), not delivered.
//! 2. [`MsiBackend::unmask`] lets it deliver; what was held is delivered once.
//! 3. [`MsiBackend::mask`] holds its interrupts again; [`MsiBackend::pending`] says whether one
//!    is held, exactly.
//! 4. [`MsiBackend::set_msg`] changes where it delivers, without a gap.
//! 5. [`MsiBackend::release`] gives the resources back; [`MsiBackend::budget`] says how many
//!    this device may hold and holds.
//! 6. [`MsiBackend::enable`] is the host function's MSI-X Enable: while it is clear, what the
//!    device raises is dropped (PCIe: a function with MSI-X disabled sends no MSI-X message).
//! 7. Changes to a table the hypervisor replaces as a whole (KVM's GSI routing) may be
//!    batched until [`MsiBackend::commit`]; `unmask` commits first what it depends on.

use crate::error::Result;
use genmsi::Msg;
use serde::Serialize;

/// How many host resources (vectors, routes) a device may hold, and holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// The most this device may hold.
    pub limit: u32,
    /// Held now.
    pub in_use: u32,
    /// The most it held at once so far.
    pub max_in_use: u32,
}

/// The host side of one device's message-signalled entries (see the module docs).
pub trait MsiBackend {
    /// Host resources for entry `index`, delivering `msg` once unmasked; the entry starts
    /// masked. Refused with [`Error::Budget`](crate::Error::Budget) beyond the budget, with
    /// nothing held for it.
    fn back(&mut self, index: u32, msg: Msg) -> Result<()>;
    /// Entry `index` delivers `msg` from now on.
    fn set_msg(&mut self, index: u32, msg: Msg) -> Result<()>;
    /// Entry `index` delivers; an interrupt held while it was masked is delivered once.
    fn unmask(&mut self, index: u32) -> Result<()>;
    /// Entry `index` holds its interrupts.
    fn mask(&mut self, index: u32) -> Result<()>;
    /// Gives back entry `index`'s resources (an interrupt it held is gone with them).
    fn release(&mut self, index: u32) -> Result<()>;
    /// Entry `index` has host resources.
    fn is_backed(&self, index: u32) -> bool;
    /// Entry `index` holds an interrupt (masked, raised since).
    fn pending(&self, index: u32) -> bool;
    /// The budget and its use.
    fn budget(&self) -> Budget;
    /// Applies batched changes.
    fn commit(&mut self) -> Result<()>;
    /// The host function's MSI-X Enable: while it is clear the device sends and latches
    /// nothing.
    fn enable(&mut self, on: bool) -> Result<()>;
}
