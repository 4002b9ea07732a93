//! Moves under traffic: a device keeps firing while its irqs move between CPUs. Nothing is
//! lost, nothing lands on a stale vector, every old vector is released exactly once.

mod common;

use common::{msi_unmaskable, msix, Arrival, X86};
use genmsi::{AllocOpts, CpuMask, DeviceId, Irq, Msg, SlotId};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::Target;
use proptest::prelude::*;
use std::collections::BTreeMap;

const D: SlotId = SlotId::Default;

/// Runs a scripted storm: `steps` of (raise some index, maybe service, maybe move, maybe
/// clean up), then drains. Returns (raised per irq, released targets).
fn storm(
    m: &mut X86,
    devs: &[(DeviceId, u16, Vec<Irq>)],
    script: &[(u8, u8, u8, u8)],
) -> (BTreeMap<Irq, u64>, Vec<(Irq, Target)>, usize) {
    let cpus = m.irr.len() as u32;
    let mut raised: BTreeMap<Irq, u64> = BTreeMap::new();
    let mut released = Vec::new();
    let mut created = 0;
    for &(which, action, cpu, extra) in script {
        let (dev, rid, irqs) = &devs[which as usize % devs.len()];
        let index = u32::from(extra) % irqs.len() as u32;
        let irq = irqs[index as usize];
        // The device raises, unless that irq already has one latched (the IRR would merge them).
        let already = m.irr.iter().enumerate().any(|(c, s)| {
            s.iter()
                .any(|&v| m.vectors.peek(c as u32, genmsi_x86::Vector(v)) == Some(irq))
        });
        if !already {
            match m.raise(*dev, *rid, index) {
                Some(Arrival::Pending(..)) => *raised.entry(irq).or_default() += 1,
                other => panic!("raise of a live irq failed: {other:?}"),
            }
        }
        match action % 4 {
            0 => m.service_all(),
            1 => {
                let before = m.with_vectors(|v| v.old_targets(irq).len());
                m.sys
                    .set_affinity(irq, &CpuMask::single(u32::from(cpu) % cpus))
                    .unwrap();
                created += m.with_vectors(|v| v.old_targets(irq).len()) - before;
            }
            2 => released.extend(m.cleanup().released),
            _ => m.refresh(), // devices catch up; whatever is latched stays pending
        }
    }
    m.service_all();
    m.refresh();
    for _ in 0..3 {
        // Every irq fires once more so pending moves complete, then everything is cleaned up.
        for (dev, rid, irqs) in devs {
            for (i, &irq) in irqs.iter().enumerate() {
                assert!(matches!(
                    m.raise(*dev, *rid, i as u32),
                    Some(Arrival::Pending(..))
                ));
                *raised.entry(irq).or_default() += 1;
            }
        }
        m.service_all();
        released.extend(m.cleanup().released);
    }
    (raised, released, created)
}

/// `created`: old targets the moves left behind. Each is released exactly once: a second
/// release of the same vector would fail in the matrix (and panic), a missing one would leak.
fn check_no_loss(m: &X86, raised: &BTreeMap<Irq, u64>, released: &[(Irq, Target)], created: usize) {
    assert_eq!(
        &m.handled, raised,
        "every interrupt raised is handled once, by its own irq"
    );
    assert_eq!(m.stale, 0, "no interrupt arrived on a stale vector");
    assert_eq!(
        released.len(),
        created,
        "every old target released exactly once"
    );
    assert_eq!(m.with_vectors(|v| v.moves_in_progress()), 0);
    // Every active irq holds exactly one vector: nothing leaked.
    let active = m.sys.stats().irqs_active;
    assert_eq!(m.with_vectors(|v| v.matrix().total_allocated()), active);
    m.with_vectors(|v| v.matrix().check()).unwrap();
}

fn setup(m: &X86) -> Vec<(DeviceId, u16, Vec<Irq>)> {
    let nic = m.device("nic", 0x0100, msix(8), m.ir);
    let plain = m.device("direct-msix", 0x0200, msix(4), m.vector);
    let legacy = m.device("direct-msi", 0x0300, msi_unmaskable(1), m.vector);
    let o = AllocOpts::default();
    vec![
        (nic, 0x0100, m.sys.alloc_range(nic, D, 0, 8, &o).unwrap()),
        (
            plain,
            0x0200,
            m.sys.alloc_range(plain, D, 0, 4, &o).unwrap(),
        ),
        (
            legacy,
            0x0300,
            m.sys.alloc_range(legacy, D, 0, 1, &o).unwrap(),
        ),
    ]
}

