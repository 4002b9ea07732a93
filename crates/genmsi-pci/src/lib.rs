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
pub mod msi;
pub mod msix;
pub mod signal;

pub use bar::{Bar, ByteBars, Mmio, MmioError};
pub use cap::{CapError, CapId, ExtCapId};
pub use config::{ByteConfig, ConfigError, ConfigSpace};
pub use ims::{ImsError, ImsTableStore, QueueStore};
pub use msi::{MsiError, MsiStore};
pub use msix::{MsixError, MsixStore};
pub use signal::Signal;
