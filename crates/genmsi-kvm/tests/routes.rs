//! The VM's GSI routing table on real KVM: its limit is a typed error, and what was refused
//! holds nothing. Skips, saying so, only when `/dev/kvm` cannot be opened.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use genmsi::Msg;
use genmsi_vmm::kvm::KvmMsix;
use genmsi_vmm::{Error, MsiBackend};

#[test]
fn the_vm_route_table_limit_is_refused_with_a_typed_error() {
    let Some((vm, routes)) = common::vm_or_skip() else {
        return;
    };
    let limit = routes.lock().unwrap().limit();
    // KVM_MAX_IRQ_ROUTES (4,096) less the irqchip's 40 legacy routes (24 IO-APIC, 16 PIC).
    assert_eq!(limit, 4096 - 40);
    // Two functions share the table; each may hold more than the VM has.
    let mut a = KvmMsix::new(vm.clone(), routes.clone(), 2048, 4096);
    let mut b = KvmMsix::new(vm.clone(), routes.clone(), 2048, 4096);
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
