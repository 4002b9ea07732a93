//! Helpers shared by the KVM tests: a VM with the in-kernel irqchip (or a skip, said), and
//! waiting for the guest's count of a vector.

#![allow(dead_code)]

use genmsi_kvm::harness::{kvm_usable, Harness};
use genmsi_vmm::kvm::{GsiRoutes, SharedRoutes};
use kvm_ioctls::VmFd;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A VM with the in-kernel irqchip and its routing table; `None` (saying so) without a
/// usable `/dev/kvm`.
pub fn vm_or_skip() -> Option<(Arc<VmFd>, SharedRoutes)> {
    let kvm = match kvm_usable() {
        Ok(kvm) => kvm,
        Err(e) => {
            eprintln!("skipped: {e}");
            return None;
        }
    };
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
