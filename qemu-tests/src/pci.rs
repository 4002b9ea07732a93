//! PCI configuration space through the legacy mechanism #1 (ports 0xCF8/0xCFC), the
//! enumeration of every function the machine has, and the BARs that SeaBIOS assigned before it
//! handed over to the PVH entry.
//!
//! [`enumerate`] walks the hierarchy depth first from bus 0: every device number, function 0
//! and, when its header says multi-function, functions 1-7; a PCI-to-PCI bridge (a PCIe root
//! or downstream port, header type 1) leads to its secondary bus, as SeaBIOS numbered it. Each
//! function knows the bridges above it, so that bus mastering can be enabled along the whole
//! path a device's memory writes (and so its MSI messages) take upstream.

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

/// A PCI function: where it is in the hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Bus number.
    pub bus: u8,
    /// Device number (slot).
    pub device: u8,
    /// Function number.
    pub function: u8,
}

impl PciFunction {
    /// The function at `bus:device.function`.
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        PciFunction {
            bus,
            device,
            function,
        }
    }

    /// The 16-bit requester id of this location (bus << 8 | device << 3 | function).
    pub fn requester_id(&self) -> u16 {
        (u16::from(self.bus) << 8) | (u16::from(self.device) << 3) | u16::from(self.function)
    }

    fn address(&self, offset: u16) -> u32 {
        (1 << 31)
            | (u32::from(self.bus) << 16)
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

/// Header type register (8 bits at 0x0E): bit 7 = multi-function, bits 6:0 = layout.
const REG_HEADER_TYPE: u16 = 0x0e;
/// Header layout 1: a PCI-to-PCI bridge.
const HEADER_BRIDGE: u8 = 1;
/// Bridge header: secondary bus number.
const REG_SECONDARY_BUS: u16 = 0x19;

/// One function found by [`enumerate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Where it is.
    pub function: PciFunction,
    /// Vendor and device id.
    pub ids: (u16, u16),
    /// The bridges between the host bridge and this function, nearest the root first.
    pub upstream: alloc::vec::Vec<PciFunction>,
}

static FOUND: spin::Once<alloc::vec::Vec<Found>> = spin::Once::new();

/// Every function of the machine, in depth-first order (walked once, then remembered).
pub fn enumerate() -> &'static [Found] {
    FOUND.call_once(|| {
        let mut found = alloc::vec::Vec::new();
        let mut visited = [false; 256];
        walk(0, &mut alloc::vec::Vec::new(), &mut visited, &mut found);
        found
    })
}

fn walk(
    bus: u8,
    upstream: &mut alloc::vec::Vec<PciFunction>,
    visited: &mut [bool; 256],
    found: &mut alloc::vec::Vec<Found>,
) {
    if core::mem::replace(&mut visited[usize::from(bus)], true) {
        return;
    }
    for device in 0..32 {
        let f0 = PciFunction::new(bus, device, 0);
        if f0.ids().0 == 0xffff {
            continue;
        }
        let functions = if f0.read8(REG_HEADER_TYPE) & 0x80 != 0 {
            8
        } else {
            1
        };
        for function in 0..functions {
            let f = PciFunction::new(bus, device, function);
            let ids = f.ids();
            if ids.0 == 0xffff {
                continue;
            }
            found.push(Found {
                function: f,
                ids,
                upstream: upstream.clone(),
            });
            if f.read8(REG_HEADER_TYPE) & 0x7f == HEADER_BRIDGE {
                let secondary = f.read8(REG_SECONDARY_BUS);
                // Zero: a bridge the firmware left unnumbered, which leads nowhere yet.
                if secondary != 0 {
                    upstream.push(f);
                    walk(secondary, upstream, visited, found);
                    upstream.pop();
                }
            }
        }
    }
}

/// Every function with `vendor:device`, in enumeration order.
pub fn find_all(vendor: u16, device: u16) -> impl Iterator<Item = &'static Found> {
    enumerate()
        .iter()
        .filter(move |f| f.ids == (vendor, device))
}

/// The `skip`-th function (from 0) with `vendor:device`, anywhere in the hierarchy.
pub fn find(vendor: u16, device: u16, skip: usize) -> Option<PciFunction> {
    find_all(vendor, device).nth(skip).map(|f| f.function)
}

/// True when some function answers at `bus:device.function`.
pub fn present(at: PciFunction) -> bool {
    enumerate().iter().any(|f| f.function == at)
}

/// Enables memory decoding and bus mastering on `f` and on every bridge above it: a bridge
/// without bus mastering does not forward its secondary side's writes (MSI among them) upstream.
pub fn enable_path(f: PciFunction) {
    let upstream = enumerate()
        .iter()
        .find(|x| x.function == f)
        .map(|x| x.upstream.as_slice())
        .unwrap_or_default();
    for bridge in upstream {
        bridge.enable_command(CMD_MEMORY | CMD_BUS_MASTER);
    }
    f.enable_command(CMD_MEMORY | CMD_BUS_MASTER);
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
