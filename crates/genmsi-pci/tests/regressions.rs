//! Regression tests for bugs found in review: each failed before its fix.

mod common;

use common::*;
use genmsi::AllocOpts;
use genmsi_pci::msi::MsiCap;
use genmsi_pci::*;

/// PCIe 7.5.1: conventional capabilities live below 0x100. An MSI capability at 0xF8 with
/// 64-bit addressing and masking (0x18 bytes) would reach the extended header at 0x100.
#[test]
fn a_conventional_capability_may_not_run_into_extended_space() {
    let mut cfg = header(4096, 0x1234, 0x5678, 0xF8, 1);
    put(&mut cfg, 0xF8, &[0x05, 0x00, 0x80, 0x01]);
    put(&mut cfg, 0x100, &[0x01, 0x00, 0x02, 0x00]);
    let c = ByteConfig::new(cfg);
    assert!(matches!(
        MsiCap::read(&c, 0xF8),
        Err(MsiError::Cap(CapError::Truncated { offset: 0xF8, .. }))
    ));
}

/// A 4-vector MSI function asked for exactly 3 gets a block of 4 with 3 handed out.
#[test]
fn msi_rounds_the_block_up_not_down() {
    let m = Machine::new();
    let (config, bars) = device_memory(msi64_config(), ByteBars::new());
    // Multiple Message Capable 010b: 4 vectors (control 0x0184).
    config.clone().write_u16(0x62, 0x0184).unwrap();
    let dev = pci_add_device(&m.sys, "d", PciAddress::new(1, 0, 0), config.clone(), bars);
    let got = pci_alloc_irq_vectors(
        &m.sys,
        &dev,
        m.remap,
        3..=3,
        IrqTypes::MSI,
        &AllocOpts::default(),
        None,
    )
    .unwrap();
    assert!(
        matches!(&got, IrqVectors::Msi(irqs) if irqs.len() == 3),
        "{got:?}"
    );
    // Multiple Message Enable (bits 6:4) = 010b: a block of 4.
    assert_eq!(config.read_u16(0x62).unwrap() >> 4 & 0x7, 2);
}

/// BARs whose write at one offset fails (a device that stops answering mid-way).
#[derive(Clone, Debug)]
struct Flaky {
    inner: Bars,
    fail_bar: Bar,
    fail_at: u64,
}

impl Mmio for Flaky {
    fn bar_len(&self, bar: Bar) -> Option<u64> {
        self.inner.bar_len(bar)
    }
    fn read_u32(&self, bar: Bar, offset: u64) -> Result<u32, MmioError> {
        self.inner.read_u32(bar, offset)
    }
    fn write_u32(&mut self, bar: Bar, offset: u64, value: u32) -> Result<(), MmioError> {
        if bar == self.fail_bar && offset == self.fail_at {
            return Err(MmioError::Failed { bar, offset });
        }
        self.inner.write_u32(bar, offset, value)
    }
}

/// An MSI-X enable that fails half-way leaves MSI-X disabled, so the fallback to MSI never has
/// both mechanisms on.
#[test]
fn a_failed_msix_enable_never_leaves_both_mechanisms_on() {
    let m = Machine::new();
    let (config, bars) = device_memory(nic_config(), nic_bars());
    // Entry 63's Vector Control write fails; the others were masked by firmware.
    for i in 0..63u64 {
        bars.clone().write_u32(Bar::new(3), i * 16 + 12, 1).unwrap();
    }
    let flaky = Flaky {
        inner: bars.clone(),
        fail_bar: Bar::new(3),
        fail_at: 63 * 16 + 12,
    };
    let dev = pci_add_device(
        &m.sys,
        "nic",
        PciAddress::new(2, 0, 0),
        config.clone(),
        flaky,
    );
    let got = pci_alloc_irq_vectors(
        &m.sys,
        &dev,
        m.remap,
        1..=4,
        IrqTypes::ALL,
        &AllocOpts::default(),
        None,
    )
    .unwrap();
    assert!(matches!(got, IrqVectors::Msi(_)), "{got:?}");
    let (msix, msi) = (
        config.read_u16(0x72).unwrap(),
        config.read_u16(0x52).unwrap(),
    );
    assert_eq!(msix & 0x8000, 0, "MSI-X Enable is off: {msix:#06x}");
    assert_eq!(msi & 1, 1, "MSI Enable is on: {msi:#06x}");
    // And MSI-X is refused while MSI is on.
    let dev2 = pci_add_device(
        &m.sys,
        "nic-again",
        PciAddress::new(2, 0, 1),
        config.clone(),
        bars,
    );
    assert_eq!(
        pci_alloc_irq_vectors(
            &m.sys,
            &dev2,
            m.remap,
            1..=4,
            IrqTypes::MSIX,
            &AllocOpts::default(),
            None
        ),
        Err(PciError::OtherEnabled { id: CapId::Msi })
    );
}
