//! `genmsi-pci`'s access seams over the real machine: [`PortConfig`] is a function's
//! configuration space through the legacy ports, [`BarWindows`] its memory BARs as the
//! identity-mapped windows SeaBIOS assigned. Both are plain copies of addresses, so every clone
//! (the stores `genmsi-pci` creates keep their own) reaches the same device registers.

use crate::mmio::MmioRegion;
use crate::pci::PciFunction;
use alloc::vec::Vec;
use genmsi::IrqSystem;
use genmsi_pci::{
    msi_requester, pci_add_device, pci_add_device_at, Bar, Bridge, ConfigError, ConfigSpace, Mmio,
    MmioError, PciAddress, PciDevice, RequesterCheck,
};
use genmsi_x86::irte::Svt;
use genmsi_x86::Irte;

/// The configuration space the legacy mechanism reaches (conventional, 256 bytes).
const CONFIG_SIZE: u16 = 256;

/// A write genmsi made through [`PortConfig`] or [`BarWindows`] while [`record_writes`] ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// A configuration space write of `width` bytes.
    Config {
        /// The function written.
        function: PciFunction,
        /// Offset.
        offset: u16,
        /// Bytes.
        width: u8,
    },
    /// A 32-bit write into a memory BAR.
    Bar {
        /// The BAR.
        bar: Bar,
        /// Offset in the BAR.
        offset: u64,
    },
}

static WRITES: spin::Mutex<Option<alloc::vec::Vec<Write>>> = spin::Mutex::new(None);

fn log_write(w: Write) {
    if let Some(log) = WRITES.lock().as_mut() {
        log.push(w);
    }
}

/// Runs `f` and returns, with its result, every configuration and BAR write made through
/// this module's accessors meanwhile (by any device).
pub fn record_writes<T>(f: impl FnOnce() -> T) -> (T, alloc::vec::Vec<Write>) {
    *WRITES.lock() = Some(alloc::vec::Vec::new());
    let out = f();
    let log = WRITES.lock().take().unwrap_or_default();
    (out, log)
}

/// A function as `genmsi-pci` sees it.
pub type Function = PciDevice<PortConfig, BarWindows>;

/// One function's configuration space through ports 0xCF8/0xCFC.
#[derive(Clone, Copy, Debug)]
pub struct PortConfig(pub PciFunction);

impl PortConfig {
    fn check(offset: u16, width: u8) -> Result<(), ConfigError> {
        if !offset.is_multiple_of(u16::from(width)) {
            return Err(ConfigError::Misaligned { offset, width });
        }
        if offset + u16::from(width) > CONFIG_SIZE {
            return Err(ConfigError::OutOfRange {
                offset,
                width,
                size: CONFIG_SIZE,
            });
        }
        Ok(())
    }
}

impl ConfigSpace for PortConfig {
    fn size(&self) -> u16 {
        CONFIG_SIZE
    }

    fn read_u8(&self, offset: u16) -> Result<u8, ConfigError> {
        Self::check(offset, 1)?;
        Ok(self.0.read8(offset))
    }

    fn read_u16(&self, offset: u16) -> Result<u16, ConfigError> {
        Self::check(offset, 2)?;
        Ok(self.0.read16(offset))
    }

    fn read_u32(&self, offset: u16) -> Result<u32, ConfigError> {
        Self::check(offset, 4)?;
        Ok(self.0.read32(offset))
    }

    fn write_u8(&mut self, offset: u16, value: u8) -> Result<(), ConfigError> {
        Self::check(offset, 1)?;
        log_write(Write::Config {
            function: self.0,
            offset,
            width: 1,
        });
        self.0.write8(offset, value);
        Ok(())
    }

    fn write_u16(&mut self, offset: u16, value: u16) -> Result<(), ConfigError> {
        Self::check(offset, 2)?;
        log_write(Write::Config {
            function: self.0,
            offset,
            width: 2,
        });
        self.0.write16(offset, value);
        Ok(())
    }

    fn write_u32(&mut self, offset: u16, value: u32) -> Result<(), ConfigError> {
        Self::check(offset, 4)?;
        log_write(Write::Config {
            function: self.0,
            offset,
            width: 4,
        });
        self.0.write32(offset, value);
        Ok(())
    }
}

/// A function's memory BARs, each the window its BAR register names.
#[derive(Clone, Copy, Debug)]
pub struct BarWindows {
    bars: [Option<MmioRegion>; Bar::COUNT as usize],
}

