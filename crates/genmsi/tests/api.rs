//! Every path of the allocation API, and every error, on a software machine.

mod common;

use common::{Machine, CPUS};
use genmsi::soft::{MemStore, SoftRemap, SoftRoot, SOFT_REMAP_BASE};
use genmsi::{
    AllocOpts, CpuMask, Delivery, DeviceMeta, Error, Irq, Msg, SlotId, StoreCaps, Unsupported,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const D: SlotId = SlotId::Default;

fn msix(n: u32) -> StoreCaps {
    StoreCaps {
        max_index: n,
        per_vector_mask: true,
        alloc_after_enable: true,
        write_masked: true,
        block_only: false,
        any_index: false,
    }
}

fn msi_multi(n: u32) -> StoreCaps {
    StoreCaps {
        max_index: n,
        per_vector_mask: false,
        alloc_after_enable: false,
        write_masked: false,
        block_only: true,
        any_index: false,
    }
}

#[test]
fn range_then_particular_index_after_init_then_free() {
    let m = Machine::new(16, 64);
    let dev = m.device("nic", msix(16), m.remap);
    let opts = AllocOpts::default();
    let irqs = m.sys.alloc_range(dev, D, 0, 4, &opts).unwrap();
    let before: Vec<_> = m.store(dev, |s| s.slots()[..4].to_vec());
    let irq9 = m.sys.alloc_at(dev, D, 9, &opts).unwrap();
    assert_eq!(
        m.store(dev, |s| s.slots()[..4].to_vec()),
        before,
        "other entries untouched"
    );
    assert_eq!(
        m.store(dev, |s| s.unmasked_writes),
        0,
        "live writes happen masked"
    );
    for (i, &irq) in irqs.iter().enumerate() {
        assert_eq!(m.raise(dev, i as u32), Some(irq));
    }
    assert_eq!(m.raise(dev, 9), Some(irq9));
    // Store contents equal what the hierarchy composes.
    for &irq in irqs.iter().chain([&irq9]) {
        let info = m.sys.irq_info(irq).unwrap();
        assert_eq!(m.sys.compose_msg(irq).unwrap(), info.desc.msg);
        assert_eq!(
            m.store(dev, |s| s.slots()[info.desc.index as usize].msg),
            info.desc.msg
        );
        assert_eq!(info.desc.meta.requester_id, Some(0x10));
    }
    m.sys.free_index(dev, D, 9).unwrap();
    assert_eq!(m.raise(dev, 9), None, "a freed entry is masked");
    assert_eq!(m.store(dev, |s| s.slots()[9].msg), Msg::ZERO);
    assert_eq!(m.sys.handle(irq9, 0), Delivery::Spurious);
    assert_eq!(m.sys.desc(dev, D, 9), Err(Error::NotAllocated { index: 9 }));
}

#[test]
fn errors_leave_everything_unchanged() {
    let m = Machine::new(16, 64);
    let dev = m.device("nic", msix(8), m.remap);
    let opts = AllocOpts::default();
    m.sys.alloc_range(dev, D, 0, 2, &opts).unwrap();
    let snap = m.snapshot(&[dev]);
    let cases: Vec<(Result<(), Error>, Error)> = vec![
        (
            m.sys.alloc_at(dev, D, 1, &opts).map(drop),
            Error::IndexInUse { index: 1 },
        ),
        (
            m.sys.alloc_range(dev, D, 1, 3, &opts).map(drop),
            Error::IndexInUse { index: 1 },
        ),
        (
            m.sys.alloc_at(dev, D, 8, &opts).map(drop),
            Error::IndexOutOfRange { index: 8, limit: 8 },
        ),
        (
            m.sys.alloc_range(dev, D, 6, 3, &opts).map(drop),
            Error::IndexOutOfRange { index: 8, limit: 8 },
        ),
        (
            m.sys.alloc_range(dev, D, u32::MAX, 2, &opts).map(drop),
            Error::IndexOutOfRange {
                index: u32::MAX,
                limit: 8,
            },
        ),
        (
            m.sys.alloc_range(dev, D, 3, 0, &opts).map(drop),
            Error::InvalidCount { count: 0 },
        ),
        (
            m.sys.alloc_any(dev, D, &opts).map(drop),
            Error::NotSupported(Unsupported::AnyIndex),
        ),
        (
            m.sys.free_index(dev, D, 5),
            Error::NotAllocated { index: 5 },
        ),
        (
            m.sys.free_range(dev, D, 1, 2),
            Error::NotAllocated { index: 2 },
        ),
        (
            m.sys
                .alloc_at(
                    dev,
                    D,
                    3,
                    &AllocOpts {
                        affinity: Some(CpuMask::single(CPUS + 5)),
                        ..opts.clone()
                    },
                )
                .map(drop),
            Error::EmptyAffinity,
        ),
        (
            m.sys.alloc_at(dev, SlotId::Secondary, 3, &opts).map(drop),
            Error::SlotEmpty {
                device: dev,
                slot: SlotId::Secondary,
            },
        ),
        (m.sys.activate(Irq(4000)), Error::UnknownIrq(Irq(4000))),
        (
            m.sys.set_affinity(Irq(4000), &CpuMask::single(0)),
            Error::UnknownIrq(Irq(4000)),
        ),
        (m.sys.mask(Irq(4000)), Error::UnknownIrq(Irq(4000))),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want));
        assert_eq!(m.snapshot(&[dev]), snap);
    }
    let unknown = genmsi::DeviceId(99);
    assert_eq!(
        m.sys.alloc_at(unknown, D, 0, &opts),
        Err(Error::UnknownDevice(unknown))
    );
    assert_eq!(m.snapshot(&[dev]), snap);
}

