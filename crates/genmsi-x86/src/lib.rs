//! # genmsi-x86: the x86 platform under the genmsi core
//!
//! On x86 an interrupt message is a write into 0xFEExxxxx that the CPU block turns into a
//! vector on a CPU, possibly after an interrupt-remapping unit translated it. This crate
//! provides the domains and stores for that, on top of [`genmsi`]:
//!
//! 1. [`VectorMatrix`] hands out vectors per CPU, balancing like Linux but finding the best CPU
//!    with an index over the CPUs' available counts instead of a scan of the mask
//!    ([`reference::LinuxMatrix`] is Linux's `matrix.c` ported, for comparison).
//! 2. [`VectorDomain`] is the root domain: reservation at allocation, a vector at activation, the
//!    compatibility-format message ([`msi`]), and moves that never lose an interrupt
//!    (see [`vector`]).
//! 3. [`IrDomain`] is the VT-d interrupt-remapping domain: IRTEs ([`irte`]), handles, source-id
//!    checks, invalidation through the [`Invalidate`] trait, remappable-format messages.
//!    [`IrUnit`] is the remapping hardware's side, for simulators and tests.
//! 4. [`IoApicStore`] and [`HpetStore`] are message stores for IO-APIC pins and HPET FSB timers.
//!
//! A device domain stacks on [`IrDomain`], which stacks on [`VectorDomain`]; without an IOMMU the
//! device domain stacks on [`VectorDomain`] directly.
//!
//! ```
//! use genmsi::soft::MemStore;
//! use genmsi::{AllocOpts, DeviceMeta, IrqSystem, SlotId, StoreCaps, SystemConfig};
//! use genmsi_x86::{msi::MsiFormat, VectorDomain};
//!
//! let sys: IrqSystem = IrqSystem::new(SystemConfig::new(4, 256));
//! let vectors = VectorDomain::new(4);
//! let table = vectors.table();
//! let root = sys.add_domain(Box::new(vectors), None)?;
//! let dev = sys.add_device("nic", DeviceMeta::requester(0x0100));
//! sys.create_device_domain(dev, SlotId::Default, Box::new(MemStore::new(StoreCaps::dynamic(4))), root)?;
//! let irq = sys.alloc_at(dev, SlotId::Default, 0, &AllocOpts::default())?;
//!
//! // The store holds a compatibility-format message; the CPU it names maps the vector to the irq.
//! let msg = sys.compose_msg(irq)?;
//! let Ok(MsiFormat::Compat(c)) = MsiFormat::parse(&msg) else { unreachable!() };
//! assert_eq!(table.lookup(c.dest, c.vector), Some(irq));
//! # Ok::<(), genmsi::Error>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

extern crate alloc;

pub mod apic;
mod best_cpu;
pub mod hpet;
pub mod ioapic;
pub mod irte;
pub mod matrix;
pub mod msi;
pub mod reference;
pub mod remap;
pub mod vector;

pub use apic::{ApicId, DeliveryMode, DestMode, Trigger, Vector};
pub use hpet::{HpetRegs, HpetStore};
pub use ioapic::{IoApicRegs, IoApicStore, PinConfig};
pub use irte::{FaultReason, InvDescriptor, Irte};
pub use matrix::{MatrixError, VectorMatrix};
pub use remap::{
    FaultLog, Invalidate, IrDomain, IrUnit, IrteIndexOutOfRange, IrteTable, SharedIrteTable,
    MAX_IRTES,
};
pub use vector::{CleanupReport, PendingProbe, Target, VectorDomain, VectorTable};
