//! Device memory shared between a store (inside the irq system) and the simulated hardware
//! that reads it: configuration spaces, BARs, IO-APIC and HPET registers.

use genmsi_pci::{Bar, ByteBars, ByteConfig, ConfigError, ConfigSpace, Mmio, MmioError};
use genmsi_x86::hpet::HpetModel;
use genmsi_x86::ioapic::IoApicModel;
use genmsi_x86::{HpetRegs, IoApicRegs};
use std::sync::{Arc, Mutex, MutexGuard};

/// A shared handle to one piece of simulated device memory; clones reach the same memory.
#[derive(Debug, Default)]
pub struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    /// Wraps `mem`.
    pub fn new(mem: T) -> Self {
        Shared(Arc::new(Mutex::new(mem)))
    }

    /// Locks the memory (the simulator is single threaded; a poisoned lock is a bug).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().expect("simulated device memory lock")
    }
}

/// A function's configuration space.
pub type Config = Shared<ByteConfig<Vec<u8>>>;
/// A function's memory BARs.
pub type Bars = Shared<ByteBars>;

impl ConfigSpace for Config {
    fn size(&self) -> u16 {
        self.lock().size()
    }
    fn read_u8(&self, offset: u16) -> Result<u8, ConfigError> {
        self.lock().read_u8(offset)
    }
    fn read_u16(&self, offset: u16) -> Result<u16, ConfigError> {
        self.lock().read_u16(offset)
    }
    fn read_u32(&self, offset: u16) -> Result<u32, ConfigError> {
        self.lock().read_u32(offset)
    }
    fn write_u8(&mut self, offset: u16, value: u8) -> Result<(), ConfigError> {
        self.lock().write_u8(offset, value)
    }
    fn write_u16(&mut self, offset: u16, value: u16) -> Result<(), ConfigError> {
        self.lock().write_u16(offset, value)
    }
    fn write_u32(&mut self, offset: u16, value: u32) -> Result<(), ConfigError> {
        self.lock().write_u32(offset, value)
    }
}

impl Mmio for Bars {
    fn bar_len(&self, bar: Bar) -> Option<u64> {
        self.lock().bar_len(bar)
    }
    fn read_u32(&self, bar: Bar, offset: u64) -> Result<u32, MmioError> {
        self.lock().read_u32(bar, offset)
    }
    fn write_u32(&mut self, bar: Bar, offset: u64, value: u32) -> Result<(), MmioError> {
        self.lock().write_u32(bar, offset, value)
    }
}

impl IoApicRegs for Shared<IoApicModel> {
    fn read(&mut self, reg: u8) -> u32 {
        self.lock().read(reg)
    }
    fn write(&mut self, reg: u8, value: u32) {
        self.lock().write(reg, value)
    }
}

impl HpetRegs for Shared<HpetModel> {
    fn read64(&mut self, offset: u32) -> u64 {
        self.lock().read64(offset)
    }
    fn write64(&mut self, offset: u32, value: u64) {
        self.lock().write64(offset, value)
    }
}