#[test]
fn a_store_that_cannot_grow_after_enable_refuses() {
    let m = Machine::new(16, 64);
    let dev = m.device("legacy", msi_multi(8), m.root);
    let opts = AllocOpts::default();
    assert_eq!(
        m.sys.alloc_range(dev, D, 0, 3, &opts),
        Err(Error::NotSupported(Unsupported::BlockOnly))
    );
    assert_eq!(
        m.sys.alloc_range(dev, D, 2, 2, &opts),
        Err(Error::NotSupported(Unsupported::BlockOnly))
    );
    let irqs = m.sys.alloc_range(dev, D, 0, 4, &opts).unwrap();
    assert!(m.store(dev, |s| s.enabled));
    let snap = m.snapshot(&[dev]);
    assert_eq!(
        m.sys.alloc_at(dev, D, 4, &opts),
        Err(Error::NotSupported(Unsupported::AllocAfterEnable))
    );
    assert_eq!(
        m.sys.free_index(dev, D, 1),
        Err(Error::NotSupported(Unsupported::AllocAfterEnable))
    );
    assert_eq!(m.snapshot(&[dev]), snap);
    for (i, &irq) in irqs.iter().enumerate() {
        assert_eq!(m.raise(dev, i as u32), Some(irq));
    }
    m.sys.free_range(dev, D, 0, 4).unwrap();
    assert!(
        !m.store(dev, |s| s.enabled),
        "freeing the last index disables the store"
    );
    // Once disabled it can be enabled again with another size.
    assert_eq!(m.sys.alloc_range(dev, D, 0, 8, &opts).unwrap().len(), 8);
}

