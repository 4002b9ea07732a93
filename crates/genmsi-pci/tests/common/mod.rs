//! A software machine for the PCI tests: a root and a remap level from the core's soft parts,
//! shared device memory (configuration space and BARs) that records every write, the
//! byte-array layouts of the test devices, and a software INTx router.

#![allow(dead_code)]

use genmsi::soft::{MemStore, SoftRemap, SoftRoot};
use genmsi::{
    AllocOpts, DeviceId, DeviceMeta, DomainId, Irq, IrqSystem, Msg, SlotId, StoreCaps, SystemConfig,
};
use genmsi_pci::{
    Bar, ByteBars, ByteConfig, ConfigError, ConfigSpace, IntxError, IntxPin, IntxRouter, Mmio,
    MmioError, PciAddress,
};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

pub const CPUS: u32 = 8;

/// One recorded write: where and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// `None` for configuration space, else the BAR.
    pub bar: Option<Bar>,
    pub offset: u64,
    pub value: u32,
}

/// Device memory shared between the store (inside the irq system) and the test's device
/// side, recording every write.
#[derive(Clone, Debug)]
pub struct Shared<T> {
    pub mem: Arc<Mutex<T>>,
    pub writes: Arc<Mutex<Vec<Write>>>,
}

impl<T> Shared<T> {
    pub fn new(mem: T) -> Self {
        Shared {
            mem: Arc::new(Mutex::new(mem)),
            writes: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Memory recording into `other`'s log, so that the order of writes across configuration
    /// space and BARs shows.
    pub fn sharing_log<U>(mem: T, other: &Shared<U>) -> Self {
        Shared {
            mem: Arc::new(Mutex::new(mem)),
            writes: other.writes.clone(),
        }
    }

    pub fn take_writes(&self) -> Vec<Write> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }

    fn log(&self, bar: Option<Bar>, offset: u64, value: u32) {
        self.writes
            .lock()
            .unwrap()
            .push(Write { bar, offset, value });
    }
}

pub type Config = Shared<ByteConfig<Vec<u8>>>;
pub type Bars = Shared<ByteBars>;

/// A function's configuration space and BARs, recording into one log.
pub fn device_memory(cfg: Vec<u8>, bars: ByteBars) -> (Config, Bars) {
    let config = Shared::new(ByteConfig::new(cfg));
    let bars = Shared::sharing_log(bars, &config);
    (config, bars)
}

impl Config {
    pub fn bytes(&self) -> Vec<u8> {
        self.mem.lock().unwrap().bytes().to_vec()
    }
}

impl Bars {
    pub fn bytes(&self, bar: Bar, range: std::ops::Range<usize>) -> Vec<u8> {
        self.mem.lock().unwrap().bytes(bar).unwrap()[range].to_vec()
    }
}

impl<T: ConfigSpace> ConfigSpace for Shared<T> {
    fn size(&self) -> u16 {
        self.mem.lock().unwrap().size()
    }
    fn read_u8(&self, offset: u16) -> Result<u8, ConfigError> {
        self.mem.lock().unwrap().read_u8(offset)
    }
    fn read_u16(&self, offset: u16) -> Result<u16, ConfigError> {
        self.mem.lock().unwrap().read_u16(offset)
    }
    fn read_u32(&self, offset: u16) -> Result<u32, ConfigError> {
        self.mem.lock().unwrap().read_u32(offset)
    }
    fn write_u8(&mut self, offset: u16, value: u8) -> Result<(), ConfigError> {
        self.log(None, offset.into(), value.into());
        self.mem.lock().unwrap().write_u8(offset, value)
    }
    fn write_u16(&mut self, offset: u16, value: u16) -> Result<(), ConfigError> {
        self.log(None, offset.into(), value.into());
        self.mem.lock().unwrap().write_u16(offset, value)
    }
    fn write_u32(&mut self, offset: u16, value: u32) -> Result<(), ConfigError> {
        self.log(None, offset.into(), value);
        self.mem.lock().unwrap().write_u32(offset, value)
    }
}

impl<T: Mmio> Mmio for Shared<T> {
    fn bar_len(&self, bar: Bar) -> Option<u64> {
        self.mem.lock().unwrap().bar_len(bar)
    }
    fn read_u32(&self, bar: Bar, offset: u64) -> Result<u32, MmioError> {
        self.mem.lock().unwrap().read_u32(bar, offset)
    }
    fn write_u32(&mut self, bar: Bar, offset: u64, value: u32) -> Result<(), MmioError> {
        self.log(Some(bar), offset, value);
        self.mem.lock().unwrap().write_u32(bar, offset, value)
    }
}

/// The irq system with a root and a remap level (with subhandles, so multi-message MSI
/// blocks get the messages such a function needs).
pub struct Machine {
    pub sys: IrqSystem,
    pub root: DomainId,
    pub remap: DomainId,
    pub remap_table: Arc<[AtomicU64]>,
}

impl Machine {
    pub fn new() -> Self {
        let sys = IrqSystem::new(SystemConfig::new(CPUS, 1 << 14));
        let root = sys
            .add_domain(Box::new(SoftRoot::new(CPUS, 1024)), None)
            .unwrap();
        let remap = SoftRemap::new(8192).with_subhandles();
        let remap_table = remap.table();
        let remap = sys.add_domain(Box::new(remap), Some(root)).unwrap();
        Machine {
            sys,
            root,
            remap,
            remap_table,
        }
    }