#[test]
fn scripted_storm_loses_nothing() {
    let mut m = X86::new(8, 256);
    m.lagging = true;
    let devs = setup(&m);
    let script: Vec<(u8, u8, u8, u8)> = (0..600u32)
        .map(|i| {
            (
                (i % 3) as u8,
                (i * 7 % 5) as u8,
                (i * 13 % 8) as u8,
                (i * 11 % 8) as u8,
            )
        })
        .collect();
    let (raised, released, created) = storm(&mut m, &devs, &script);
    assert!(raised.values().sum::<u64>() > 600);
    assert!(
        released.len() > 50,
        "the script really moved irqs: {}",
        released.len()
    );
    check_no_loss(&m, &raised, &released, created);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_storms_lose_nothing(script in proptest::collection::vec((0u8..3, 0u8..4, 0u8..8, 0u8..8), 1..200)) {
        let mut m = X86::new(8, 256);
        m.lagging = true;
        let devs = setup(&m);
        let (raised, released, created) = storm(&mut m, &devs, &script);
        check_no_loss(&m, &raised, &released, created);
    }
}

#[test]
fn old_vector_stays_until_the_move_completes_and_nothing_is_pending() {
    let mut m = X86::new(4, 64);
    let dev = m.device("nic", 0x0100, msix(2), m.vector);
    let irq = m
        .sys
        .alloc_at(
            dev,
            D,
            0,
            &AllocOpts {
                affinity: Some(CpuMask::single(1)),
                ..AllocOpts::default()
            },
        )
        .unwrap();
    let old = m.with_vectors(|v| v.target(irq)).unwrap();
    // An interrupt is in flight to the old target when the move happens.
    assert_eq!(
        m.raise(dev, 0x0100, 0),
        Some(Arrival::Pending(1, old.vector))
    );
    m.sys.set_affinity(irq, &CpuMask::single(3)).unwrap();
    let new = m.with_vectors(|v| v.target(irq)).unwrap();
    assert_eq!(new.cpu, 3);
    // No interrupt on the new target yet: nothing is released.
    assert!(m.with_vectors(|v| v.move_pending(irq)));
    assert_eq!(m.cleanup().waiting, 1);
    assert!(m.with_vectors(|v| v.matrix().is_allocated(1, old.vector)));
    // The explicit completion does not release a vector that is still pending in the IRR.
    m.with_vectors(|v| v.complete_move(irq));
    assert!(m.cleanup().released.is_empty());
    m.service(1);
    assert_eq!(
        m.handled[&irq], 1,
        "the in-flight interrupt was delivered through the old vector"
    );
    // The CPU that held the old vector cleans up after itself; another CPU cannot see its IRR.
    assert!(m
        .with_vectors(|v| v.cleanup_on_cpu(3, &|_| false))
        .released
        .is_empty());
    let r = m.with_vectors(|v| v.cleanup_on_cpu(1, &|_| false));
    assert_eq!(r.released, [(irq, old)]);
    assert!(!m.with_vectors(|v| v.matrix().is_allocated(1, old.vector)));
    assert_eq!(
        m.raise(dev, 0x0100, 0),
        Some(Arrival::Pending(3, new.vector))
    );
    m.service(3);
    assert_eq!(m.handled[&irq], 2);
}

#[test]
fn first_interrupt_on_the_new_target_completes_the_move() {
    let mut m = X86::new(4, 64);
    let dev = m.device("nic", 0x0100, msix(2), m.ir);
    let irq = m.sys.alloc_at(dev, D, 0, &AllocOpts::default()).unwrap();
    let old = m.with_vectors(|v| v.target(irq)).unwrap();
    m.sys.set_affinity(irq, &CpuMask::single(2)).unwrap();
    assert_eq!(m.cleanup().waiting, 1);
    m.raise(dev, 0x0100, 0);
    m.service_all();
    assert!(
        !m.with_vectors(|v| v.move_pending(irq)),
        "the first interrupt on the new target completed it"
    );
    assert_eq!(m.cleanup().released, [(irq, old)]);
}