#[test]
fn multi_message_block_gets_an_aligned_remap_block() {
    let m = Machine::new(16, 64);
    let filler = m.device("filler", msix(4), m.remap);
    m.sys.alloc_at(filler, D, 0, &AllocOpts::default()).unwrap();
    let dev = m.device("msi", msi_multi(8), m.remap);
    let irqs = m
        .sys
        .alloc_range(dev, D, 0, 4, &AllocOpts::default())
        .unwrap();
    let entries: Vec<u64> = (0..4)
        .map(|i| (m.store(dev, |s| s.slots()[i].msg.address) >> 4) & 0xFFFF)
        .collect();
    assert_eq!(
        entries,
        [4, 5, 6, 7],
        "entry 0 is taken, so the aligned block of 4 starts at 4"
    );
    for (i, &irq) in irqs.iter().enumerate() {
        assert_eq!(m.raise(dev, i as u32), Some(irq));
    }
}

#[test]
fn multi_message_block_with_subhandles_differs_only_in_low_data_bits() {
    let m = Machine::new(16, 64);
    let remap = SoftRemap::new(64).with_subhandles();
    let table = remap.table();
    let remap = m.sys.add_domain(Box::new(remap), Some(m.root)).unwrap();
    let filler = m.device("filler", msix(4), remap);
    m.sys.alloc_at(filler, D, 0, &AllocOpts::default()).unwrap();
    let dev = m.device("msi", msi_multi(8), remap);
    let irqs = m
        .sys
        .alloc_range(dev, D, 0, 4, &AllocOpts::default())
        .unwrap();
    let msgs: Vec<Msg> = (0..4).map(|i| m.store(dev, |s| s.slots()[i].msg)).collect();
    for (i, msg) in msgs.iter().enumerate() {
        assert_eq!(
            msg.address,
            SOFT_REMAP_BASE | 4 << 4,
            "the block starts at 4"
        );
        assert_eq!(msg.data, i as u32);
        let root_msg = SoftRemap::translate(&table, msg).unwrap();
        assert_eq!(SoftRoot::decode(&root_msg).unwrap().0, irqs[i]);
    }
}

#[test]
fn any_free_index_with_cookie_grow_and_shrink() {
    let m = Machine::new(64, 256);
    let dev = m.device("ims", StoreCaps::dynamic(6), m.remap);
    let mut got = Vec::new();
    for q in 0..6u64 {
        let opts = AllocOpts {
            cookie: Some(100 + q),
            ..AllocOpts::default()
        };
        got.push(m.sys.alloc_any(dev, D, &opts).unwrap());
    }
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        m.sys.alloc_any(dev, D, &AllocOpts::default()),
        Err(Error::StoreFull { limit: 6 })
    );
    m.sys.free_index(dev, D, 2).unwrap();
    let (index, irq) = m
        .sys
        .alloc_any(
            dev,
            D,
            &AllocOpts {
                cookie: Some(7),
                ..AllocOpts::default()
            },
        )
        .unwrap();
    assert_eq!(index, 2, "the lowest free index is reused");
    assert_eq!(m.store(dev, |s| s.slots()[2].cookie), Some(7));
    assert_eq!(m.sys.desc(dev, D, 2).unwrap().cookie, Some(7));
    assert_eq!(m.raise(dev, 2), Some(irq));
    assert_eq!(m.sys.shrink_to(dev, D, 3).unwrap(), 3);
    assert_eq!(m.sys.descs(dev, D).unwrap().len(), 3);
    // Remaining indices deliver while the device shrinks and grows.
    assert_eq!(m.raise(dev, 0), Some(got[0].1));
    let grown = m.sys.grow_to(dev, D, 5, &AllocOpts::default()).unwrap();
    assert_eq!(grown.len(), 2);
    assert_eq!(m.sys.store_caps(dev, D).unwrap().1, 1);
    assert_eq!(
        m.sys.grow_to(dev, D, 7, &AllocOpts::default()),
        Err(Error::IndexOutOfRange { index: 6, limit: 6 })
    );
    assert_eq!(m.sys.free_all(dev, D).unwrap(), 5);
}

