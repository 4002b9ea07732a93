//! # genmsi-pci: PCI MSI, MSI-X and IMS on the genmsi core
//!
//! To the [`genmsi`] core every interrupt source is a message store. This crate provides the
//! PCI ones and the conveniences a PCI driver uses:
//!
//! - **Access seams.** [`ConfigSpace`] (byte/word/dword configuration accesses) and [`Mmio`]
//!   (dword BAR accesses) are the only way the crate touches a device, so the same code runs
//!   on bare metal, in the simulator and over byte arrays ([`ByteConfig`], [`ByteBars`]).
//!   Every store keeps its state in the device's memory through them.
//! - **Capabilities.** [`cap`] walks the conventional and extended lists; a malformed list
//!   (a loop, a pointer into the header, a truncated space) ends in a typed [`CapError`].
//! - **Stores.** [`MsiStore`] (multi-message blocks whose low data bits carry the index,
//!   optional per-vector masking and pending bits), [`MsixStore`] (table and PBA in BARs,
//!   function mask, enable sequence, masked writes of live entries, dynamic allocation), and
//!   two IMS stores in [`ims`]: an on-device table with a PASID per entry and messages kept in
//!   queue contexts.
//! - **Conveniences.** [`pci`]: register a function with its requester id, allocate vectors
//!   with MSI-X falling back to MSI and then INTx (through an [`IntxRouter`] the platform
//!   implements), grow and shrink MSI-X after enable, create an IMS domain.
//!
//! Each register format is a raw view (`MsiControl`, `MsixControl`, entries as dwords) plus a
//! checked form, every bit declared once next to its section of the PCI Express Base
//! Specification (7.5.1 header, 7.6 extended capabilities, 7.7.1 MSI, 7.7.2 MSI-X).
//!
//! ## The flow
//!
//! 1. Describe the function: its configuration space and BARs behind the two traits.
//! 2. [`pci_add_device`] registers it with the requester id of its bus/device/function.
//! 3. [`pci_alloc_irq_vectors`] finds MSI-X, binds an [`MsixStore`] in the device's default
//!    slot and allocates the vectors: MSI-X is enabled with Function Mask set, each entry is
//!    programmed while masked, then unmasked.
//! 4. [`pci_msix_alloc_irq_at`] adds one vector after enable; no other entry is written.
//! 5. The device side (`raise`) reads what the stores wrote and sends the message.
//! 6. [`pci_create_ims_domain`] binds an IMS store in the secondary slot;
//!    [`pci_ims_alloc_irq`] takes any free entry for a PASID or a queue.
//!
//! ```
//! use genmsi::soft::SoftRoot;
//! use genmsi::{AllocOpts, IrqSystem, SlotId, SystemConfig};
//! use genmsi_pci::ims::ImsTable;
//! use genmsi_pci::*;
//!
//! // 1. A function with MSI-X at 0x40: 8 entries (Table Size 7) at offset 0 of BAR2, the
//! //    PBA at offset 0 of BAR4; an IMS table of 64 entries at 0x1000 of BAR0.
//! let mut cfg = vec![0u8; 256];
//! cfg[0x06] = 0x10; // Status: Capabilities List
//! cfg[0x34] = 0x40; // Capabilities Pointer
//! cfg[0x40..0x4C].copy_from_slice(&[0x11, 0x00, 0x07, 0x00, 0x02, 0, 0, 0, 0x04, 0, 0, 0]);
//! let bars = ByteBars::new()
//!     .with_bar(Bar::new(0), 0x2000)
//!     .with_bar(Bar::new(2), 0x1000)
//!     .with_bar(Bar::new(4), 0x1000);
//!
//! // 2. The irq system with a root domain, and the function at 00:03.0.
//! let sys: IrqSystem = IrqSystem::new(SystemConfig::new(4, 1024));
//! let root = sys.add_domain(Box::new(SoftRoot::new(4, 200)), None)?;
//! let dev = pci_add_device(&sys, "nic", PciAddress::new(0, 3, 0), ByteConfig::new(cfg), bars);
//!
//! // 3. Four vectors: MSI-X.
//! let opts = AllocOpts::default();
//! let vectors = pci_alloc_irq_vectors(&sys, &dev, root, 1..=4, IrqTypes::ALL, &opts, None)?;
//! assert!(matches!(&vectors, IrqVectors::Msix(irqs) if irqs.len() == 4));
//!
//! // 4. Vector 6 while the others are live.
//! assert!(pci_msix_can_alloc_dyn(&sys, &dev));
//! let (index, irq) = pci_msix_alloc_irq_at(&sys, &dev, Some(6), &opts)?;
//!
//! // 5. The function reads entry 6 from its table and sends it.
//! let sent = sys.with_store::<MsixStore<ByteConfig<Vec<u8>>, ByteBars>, _>(
//!     dev.id,
//!     SlotId::Default,
//!     |s| {
//!         let (cfg, bars) = s.parts_mut();
//!         let cap = msix::MsixCap::read(cfg, bars, 0x40).unwrap();
//!         cap.raise(cfg, bars, index).unwrap()
//!     },
//! )?;
//! let Signal::Sent(msg) = sent else { panic!("entry 6 is live") };
//! let (to_irq, cpu) = SoftRoot::decode(&msg).unwrap();
//! assert_eq!(to_irq, irq);
//! sys.handle(to_irq, cpu);
//! assert_eq!(sys.table().count(irq), 1);
//!
//! // 6. IMS next to MSI-X: an entry tagged with PASID 42.
//! let table = ImsTable { bar: Bar::new(0), offset: 0x1000, entries: 64 };
//! let store = ImsTableStore::new(dev.bars.clone(), table).map_err(|e| e.to_string())?;
//! pci_create_ims_domain(&sys, &dev, Box::new(store), root)?;
//! let (ims_index, _) = pci_ims_alloc_irq(&sys, &dev, Some(42), &opts)?;
//! assert_eq!(sys.desc(dev.id, SlotId::Secondary, ims_index)?.cookie, Some(42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

extern crate alloc;

pub mod bar;
pub mod cap;
pub mod config;
mod error;
pub mod ims;
pub mod intx;
pub mod msi;
pub mod msix;
pub mod pci;
pub mod signal;
pub mod topology;

pub use bar::{Bar, ByteBars, Mmio, MmioError};
pub use cap::{CapError, CapId, ExtCapId};
pub use config::{ByteConfig, ConfigError, ConfigSpace};
pub use ims::{ImsError, ImsTableStore, QueueStore};
pub use intx::{IntxError, IntxPin, IntxRouter};
pub use msi::{MsiError, MsiStore};
pub use msix::{MsixError, MsixStore};
pub use pci::{
    pci_add_device, pci_add_device_at, pci_alloc_irq_vectors, pci_create_ims_domain,
    pci_free_irq_vectors, pci_ims_alloc_irq, pci_ims_free_irq, pci_msix_alloc_irq_at,
    pci_msix_can_alloc_dyn, pci_msix_free_irq, IrqTypes, IrqVectors, PciAddress, PciDevice,
    PciError,
};
pub use signal::Signal;
pub use topology::{
    dma_aliases, intx_path, msi_requester, Bridge, BridgeKind, PciTopology, PortType,
    RequesterCheck, RootBusOnly, TopologyError,
};
