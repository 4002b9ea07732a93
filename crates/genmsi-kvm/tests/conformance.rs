//! genmsi-vmm's conformance suite, one table: the in-process model and KVM (on `/dev/kvm`,
//! the project's guest counting arrivals), every strategy × case. The KVM rows skip only when
//! `/dev/kvm` cannot be opened.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use genmsi_kvm::conformance::KvmRig;
use genmsi_vmm::conformance::{self, ModelRig, Table};

mod common;

#[test]
fn every_backend_passes_every_case_with_every_strategy() {
    let mut rows = conformance::run(&mut ModelRig::default());
    if common::kvm_or_skip().is_some() {
        let mut rig = KvmRig::boot().expect("the KVM rig boots");
        rows.extend(conformance::run(&mut rig));
        rig.stop().expect("the guest stops");
    }
    let table = Table(&rows);
    println!("{table}");
    assert!(table.passed(), "{table}");
}
