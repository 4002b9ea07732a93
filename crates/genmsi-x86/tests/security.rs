//! Security properties of the x86 stack under VT-d remapping with compatibility-format
//! interrupts blocked (the configuration that makes them hold). Each test fails when its
//! property breaks.

mod common;

use common::{msix, Arrival, X86};
use genmsi::{
    AllocOpts, BusRange, CpuMask, DeviceId, DeviceMeta, Error, Irq, Msg, SlotId, StoreCaps,
};
use genmsi_x86::msi::{CompatMsi, MsiFormat, RemappableMsi};
use genmsi_x86::{FaultReason, IrUnit, IrteTable, Vector};

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

/// A device behind a PCIe-to-PCI bridge (secondary bus 1) and a conventional bridge (bus 2),
/// at 02:03.0: its writes carry the bridge's alias 01:00.0 (or its own id where the bridge
/// passes it through), so its entries verify the bus range 1..=2 (SVT = 10, SID 0x0102). A
/// device on bus 0 beside the bridge, or on bus 3, cannot use them (fault 0x26); any function
/// in the range can (that is all bus verification tells apart). The bus-0 device's own
/// entries verify its requester id, which the bridged device's ids do not pass.
#[test]
fn a_bus_range_entry_admits_its_buses_only() {
    const ALIAS: u16 = 0x0100;
    const OWN: u16 = 0x0218;
    const BUS0: u16 = 0x0028;
    let mut m = machine(2, 64);
    let meta = DeviceMeta {
        requester_id: Some(ALIAS),
        requester_buses: Some(BusRange { first: 1, last: 2 }),
    };
    let bridged = m.device_with("bridged", meta, msix(4), m.ir);
    let beside = m.device("beside", BUS0, msix(4), m.ir);
    let irq = m
        .sys
        .alloc_at(bridged, D, 0, &AllocOpts::default())
        .unwrap();
    let other = m.sys.alloc_at(beside, D, 0, &AllocOpts::default()).unwrap();
    let msg = msg_of(&m, bridged, 0);
    let Ok(MsiFormat::Remappable(r)) = MsiFormat::parse(&msg) else {
        panic!("{msg:?} is not remappable")
    };
    // VT-d 9.10: SID 0x0102 (start bus 1, end bus 2) in bits 79:64, SQ 00, SVT 10 in 83:82.
    assert_eq!(m.irt.read(r.index())[1], 0x0008_0102);
    for rid in [ALIAS, OWN, 0x01F8, 0x0200] {
        let arrival = m.write(&msg, rid);
        assert_eq!(landed(&m, &arrival), Some(irq), "from {rid:#06x}");
    }
    assert_eq!(FaultReason::SourceId.code(), 0x26);
    for rid in [BUS0, 0x00FF, 0x0300, 0xFF00] {
        assert_eq!(
            m.write(&msg, rid),
            Arrival::Blocked(FaultReason::SourceId),
            "from {rid:#06x}"
        );
    }
    let arrival = m.write(&msg_of(&m, beside, 0), BUS0);
    assert_eq!(landed(&m, &arrival), Some(other));
    for rid in [ALIAS, OWN] {
        assert_eq!(
            m.write(&msg_of(&m, beside, 0), rid),
            Arrival::Blocked(FaultReason::SourceId),
            "the bus-0 entry from {rid:#06x}"
        );
    }
}
