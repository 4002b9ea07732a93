//! Regression tests for bugs found in review: each failed before its fix.

use genmsi::soft::MemStore;
use genmsi::*;
use genmsi_x86::ioapic::IoApicModel;
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::*;

const D: SlotId = SlotId::Default;

fn direct(cpus: u32) -> (IrqSystem, DomainId) {
    let sys: IrqSystem = IrqSystem::new(SystemConfig::new(cpus, 1024));
    let v = sys
        .add_domain(Box::new(VectorDomain::new(cpus)), None)
        .unwrap();
    (sys, v)
}

fn on(cpu: u32) -> AllocOpts {
    AllocOpts {
        affinity: Some(CpuMask::single(cpu)),
        ..Default::default()
    }
}

fn target_of(m: &Msg) -> (u32, Vector) {
    match MsiFormat::parse(m).unwrap() {
        MsiFormat::Compat(c) => (c.dest, c.vector),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reactivation_keeps_the_last_affinity() {
    let (sys, v) = direct(4);
    let dev = sys.add_device("d", DeviceMeta::default());
    sys.create_device_domain(dev, D, Box::new(MemStore::new(StoreCaps::dynamic(8))), v)
        .unwrap();
    let irq = sys.alloc_at(dev, D, 0, &on(0)).unwrap();
    sys.set_affinity(irq, &CpuMask::single(1)).unwrap();
    sys.deactivate(irq).unwrap();
    sys.cpu_offline(0).unwrap();
    sys.activate(irq).unwrap();
    assert_eq!(sys.irq_info(irq).unwrap().effective_cpu, Some(1));
}

/// A move whose store write fails goes back to the very vector the device still uses, and
/// cleanup never gives that vector to another irq.
#[test]
fn a_failed_store_write_during_a_move_keeps_the_device_on_its_vector() {
    let (sys, v) = direct(4);
    let dev = sys.add_device("d", DeviceMeta::default());
    sys.create_device_domain(dev, D, Box::new(MemStore::new(StoreCaps::dynamic(8))), v)
        .unwrap();
    let irq = sys.alloc_at(dev, D, 0, &on(0)).unwrap();
    let before = sys
        .with_store::<MemStore, _>(dev, D, |s| s.slots()[0].msg)
        .unwrap();
    sys.with_store::<MemStore, _>(dev, D, |s| s.fail_write.insert(0))
        .unwrap();
    assert!(sys.set_affinity(irq, &CpuMask::single(1)).is_err());
    sys.with_store::<MemStore, _>(dev, D, |s| s.fail_write.clear())
        .unwrap();
    let in_store = sys
        .with_store::<MemStore, _>(dev, D, |s| s.slots()[0].msg)
        .unwrap();
    assert_eq!(in_store, before);
    assert_eq!(
        sys.compose_msg(irq).unwrap(),
        in_store,
        "domains agree with the store"
    );
    assert_eq!(sys.irq_info(irq).unwrap().desc.msg, in_store);
    sys.with_domain::<VectorDomain, _>(v, |d| {
        d.complete_move(irq);
        d.cleanup(&|_, _| false)
    })
    .unwrap();
    let other = sys.alloc_at(dev, D, 1, &on(0)).unwrap();
    let (cpu, vector) = target_of(&in_store);
    let mapped = sys
        .with_domain::<VectorDomain, _>(v, |d| d.table().peek(cpu, vector))
        .unwrap();
    assert_eq!(
        mapped,
        Some(irq),
        "the new irq {other:?} did not take the device's vector"
    );
}

struct FailingInvalidate;

impl Invalidate for FailingInvalidate {
    fn invalidate(&mut self, _: InvDescriptor) -> Result<(), &'static str> {
        Err("invalidation queue timeout")
    }
}

#[test]
fn a_failed_invalidation_leaves_no_present_entry() {
    let (sys, v) = direct(4);
    let irt = SharedIrteTable::new(64);
    let ir = sys
        .add_domain(
            Box::new(IrDomain::new(irt.clone(), FailingInvalidate, false)),
            Some(v),
        )
        .unwrap();
    let dev = sys.add_device("d", DeviceMeta::requester(0x100));
    sys.create_device_domain(dev, D, Box::new(MemStore::new(StoreCaps::dynamic(8))), ir)
        .unwrap();
    assert_eq!(
        sys.alloc_at(dev, D, 0, &AllocOpts::default()),
        Err(Error::Domain {
            domain: "vt-d",
            reason: "invalidation queue timeout"
        })
    );
    assert_eq!(irt.read(0), Irte::NOT_PRESENT);
    // The vector was mapped for a moment: it is held for its grace, then nothing is left.
    sys.advance_grace(0);
    assert_eq!(
        sys.with_domain::<VectorDomain, _>(v, |d| {
            d.cleanup(&|_, _| false);
            d.matrix().total_allocated()
        })
        .unwrap(),
        0
    );
}

#[test]
fn an_ioapic_claiming_more_pins_than_its_register_select_reaches_is_clamped() {
    let mut model = IoApicModel::new(120);
    model.regs[1] = 127 << 16 | 0x20;
    let store = IoApicStore::new(model);
    assert_eq!(genmsi::MsgStore::caps(&store).max_index, ioapic::MAX_PINS);
}

/// Taking a CPU offline moves an unmaskable MSI in one step (no interim vector on the CPU
/// that is going away), even when that CPU is full.
#[test]
fn a_full_cpu_goes_offline_with_an_unmaskable_msi_on_it() {
    let (sys, v) = direct(2);
    let msi = sys.add_device("msi", DeviceMeta::default());
    let caps = StoreCaps {
        per_vector_mask: false,
        ..StoreCaps::dynamic(1)
    };
    sys.create_device_domain(msi, D, Box::new(MemStore::new(caps)), v)
        .unwrap();
    let nic = sys.add_device("nic", DeviceMeta::default());
    sys.create_device_domain(nic, D, Box::new(MemStore::new(StoreCaps::dynamic(512))), v)
        .unwrap();
    let irq = sys.alloc_at(msi, D, 0, &on(1)).unwrap();
    let mut n = 0;
    while sys.alloc_at(nic, D, n, &on(1)).is_ok() {
        n += 1;
    }
    assert!(n > 100);
    // CPU 0 has room for all of them.
    sys.free_range(nic, D, 100, n - 100).unwrap();
    let r = sys.cpu_offline(1).unwrap();
    assert_eq!(r.moved.len(), 101);
    assert_eq!(sys.irq_info(irq).unwrap().effective_cpu, Some(0));
}

/// Issue 12: `SharedIrteTable::write` with an index past the table panicked (slice index out
/// of bounds). Now `try_write` refuses it with the index and the length, `write` ignores it,
/// and no entry changes; property: any index, any entry, never a panic.
mod irte_table_index {
    use genmsi_x86::{IrteIndexOutOfRange, IrteTable, SharedIrteTable};
    use proptest::prelude::*;

    #[test]
    fn an_index_past_the_table_is_refused_and_changes_nothing() {
        let mut t = SharedIrteTable::new(4);
        t.write(3, [0x11, 0x22]);
        assert_eq!(
            t.try_write(4, [1, 2]),
            Err(IrteIndexOutOfRange { index: 4, len: 4 })
        );
        t.write(4, [1, 2]);
        t.write(u32::MAX, [1, 2]);
        assert_eq!(t.read(4), [0, 0]);
        assert_eq!(t.read(u32::MAX), [0, 0]);
        assert_eq!(
            (0..4).map(|i| t.read(i)).collect::<Vec<_>>(),
            vec![[0, 0], [0, 0], [0, 0], [0x11, 0x22]]
        );
    }

    proptest! {
        #[test]
        fn any_write_is_in_range_or_refused(len in 0u32..64, index: u32, lo: u64, hi: u64) {
            let mut t = SharedIrteTable::new(len);
            let got = t.try_write(index, [lo, hi]);
            if index < len {
                prop_assert_eq!(got, Ok(()));
                prop_assert_eq!(t.read(index), [lo, hi]);
            } else {
                prop_assert_eq!(got, Err(IrteIndexOutOfRange { index, len }));
                prop_assert!((0..len).all(|i| t.read(i) == [0, 0]));
            }
        }
    }
}

/// Issue 12 (found by the core_api fuzz harness): an MSI-X range allocated at once under
/// remapping kept every IRTE of the range until the range's last irq was freed, so a freed
/// index's entry could not be reused (IRTEs leaked under dynamic MSI-X churn). Only a
/// multi-message block shares its entries.
#[test]
fn a_freed_index_of_a_range_returns_its_irte_after_its_grace() {
    #[derive(Debug)]
    struct Done;
    impl Invalidate for Done {
        fn invalidate(&mut self, _: InvDescriptor) -> core::result::Result<(), &'static str> {
            Ok(())
        }
    }
    type Ir = IrDomain<SharedIrteTable, Done>;
    let (sys, v) = direct(2);
    let ir = IrDomain::new(SharedIrteTable::new(8), Done, false);
    let ir = sys.add_domain(Box::new(ir), Some(v)).unwrap();
    let dev = sys.add_device("nic", DeviceMeta::requester(0x0100));
    let store = MemStore::new(StoreCaps::dynamic(8));
    sys.create_device_domain(dev, D, Box::new(store), ir)
        .unwrap();
    let free = |sys: &IrqSystem| sys.with_domain(ir, |d: &mut Ir| d.free_entries()).unwrap();
    sys.alloc_range(dev, D, 0, 3, &AllocOpts::default())
        .unwrap();
    assert_eq!(free(&sys), 5);
    sys.free_index(dev, D, 1).unwrap();
    // The freed index's IRTE is held (not present) until its grace ends, then free again.
    assert_eq!(free(&sys), 5);
    sys.advance_grace(0);
    assert_eq!(free(&sys), 6, "the freed index's IRTE is free again");
    // Churn on one index never runs the table dry while the grace clock runs (a zero
    // bound: every free's grace ends at the next advance).
    for _ in 0..32 {
        sys.alloc_at(dev, D, 1, &AllocOpts::default()).unwrap();
        sys.free_index(dev, D, 1).unwrap();
        sys.advance_grace(0);
    }
    assert_eq!(free(&sys), 6);
    sys.free_all(dev, D).unwrap();
    sys.advance_grace(0);
    assert_eq!(free(&sys), 8);
}
