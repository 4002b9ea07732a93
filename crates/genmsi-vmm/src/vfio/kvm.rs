//! VFIO and KVM composed: the eventfd a host vector signals is the one KVM's irqfd waits
//! on, so an interrupt goes device → host vector → guest without a hop through the VMM.
//!
//! 1. [`VfioKvmMsix::back`] of entry `i` gives it a GSI route and an eventfd in KVM
//!    ([`KvmMsix`]), then host vector `i` in VFIO ([`VfioMsix::back_eventfd`]) signalling that
//!    same eventfd. If VFIO refuses, the KVM half is released: nothing is held.
//! 2. Unmask assigns the irqfd (KVM injects once what the eventfd counted while masked);
//!    mask deassigns it, the host vector stays and the eventfd counts.
//! 3. The guest's message is KVM's (the route); the host vector's is the host kernel's.
//! 4. Pending: a backed entry's is its eventfd's count while masked; an entry without a host
//!    vector's is the device's own Pending Bit.
//! 5. Release detaches the host vector first (nothing signals a freed eventfd), then frees
//!    the route.

use super::VfioMsix;
use crate::backend::{Budget, MsiBackend};
use crate::error::{Error, Result, VfioError};
use crate::kvm::KvmMsix;
use genmsi::Msg;
use std::sync::Arc;

/// One function's entries on VFIO host vectors and KVM irqfds (see the module docs).
#[derive(Debug)]
pub struct VfioKvmMsix {
    vfio: VfioMsix,
    kvm: KvmMsix,
}

impl VfioKvmMsix {
    /// `vfio`'s host vectors signalling `kvm`'s irqfds, entry by entry.
    pub fn new(vfio: VfioMsix, kvm: KvmMsix) -> Self {
        VfioKvmMsix { vfio, kvm }
    }

    /// The VFIO half.
    pub fn vfio(&self) -> &VfioMsix {
        &self.vfio
    }

    /// The KVM half.
    pub fn kvm(&self) -> &KvmMsix {
        &self.kvm
    }
}

impl MsiBackend for VfioKvmMsix {
    fn back(&mut self, index: u32, msg: Msg) -> Result<()> {
        if self.vfio.is_backed(index) {
            return self.kvm.set_msg(index, msg);
        }
        self.kvm.back(index, msg)?;
        let shared = self
            .kvm
            .eventfd(index)
            .ok_or(Error::NotBacked { index })
            .and_then(|e| {
                e.try_clone().map_err(|e| {
                    Error::Vfio(VfioError::Io {
                        op: "eventfd dup",
                        errno: e.raw_os_error().unwrap_or(0),
                    })
                })
            });
        let backed = shared.and_then(|e| self.vfio.back_eventfd(index, Arc::new(e)));
        if let Err(e) = backed {
            self.kvm.release(index)?;
            return Err(e);
        }
        Ok(())
    }

    fn set_msg(&mut self, index: u32, msg: Msg) -> Result<()> {
        self.kvm.set_msg(index, msg)
    }

    fn unmask(&mut self, index: u32) -> Result<()> {
        self.vfio.unmask(index)?;
        self.kvm.unmask(index)
    }

    fn mask(&mut self, index: u32) -> Result<()> {
        self.kvm.mask(index)?;
        self.vfio.mask(index)
    }

    fn release(&mut self, index: u32) -> Result<()> {
        self.vfio.release(index)?;
        self.kvm.release(index)
    }

    fn is_backed(&self, index: u32) -> bool {
        self.vfio.is_backed(index)
    }

    fn pending(&self, index: u32) -> bool {
        match self.vfio.is_backed(index) {
            true => self.kvm.pending(index),
            false => self.vfio.pending(index),
        }
    }

    fn budget(&self) -> Budget {
        self.vfio.budget()
    }

    fn commit(&mut self) -> Result<()> {
        self.kvm.commit()?;
        self.vfio.commit()
    }

    fn enable(&mut self, on: bool) -> Result<()> {
        self.vfio.enable(on)?;
        self.kvm.enable(on)
    }
}
