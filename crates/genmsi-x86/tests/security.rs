//! Security properties of the x86 stack under VT-d remapping with compatibility-format
//! interrupts blocked (the configuration that makes them hold). Each test fails when its
//! property breaks.

mod common;

use common::{msix, Arrival, X86};
use genmsi::{AllocOpts, CpuMask, DeviceId, Error, Irq, Msg, SlotId, StoreCaps};
use genmsi_x86::msi::{CompatMsi, RemappableMsi};
use genmsi_x86::{FaultReason, IrUnit, Vector};

const D: SlotId = SlotId::Default;
const A: u16 = 0x0100;
const B: u16 = 0x0108;

fn machine(cpus: u32, irtes: u32) -> X86 {
    let m = X86::new(cpus, irtes);
    *m.unit.lock().unwrap() = IrUnit::new(false, false);
    m
}

/// The irq a write landed on, if it landed.
fn landed(m: &X86, a: &Arrival) -> Option<Irq> {
    match *a {
        Arrival::Pending(cpu, v) => m.vectors.peek(cpu, v),
        _ => None,
    }
}

fn msg_of(m: &X86, dev: DeviceId, index: u32) -> Msg {
    m.store(dev, |s| s.slots()[index as usize].msg)
}

/// Device B writes every handle (with and without a subhandle) and every compatibility
/// message to every CPU and vector: nothing it writes lands on device A's irqs.
#[test]
fn a_device_cannot_raise_another_devices_interrupt() {
    let mut m = machine(2, 64);
    let a = m.device("a", A, msix(8), m.ir);
    let b = m.device("b", B, msix(8), m.ir);
    let a_irqs = m
        .sys
        .alloc_range(a, D, 0, 8, &AllocOpts::default())
        .unwrap();
    let b_irqs = m
        .sys
        .alloc_range(b, D, 0, 2, &AllocOpts::default())
        .unwrap();
    let mut own = 0;
    let mut writes: Vec<Msg> = Vec::new();
    for handle in 0..=u16::MAX {
        for subhandle in [None, Some(0), Some(1)] {
            writes.push(RemappableMsi { handle, subhandle }.emit());
        }
    }
    for cpu in 0..2 {
        for v in 0..=255u8 {
            writes.push(CompatMsi::fixed(cpu, Vector(v)).emit());
        }
    }
    // Every write goes through the remapping unit, compatibility format included (the test
    // machine's own bus lets compatibility writes bypass the unit, as with remapping off).
    for msg in &writes {
        let translated = m.unit.lock().unwrap().translate(msg, B, &m.irt);
        if let Ok(t) = translated {
            let irq = m.vectors.peek(t.dest, t.vector);
            assert!(
                irq.is_none_or(|irq| !a_irqs.contains(&irq)),
                "B's write {msg:?} reached A's {irq:?}"
            );
            assert!(
                irq.is_some_and(|irq| b_irqs.contains(&irq)),
                "{msg:?} landed on {irq:?}"
            );
            own += 1;
        }
    }
    // What lands is B's own: its two handles with and without a subhandle, and handle plus
    // subhandle naming one of its entries (VT-d 5.1.2.2).
    assert!(own >= 4, "{own}");
    // A's exact messages replayed by B are refused by the source-id check.
    for i in 0..8 {
        let msg = msg_of(&m, a, i);
        assert_eq!(m.write(&msg, B), Arrival::Blocked(FaultReason::SourceId));
    }
}