#[test]
fn failing_parents_roll_back_every_level() {
    // Inject a failure at each level and at each step; the state must be exactly as before.
    type Inject = fn(&Machine, genmsi::DeviceId);
    let injections: Vec<(&str, Inject, Error)> = vec![
        (
            "root alloc",
            |m, _| {
                m.sys
                    .with_domain::<SoftRoot, _>(m.root, |r| r.faults.alloc_in = Some(1))
                    .unwrap()
            },
            Error::Domain {
                domain: "soft-root",
                reason: "injected alloc failure",
            },
        ),
        (
            "remap alloc",
            |m, _| {
                m.sys
                    .with_domain::<SoftRemap, _>(m.remap, |r| r.faults.alloc_in = Some(1))
                    .unwrap()
            },
            Error::Domain {
                domain: "soft-remap",
                reason: "injected alloc failure",
            },
        ),
        (
            "root activate of the third irq",
            |m, _| {
                m.sys
                    .with_domain::<SoftRoot, _>(m.root, |r| r.faults.activate_in = Some(3))
                    .unwrap()
            },
            Error::Domain {
                domain: "soft-root",
                reason: "injected activate failure",
            },
        ),
        (
            "remap activate of the second irq",
            |m, _| {
                m.sys
                    .with_domain::<SoftRemap, _>(m.remap, |r| r.faults.activate_in = Some(2))
                    .unwrap()
            },
            Error::Domain {
                domain: "soft-remap",
                reason: "injected activate failure",
            },
        ),
        (
            "store prepare",
            |m, d| {
                m.store(d, |s| {
                    s.fail_prepare.insert(5);
                })
            },
            Error::Store {
                index: 5,
                reason: "injected prepare failure",
            },
        ),
        (
            "store write",
            |m, d| {
                m.store(d, |s| {
                    s.fail_write.insert(6);
                })
            },
            Error::Store {
                index: 6,
                reason: "injected write failure",
            },
        ),
    ];
    for (what, inject, want) in injections {
        let m = Machine::new(16, 64);
        let dev = m.device("nic", msix(8), m.remap);
        m.sys
            .alloc_range(dev, D, 0, 2, &AllocOpts::default())
            .unwrap();
        let snap = m.snapshot(&[dev]);
        inject(&m, dev);
        assert_eq!(
            m.sys.alloc_range(dev, D, 4, 3, &AllocOpts::default()),
            Err(want),
            "{what}"
        );
        m.store(dev, |s| {
            s.fail_prepare.clear();
            s.fail_write.clear();
        });
        // An irq activated before the failure had its message in the store: its number is
        // held for its grace (a write may have left the device), then the state is as before.
        m.sys.advance_grace(0);
        assert_eq!(m.snapshot(&[dev]), snap, "{what}");
        // The same request succeeds afterwards and the store holds what the stack composes.
        let irqs = m
            .sys
            .alloc_range(dev, D, 4, 3, &AllocOpts::default())
            .unwrap();
        for (i, irq) in irqs.into_iter().enumerate() {
            assert_eq!(m.raise(dev, 4 + i as u32), Some(irq), "{what}");
        }
    }
}

#[test]
fn first_allocation_failure_leaves_the_store_disabled() {
    let m = Machine::new(16, 64);
    let dev = m.device("nic", msix(8), m.remap);
    let snap = m.snapshot(&[dev]);
    m.store(dev, |s| {
        s.fail_write.insert(1);
    });
    assert!(m
        .sys
        .alloc_range(dev, D, 0, 3, &AllocOpts::default())
        .is_err());
    m.store(dev, |s| s.fail_write.clear());
    // The first irq was live before the second's write failed: its number waits for its grace.
    m.sys.advance_grace(0);
    assert_eq!(m.snapshot(&[dev]), snap);
    assert!(!m.store(dev, |s| s.enabled));
}

