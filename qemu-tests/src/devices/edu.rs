//! QEMU's `edu` teaching device (vendor 1234, device 11e8): raises its one interrupt on a
//! register write, through MSI when its MSI capability is enabled and INTx otherwise.

use crate::mmio::MmioRegion;
use crate::pci::{self, PciFunction};

const VENDOR: u16 = 0x1234;
const DEVICE: u16 = 0x11e8;
/// Identification register: 0x010000ed in its low bits.
const REG_ID: u64 = 0x00;
/// Interrupt status: the bits raised and not yet acknowledged.
const REG_IRQ_STATUS: u64 = 0x24;
/// Writing bits here sets them in the status and raises the interrupt.
const REG_IRQ_RAISE: u64 = 0x60;
/// Writing bits here clears them; the INTx line drops when the status is zero.
const REG_IRQ_ACK: u64 = 0x64;

/// One `edu` device.
#[derive(Clone, Copy, Debug)]
pub struct Edu {
    /// Its PCI function.
    pub pci: PciFunction,
    regs: MmioRegion,
}

impl Edu {
    /// The `nth` edu device anywhere in the hierarchy, with memory decoding and bus mastering enabled.
    pub fn find(nth: usize) -> Option<Edu> {
        let f = pci::find(VENDOR, DEVICE, nth)?;
        let regs = f.memory_bar(0)?;
        pci::enable_path(f);
        let edu = Edu { pci: f, regs };
        (edu.regs.read32(REG_ID) & 0xff == 0xed).then_some(edu)
    }

    /// Raises the interrupt (status bit `bit`).
    pub fn raise(&self, bit: u32) {
        self.regs.write32(REG_IRQ_RAISE, 1 << bit);
    }

    /// Acknowledges every raised bit (drops the INTx line).
    pub fn ack(&self) {
        let status = self.regs.read32(REG_IRQ_STATUS);
        self.regs.write32(REG_IRQ_ACK, status);
    }

    /// The raised, unacknowledged bits.
    pub fn status(&self) -> u32 {
        self.regs.read32(REG_IRQ_STATUS)
    }
}
