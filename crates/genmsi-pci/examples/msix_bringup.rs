//! Bringing up MSI-X on a PCI function, as a kernel embedding the crates does it.
//!
//! The crate touches a device only through two traits, defined here by the embedder:
//! [`ConfigSpace`] (ECAM or port I/O on real hardware) and [`Mmio`] (the function's BARs).
//! This example implements both over a stand-in for the hardware (plain memory behind a
//! lock, where a kernel would do volatile accesses into its ECAM and BAR mappings), stacks the
//! function's MSI-X domain on the x86 vector domain, and then:
//!
//! 1. allocates four vectors (MSI-X, falling back to MSI and INTx when absent),
//! 2. adds vector 6 after MSI-X is enabled, without touching the others,
//! 3. lets the "device" raise vector 6 from its table and delivers it to its irq,
//! 4. frees vector 6 again.
//!
//! Run: `cargo run -p genmsi-pci --example msix_bringup`

use genmsi::{AllocOpts, IrqSystem, SlotId, SystemConfig};
use genmsi_pci::msix::MsixCap;
use genmsi_pci::{
    pci_add_device, pci_alloc_irq_vectors, pci_msix_alloc_irq_at, pci_msix_free_irq, Bar,
    ConfigError, ConfigSpace, IrqTypes, IrqVectors, Mmio, MmioError, MsixStore, PciAddress, Signal,
};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::VectorDomain;
use std::sync::{Arc, Mutex};

/// The function as the platform sees it: 4 KiB of configuration space and two BARs.
#[derive(Debug)]
struct Hardware {
    config: Vec<u8>,
    /// BAR 0 (registers, holding the MSI-X table at 0 and the PBA at 0x800).
    bar0: Vec<u8>,
}

/// The embedder's configuration-space access: here over [`Hardware`]; in a kernel, loads and
/// stores into the function's 4 KiB ECAM window.
#[derive(Clone, Debug)]
struct Ecam(Arc<Mutex<Hardware>>);

impl Ecam {
    fn check(&self, offset: u16, width: u8) -> Result<usize, ConfigError> {
        let size = self.size();
        if offset % u16::from(width) != 0 {
            return Err(ConfigError::Misaligned { offset, width });
        }
        if u32::from(offset) + u32::from(width) > u32::from(size) {
            return Err(ConfigError::OutOfRange {
                offset,
                width,
                size,
            });
        }
        Ok(usize::from(offset))
    }

    fn read(&self, offset: u16, width: u8) -> Result<u32, ConfigError> {
        let at = self.check(offset, width)?;
        let hw = self.0.lock().unwrap();
        let mut bytes = [0u8; 4];
        bytes[..usize::from(width)].copy_from_slice(&hw.config[at..at + usize::from(width)]);
        Ok(u32::from_le_bytes(bytes))
    }

    fn write(&mut self, offset: u16, width: u8, value: u32) -> Result<(), ConfigError> {
        let at = self.check(offset, width)?;
        let mut hw = self.0.lock().unwrap();
        hw.config[at..at + usize::from(width)]
            .copy_from_slice(&value.to_le_bytes()[..usize::from(width)]);
        Ok(())
    }
}

impl ConfigSpace for Ecam {
    fn size(&self) -> u16 {
        4096
    }
    fn read_u8(&self, offset: u16) -> Result<u8, ConfigError> {
        Ok(self.read(offset, 1)? as u8)
    }
    fn read_u16(&self, offset: u16) -> Result<u16, ConfigError> {
        Ok(self.read(offset, 2)? as u16)
    }
    fn read_u32(&self, offset: u16) -> Result<u32, ConfigError> {
        self.read(offset, 4)
    }
    fn write_u8(&mut self, offset: u16, value: u8) -> Result<(), ConfigError> {
        self.write(offset, 1, value.into())
    }
    fn write_u16(&mut self, offset: u16, value: u16) -> Result<(), ConfigError> {
        self.write(offset, 2, value.into())
    }
    fn write_u32(&mut self, offset: u16, value: u32) -> Result<(), ConfigError> {
        self.write(offset, 4, value)
    }
}

/// The embedder's BAR access: dword loads and stores into the mapped BARs.
#[derive(Clone, Debug)]
struct Bars(Arc<Mutex<Hardware>>);

impl Bars {
    fn at(&self, bar: Bar, offset: u64) -> Result<usize, MmioError> {
        let len = self.bar_len(bar).ok_or(MmioError::NoBar { bar })?;
        if offset % 4 != 0 || offset + 4 > len {
            return Err(MmioError::OutOfRange { bar, offset, len });
        }
        Ok(offset as usize)
    }
}