#[test]
fn exhaustion_is_typed_and_changes_nothing() {
    let m = Machine::new(2, 64);
    let dev = m.device("nic", msix(64), m.root);
    let opts = AllocOpts {
        affinity: Some(CpuMask::range(0, 1)),
        ..AllocOpts::default()
    };
    m.sys.alloc_range(dev, D, 0, 4, &opts).unwrap();
    let snap = m.snapshot(&[dev]);
    assert_eq!(
        m.sys.alloc_at(dev, D, 4, &opts),
        Err(Error::NoVectors {
            cpus: CpuMask::range(0, 1)
        })
    );
    assert_eq!(m.snapshot(&[dev]), snap);
    let m = Machine::new(16, 2);
    let dev = m.device("nic", msix(8), m.remap);
    assert_eq!(
        m.sys.alloc_range(dev, D, 0, 3, &AllocOpts::default()),
        Err(Error::NoRemapEntries { requested: 3 })
    );
}

#[test]
fn irq_numbers_run_out_cleanly() {
    let sys: genmsi::IrqSystem = genmsi::IrqSystem::new(genmsi::SystemConfig::new(2, 3));
    let root = sys
        .add_domain(Box::new(SoftRoot::new(2, 100)), None)
        .unwrap();
    let dev = sys.add_device("d", DeviceMeta::default());
    sys.create_device_domain(dev, D, Box::new(MemStore::new(StoreCaps::dynamic(8))), root)
        .unwrap();
    sys.alloc_range(dev, D, 0, 2, &AllocOpts::default())
        .unwrap();
    assert_eq!(
        sys.alloc_range(dev, D, 2, 2, &AllocOpts::default()),
        Err(Error::NoIrqNumbers { requested: 2 })
    );
    assert_eq!(sys.stats().irq_numbers_free, 1);
    assert!(sys.alloc_at(dev, D, 5, &AllocOpts::default()).is_ok());
}

#[test]
fn affinity_moves_rewrite_only_what_changed() {
    let m = Machine::new(16, 64);
    let direct = m.device("direct", msix(4), m.root);
    let remapped = m.device("remapped", msix(4), m.remap);
    let a = m.sys.alloc_at(direct, D, 0, &AllocOpts::default()).unwrap();
    let b = m
        .sys
        .alloc_at(remapped, D, 0, &AllocOpts::default())
        .unwrap();
    let remapped_msg = m.store(remapped, |s| s.slots()[0].msg);
    for cpu in [3, 5, 7] {
        m.sys.set_affinity(a, &CpuMask::single(cpu)).unwrap();
        m.sys.set_affinity(b, &CpuMask::single(cpu)).unwrap();
        assert_eq!(m.sys.irq_info(a).unwrap().effective_cpu, Some(cpu));
        assert_eq!(m.sys.irq_info(b).unwrap().effective_cpu, Some(cpu));
        assert_eq!(
            m.store(remapped, |s| s.slots()[0].msg),
            remapped_msg,
            "remapped: only the entry changes"
        );
        assert_eq!(
            m.store(direct, |s| s.slots()[0].msg).address >> 12 & 0xFFFF,
            u64::from(cpu)
        );
        assert_eq!(m.raise(direct, 0), Some(a));
        assert_eq!(m.raise(remapped, 0), Some(b));
    }
    assert_eq!(m.store(direct, |s| s.unmasked_writes), 0);
    assert_eq!(m.table_cpu(7), 2);
    assert_eq!(
        m.sys.set_affinity(a, &CpuMask::single(CPUS)),
        Err(Error::EmptyAffinity)
    );
    // A failing upper level moves the root back: the irq stays where it was.
    let snap = m.snapshot(&[direct, remapped]);
    m.sys
        .with_domain::<SoftRemap, _>(m.remap, |r| r.faults.affinity_in = Some(1))
        .unwrap();
    assert!(m.sys.set_affinity(b, &CpuMask::single(1)).is_err());
    assert_eq!(m.sys.irq_info(b).unwrap().effective_cpu, Some(7));
    assert_eq!(m.raise(remapped, 0), Some(b));
    let _ = snap;
}

