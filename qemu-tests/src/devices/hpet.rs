//! The HPET at 0xFED00000 (IA-PC HPET specification 1.0a): the main counter, and timers
//! that can deliver by FSB (a message write) when QEMU runs with `-global hpet.msi=on`.

use crate::mmio::MmioRegion;

/// The HPET's MMIO base on q35.
pub const BASE: u64 = 0xfed0_0000;
const REG_CAPS: u64 = 0x000;
const REG_CONFIG: u64 = 0x010;
const REG_COUNTER: u64 = 0x0f0;
/// General configuration bit 0: the main counter runs and timers may fire.
const CONFIG_ENABLE: u64 = 1 << 0;

/// Timer configuration bit 2: interrupt enable.
pub const TN_INT_ENABLE: u64 = 1 << 2;
/// Timer configuration bit 3: periodic mode.
pub const TN_PERIODIC: u64 = 1 << 3;
/// Timer configuration bit 14: FSB delivery enabled.
pub const TN_FSB_ENABLE: u64 = 1 << 14;
/// Timer configuration bit 15: FSB delivery capable.
pub const TN_FSB_CAPABLE: u64 = 1 << 15;

/// The HPET.
#[derive(Clone, Copy, Debug)]
pub struct Hpet {
    regs: MmioRegion,
}

impl Default for Hpet {
    fn default() -> Self {
        Self::new()
    }
}

impl Hpet {
    /// The q35 HPET.
    pub fn new() -> Self {
        Hpet {
            regs: MmioRegion::new(BASE, 0x400),
        }
    }

    /// Its register block (for the HPET message store).
    pub fn regs(&self) -> MmioRegion {
        self.regs
    }

    /// Number of timers.
    pub fn timers(&self) -> u32 {
        ((self.regs.read64(REG_CAPS) >> 8) & 0x1f) as u32 + 1
    }

    /// Starts the main counter.
    pub fn enable(&self) {
        let c = self.regs.read64(REG_CONFIG);
        self.regs.write64(REG_CONFIG, c | CONFIG_ENABLE);
    }

    /// The main counter.
    pub fn counter(&self) -> u64 {
        self.regs.read64(REG_COUNTER)
    }

    /// Timer `n`'s configuration register.
    pub fn timer_config(&self, n: u32) -> u64 {
        self.regs.read64(0x100 + 0x20 * u64::from(n))
    }

    /// Writes timer `n`'s configuration register.
    pub fn set_timer_config(&self, n: u32, value: u64) {
        self.regs.write64(0x100 + 0x20 * u64::from(n), value);
    }

    /// Timer `n`'s FSB interrupt route register as the message it sends: (address, data).
    pub fn fsb_route(&self, n: u32) -> genmsi::Msg {
        let route = self.regs.read64(0x110 + 0x20 * u64::from(n));
        genmsi::Msg {
            address: route >> 32,
            data: route as u32,
        }
    }

    /// Arms timer `n` (one-shot) to fire `ticks` from now.
    pub fn arm(&self, n: u32, ticks: u64) {
        let when = self.counter() + ticks;
        self.regs.write64(0x108 + 0x20 * u64::from(n), when);
    }
}

/// `genmsi-x86`'s register access for its HPET store, over the real register block.
impl genmsi_x86::HpetRegs for Hpet {
    fn read64(&mut self, offset: u32) -> u64 {
        self.regs.read64(u64::from(offset))
    }

    fn write64(&mut self, offset: u32, value: u64) {
        self.regs.write64(u64::from(offset), value)
    }
}
