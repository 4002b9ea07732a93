//! The message store: the one trait a new interrupt source implements.

use crate::{Msg, Result};

/// What a [`MsgStore`] can do. The core reads it to accept or refuse requests up front, so
/// that a refused request changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreCaps {
    /// Number of indices (`0..max_index` are valid).
    pub max_index: u32,
    /// Each index can be masked on its own. Without it, masking is emulated in software: the
    /// interrupt is latched as pending and replayed on unmask.
    pub per_vector_mask: bool,
    /// Indices can be allocated (and freed) while others are enabled and delivering.
    pub alloc_after_enable: bool,
    /// A live slot's message may only be rewritten while the slot is masked (PCI MSI-X).
    pub write_masked: bool,
    /// Allocation comes as one power-of-two block starting at index 0 whose messages differ
    /// only in the low data bits (PCI multi-message MSI).
    pub block_only: bool,
    /// The store can place a message at any free index (IMS), not only at indices the
    /// device fixes.
    pub any_index: bool,
}

impl StoreCaps {
    /// Capabilities of a store with `max_index` freely usable, individually maskable slots that
    /// can be allocated at any time (the most capable kind, like most IMS stores).
    pub const fn dynamic(max_index: u32) -> Self {
        StoreCaps {
            max_index,
            per_vector_mask: true,
            alloc_after_enable: true,
            write_masked: false,
            block_only: false,
            any_index: true,
        }
    }
}

/// Storage for messages: "to raise interrupt `index`, write `store[index].data` to
/// `store[index].address`".
///
/// IO-APIC pins, HPET timers, the PCI MSI capability, the MSI-X table and device-defined IMS
/// storage all implement this trait. The core calls it only on the configuration path, with
/// the configuration lock held.
pub trait MsgStore: core::any::Any + Send {
    /// A short name for reports (`"msix"`, `"ims-queue"`).
    fn name(&self) -> &'static str;

    /// What the store can do.
    fn caps(&self) -> StoreCaps;

    /// Stores `msg` at `index`. With [`StoreCaps::write_masked`] the core masks the slot first.
    fn write_msg(&mut self, index: u32, msg: &Msg) -> Result<()>;

    /// Masks `index` (only called with [`StoreCaps::per_vector_mask`]).
    fn mask(&mut self, index: u32) -> Result<()>;

    /// Unmasks `index` (only called with [`StoreCaps::per_vector_mask`]).
    fn unmask(&mut self, index: u32) -> Result<()>;

    /// Binds `index` before its first message: stores that keep the message inside some other
    /// structure (a queue context, a PASID entry) attach it to `cookie` here.
    fn prepare(&mut self, index: u32, cookie: Option<u64>) -> Result<()> {
        let _ = (index, cookie);
        Ok(())
    }

    /// Undoes [`MsgStore::prepare`] after the slot was quiesced.
    fn release(&mut self, index: u32) {
        let _ = index;
    }

    /// Called before the first index of the store goes live (for example the MSI-X enable
    /// sequence) and after the last one went away ([`MsgStore::disable`]).
    fn enable(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called after the last index was freed.
    fn disable(&mut self) {}

    /// True when `index` is wired to a level-triggered source.
    fn is_level(&self, index: u32) -> bool {
        let _ = index;
        false
    }

    /// True when the device latched an interrupt for a masked `index` (a PBA bit).
    fn is_pending(&self, index: u32) -> bool {
        let _ = index;
        false
    }
}