/// A freed index's message is blocked at once, also after its IRTE is given to another
/// device's irq (once its grace ended), and never delivered there.
#[test]
fn a_freed_irte_is_unusable_at_once() {
    let mut m = machine(1, 4);
    let a = m.device("a", A, msix(4), m.ir);
    let b = m.device("b", B, msix(4), m.ir);
    m.sys.alloc_at(a, D, 0, &AllocOpts::default()).unwrap();
    let stale = msg_of(&m, a, 0);
    assert!(matches!(m.write(&stale, A), Arrival::Pending(..)));
    m.irr.iter_mut().for_each(|s| s.clear());
    m.sys.free_index(a, D, 0).unwrap();
    assert_eq!(
        m.write(&stale, A),
        Arrival::Blocked(FaultReason::NotPresent),
        "the entry cache was invalidated with the free"
    );
    // During its grace the freed IRTE is given to nobody: B gets the other three only.
    assert_eq!(
        m.sys.alloc_range(b, D, 0, 4, &AllocOpts::default()),
        Err(Error::NoRemapEntries { requested: 4 })
    );
    m.sys.advance_grace(0);
    // Every IRTE goes to B now, the freed one included.
    let b_irqs = m
        .sys
        .alloc_range(b, D, 0, 4, &AllocOpts::default())
        .unwrap();
    assert_eq!(
        m.sys.alloc_at(a, D, 1, &AllocOpts::default()),
        Err(Error::NoRemapEntries { requested: 1 })
    );
    let arrival = m.write(&stale, A);
    assert_eq!(arrival, Arrival::Blocked(FaultReason::SourceId));
    assert!(landed(&m, &arrival).is_none_or(|irq| !b_irqs.contains(&irq)));
}

/// Running out of IRTEs, vectors or store entries fails for the device that asks, with a
/// typed error and nothing changed; the other device keeps delivering and allocating.
#[test]
fn exhaustion_fails_for_the_requester_only() {
    let mut m = machine(2, 16);
    let a = m.device("a", A, msix(64), m.ir);
    let b = m.device("b", B, msix(4), m.ir);
    let b0 = m.sys.alloc_at(b, D, 0, &AllocOpts::default()).unwrap();
    // IRTEs: A takes every free entry, then is refused.
    let mut i = 0;
    let err = loop {
        match m.sys.alloc_at(a, D, i, &AllocOpts::default()) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::NoRemapEntries { requested: 1 });
    assert_eq!(i, 15);
    let stats = m.sys.stats();
    assert_eq!(m.sys.alloc_at(a, D, i, &AllocOpts::default()), Err(err));
    assert_eq!(m.sys.stats(), stats, "the refusal changed nothing");
    let msg = msg_of(&m, b, 0);
    let arrival = m.write(&msg, B);
    assert_eq!(landed(&m, &arrival), Some(b0), "B still delivers");
    m.sys.free_all(a, D).unwrap();

    // Vectors: A fills CPU 0 (it may ask only for CPU 0), then is refused; B allocates on CPU 1
    // and its irq on CPU 0 keeps delivering.
    let mut m = machine(2, 1024);
    let a = m.device("a", A, msix(1024), m.ir);
    let b = m.device("b", B, msix(4), m.ir);
    let on0 = AllocOpts {
        affinity: Some(CpuMask::single(0)),
        ..AllocOpts::default()
    };
    let b0 = m.sys.alloc_at(b, D, 0, &on0).unwrap();
    let mut i = 0;
    let err = loop {
        match m.sys.alloc_at(a, D, i, &on0) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::NoVectors { .. }), "{err:?}");
    assert!(i > 100, "A got {i} vectors on CPU 0");
    let msg = msg_of(&m, b, 0);
    let arrival = m.write(&msg, B);
    assert_eq!(landed(&m, &arrival), Some(b0));
    let on1 = AllocOpts {
        affinity: Some(CpuMask::single(1)),
        ..AllocOpts::default()
    };
    assert!(
        m.sys.alloc_at(b, D, 1, &on1).is_ok(),
        "B can still allocate on CPU 1"
    );

    // Store entries: A's store is full; B's is not.
    let m = machine(2, 64);
    let a = m.device("a", A, StoreCaps::dynamic(2), m.ir);
    let b = m.device("b", B, StoreCaps::dynamic(2), m.ir);
    m.sys.alloc_any(a, D, &AllocOpts::default()).unwrap();
    m.sys.alloc_any(a, D, &AllocOpts::default()).unwrap();
    assert_eq!(
        m.sys.alloc_any(a, D, &AllocOpts::default()),
        Err(Error::StoreFull { limit: 2 })
    );
    assert!(m.sys.alloc_any(b, D, &AllocOpts::default()).is_ok());
}