trait CpuCount {
    fn table_cpu(&self, cpu: u32) -> u64;
}
impl CpuCount for Machine {
    fn table_cpu(&self, cpu: u32) -> u64 {
        self.sys.table().cpu_count(cpu)
    }
}

#[test]
fn mask_unmask_with_and_without_per_vector_masks() {
    let m = Machine::new(16, 64);
    let pvm = m.device("msix", msix(4), m.remap);
    let soft = m.device(
        "msi",
        StoreCaps {
            per_vector_mask: false,
            ..StoreCaps::dynamic(4)
        },
        m.remap,
    );
    let a = m.sys.alloc_at(pvm, D, 0, &AllocOpts::default()).unwrap();
    let b = m.sys.alloc_at(soft, D, 0, &AllocOpts::default()).unwrap();
    m.sys.mask(a).unwrap();
    m.sys.mask(b).unwrap();
    assert_eq!(m.raise(pvm, 0), None);
    assert!(m.store(pvm, |s| s.is_pending_bit(0)));
    assert_eq!(m.raise(soft, 0), None, "latched in software");
    assert!(m.sys.table().is_pending(b));
    assert_eq!(m.sys.unmask(a).unwrap(), None);
    assert!(
        m.store(pvm, |s| s.take_pending(0)),
        "the device sends its pending interrupt"
    );
    assert_eq!(m.raise(pvm, 0), Some(a));
    assert_eq!(
        m.sys.unmask(b).unwrap(),
        Some(Delivery::Handled),
        "replayed on unmask"
    );
    assert_eq!(m.sys.table().count(b), 1);
    assert_eq!(m.sys.table().count(a), 1);
}

trait PendingBit {
    fn is_pending_bit(&self, index: u32) -> bool;
}
impl PendingBit for MemStore {
    fn is_pending_bit(&self, index: u32) -> bool {
        genmsi::MsgStore::is_pending(self, index)
    }
}

#[test]
fn reservation_then_activation() {
    let m = Machine::new(16, 64);
    let dev = m.device("nic", msix(4), m.remap);
    let opts = AllocOpts {
        activate: false,
        ..AllocOpts::default()
    };
    let irq = m.sys.alloc_at(dev, D, 0, &opts).unwrap();
    assert!(!m.sys.irq_info(irq).unwrap().desc.active);
    assert_eq!(m.sys.compose_msg(irq), Err(Error::NotActive(irq)));
    assert_eq!(
        m.sys.set_affinity(irq, &CpuMask::single(1)),
        Err(Error::NotActive(irq))
    );
    assert_eq!(m.raise(dev, 0), None);
    m.sys.activate(irq).unwrap();
    assert_eq!(m.raise(dev, 0), Some(irq));
    m.sys.deactivate(irq).unwrap();
    assert_eq!(m.raise(dev, 0), None);
    assert_eq!(m.sys.stats().irqs_active, 0);
}

