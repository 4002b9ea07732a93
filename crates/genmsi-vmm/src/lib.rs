//! # genmsi-vmm: guest MSI-X and IMS with host vectors allocated on demand
//!
//! A VMM that passes a PCI function through to a guest must emulate the function's MSI-X
//! capability, table and PBA: the guest's messages are guest addresses, meaningless on the
//! host. Because every guest access is trapped, the VMM knows **exactly which entry the guest
//! unmasks**, and with dynamic MSI-X (`genmsi`'s allocate-at-index) it allocates exactly that
//! host vector, at that index, while every other vector keeps delivering.
//!
//! - [`msix_emul`]: the guest-visible registers with exact PCI semantics ([`MsixEmulation`]).
//! - [`host`]: the host, built from the real crates: an [`IrqSystem`](genmsi::IrqSystem) over
//!   `genmsi-x86`'s vector domain and VT-d remapping, and a passed-through NIC whose MSI-X is
//!   driven through `genmsi-pci` ([`HostNic`]).
//! - [`passthrough`]: the VMM device ([`PassthroughMsix`]): traps, on-demand host vectors,
//!   route table, emulated PBA, shrink policy, vector budget.
//! - [`baseline`]: the old strategy, same traps: disable MSI-X, free everything, re-enable
//!   with more vectors.
//! - [`ims`]: a mediated device whose guest queues are backed, through the same seam, by host
//!   IMS entries ([`ImsBackend`]) or, on KVM, by GSI routes and irqfds.
//! - [`bench`](mod@bench): the same guest workload in both modes ([`bench::vfio_grow`]).
//! - [`backend`]: the seam to the host side of a guest's entries ([`MsiBackend`]: back, update
//!   the message, mask, unmask, release, budget), and [`virt`]: [`VirtMsix`], the emulation
//!   driving any backend with the on-demand, eager or baseline [`Strategy`].
//! - [`model_backend`]: the in-process host model behind the seam ([`ModelBackend`]).
//! - [`conformance`]: one suite of cases over the seam, run for every backend and strategy.
//! - [`ring`]: the bounded log every record fed from outside goes to.
//! - `kvm` (Linux, feature `kvm`): KVM GSI routes and irqfds behind the seam
//!   (`kvm::KvmMsix`), one `KVM_SET_GSI_ROUTING` per batch of route changes.
//! - `vfio` (Linux, feature `vfio`): host MSI-X vectors of a vfio-pci function behind the seam
//!   (`vfio::VfioMsix`), added one at a time where the kernel can (Linux 6.5+), and with the
//!   `kvm` feature too their composition with KVM's irqfds (`vfio::VfioKvmMsix`).
//!
//! ```
//! use genmsi_pci::{Bar, PciAddress};
//! use genmsi_vmm::{HostMachine, HostNic, MachineConfig, Mode, PassthroughConfig, PassthroughMsix};
//! use std::sync::Arc;
//!
//! let machine = Arc::new(HostMachine::new(MachineConfig::remapped(4))?);
//! let nic = HostNic::new(machine, PciAddress::new(0x3A, 0, 0), 64)?;
//! let mut vmm = PassthroughMsix::new(nic, PassthroughConfig::new(Mode::OnDemand))?;
//!
//! // The guest programs entry 5 (address, data, then clears its Mask Bit) and enables MSI-X.
//! let table = Bar::new(4);
//! vmm.mmio_write(table, 5 * 16, &0xFEE0_0000u64.to_le_bytes())?;
//! vmm.mmio_write(table, 5 * 16 + 8, &0x41u32.to_le_bytes())?;
//! vmm.mmio_write(table, 5 * 16 + 12, &0u32.to_le_bytes())?;
//! vmm.config_write(3, &[0x80])?;
//!
//! // Host vector 0 keeps the function enabled; host vector 5 backs the guest's entry 5.
//! assert_eq!(vmm.host().allocated(), 2);
//! assert!(vmm.backing(5).is_some_and(|(_, active)| active));
//!
//! // The device raises 5: the guest gets its own message.
//! vmm.device_raise(5)?;
//! assert_eq!(vmm.counters().injected, 1);
//! # Ok::<(), genmsi_vmm::Error>(())
//! ```

#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

pub mod backend;
pub mod baseline;
pub mod bench;
pub mod conformance;
mod error;
pub mod guest;
pub mod host;
pub mod ims;
#[cfg(all(target_os = "linux", feature = "kvm"))]
pub mod kvm;
pub mod model_backend;
pub mod msix_emul;
pub mod passthrough;
pub mod ring;
#[cfg(all(target_os = "linux", feature = "vfio"))]
#[allow(unsafe_code)] // the VFIO ioctls, each with its SAFETY comment
pub mod vfio;
pub mod virt;

pub use backend::{Budget, MsiBackend};
pub use error::{AccessError, Error, Region, Result, VfioError};
pub use guest::{Counters, GuestMsix, Injection, Route, RouteTable};
pub use host::{Accepted, Arrival, HostMachine, HostNic, MachineConfig, Raise};
pub use ims::{HostAccelerator, ImsBackend, MediatedDevice, QueueBacking};
pub use model_backend::{ModelBackend, ModelRaise};
pub use msix_emul::{Effect, EntryChange, MsixEmulation, MsixLayout};
pub use passthrough::{Mode, PassthroughConfig, PassthroughMsix, UnmaskStats};
pub use virt::{Strategy, UnmaskWork, VirtMsix};
