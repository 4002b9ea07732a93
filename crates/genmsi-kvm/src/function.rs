//! The PCI function the guest sees: a type 0 configuration header whose MSI-X capability,
//! table and PBA are genmsi-vmm's emulation ([`VirtMsix`]) over the KVM backend.
//!
//! The harness is the guest's firmware: BAR0 (32-bit memory) is placed at a fixed address
//! before the guest runs; the guest reads it back. Only the command register and the MSI-X
//! capability take writes.

use crate::harness::HarnessError;
use genmsi_pci::msix::Region as BarRegion;
use genmsi_pci::Bar;
use genmsi_vmm::kvm::KvmMsix;
use genmsi_vmm::ring::Ring;
use genmsi_vmm::{Error, MsixLayout, Strategy, VirtMsix};

/// Where the MSI-X capability sits in configuration space.
pub const MSIX_CAP: u16 = 0x70;
/// Configuration header offsets used here (PCI local bus 6.1).
mod header {
    pub const STATUS: usize = 0x06;
    pub const STATUS_CAP_LIST: u8 = 1 << 4;
    pub const COMMAND: usize = 0x04;
    pub const BAR0: usize = 0x10;
    pub const CAP_POINTER: usize = 0x34;
}
/// Configuration space bytes.
const CONFIG_SIZE: usize = 256;
const PAGE: u64 = 0x1000;
/// The MSI-X capability is 12 bytes (PCIe 7.7.2).
const CAP_LEN: u16 = 12;
/// Refusals [`Function`] keeps (the newest); [`Ring::total`] counts them all.
pub const ERRORS_KEPT: usize = 64;
/// BAR0 is a 32-bit memory BAR: it ends at or below 4 GiB.
const BAR32_END: u64 = 1 << 32;

/// One emulated function (see the module docs).
#[derive(Debug)]
pub struct Function {
    config: [u8; CONFIG_SIZE],
    bar0: u64,
    bar0_len: u64,
    virt: VirtMsix<KvmMsix>,
    /// What the host refused of the guest's accesses: fed by the guest, so bounded.
    errors: Ring<Error>,
}

impl Function {
    /// A function with `backend.entries` MSI-X entries, BAR0 at `bar0`: table at offset 0,
    /// PBA on the page after it. Sizes are checked before any arithmetic:
    /// [`Error::Layout`] unless `entries` is 1..=2048, [`HarnessError::Bar`] unless BAR0 is
    /// aligned to its size and ends at or below 4 GiB.
    pub fn new(
        bar0: u64,
        entries: u32,
        backend: KvmMsix,
        strategy: Strategy,
    ) -> Result<Self, HarnessError> {
        if entries == 0 || entries > MsixLayout::MAX_VECTORS {
            return Err(Error::Layout { vectors: entries }.into());
        }
        let pba_at = (u64::from(entries) * 16).next_multiple_of(PAGE);
        let bar0_len = (pba_at + PAGE).next_power_of_two().max(0x1_0000);
        if bar0 % bar0_len != 0 || bar0 > BAR32_END - bar0_len {
            return Err(HarnessError::Bar {
                base: bar0,
                len: bar0_len,
            });
        }
        let table = BarRegion::parse(0).map_err(Error::Msix)?;
        let pba = BarRegion::parse(pba_at as u32).map_err(Error::Msix)?;
        let layout = MsixLayout::new(entries, table, pba, 0)?;
        let mut config = [0u8; CONFIG_SIZE];
        // Vendor 0x1B36, device 0x0110: a made-up test function.
        config[0..4].copy_from_slice(&[0x36, 0x1B, 0x10, 0x01]);
        config[header::STATUS] = header::STATUS_CAP_LIST;
        config[header::CAP_POINTER] = MSIX_CAP as u8;
        config[header::BAR0..header::BAR0 + 4].copy_from_slice(&(bar0 as u32).to_le_bytes());
        Ok(Function {
            config,
            bar0,
            bar0_len,
            virt: VirtMsix::new(layout, backend, strategy),
            errors: Ring::new(ERRORS_KEPT),
        })
    }

    /// The emulated MSI-X over KVM.
    pub fn virt(&self) -> &VirtMsix<KvmMsix> {
        &self.virt
    }

    /// The emulated MSI-X, for the VMM's own policies (shrink, sync).
    pub fn virt_mut(&mut self) -> &mut VirtMsix<KvmMsix> {
        &mut self.virt
    }

    /// What the host refused or could not follow of the guest's writes: the newest
    /// [`ERRORS_KEPT`], and the exact count of all ([`Ring::total`]).
    pub fn errors(&self) -> &Ring<Error> {
        &self.errors
    }

    /// Takes the errors kept so far, oldest first (the count stays).
    pub fn take_errors(&mut self) -> Vec<Error> {
        self.errors.drain()
    }

    fn record(&mut self, r: Result<(), Error>) {
        if let Err(e) = r {
            self.errors.push(e);
        }
    }

    /// A configuration read of `data.len()` bytes at `offset`.
    pub fn config_read(&self, offset: u16, data: &mut [u8]) {
        let cap = MSIX_CAP..MSIX_CAP + CAP_LEN;
        if cap.contains(&offset) {
            let r = self.virt.config_read(u64::from(offset - MSIX_CAP), data);
            if r.is_err() {
                data.fill(0xFF);
            }
            return;
        }
        for (k, b) in data.iter_mut().enumerate() {
            *b = self
                .config
                .get(usize::from(offset) + k)
                .copied()
                .unwrap_or(0xFF);
        }
    }

    /// A configuration write.
    pub fn config_write(&mut self, offset: u16, data: &[u8]) {
        let cap = MSIX_CAP..MSIX_CAP + CAP_LEN;
        if cap.contains(&offset) {
            let r = self.virt.config_write(u64::from(offset - MSIX_CAP), data);
            self.record(r);
        } else if usize::from(offset) == header::COMMAND && data.len() <= 2 {
            self.config[header::COMMAND..header::COMMAND + data.len()].copy_from_slice(data);
        }
    }

    /// True when `address` is in BAR0.
    pub fn claims(&self, address: u64) -> bool {
        (self.bar0..self.bar0 + self.bar0_len).contains(&address)
    }

    /// A guest read in BAR0.
    pub fn mmio_read(&self, address: u64, data: &mut [u8]) {
        if self
            .virt
            .mmio_read(Bar::new(0), address - self.bar0, data)
            .is_err()
        {
            data.fill(0xFF);
        }
    }

    /// A guest write in BAR0.
    pub fn mmio_write(&mut self, address: u64, data: &[u8]) {
        let r = self.virt.mmio_write(Bar::new(0), address - self.bar0, data);
        self.record(r);
    }
}
