//! The VFIO backend: the host MSI-X vectors of a function bound to vfio-pci, one per backed
//! guest entry, each signalling an eventfd.
//!
//! 1. [`VfioDevice::open`] opens the function (its IOMMU group in a type1 container of its own)
//!    and reads `VFIO_DEVICE_GET_IRQ_INFO` for MSI-X: without `VFIO_IRQ_INFO_NORESIZE` the
//!    host kernel (Linux 6.5+) adds vectors while MSI-X is enabled.
//! 2. [`VfioMsix::new`] with [`Growth::Dynamic`] (on demand): [`MsiBackend::back`](crate::MsiBackend::back) of entry `i`
//!    allocates exactly host vector `i`. The first enables MSI-X with one vector
//!    (`VFIO_DEVICE_SET_IRQS` start 0, count 1: entry 0's eventfd, or none); each later one is
//!    one `VFIO_DEVICE_SET_IRQS` with start `i`, count 1, with MSI-X left enabled. On a kernel
//!    with NORESIZE this growth is refused with [`VfioError::NoResize`].
//! 3. [`Growth::Reenable`] (the baseline, and eager backing): backs are batched until
//!    [`MsiBackend::commit`](crate::MsiBackend::commit), which enables MSI-X with the whole block `0..n` in one call; a
//!    block that grows while enabled is disabled first and enabled again with more (what a
//!    VMM had to do before Linux 6.5): interrupts in between are lost.
//! 4. [`MsiBackend::release`](crate::MsiBackend::release) detaches exactly vector `i` (its eventfd set to -1); a host
//!    MSI-X disable gives back every vector.
//! 5. VFIO has no per-vector mask for MSI-X: a masked entry keeps its vector and the eventfd
//!    counts what the device raises; [`MsiBackend::pending`](crate::MsiBackend::pending) is that count, and for an entry
//!    without a vector the device's own Pending Bit (the kernel keeps an unallocated entry
//!    masked in the table, so the device latches it there and delivers it once the entry is
//!    backed). Nothing latched is lost.
//! 6. [`VfioMsix::eventfd`] is where a consumer waits; with KVM it is the irqfd
//!    (`VfioKvmMsix`, features `vfio` and `kvm`).

mod device;
#[cfg(feature = "kvm")]
pub mod kvm;
mod msix;

pub use crate::error::VfioError;
pub use device::{BarAccess, MsixCap, SetIrqsStats, VfioDevice};
#[cfg(feature = "kvm")]
pub use kvm::VfioKvmMsix;
pub use msix::{Growth, VfioMsix};
