//! The IO-APIC at 0xFEC00000 (82093AA datasheet): indirect registers behind IOREGSEL/IOWIN and
//! its redirection table entries (RTEs), 64 bits each at register 0x10 + 2 * pin.

use crate::mmio::MmioRegion;

/// The IO-APIC's MMIO base on q35.
pub const BASE: u64 = 0xfec0_0000;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_RTE0: u32 = 0x10;
/// RTE bit 16: masked.
pub const RTE_MASKED: u64 = 1 << 16;
/// RTE bit 14: remote IRR (a level interrupt was accepted and not yet EOI'd).
pub const RTE_REMOTE_IRR: u64 = 1 << 14;

/// The IO-APIC.
#[derive(Clone, Copy, Debug)]
pub struct IoApic {
    regs: MmioRegion,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new()
    }
}

impl IoApic {
    /// The q35 IO-APIC.
    pub fn new() -> Self {
        IoApic {
            regs: MmioRegion::new(BASE, 0x20),
        }
    }

    fn read(&self, reg: u32) -> u32 {
        self.regs.write32(IOREGSEL, reg);
        self.regs.read32(IOWIN)
    }

    fn write(&self, reg: u32, value: u32) {
        self.regs.write32(IOREGSEL, reg);
        self.regs.write32(IOWIN, value);
    }

    /// Reads the RTE of `pin`.
    pub fn read_rte(&self, pin: u32) -> u64 {
        let lo = self.read(REG_RTE0 + 2 * pin);
        let hi = self.read(REG_RTE0 + 2 * pin + 1);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Writes the RTE of `pin`: the high half first while the low half keeps the entry as it
    /// was, then the low half, which holds the mask bit, so the entry never fires half-written.
    pub fn write_rte(&self, pin: u32, rte: u64) {
        let lo = self.read(REG_RTE0 + 2 * pin);
        self.write(REG_RTE0 + 2 * pin, lo | RTE_MASKED as u32);
        self.write(REG_RTE0 + 2 * pin + 1, (rte >> 32) as u32);
        self.write(REG_RTE0 + 2 * pin, rte as u32);
    }
}

/// `genmsi-x86`'s register access for its IO-APIC store, over the real IOREGSEL/IOWIN pair.
impl genmsi_x86::IoApicRegs for IoApic {
    fn read(&mut self, reg: u8) -> u32 {
        IoApic::read(self, u32::from(reg))
    }

    fn write(&mut self, reg: u8, value: u32) {
        IoApic::write(self, u32::from(reg), value)
    }
}
