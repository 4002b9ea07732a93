//! # genmsi: one model for every message-signalled interrupt
//!
//! A device raises interrupt `i` by writing `store[i].data` to `store[i].address`. An IO-APIC
//! pin, an HPET timer, the PCI MSI capability, the MSI-X table and device-defined IMS storage
//! are all such **message stores** ([`MsgStore`]); they differ only in where the pairs live and
//! how they are masked. This crate is the platform-free core that manages them:
//!
//! - **Devices and their domains.** A device ([`IrqSystem::add_device`]) has a small fixed number
//!   of per-device domain slots ([`SlotId::Default`] for PCI MSI/MSI-X, [`SlotId::Secondary`]
//!   for IMS). [`IrqSystem::create_device_domain`] binds a store to a parent [`Domain`], and the
//!   device domain keeps a sparse index -> [`MsiDesc`] map: index, irq, message, affinity,
//!   cookie, requester id.
//! - **Domain hierarchies.** Below the device level sit the parent domains, for example
//!   interrupt remapping over CPU vectors. Each level keeps its own per-irq data; the core walks
//!   the chain for `alloc`, `activate`, `set_affinity`, `mask`, `compose_msg`, `deactivate`
//!   and `free`, and rolls back every level already done when one fails
//!   (see [`domain`]).
//! - **Allocation after init.** On a device and slot you can allocate a range
//!   ([`IrqSystem::alloc_range`]), **a particular index** at any time
//!   ([`IrqSystem::alloc_at`], the entry a guest just unmasked), any free index with a cookie
//!   ([`IrqSystem::alloc_any`], IMS), and free, grow or shrink, while the other indices keep
//!   delivering. Every refusal is a typed [`Error`] and leaves the state as it was.
//! - **Reuse that cannot misdeliver.** What a freed or deactivated irq owned (its vector, its
//!   remapping entry, its number) is held in quarantine until a grace period proves that no
//!   write to it can still land, on a clock and a posted-write bound the embedder supplies
//!   (see [`grace`]).
//!
//! ## Two paths, and memory per irq
//!
//! Interrupt **delivery** ([`IrqSystem::handle`]: irq number -> descriptor -> handler, counted)
//! reads the lock-free [`IrqTable`]: chunks of slots that are created once and never freed,
//! whose flags and handler are atomics published with release ordering. It takes no lock that
//! configuration holds and allocates nothing, so interrupts keep flowing while other indices
//! are allocated, freed or moved. **Configuration** is serialised by one lock whose type the
//! embedder picks (any [`lock_api::RawMutex`]; [`spin`] by default).
//!
//! **Memory per irq does not grow with the CPU count.** A [`CpuMask`] stores a single CPU, a
//! node or the whole machine as two numbers and shares irregular sets behind an `Arc`; the
//! effective target is one CPU number; handled counts are kept per irq (one counter) and per
//! CPU (one counter per CPU for all irqs), never per irq and CPU. An irq costs the same bytes on
//! 64 CPUs and on 8,192.
//!
//! ## Example
//!
//! A device with an 8-entry store that supports allocation after enable: indices 0..4 at init,
//! then index 7 while the others stay live, then index 7 freed again.
//!
//! ```
//! use genmsi::soft::{MemStore, SoftRoot};
//! use genmsi::{AllocOpts, DeviceMeta, IrqSystem, SlotId, StoreCaps, SystemConfig};
//!
//! let sys: IrqSystem = IrqSystem::new(SystemConfig::new(4, 1024));
//! let root = sys.add_domain(Box::new(SoftRoot::new(4, 200)), None)?;
//! let dev = sys.add_device("nic", DeviceMeta::requester(0x0100));
//! let store = MemStore::new(StoreCaps::dynamic(8));
//! sys.create_device_domain(dev, SlotId::Default, Box::new(store), root)?;
//!
//! let opts = AllocOpts::default();
//! let first = sys.alloc_range(dev, SlotId::Default, 0, 4, &opts)?;
//! let seventh = sys.alloc_at(dev, SlotId::Default, 7, &opts)?;
//! assert_eq!(sys.descs(dev, SlotId::Default)?.len(), 5);
//!
//! // Index 7 delivers; the first four were never touched.
//! sys.handle(seventh, 0);
//! assert_eq!(sys.table().count(seventh), 1);
//! assert!(first.iter().all(|&irq| sys.irq_info(irq).unwrap().desc.active));
//!
//! sys.free_index(dev, SlotId::Default, 7)?;
//! assert_eq!(sys.desc(dev, SlotId::Default, 7), Err(genmsi::Error::NotAllocated { index: 7 }));
//! # Ok::<(), genmsi::Error>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

extern crate alloc;

pub mod affinity;
mod alloc_api;
pub mod cpumask;
mod device;
pub mod domain;
mod error;
pub mod grace;
mod irq;
mod irq_ops;
mod msg;
pub mod range;
pub mod soft;
mod store;
mod sync;
mod system;
pub mod table;
mod walk;

pub use cpumask::{CpuMask, MAX_CPUS};
pub use device::{DeviceId, MsiDesc, SlotId};
pub use domain::{AllocRequest, BusRange, Composed, DeviceMeta, Domain, DomainId, IrqRequest};
pub use error::{Error, Result, Unsupported};
pub use grace::{GraceClock, Quarantine};
pub use irq::Irq;
pub use msg::Msg;
pub use store::{MsgStore, StoreCaps};
pub use system::{
    AllocOpts, GraceClockFn, GraceReport, IrqInfo, IrqSystem, OfflineReport, Stats, SystemConfig,
    MAX_HANDLERS, MAX_IRQS,
};
pub use table::{Delivery, HandlerId, IrqHandler, IrqRef, IrqTable};