impl Mmio for Bars {
    fn bar_len(&self, bar: Bar) -> Option<u64> {
        (bar == Bar::new(0)).then(|| self.0.lock().unwrap().bar0.len() as u64)
    }
    fn read_u32(&self, bar: Bar, offset: u64) -> Result<u32, MmioError> {
        let at = self.at(bar, offset)?;
        let hw = self.0.lock().unwrap();
        Ok(u32::from_le_bytes(hw.bar0[at..at + 4].try_into().unwrap()))
    }
    fn write_u32(&mut self, bar: Bar, offset: u64, value: u32) -> Result<(), MmioError> {
        let at = self.at(bar, offset)?;
        self.0.lock().unwrap().bar0[at..at + 4].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

/// A function with an MSI-X capability at 0x40: 16 entries (Table Size 15), the table at
/// offset 0 of BAR 0 and the PBA at 0x800 of BAR 0 (PCIe 7.7.2).
fn hardware() -> Arc<Mutex<Hardware>> {
    let mut config = vec![0u8; 4096];
    config[0x06] = 0x10; // Status: Capabilities List
    config[0x34] = 0x40; // Capabilities Pointer
    config[0x40] = 0x11; // Capability ID: MSI-X, next: none
    config[0x42..0x44].copy_from_slice(&15u16.to_le_bytes()); // Message Control: Table Size
    config[0x44..0x48].copy_from_slice(&0u32.to_le_bytes()); // Table Offset 0, BIR 0
    config[0x48..0x4C].copy_from_slice(&0x800u32.to_le_bytes()); // PBA Offset 0x800, BIR 0
    Arc::new(Mutex::new(Hardware {
        config,
        bar0: vec![0; 0x1000],
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The x86 root: 4 CPUs' vectors. (Under VT-d, an IrDomain sits between.)
    let sys: IrqSystem = IrqSystem::new(SystemConfig::new(4, 4096));
    let vectors = VectorDomain::new(4);
    let table = vectors.table();
    let root = sys.add_domain(Box::new(vectors), None)?;

    let hw = hardware();
    let dev = pci_add_device(
        &sys,
        "nic",
        PciAddress::new(0x3A, 0, 0),
        Ecam(hw.clone()),
        Bars(hw.clone()),
    );

    // 1. Four vectors at init.
    let opts = AllocOpts::default();
    let got = pci_alloc_irq_vectors(&sys, &dev, root, 1..=4, IrqTypes::ALL, &opts, None)?;
    let IrqVectors::Msix(irqs) = &got else {
        return Err("expected MSI-X".into());
    };
    println!(
        "MSI-X vectors 0..4: irqs {:?}",
        irqs.iter().map(|i| i.0).collect::<Vec<_>>()
    );

    // 2. Vector 6 while MSI-X is enabled and 0..4 deliver.
    let (index, irq) = pci_msix_alloc_irq_at(&sys, &dev, Some(6), &opts)?;
    println!("vector {index}: irq {}", irq.0);

    // 3. The device raises 6: it reads entry 6 of its table and sends it. The message names
    //    a CPU's local APIC and a vector, which the vector table maps back to the irq.
    let sent = sys.with_store::<MsixStore<Ecam, Bars>, _>(dev.id, SlotId::Default, |s| {
        let (cfg, bars) = s.parts_mut();
        let cap = MsixCap::read(cfg, bars, 0x40).expect("the capability is there");
        cap.raise(cfg, bars, index)
    })??;
    let Signal::Sent(msg) = sent else {
        return Err("entry 6 is live".into());
    };
    let Ok(MsiFormat::Compat(c)) = MsiFormat::parse(&msg) else {
        return Err("a compatibility-format message".into());
    };
    let to = table
        .lookup(c.dest, c.vector)
        .ok_or("the vector is mapped")?;
    assert_eq!(to, irq);
    sys.handle(to, c.dest);
    println!(
        "raised vector {index}: message {:#x}/{:#x} -> CPU {} vector {:#x} -> irq {}, handled {}",
        msg.address,
        msg.data,
        c.dest,
        c.vector.0,
        to.0,
        sys.table().count(irq)
    );

    // 4. Give vector 6 back; 0..4 are untouched.
    pci_msix_free_irq(&sys, &dev, index)?;
    println!(
        "vector 6 freed; {} vectors live",
        sys.descs(dev.id, SlotId::Default)?.len()
    );
    Ok(())
}
