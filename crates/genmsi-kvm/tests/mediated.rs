//! IMS for a mediated device on real KVM: a guest queue's interrupt is one GSI route and one
//! irqfd while the queue exists, under a guest of the project's own. Skips, saying so,
//! without `/dev/kvm`.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use genmsi::Msg;
use genmsi_kvm::guest::{vector_of, Command};
use genmsi_kvm::harness::{FunctionConfig, Harness, HarnessConfig};
use genmsi_pci::Bar;
use genmsi_vmm::kvm::{Fire, KvmMsix};
use genmsi_vmm::{Error, MediatedDevice, MsiBackend, Strategy};
use std::time::Duration;

mod common;
use common::expect_count;

/// The guest's virtual function: 64 queue vectors, at most 4 queues' routes.
#[test]
fn a_guest_queue_is_one_route_and_irqfd_while_it_exists_and_delivers_to_the_guest() {
    if common::kvm_or_skip().is_none() {
        return;
    }
    let functions = vec![FunctionConfig {
        entries: 64,
        budget: 4,
        strategy: Strategy::Queues,
    }];
    let h = Harness::boot(&HarnessConfig {
        functions,
        grow: false,
    })
    .expect("boot");
    h.command(Command::ReadPending, 0, 0).expect("guest up");
    // The guest's driver unmasks its queue vectors: no queue exists, nothing is backed.
    for q in 0..6 {
        h.command(Command::Unmask, q, 0).unwrap();
    }
    assert_eq!(h.routes().lock().unwrap().len(), 0);
    assert!(h.function(0).errors().is_empty());
    // The guest creates queues 0..4 (the mediated device's queue-create trap).
    for q in 0..4 {
        h.function(0).virt_mut().back_entry(q).unwrap();
    }
    assert_eq!(h.routes().lock().unwrap().len(), 4);
    {
        let mut f = h.function(0);
        let v = f.virt_mut();
        // The fifth is refused for this device, with nothing held; a second create of a
        // queue is refused too.
        let refused = Error::Budget {
            index: 4,
            budget: 4,
            in_use: 4,
        };
        assert_eq!(v.back_entry(4), Err(refused));
        assert!(!v.backend().is_backed(4));
        let again = Error::Queue {
            queue: 2,
            exists: true,
        };
        assert_eq!(v.back_entry(2), Err(again));
    }
    assert_eq!(h.routes().lock().unwrap().len(), 4);
    for q in 0..4 {
        assert_eq!(h.triggers(0).fire(q), Fire::Sent);
        expect_count(&h, vector_of(q), 1);
    }
    // Mask, two completions, unmask: held in the eventfd, delivered exactly once.
    h.command(Command::Mask, 1, 0).unwrap();
    for _ in 0..2 {
        assert_eq!(h.triggers(0).fire(1), Fire::Sent);
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.count(vector_of(1)), 1, "nothing delivered while masked");
    assert_eq!(h.command(Command::ReadPending, 1, 0).unwrap(), 1);
    h.command(Command::Unmask, 1, 0).unwrap();
    expect_count(&h, vector_of(1), 2);
    // Destroying a queue frees its route and GSI; another queue takes it; the rest deliver.
    h.function(0).virt_mut().release_entry(3).unwrap();
    assert_eq!(h.routes().lock().unwrap().len(), 3);
    assert_eq!(h.function(0).virt().budget().in_use, 3);
    let gone = Error::Queue {
        queue: 3,
        exists: false,
    };
    assert_eq!(h.function(0).virt_mut().release_entry(3), Err(gone));
    h.function(0).virt_mut().back_entry(4).unwrap();
    assert_eq!(h.routes().lock().unwrap().len(), 4);
    for q in [0, 4] {
        h.triggers(0).fire(q);
    }
    expect_count(&h, vector_of(0), 2);
    expect_count(&h, vector_of(4), 1);
    assert_eq!(h.function(0).virt().budget().max_in_use, 4);
    assert!(h.function(0).errors().is_empty());
    h.stop().unwrap();
}

/// The mediated device over KVM without a vCPU: create and destroy follow routes and GSIs.
#[test]
fn mediated_device_queues_take_and_give_back_gsi_routes() {
    let Some((vm, routes)) = common::vm_or_skip() else {
        return;
    };
    let backend = KvmMsix::new(vm.clone(), routes.clone(), 16, 16).unwrap();
    let device = backend.triggers();
    let mut m = MediatedDevice::over(backend, 16).unwrap();
    let bar = Bar::new(0);
    for q in 0..16u64 {
        let msg = Msg::new(0xFEE0_0000, 0x40 + q as u32);
        m.mmio_write(bar, q * 16, &msg.address.to_le_bytes())
            .unwrap();
        m.mmio_write(bar, q * 16 + 8, &msg.data.to_le_bytes())
            .unwrap();
        m.mmio_write(bar, q * 16 + 12, &[0; 4]).unwrap();
    }
    m.config_write(3, &[0x80]).unwrap();
    assert_eq!(routes.lock().unwrap().len(), 0, "no queue, no route");
    for q in [0, 5, 9] {
        m.create_queue(q).unwrap();
    }
    assert_eq!(routes.lock().unwrap().len(), 3);
    assert_eq!(m.queues().collect::<Vec<_>>(), [0, 5, 9]);
    m.destroy_queue(5).unwrap();
    assert_eq!(routes.lock().unwrap().len(), 2);
    assert_eq!(m.virt().budget().in_use, 2);
    // A masked queue holds what it raised in its eventfd; the guest's PBA read shows it.
    m.mmio_write(bar, 9 * 16 + 12, &[1, 0, 0, 0]).unwrap();
    assert_eq!(device.fire(9), Fire::Sent);
    let mut pba = [0u8; 8];
    m.mmio_read(bar, 0x1000, &mut pba).unwrap();
    assert_eq!(u64::from_le_bytes(pba), 1 << 9);
    assert!(matches!(
        m.create_queue(16),
        Err(Error::Budget { index: 16, .. })
    ));
    let backend = m.virt().backend();
    assert!(backend.is_backed(0) && !backend.is_backed(5));
}
