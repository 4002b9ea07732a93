//! The VM's GSI routing table on real KVM: its limit is a typed error, and what was refused
//! holds nothing; sizes given to the KVM constructors are checked before any arithmetic. Skips, saying so, only when `/dev/kvm` cannot be opened.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use genmsi::Msg;
use genmsi_kvm::function::Function;
use genmsi_kvm::harness::HarnessError;
use genmsi_vmm::kvm::KvmMsix;
use genmsi_vmm::{Error, MsiBackend, Strategy};

const BAR0: u64 = 0xE000_0000;

#[test]
fn the_vm_route_table_limit_is_refused_with_a_typed_error() {
    let Some((vm, routes)) = common::vm_or_skip() else {
        return;
    };
    let limit = routes.lock().unwrap().limit();
    // KVM_MAX_IRQ_ROUTES (4,096) less the irqchip's 40 legacy routes (24 IO-APIC, 16 PIC).
    assert_eq!(limit, 4096 - 40);
    // Two functions share the table; each may hold more than the VM has.
    let mut a = KvmMsix::new(vm.clone(), routes.clone(), 2048, 4096).unwrap();
    let mut b = KvmMsix::new(vm.clone(), routes.clone(), 2048, 4096).unwrap();
    let msg = |i: u32| Msg::new(0xFEE0_0000, 0x30 + i % 192);
    // 4,096 eventfds: the open-file limit was raised to its hard limit; too few fails.
    for i in 0..2048 {
        a.back(i, msg(i)).unwrap();
    }
    for i in 0..limit - 2048 {
        b.back(i, msg(i)).unwrap();
    }
    let last = limit - 2048;
    assert_eq!(b.back(last, msg(last)), Err(Error::Routes { limit }));
    assert!(!b.is_backed(last), "nothing held for the refused entry");
    assert_eq!(b.budget().in_use, last);
    // The whole table goes to KVM in one call.
    b.commit().unwrap();
    assert_eq!(routes.lock().unwrap().stats().calls, 1);
    // Freed routes are reused.
    a.release(7).unwrap();
    b.back(last, msg(last)).unwrap();
    b.commit().unwrap();
    assert_eq!(routes.lock().unwrap().len(), limit);
}

#[test]
fn kvm_constructors_check_sizes_before_arithmetic() {
    let Some((vm, routes)) = common::vm_or_skip() else {
        return;
    };
    for entries in [0, 2049, u32::MAX] {
        let r = KvmMsix::new(vm.clone(), routes.clone(), entries, u32::MAX);
        assert_eq!(
            r.err(),
            Some(Error::Layout { vectors: entries }),
            "{entries} entries"
        );
    }
    let backend = || KvmMsix::new(vm.clone(), routes.clone(), 2048, 2048).unwrap();
    for entries in [0, 2049, u32::MAX] {
        let r = Function::new(BAR0, entries, backend(), Strategy::OnDemand);
        assert!(
            matches!(r, Err(HarnessError::Vmm(Error::Layout { vectors })) if vectors == entries),
            "{entries} entries: {r:?}"
        );
    }
    // 2,048 entries: a 64 KiB BAR0, aligned to its size, below 4 GiB.
    for base in [
        u64::MAX,
        u64::MAX - 0xFFFF,
        0xFFFF_0000 + 0x1000,
        1 << 32,
        BAR0 + 0x8000,
    ] {
        let r = Function::new(base, 2048, backend(), Strategy::OnDemand);
        assert!(
            matches!(r, Err(HarnessError::Bar { base: b, len: 0x1_0000 }) if b == base),
            "BAR0 at {base:#x}: {r:?}"
        );
    }
    assert!(Function::new(0xFFFF_0000, 2048, backend(), Strategy::OnDemand).is_ok());
}
