//! QEMU's `e1000e` (Intel 82574L, vendor 8086, device 10d3): an MSI-X device with 5 vectors
//! whose "other" interrupt cause can be routed to any vector and raised by software.
//!
//! To fire vector `v`: mask every cause (IMC), route the "other" cause to `v` through IVAR
//! (bits 19:16 = valid | v), enable LSC and OTHER in IMS, then set LSC in ICS.

use crate::mmio::MmioRegion;
use crate::pci::{self, PciFunction};

const VENDOR: u16 = 0x8086;
const DEVICE: u16 = 0x10d3;

/// The most messages one [`E1000e::raise`] sends: the message, and an echo.
///
/// QEMU throttles every vector (EITR is at least 500 x 256 ns, whatever is written) and, once
/// a raise has fallen inside a throttling window, marks the vector pending for good: each
/// later expiry of the throttling timer sends the vector once more, so a raise outside a
/// window arrives twice, about 128 us apart (seen on QEMU 10.0; no release is known to have
/// changed it, so the bound holds for every version).
pub const MAX_MESSAGES_PER_RAISE: u32 = 2;

/// Interrupt cause read (read clears).
const REG_ICR: u64 = 0xc0;
/// Interrupt cause set.
const REG_ICS: u64 = 0xc8;
/// Interrupt mask set.
const REG_IMS: u64 = 0xd0;
/// Interrupt mask clear.
const REG_IMC: u64 = 0xd8;
/// Extended interrupt auto clear: causes cleared from ICR and IMS once their vector is sent.
const REG_EIAC: u64 = 0xdc;
/// Interrupt vector allocation (82574 datasheet 10.2.4.9).
const REG_IVAR: u64 = 0xe4;
/// "Other" cause (82574: set with any cause not mapped to a queue).
const ICR_OTHER: u32 = 1 << 24;
/// IVAR: "other" cause vector field, bits 19:16 (bit 19 = valid).
const IVAR_OTHER_SHIFT: u32 = 16;
const IVAR_VALID: u32 = 0x8;

/// One e1000e device.
#[derive(Clone, Copy, Debug)]
pub struct E1000e {
    /// Its PCI function.
    pub pci: PciFunction,
    regs: MmioRegion,
}

impl E1000e {
    /// The first e1000e the enumeration found; see [`E1000e::nth`].
    pub fn find() -> Option<E1000e> {
        Self::nth(0)
    }

    /// Every e1000e of the machine, in enumeration order; see [`E1000e::nth`].
    pub fn all() -> alloc::vec::Vec<E1000e> {
        (0..pci::find_all(VENDOR, DEVICE).count())
            .filter_map(Self::nth)
            .collect()
    }

    /// The `nth` e1000e (from 0) anywhere in the hierarchy, with memory decoding and bus
    /// mastering enabled on it and the bridges above it, and every interrupt cause masked.
    pub fn nth(nth: usize) -> Option<E1000e> {
        let f = pci::find(VENDOR, DEVICE, nth)?;
        let regs = f.memory_bar(0)?;
        pci::enable_path(f);
        let nic = E1000e { pci: f, regs };
        nic.regs.write32(REG_IMC, !0);
        nic.regs.read32(REG_ICR);
        Some(nic)
    }

    /// Raises the "other" cause on MSI-X vector `vector` and waits until every message it
    /// causes has been sent (see [`MAX_MESSAGES_PER_RAISE`]).
    pub fn fire(&self, vector: u32) {
        self.raise(vector);
        crate::time::delay(2);
    }

    /// Raises the "other" cause on MSI-X vector `vector` and returns at once.
    pub fn raise(&self, vector: u32) {
        self.regs.write32(REG_IMC, !0);
        self.regs.read32(REG_ICR);
        self.regs
            .write32(REG_IVAR, (IVAR_VALID | vector) << IVAR_OTHER_SHIFT);
        self.regs.write32(REG_EIAC, ICR_OTHER);
        self.regs.write32(REG_IMS, ICR_OTHER);
        self.regs.write32(REG_ICS, ICR_OTHER);
    }

    /// Masks every cause and clears the cause register.
    pub fn quiesce(&self) {
        self.regs.write32(REG_IMC, !0);
        self.regs.read32(REG_ICR);
    }
}
