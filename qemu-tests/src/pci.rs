//! PCI configuration space through the legacy mechanism #1 (ports 0xCF8/0xCFC) on bus 0,
//! and the BARs that SeaBIOS assigned before it handed over to the PVH entry.

use crate::mmio::MmioRegion;
use crate::port::{inl, outb, outl, outw};
use spin::Mutex;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Config register: command (16 bits at 0x04).
pub const REG_COMMAND: u16 = 0x04;
/// Command bit 1: memory space enable.
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command bit 2: bus master enable (without it, MSI writes are never issued).
pub const CMD_BUS_MASTER: u16 = 1 << 2;

/// The address/data port pair is one shared resource: every access holds this lock.
static CONFIG_LOCK: Mutex<()> = Mutex::new(());

/// A PCI function on bus 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Device number (slot).
    pub device: u8,
    /// Function number.
    pub function: u8,
}

impl PciFunction {
    fn address(&self, offset: u16) -> u32 {
        (1 << 31)
            | (u32::from(self.device) << 11)
            | (u32::from(self.function) << 8)
            | u32::from(offset & 0xfc)
    }

    /// Reads the aligned dword containing `offset`.
    pub fn read32(&self, offset: u16) -> u32 {
        crate::port::cli_guard(|| {
            let _g = CONFIG_LOCK.lock();
            outl(CONFIG_ADDRESS, self.address(offset));
            inl(CONFIG_DATA)
        })
    }

    /// Writes the aligned dword at `offset`.
    pub fn write32(&self, offset: u16, value: u32) {
        crate::port::cli_guard(|| {
            let _g = CONFIG_LOCK.lock();
            outl(CONFIG_ADDRESS, self.address(offset));
            outl(CONFIG_DATA, value);
        })
    }

    /// Reads 16 bits at `offset` (2-byte aligned).
    pub fn read16(&self, offset: u16) -> u16 {
        (self.read32(offset) >> (8 * (offset & 2))) as u16
    }

    /// Reads 8 bits at `offset`.
    pub fn read8(&self, offset: u16) -> u8 {
        (self.read32(offset) >> (8 * (offset & 3))) as u8
    }

    /// Writes 16 bits at `offset` (2-byte aligned) with a word access, so the other half of
    /// the dword (a Status register with write-1-to-clear bits) is left alone.
    pub fn write16(&self, offset: u16, value: u16) {
        crate::port::cli_guard(|| {
            let _g = CONFIG_LOCK.lock();
            outl(CONFIG_ADDRESS, self.address(offset));
            outw(CONFIG_DATA + (offset & 2), value);
        })
    }

    /// Writes 8 bits at `offset` with a byte access.
    pub fn write8(&self, offset: u16, value: u8) {
        crate::port::cli_guard(|| {
            let _g = CONFIG_LOCK.lock();
            outl(CONFIG_ADDRESS, self.address(offset));
            outb(CONFIG_DATA + (offset & 3), value);
        })
    }

    /// Vendor and device id.
    pub fn ids(&self) -> (u16, u16) {
        let v = self.read32(0);
        (v as u16, (v >> 16) as u16)
    }

    /// Sets bits in the command register.
    pub fn enable_command(&self, bits: u16) {
        self.write16(REG_COMMAND, self.read16(REG_COMMAND) | bits);
    }

    /// The memory BAR `bar` (0..6) as an MMIO region, or `None` for an I/O or unassigned BAR.
    pub fn memory_bar(&self, bar: u8) -> Option<MmioRegion> {
        let off = 0x10 + 4 * u16::from(bar);
        let low = self.read32(off);
        if low & 1 != 0 {
            return None;
        }
        let is64 = (low >> 1) & 3 == 2;
        let high = if is64 { self.read32(off + 4) } else { 0 };
        let base = (u64::from(high) << 32) | u64::from(low & !0xf);
        if base == 0 {
            return None;
        }
        // Size the BAR: write all ones, read back the mask, restore.
        self.write32(off, !0);
        let mask = self.read32(off) & !0xf;
        self.write32(off, low);
        let size = u64::from(!mask).wrapping_add(1) & 0xffff_ffff;
        Some(MmioRegion::new(base, size))
    }
}

/// Finds the first function on bus 0 with `vendor:device`, skipping the first `skip` matches.
pub fn find(vendor: u16, device: u16, skip: usize) -> Option<PciFunction> {
    (0..32)
        .flat_map(|d| {
            (0..8).map(move |f| PciFunction {
                device: d,
                function: f,
            })
        })
        .filter(|f| f.ids() == (vendor, device))
        .nth(skip)
}

/// Capability id of MSI.
pub const CAP_MSI: u8 = 0x05;
/// Capability id of MSI-X.
pub const CAP_MSIX: u8 = 0x11;

impl PciFunction {
    /// The config offset of the first capability with `id`, walking the capability list.
    pub fn find_capability(&self, id: u8) -> Option<u16> {
        // Status bit 4: the capability list exists.
        if self.read16(0x06) & (1 << 4) == 0 {
            return None;
        }
        let mut ptr = u16::from(self.read8(0x34) & 0xfc);
        for _ in 0..48 {
            if ptr == 0 {
                return None;
            }
            if self.read8(ptr) == id {
                return Some(ptr);
            }
            ptr = u16::from(self.read8(ptr + 1) & 0xfc);
        }
        None
    }
}
