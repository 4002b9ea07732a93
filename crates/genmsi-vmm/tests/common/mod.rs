//! A guest driver for the tests: it programs, masks and unmasks entries and flips MSI-X
//! Enable and Function Mask through trapped accesses, as a guest kernel would.

#![allow(dead_code)]

use genmsi::Msg;
use genmsi_pci::{Bar, PciAddress};
use genmsi_vmm::{HostMachine, HostNic, MachineConfig, Mode, PassthroughConfig, PassthroughMsix};
use std::sync::Arc;

pub const VECTORS: u32 = 16;

/// The message the guest programs in entry `i`.
pub fn guest_msg(i: u32) -> Msg {
    Msg::new(0xFEE0_2000, 0x40 + i)
}

pub struct Guest {
    pub vmm: PassthroughMsix,
    pub bar: Bar,
    table: u64,
    pba: u64,
}

impl Guest {
    /// A remapped 4-CPU host with a `VECTORS`-entry NIC, every entry programmed (masked).
    pub fn new(config: PassthroughConfig) -> Self {
        Self::on(MachineConfig::remapped(4), VECTORS, config)
    }

    /// A `vectors`-entry NIC on a `machine`, every entry programmed (masked).
    pub fn on(machine: MachineConfig, vectors: u32, config: PassthroughConfig) -> Self {
        let machine = Arc::new(HostMachine::new(machine).unwrap());
        let nic = HostNic::new(machine, PciAddress::new(0x3A, 0, 0), vectors).unwrap();
        let cap = *nic.cap();
        let mut g = Guest {
            vmm: PassthroughMsix::new(nic, config).unwrap(),
            bar: cap.table.bar,
            table: u64::from(cap.table.offset),
            pba: u64::from(cap.pba.offset),
        };
        for i in 0..vectors {
            g.program(i, guest_msg(i));
        }
        g
    }

    pub fn on_demand() -> Self {
        Self::new(PassthroughConfig {
            record: true,
            ..PassthroughConfig::new(Mode::OnDemand)
        })
    }

    pub fn entry(&self, i: u32) -> u64 {
        self.table + u64::from(i) * 16
    }

    pub fn program(&mut self, i: u32, msg: Msg) {
        let at = self.entry(i);
        self.vmm
            .mmio_write(self.bar, at, &msg.address.to_le_bytes())
            .unwrap();
        self.vmm
            .mmio_write(self.bar, at + 8, &msg.data.to_le_bytes())
            .unwrap();
    }

    pub fn unmask(&mut self, i: u32) -> genmsi_vmm::Result<()> {
        self.vmm.mmio_write(self.bar, self.entry(i) + 12, &[0; 4])
    }

    pub fn mask(&mut self, i: u32) {
        self.vmm
            .mmio_write(self.bar, self.entry(i) + 12, &[1, 0, 0, 0])
            .unwrap();
    }

    /// Writes the high byte of Message Control: Enable and Function Mask.
    pub fn control(&mut self, enable: bool, function_mask: bool) -> genmsi_vmm::Result<()> {
        let byte = u8::from(enable) << 7 | u8::from(function_mask) << 6;
        self.vmm.config_write(3, &[byte])
    }

    /// The guest reads the first PBA qword.
    pub fn pba(&self) -> u64 {
        let mut q = [0u8; 8];
        self.vmm.mmio_read(self.bar, self.pba, &mut q).unwrap();
        u64::from_le_bytes(q)
    }

    /// The host indices allocated, in order.
    pub fn host_indices(&self) -> Vec<u32> {
        let host = self.vmm.host();
        host.machine()
            .sys()
            .descs(host.pci().id, genmsi::SlotId::Default)
            .map(|d| d.iter().map(|d| d.index).collect())
            .unwrap_or_default()
    }

    /// The host table's bytes.
    pub fn host_table(&self) -> Vec<u8> {
        let host = self.vmm.host();
        let cap = host.cap();
        (0..cap.table_size)
            .flat_map(|i| cap.read_entry(&host.pci().bars, i).unwrap().to_dwords())
            .flat_map(u32::to_le_bytes)
            .collect()
    }

    pub fn balanced(&self) -> bool {
        self.vmm.counters().balanced(self.vmm.pending())
    }
}