impl BarWindows {
    /// The memory BARs of `f` as assigned now (I/O and unassigned BARs are absent).
    pub fn of(f: PciFunction) -> Self {
        let mut bars = [None; Bar::COUNT as usize];
        let mut index = 0;
        while index < Bar::COUNT {
            bars[usize::from(index)] = f.memory_bar(index);
            // A 64-bit BAR takes the next register for its high half.
            let low = f.read32(0x10 + 4 * u16::from(index));
            index += if low & 0b111 == 0b100 { 2 } else { 1 };
        }
        BarWindows { bars }
    }

    fn window(&self, bar: Bar, offset: u64) -> Result<MmioRegion, MmioError> {
        let w = self.bars[usize::from(bar.index())].ok_or(MmioError::NoBar { bar })?;
        if !offset.is_multiple_of(4) {
            return Err(MmioError::Misaligned { bar, offset });
        }
        if offset.checked_add(4).is_none_or(|end| end > w.len()) {
            return Err(MmioError::OutOfRange {
                bar,
                offset,
                len: w.len(),
            });
        }
        Ok(w)
    }
}

impl Mmio for BarWindows {
    fn bar_len(&self, bar: Bar) -> Option<u64> {
        self.bars[usize::from(bar.index())].map(|w| w.len())
    }

    fn read_u32(&self, bar: Bar, offset: u64) -> Result<u32, MmioError> {
        Ok(self.window(bar, offset)?.read32(offset))
    }

    fn write_u32(&mut self, bar: Bar, offset: u64, value: u32) -> Result<(), MmioError> {
        let w = self.window(bar, offset)?;
        log_write(Write::Bar { bar, offset });
        w.write32(offset, value);
        Ok(())
    }
}

/// Every bridge enumeration found, as `genmsi-pci` reads it from configuration space (read
/// once, then remembered): the topology functions are registered in.
pub fn bridges() -> &'static [Bridge] {
    static BRIDGES: spin::Once<Vec<Bridge>> = spin::Once::new();
    BRIDGES.call_once(|| {
        crate::pci::enumerate()
            .iter()
            .filter_map(|found| {
                let f = found.function;
                // An unreadable header is no bridge: the walk then stops at that bus.
                Bridge::read(&PortConfig(f), address(f)).ok().flatten()
            })
            .collect()
    })
}

/// Registers `f` with `sys` where enumeration found it: the requester id (or bus range) its
/// writes carry behind the bridges above it, and its INTx path to the root bus.
pub fn register(sys: &IrqSystem, name: &str, f: PciFunction) -> Function {
    pci_add_device_at(
        sys,
        name,
        address(f),
        bridges(),
        PortConfig(f),
        BarWindows::of(f),
    )
    .expect("the enumerated bridges lead to bus 0")
}

/// Registers `f` with `sys` under the requester id of `as_address`, a wrong one on purpose
/// (the source-id check).
pub fn register_as(
    sys: &IrqSystem,
    name: &str,
    f: PciFunction,
    as_address: PciAddress,
) -> Function {
    pci_add_device(sys, name, as_address, PortConfig(f), BarWindows::of(f))
}

/// The bus/device/function of `f`, where enumeration found it.
pub fn address(f: PciFunction) -> PciAddress {
    PciAddress::new(f.bus, f.device, f.function)
}

/// The source check the IRTEs of `f`'s messages must make, from the enumerated topology.
pub fn requester_check(f: PciFunction) -> RequesterCheck {
    msi_requester(bridges(), address(f)).expect("the enumerated bridges lead to bus 0")
}

/// The requester id `f`'s message writes carry (what a fault record names): its own, or the
/// alias of the bridges above it.
pub fn carried_requester_id(f: PciFunction) -> u16 {
    match requester_check(f) {
        RequesterCheck::Id(id) | RequesterCheck::Buses { alias: id, .. } => id.requester_id(),
    }
}

/// True when IRTE `e` makes exactly the check the topology asks for `f`: SVT=01, SQ=00 and the
/// requester id, or SVT=10 and the bus range in SID (VT-d 9.10).
pub fn irte_checks(e: &Irte, f: PciFunction) -> bool {
    match requester_check(f) {
        RequesterCheck::Id(id) => {
            e.svt == Svt::RequesterId && e.sq == 0 && e.sid == id.requester_id()
        }
        RequesterCheck::Buses { range, .. } => {
            e.svt == Svt::BusRange
                && e.sq == 0
                && e.sid == u16::from(range.first) << 8 | u16::from(range.last)
        }
    }
}
