//! Per-(irq, CPU) counts, as `/proc/interrupts` shows them: exact across moves, with deliveries
//! racing the configuration path, and adding up to the irq's count and the CPUs' totals.

mod common;

use common::Machine;
use genmsi::*;
use std::sync::atomic::{AtomicBool, Ordering};

const D: SlotId = SlotId::Default;

/// An 8-CPU machine and a device with 8 entries on the root.
fn machine() -> (IrqSystem, DeviceId) {
    let m = Machine::new(200, 64);
    let dev = m.device("d", StoreCaps::dynamic(8), m.root);
    (m.sys, dev)
}

fn on(cpu: u32) -> AllocOpts {
    AllocOpts {
        affinity: Some(CpuMask::single(cpu)),
        ..AllocOpts::default()
    }
}

#[test]
fn counts_follow_the_irq_from_cpu_to_cpu() {
    let (sys, dev) = machine();
    let irq = sys.alloc_at(dev, D, 0, &on(0)).unwrap();
    let t = sys.table();
    let deliver = |cpu: u32, n: u32| {
        for _ in 0..n {
            assert_eq!(sys.handle(irq, cpu), Delivery::Handled);
        }
    };
    deliver(0, 5);
    sys.set_affinity(irq, &CpuMask::single(3)).unwrap();
    // The old vector still delivers on CPU 0 while the move completes.
    deliver(0, 2);
    deliver(3, 7);
    sys.set_affinity(irq, &CpuMask::single(6)).unwrap();
    deliver(6, 1);
    sys.set_affinity(irq, &CpuMask::single(0)).unwrap();
    deliver(0, 4);
    assert_eq!(t.irq_cpu_counts(irq), [(0, 11), (3, 7), (6, 1)]);
    assert_eq!(t.unattributed(irq), 0);
    assert_eq!(t.count(irq), 19);
    assert_eq!((t.cpu_count(0), t.cpu_count(3), t.cpu_count(6)), (11, 7, 1));
    // A freed irq's counts go with it; its number starts from zero when reused.
    sys.free_index(dev, D, 0).unwrap();
    let again = sys.alloc_at(dev, D, 0, &on(1)).unwrap();
    assert_eq!(t.irq_cpu_counts(again), []);
}

#[test]
fn a_third_cpu_during_overlapping_moves_is_counted_unattributed() {
    let (sys, dev) = machine();
    let irq = sys.alloc_at(dev, D, 0, &on(0)).unwrap();
    let t = sys.table();
    // Two CPUs hold the cells; a third delivering before any fold finds none.
    sys.handle(irq, 0);
    sys.handle(irq, 1);
    sys.handle(irq, 2);
    assert_eq!(t.irq_cpu_counts(irq), [(0, 1), (1, 1)]);
    assert_eq!(t.unattributed(irq), 1);
    assert_eq!(t.count(irq), 3);
}

#[test]
fn deliveries_racing_moves_are_counted_exactly() {
    let (sys, dev) = machine();
    let irq = sys.alloc_at(dev, D, 0, &on(0)).unwrap();
    const N: u64 = 200_000;
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u32)
            .map(|cpu| {
                let sys = &sys;
                s.spawn(move || {
                    for _ in 0..N {
                        sys.handle(irq, cpu);
                    }
                })
            })
            .collect();
        // Meanwhile the irq moves back and forth: every move folds the other CPU's cell
        // while that CPU keeps delivering.
        let mover = s.spawn(|| {
            let mut moves = 0u32;
            while !done.load(Ordering::Relaxed) {
                sys.set_affinity(irq, &CpuMask::single(moves % 2)).unwrap();
                moves += 1;
            }
            moves
        });
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        assert!(mover.join().unwrap() > 0);
    });
    let t = sys.table();
    assert_eq!(t.irq_cpu_counts(irq), [(0, N), (1, N)]);
    assert_eq!(t.unattributed(irq), 0);
    assert_eq!(t.count(irq), 2 * N);
}
