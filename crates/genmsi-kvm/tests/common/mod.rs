//! Helpers shared by the KVM tests: KVM or a skip (said, and only when `/dev/kvm` cannot be
//! opened), a VM with the in-kernel irqchip, and waiting for the guest's count of a vector.

#![allow(dead_code)]

use genmsi_kvm::harness::{kvm_usable, raise_file_limit, Harness, HarnessError};
use genmsi_vmm::kvm::{GsiRoutes, SharedRoutes};
use kvm_ioctls::Kvm;
use kvm_ioctls::VmFd;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// KVM, after raising the open-file limit to its hard limit; `None` (saying so) only when
/// `/dev/kvm` cannot be opened. Any other failure fails the test.
pub fn kvm_or_skip() -> Option<Kvm> {
    raise_file_limit().expect("raise RLIMIT_NOFILE");
    match kvm_usable() {
        Ok(kvm) => Some(kvm),
        Err(HarnessError::NoKvm { what, errno }) => {
            eprintln!("skipped: {what} failed, errno {errno}");
            None
        }
        Err(e) => panic!("KVM is there but not usable: {e}"),
    }
}

/// A VM with the in-kernel irqchip and its routing table; `None` (saying so) only when
/// `/dev/kvm` cannot be opened.
pub fn vm_or_skip() -> Option<(Arc<VmFd>, SharedRoutes)> {
    let kvm = kvm_or_skip()?;
    let vm = Arc::new(kvm.create_vm().unwrap());
    vm.create_irq_chip().unwrap();
    let routes = GsiRoutes::new(vm.clone());
    Some((vm, routes))
}

/// Waits until the guest counted `expected` on `vector`, then checks no more arrive.
pub fn expect_count(h: &Harness, vector: u32, expected: u64) {
    h.wait_for("arrivals", WAIT, |h| h.count(vector) >= expected)
        .unwrap_or_else(|e| panic!("vector {vector:#x}: {e}, counted {}", h.count(vector)));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.count(vector), expected, "vector {vector:#x}");
}