/// Every torn mix of two consecutive messages a device without masking may send must land on
/// the irq: that is why the move takes two steps.
#[test]
fn two_step_move_keeps_every_torn_message_valid() {
    let mut m = X86::new(4, 64);
    let dev = m.device("legacy", 0x0300, msi_unmaskable(1), m.vector);
    let irq = m
        .sys
        .alloc_at(
            dev,
            D,
            0,
            &AllocOpts {
                affinity: Some(CpuMask::single(0)),
                ..AllocOpts::default()
            },
        )
        .unwrap();
    // Fill CPU 2 a little so the new vector number differs from the old one.
    let filler = m.device("filler", 0x0400, msix(4), m.vector);
    m.sys
        .alloc_range(
            filler,
            D,
            0,
            3,
            &AllocOpts {
                affinity: Some(CpuMask::single(2)),
                ..AllocOpts::default()
            },
        )
        .unwrap();
    let before = m.store(dev, |s| s.slots()[0].msg);
    let writes = RecordingWrites::around(&mut m, dev, |m| {
        m.sys.set_affinity(irq, &CpuMask::single(2)).unwrap()
    });
    assert_eq!(writes.first(), Some(&before));
    assert_eq!(writes.len(), 3, "old, interim, final: {writes:?}");
    for pair in writes.windows(2) {
        for torn in [
            Msg::new(pair[0].address, pair[1].data),
            Msg::new(pair[1].address, pair[0].data),
        ] {
            let Ok(MsiFormat::Compat(c)) = MsiFormat::parse(&torn) else {
                panic!("{torn:?}")
            };
            assert_eq!(
                m.vectors.peek(c.dest, c.vector),
                Some(irq),
                "torn {torn:?} lands elsewhere"
            );
        }
    }
    let targets = m.with_vectors(|v| v.old_targets(irq).to_vec());
    assert_eq!(
        targets.len(),
        2,
        "old target and interim target are both held until cleanup"
    );
    m.raise(dev, 0x0300, 0);
    m.service_all();
    assert_eq!(m.cleanup().released.len(), 2);
    assert_eq!(m.stale, 0);
}

/// Captures the sequence of messages a store held around an action, by polling its write log.
struct RecordingWrites;

impl RecordingWrites {
    fn around(m: &mut X86, dev: DeviceId, action: impl FnOnce(&mut X86)) -> Vec<Msg> {
        m.store(dev, |s| s.record_writes = true);
        let first = m.store(dev, |s| s.slots()[0].msg);
        action(m);
        let mut log = m.store(dev, |s| std::mem::take(&mut s.write_log));
        log.retain(|(i, _)| *i == 0);
        std::iter::once(first)
            .chain(log.into_iter().map(|(_, msg)| msg))
            .collect()
    }
}

#[test]
fn cpu_offline_moves_irqs_and_retriggers_what_was_pending_there() {
    let mut m = X86::new(4, 64);
    let nic = m.device("nic", 0x0100, msix(4), m.ir);
    let nvme = m.device("nvme", 0x0200, msix(4), m.ir);
    let moved = m
        .sys
        .alloc_at(
            nic,
            D,
            0,
            &AllocOpts {
                affinity: Some(CpuMask::range(1, 2)),
                ..AllocOpts::default()
            },
        )
        .unwrap();
    let spread = AllocOpts {
        affinity: Some(CpuMask::range(0, 3)),
        spread: true,
        managed: true,
        ..AllocOpts::default()
    };
    let managed = m.sys.alloc_range(nvme, D, 0, 4, &spread).unwrap();
    let cpu_of = |m: &X86, irq| m.with_vectors(|v| v.target(irq)).unwrap().cpu;
    assert_eq!(cpu_of(&m, moved), 1);
    // An interrupt is latched on CPU 1 when it goes away.
    m.raise(nic, 0x0100, 0);
    let report = m.sys.cpu_offline(1).unwrap();
    m.online[1] = false;
    assert_eq!(report.moved, [moved]);
    assert_eq!(report.shut_down, [managed[1]]);
    assert_eq!(cpu_of(&m, moved), 2);
    let c = m.cleanup();
    assert_eq!(
        c.retrigger,
        [moved],
        "the interrupt latched on the dead CPU is sent again"
    );
    // The dead CPU's local APIC is gone, and its IRR with it.
    m.irr[1].clear();
    m.service_all();
    assert_eq!(m.handled[&moved], 1);
    assert_eq!(
        m.raise(nvme, 0x0200, 1),
        None,
        "shut down: masked at the device, which latches it"
    );
    assert!(m.store(nvme, |s| s.take_pending(1)));
    // Its remap entry is not present either: a write that got through anyway is blocked.
    let stale = genmsi_x86::msi::RemappableMsi {
        handle: m.with_ir(|ir| ir.entry_of(managed[1]).unwrap()) as u16,
        subhandle: Some(0),
    }
    .emit();
    assert_eq!(
        m.write(&stale, 0x0200),
        Arrival::Blocked(genmsi_x86::FaultReason::NotPresent)
    );
    m.raise(nvme, 0x0200, 2);
    m.service_all();
    assert_eq!(m.handled[&managed[2]], 1);
    // Back online: the managed irq restarts on its CPU.
    m.online[1] = true;
    assert_eq!(m.sys.cpu_online(1).unwrap(), [managed[1]]);
    assert_eq!(cpu_of(&m, managed[1]), 1);
    m.raise(nvme, 0x0200, 1);
    m.service_all();
    assert_eq!(m.handled[&managed[1]], 1);
    assert_eq!(m.stale, 0);
}