#[test]
fn spreading_and_managed_irqs_follow_cpu_hotplug() {
    let m = Machine::new(16, 64);
    let dev = m.device("nvme", msix(8), m.remap);
    let opts = AllocOpts {
        affinity: Some(CpuMask::range(0, 3)),
        spread: true,
        managed: true,
        ..AllocOpts::default()
    };
    let managed = m.sys.alloc_range(dev, D, 0, 4, &opts).unwrap();
    let plain = m
        .sys
        .alloc_at(
            dev,
            D,
            4,
            &AllocOpts {
                affinity: Some(CpuMask::single(2)),
                ..AllocOpts::default()
            },
        )
        .unwrap();
    for (i, &irq) in managed.iter().enumerate() {
        let info = m.sys.irq_info(irq).unwrap();
        assert_eq!(info.desc.affinity, CpuMask::single(i as u32));
        assert_eq!(info.effective_cpu, Some(i as u32));
    }
    let report = m.sys.cpu_offline(2).unwrap();
    assert_eq!(report.shut_down, [managed[2]]);
    assert_eq!(report.moved, [plain]);
    assert_ne!(m.sys.irq_info(plain).unwrap().effective_cpu, Some(2));
    assert_eq!(
        m.raise(dev, 4),
        Some(plain),
        "the moved irq keeps delivering"
    );
    assert_eq!(m.raise(dev, 2), None, "the shut-down irq is quiet");
    assert!(m.sys.irq_info(managed[2]).unwrap().shut_down);
    assert!(!m.sys.online_cpus().contains(2));
    assert_eq!(
        m.sys.alloc_at(
            dev,
            D,
            5,
            &AllocOpts {
                affinity: Some(CpuMask::single(2)),
                ..AllocOpts::default()
            }
        ),
        Err(Error::EmptyAffinity)
    );
    assert_eq!(m.sys.cpu_online(2).unwrap(), [managed[2]]);
    assert_eq!(m.raise(dev, 2), Some(managed[2]));
    assert_eq!(m.sys.irq_info(managed[2]).unwrap().effective_cpu, Some(2));
    for cpu in 1..CPUS {
        m.sys.cpu_offline(cpu).unwrap();
    }
    assert_eq!(
        m.sys.cpu_offline(0),
        Err(Error::EmptyAffinity),
        "the last CPU stays"
    );
}

#[test]
fn handlers_run_on_the_delivery_path() {
    let m = Machine::new(16, 64);
    let dev = m.device("nic", msix(4), m.remap);
    let irq = m.sys.alloc_at(dev, D, 0, &AllocOpts::default()).unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    let h = m
        .sys
        .register_handler(Box::new(move |_irq: Irq, _cpu: u32, data: u32| {
            s.fetch_add(data, Ordering::Relaxed);
        }))
        .unwrap();
    m.sys.set_handler(irq, h, 5).unwrap();
    m.raise(dev, 0);
    m.raise(dev, 0);
    assert_eq!(seen.load(Ordering::Relaxed), 10);
    assert!(m.sys.set_handler(irq, genmsi::HandlerId(60), 0).is_err());
}

#[test]
fn domains_and_devices_cannot_vanish_under_their_users() {
    let m = Machine::new(16, 64);
    let dev = m.device("nic", msix(4), m.remap);
    assert_eq!(
        m.sys.remove_domain(m.root).err(),
        Some(Error::DomainBusy(m.root))
    );
    assert_eq!(
        m.sys.remove_domain(m.remap).err(),
        Some(Error::DomainBusy(m.remap))
    );
    assert_eq!(
        m.sys.remove_device(dev),
        Err(Error::SlotOccupied {
            device: dev,
            slot: D
        })
    );
    assert_eq!(
        m.sys
            .create_device_domain(dev, D, Box::new(MemStore::new(msix(1))), m.root),
        Err(Error::SlotOccupied {
            device: dev,
            slot: D
        })
    );
    m.sys
        .alloc_range(dev, D, 0, 3, &AllocOpts::default())
        .unwrap();
    let store = m.sys.remove_device_domain(dev, D).unwrap();
    let any: Box<dyn std::any::Any> = store;
    assert!(any
        .downcast_ref::<MemStore>()
        .unwrap()
        .slots()
        .iter()
        .all(|s| s.masked && s.msg == Msg::ZERO));
    m.sys.remove_device(dev).unwrap();
    m.sys.remove_domain(m.remap).unwrap();
    m.sys.remove_domain(m.root).unwrap();
    // The freed numbers are held until the grace clock passes their bound (zero here).
    assert_eq!(m.sys.stats().irq_numbers_held, 3);
    m.sys.advance_grace(0);
    assert_eq!(
        m.sys.stats(),
        genmsi::Stats {
            irq_numbers_free: 4096,
            ..Default::default()
        }
    );
}