    /// Follows a message a function sent through remap and root and delivers it; returns
    /// the irq handled.
    pub fn route(&self, msg: &Msg) -> Option<Irq> {
        let msg = SoftRemap::translate(&self.remap_table, msg).unwrap_or(*msg);
        let (irq, cpu) = SoftRoot::decode(&msg)?;
        (self.sys.handle(irq, cpu) == genmsi::Delivery::Handled).then_some(irq)
    }
}

/// Writes `bytes` into `cfg` at `offset`.
pub fn put(cfg: &mut [u8], offset: usize, bytes: &[u8]) {
    cfg[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// A header with vendor/device ids, Status bit 4 (Capabilities List, 7.5.1.1.4), the
/// Capabilities Pointer (0x34, 7.5.1.1.11) and the Interrupt Pin (0x3D, 7.5.1.1.13).
pub fn header(size: usize, vendor: u16, device: u16, cap_pointer: u8, pin: u8) -> Vec<u8> {
    let mut cfg = vec![0u8; size];
    put(&mut cfg, 0x00, &vendor.to_le_bytes());
    put(&mut cfg, 0x02, &device.to_le_bytes());
    // Status 0x0010: Capabilities List.
    put(&mut cfg, 0x06, &[0x10, 0x00]);
    cfg[0x34] = cap_pointer;
    cfg[0x3D] = pin;
    cfg
}

/// A NIC: 4 KiB PCI Express configuration space; capabilities PM at 0x40 -> MSI at 0x50 ->
/// MSI-X at 0x70 -> PCI Express at 0xA0; extended AER at 0x100 -> DSN at 0x150. MSI-X has a
/// 64-entry table at offset 0 of BAR3 and its PBA at offset 0x800 of BAR5.
pub fn nic_config() -> Vec<u8> {
    let mut cfg = header(4096, 0x8086, 0x1572, 0x40, 1);
    // 0x40: Power Management (ID 0x01), next 0x50.
    put(&mut cfg, 0x40, &[0x01, 0x50, 0x03, 0x00]);
    // 0x50: MSI (ID 0x05), next 0x70, control 0x0086: 64-bit, MMC 011b (8 vectors).
    put(&mut cfg, 0x50, &[0x05, 0x70, 0x86, 0x00]);
    // 0x70: MSI-X (ID 0x11), next 0xA0, control 0x003F (table size 63 + 1 = 64);
    // Table 0x0000_0003: offset 0 in BAR3; PBA 0x0000_0805: offset 0x800 in BAR5.
    put(
        &mut cfg,
        0x70,
        &[
            0x11, 0xA0, 0x3F, 0x00, 0x03, 0x00, 0x00, 0x00, 0x05, 0x08, 0x00, 0x00,
        ],
    );
    // 0xA0: PCI Express (ID 0x10), next 0 (end of the list).
    put(&mut cfg, 0xA0, &[0x10, 0x00, 0x02, 0x00]);
    // 0x100: AER (ID 0x0001), version 2, next 0x150: 0x150 << 20 | 2 << 16 | 1 = 0x1502_0001.
    put(&mut cfg, 0x100, &[0x01, 0x00, 0x02, 0x15]);
    // 0x150: Device Serial Number (ID 0x0003), version 1, next 0: 0x0001_0003.
    put(&mut cfg, 0x150, &[0x03, 0x00, 0x01, 0x00]);
    cfg
}

/// The NIC's BARs: BAR3 (MSI-X table, 64 x 16 bytes in 4 KiB) and BAR5 (PBA at 0x800).
pub fn nic_bars() -> ByteBars {
    ByteBars::new()
        .with_bar(Bar::new(0), 0x2_0000)
        .with_bar(Bar::new(3), 0x1000)
        .with_bar(Bar::new(5), 0x1000)
}

/// A storage controller with only MSI: 64-bit address, per-vector masking, 8 vectors.
/// 256-byte conventional space, the capability at 0x60.
pub fn msi64_config() -> Vec<u8> {
    let mut cfg = header(256, 0x1B4B, 0x9230, 0x60, 1);
    // 0x60: MSI, next 0, control 0x0186: PVM (bit 8), 64-bit (bit 7), MMC 011b (bits 3:1).
    put(&mut cfg, 0x60, &[0x05, 0x00, 0x86, 0x01]);
    cfg
}

/// An old device with only 32-bit single-message MSI at 0x48, behind a vendor capability.
pub fn msi32_config() -> Vec<u8> {
    let mut cfg = header(256, 0x10EC, 0x8139, 0x40, 1);
    // 0x40: vendor specific (ID 0x09), next 0x48, length 8.
    put(&mut cfg, 0x40, &[0x09, 0x48, 0x08, 0x00]);
    // 0x48: MSI, next 0, control 0x0000: 32-bit, one vector, no masking.
    put(&mut cfg, 0x48, &[0x05, 0x00, 0x00, 0x00]);
    cfg
}

/// A software INTx router: pin -> swizzled pin -> GSI 16..20 of an IO-APIC-like device whose
/// pins are a `MemStore`; shared pins are counted.
pub struct SoftIntx<'a> {
    pub sys: &'a IrqSystem,
    pub ioapic: DeviceId,
    pub users: BTreeMap<u32, (Irq, u32)>,
}

impl<'a> SoftIntx<'a> {
    pub fn new(sys: &'a IrqSystem, parent: DomainId) -> Self {
        let ioapic = sys.add_device("ioapic", DeviceMeta::default());
        let caps = StoreCaps {
            any_index: false,
            ..StoreCaps::dynamic(24)
        };
        sys.create_device_domain(
            ioapic,
            SlotId::Default,
            Box::new(MemStore::new(caps)),
            parent,
        )
        .unwrap();
        SoftIntx {
            sys,
            ioapic,
            users: BTreeMap::new(),
        }
    }

    pub fn gsi(address: PciAddress, pin: IntxPin) -> u32 {
        16 + u32::from(pin.swizzle(address.device()).register() - 1)
    }
}

impl IntxRouter for SoftIntx<'_> {
    fn route(&mut self, address: PciAddress, pin: IntxPin) -> Result<Irq, IntxError> {
        let gsi = Self::gsi(address, pin);
        if let Some((irq, n)) = self.users.get_mut(&gsi) {
            *n += 1;
            return Ok(*irq);
        }
        let irq = self
            .sys
            .alloc_at(self.ioapic, SlotId::Default, gsi, &AllocOpts::default())?;
        self.users.insert(gsi, (irq, 1));
        Ok(irq)
    }

    fn unroute(&mut self, address: PciAddress, pin: IntxPin, _irq: Irq) {
        let gsi = Self::gsi(address, pin);
        if let Some((_, n)) = self.users.get_mut(&gsi) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(&gsi);
                self.sys
                    .free_index(self.ioapic, SlotId::Default, gsi)
                    .unwrap();
            }
        }
    }
}
