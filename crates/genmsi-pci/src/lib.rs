//! # genmsi-pci: PCI MSI, MSI-X and IMS on the genmsi core
//!
//! (crate docs are written in full below)

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

pub use bar::{Bar, ByteBars, Mmio, MmioError};
pub use cap::{CapError, CapId, ExtCapId};
pub use config::{ByteConfig, ConfigError, ConfigSpace};
pub use ims::{ImsError, ImsTableStore, QueueStore};
pub use intx::{IntxError, IntxPin, IntxRouter};
pub use msi::{MsiError, MsiStore};
pub use msix::{MsixError, MsixStore};
pub use pci::{
    pci_add_device, pci_alloc_irq_vectors, pci_create_ims_domain, pci_free_irq_vectors,
    pci_ims_alloc_irq, pci_ims_free_irq, pci_msix_alloc_irq_at, pci_msix_can_alloc_dyn,
    pci_msix_free_irq, IrqTypes, IrqVectors, PciAddress, PciDevice, PciError,
};
pub use signal::Signal;
