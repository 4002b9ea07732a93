//! Interrupt remapping end to end: blocked requests with the right fault reasons, handles
//! released on free, aligned blocks for multi-message MSI, invalidation after every change,
//! and the IO-APIC and HPET stores under the real domains.

mod common;

use common::{msix, Arrival, X86};
use genmsi::{AllocOpts, CpuMask, Error, Msg, SlotId, StoreCaps};
use genmsi_x86::ioapic::{IoApicModel, Rte};
use genmsi_x86::msi::{MsiFormat, RemappableMsi};
use genmsi_x86::{
    FaultReason, HpetStore, IoApicStore, Irte, IrteTable, PinConfig, Trigger, Vector,
};

const D: SlotId = SlotId::Default;

#[test]
fn remapped_delivery_and_every_blocked_reason() {
    let mut m = X86::new(4, 64);
    let nic = m.device("nic", 0x0100, msix(4), m.ir);
    let irqs = m
        .sys
        .alloc_range(nic, D, 0, 2, &AllocOpts::default())
        .unwrap();
    // The device's store holds remappable messages; the IRTE holds vector, destination, SID.
    let msg = m.store(nic, |s| s.slots()[1].msg);
    let Ok(MsiFormat::Remappable(r)) = MsiFormat::parse(&msg) else {
        panic!("{msg:?}")
    };
    let entry = Irte::parse(m.irt.read(r.index()), false).unwrap();
    let t = m.with_vectors(|v| v.target(irqs[1])).unwrap();
    assert_eq!(
        (entry.vector, entry.dest, entry.sid, entry.present),
        (t.vector, t.cpu, 0x0100, true)
    );
    assert_eq!(
        m.raise(nic, 0x0100, 1),
        Some(Arrival::Pending(t.cpu, t.vector))
    );
    m.service_all();
    assert_eq!(m.handled[&irqs[1]], 1);

    // SID mismatch: another device replays the message.
    assert_eq!(
        m.write(&msg, 0x0200),
        Arrival::Blocked(FaultReason::SourceId)
    );
    // Out-of-range handle.
    let far = RemappableMsi {
        handle: 64,
        subhandle: Some(0),
    }
    .emit();
    assert_eq!(
        m.write(&far, 0x0100),
        Arrival::Blocked(FaultReason::IndexOutOfRange)
    );
    // Non-present entry: a freed index.
    m.sys.free_index(nic, D, 1).unwrap();
    assert_eq!(
        m.write(&msg, 0x0100),
        Arrival::Blocked(FaultReason::NotPresent)
    );
    // Reserved bits in the request.
    assert_eq!(
        m.write(&Msg::new(msg.address, 1 << 20), 0x0100),
        Arrival::Blocked(FaultReason::RequestReserved)
    );
    let faults: Vec<u8> = m
        .unit
        .lock()
        .unwrap()
        .faults
        .recent()
        .map(|f| f.1.code())
        .collect();
    assert_eq!(faults, [0x26, 0x21, 0x22, 0x20]);
}

#[test]
fn handles_are_released_on_free_and_blocks_are_aligned() {
    let m = X86::new(4, 64);
    let free0 = m.with_ir(|ir| ir.free_entries());
    let nic = m.device("nic", 0x0100, msix(8), m.ir);
    let one = m.sys.alloc_at(nic, D, 0, &AllocOpts::default()).unwrap();
    let multi = StoreCaps {
        block_only: true,
        alloc_after_enable: false,
        per_vector_mask: false,
        ..msix(8)
    };
    let msi = m.device("msi", 0x0300, multi, m.ir);
    let block = m
        .sys
        .alloc_range(msi, D, 0, 4, &AllocOpts::default())
        .unwrap();
    let first = m.with_ir(|ir| ir.entry_of(block[0]).unwrap());
    assert_eq!(first % 4, 0, "a block of 4 starts on a multiple of 4");
    assert_eq!(
        first, 4,
        "entry 0 is taken, so the first aligned block is 4..8"
    );
    for (i, &irq) in block.iter().enumerate() {
        assert_eq!(m.with_ir(|ir| ir.entry_of(irq)), Some(first + i as u32));
        // All messages carry the block's handle; the device adds its index to the subhandle.
        let msg = m.store(msi, |s| s.slots()[i].msg);
        assert_eq!(
            MsiFormat::parse(&msg),
            Ok(MsiFormat::Remappable(RemappableMsi {
                handle: first as u16,
                subhandle: Some(i as u16)
            }))
        );
    }
    // Multi-message MSI comes in powers of two only.
    let msi3 = m.device("msi3", 0x0301, multi, m.ir);
    assert_eq!(
        m.sys
            .alloc_range(msi3, D, 0, 3, &AllocOpts::default())
            .err(),
        Some(Error::NotSupported(genmsi::Unsupported::BlockOnly))
    );
    assert_eq!(m.with_ir(|ir| ir.free_entries()), free0 - 5);
    m.sys.free_all(msi, D).unwrap();
    m.sys.free_index(nic, D, 0).unwrap();
    // Freed entries are held (not present) until their grace ends.
    assert_eq!(m.with_ir(|ir| ir.free_entries() + ir.held_entries()), free0);
    m.sys.advance_grace(0);
    assert_eq!(m.with_ir(|ir| ir.free_entries()), free0);
    assert_eq!(m.with_ir(|ir| ir.entry_of(one)), None);
    // Exhaustion is typed and leaves nothing behind.
    let big = m.device("big", 0x0400, msix(128), m.ir);
    assert_eq!(
        m.sys.alloc_range(big, D, 0, 65, &AllocOpts::default()),
        Err(Error::NoRemapEntries { requested: 65 })
    );
    assert_eq!(m.with_ir(|ir| ir.free_entries()), free0);
}

#[test]
fn every_irte_change_is_invalidated() {
    let mut m = X86::new(4, 64);
    let nic = m.device("nic", 0x0100, msix(4), m.ir);
    let irq = m.sys.alloc_at(nic, D, 0, &AllocOpts::default()).unwrap();
    let inv0 = m.with_ir(|ir| ir.invalidations());
    assert_eq!(inv0, 1, "activation wrote one entry and invalidated it");
    // Deliver once so the unit caches the entry, then move: the cache must not serve the old one.
    m.raise(nic, 0x0100, 0);
    m.service_all();
    for cpu in [1, 2, 3, 0] {
        m.sys.set_affinity(irq, &CpuMask::single(cpu)).unwrap();
        let t = m.with_vectors(|v| v.target(irq)).unwrap();
        assert_eq!(
            m.raise(nic, 0x0100, 0),
            Some(Arrival::Pending(cpu, t.vector)),
            "cached entry was invalidated"
        );
        m.service_all();
        m.cleanup();
    }
    assert_eq!(m.with_ir(|ir| ir.invalidations()), inv0 + 4);
    m.sys.deactivate(irq).unwrap();
    assert_eq!(m.with_ir(|ir| ir.invalidations()), inv0 + 5);
    assert_eq!(m.handled[&irq], 5);
    assert_eq!(m.stale, 0);
}

#[test]
fn x2apic_destinations_need_extended_interrupt_mode() {
    use genmsi_x86::{ApicId, IrDomain, IrUnit, SharedIrteTable, VectorDomain};
    use std::sync::{Arc, Mutex};
    let sys: genmsi::IrqSystem = genmsi::IrqSystem::new(genmsi::SystemConfig::new(2, 64));
    let vd = VectorDomain::with_apic_ids(vec![ApicId(0), ApicId(0x1_0000)]);
    let root = sys.add_domain(Box::new(vd), None).unwrap();
    let unit = Arc::new(Mutex::new(IrUnit::new(true, false)));
    let table = SharedIrteTable::new(16);
    let ir = sys
        .add_domain(
            Box::new(IrDomain::new(
                table.clone(),
                common::UnitInvalidate(unit.clone()),
                true,
            )),
            Some(root),
        )
        .unwrap();
    let dev = sys.add_device("d", genmsi::DeviceMeta::requester(8));
    sys.create_device_domain(dev, D, Box::new(genmsi::soft::MemStore::new(msix(2))), ir)
        .unwrap();
    let irq = sys
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
    let msg = sys.compose_msg(irq).unwrap();
    let r = unit.lock().unwrap().translate(&msg, 8, &table).unwrap();
    assert_eq!(r.dest, 0x1_0000, "the 32-bit destination reaches the IRTE");
    // Without remapping such a CPU is unreachable: the allocation is refused.
    let direct = sys.add_device("direct", genmsi::DeviceMeta::default());
    sys.create_device_domain(
        direct,
        D,
        Box::new(genmsi::soft::MemStore::new(msix(2))),
        root,
    )
    .unwrap();
    assert!(matches!(
        sys.alloc_at(direct, D, 0, &AllocOpts::default()),
        Err(Error::NoVectors { .. })
    ));
    // Compatibility format is blocked when the unit enforces remapping.
    let c = genmsi_x86::msi::CompatMsi::fixed(0, Vector(0x30)).emit();
    assert_eq!(
        unit.lock().unwrap().translate(&c, 8, &table),
        Err(FaultReason::CompatBlocked)
    );
}

/// A shared IO-APIC register file, so the test can read what the store wrote.
#[derive(Clone)]
struct SharedIoApic(std::sync::Arc<std::sync::Mutex<IoApicModel>>);

impl genmsi_x86::IoApicRegs for SharedIoApic {
    fn read(&mut self, reg: u8) -> u32 {
        self.0.lock().unwrap().read(reg)
    }
    fn write(&mut self, reg: u8, value: u32) {
        self.0.lock().unwrap().write(reg, value)
    }
}

#[test]
fn ioapic_level_pin_through_remapping() {
    let m = X86::new(4, 64);
    let model = SharedIoApic(std::sync::Arc::new(std::sync::Mutex::new(
        IoApicModel::new(24),
    )));
    let mut store = IoApicStore::new(model.clone());
    store.set_pin(20, PinConfig::LEVEL_LOW).unwrap();
    let ioapic = m
        .sys
        .add_device("ioapic", genmsi::DeviceMeta::requester(0xF0F8));
    m.sys
        .create_device_domain(ioapic, D, Box::new(store), m.ir)
        .unwrap();
    let irq = m
        .sys
        .alloc_at(ioapic, D, 20, &AllocOpts::default())
        .unwrap();
    let t = m.with_vectors(|v| v.target(irq)).unwrap();
    let rte = Rte::decode(model.0.lock().unwrap().rte(20));
    let Rte::Remapped {
        index,
        vector,
        pin,
        masked,
    } = rte
    else {
        panic!("{rte:?}")
    };
    assert_eq!(
        (vector, pin, masked),
        (t.vector, PinConfig::LEVEL_LOW, false),
        "vector kept for EOI matching"
    );
    let e = Irte::parse(m.irt.read(u32::from(index)), false).unwrap();
    assert_eq!(
        (e.trigger, e.vector, e.dest, e.sid),
        (Trigger::Level, t.vector, t.cpu, 0xF0F8),
        "level in the IRTE too"
    );
    // Without remapping the pin gets a compatibility entry with level trigger.
    let direct = SharedIoApic(std::sync::Arc::new(std::sync::Mutex::new(
        IoApicModel::new(24),
    )));
    let mut store = IoApicStore::new(direct.clone());
    store.set_pin(21, PinConfig::LEVEL_LOW).unwrap();
    let io2 = m.sys.add_device("ioapic2", genmsi::DeviceMeta::default());
    m.sys
        .create_device_domain(io2, D, Box::new(store), m.vector)
        .unwrap();
    let irq2 = m.sys.alloc_at(io2, D, 21, &AllocOpts::default()).unwrap();
    let t2 = m.with_vectors(|v| v.target(irq2)).unwrap();
    let rte = Rte::decode(direct.0.lock().unwrap().rte(21));
    assert!(
        matches!(rte, Rte::Compat { vector, dest, pin: PinConfig::LEVEL_LOW, masked: false, .. } if vector == t2.vector && u32::from(dest) == t2.cpu)
    );
    // Masking goes to the entry's mask bit.
    m.sys.mask(irq2).unwrap();
    assert!(matches!(
        Rte::decode(direct.0.lock().unwrap().rte(21)),
        Rte::Compat { masked: true, .. }
    ));
}

#[test]
fn hpet_fsb_timer_delivers_through_the_vector_domain() {
    #[derive(Clone)]
    struct SharedHpet(std::sync::Arc<std::sync::Mutex<genmsi_x86::hpet::HpetModel>>);
    impl genmsi_x86::HpetRegs for SharedHpet {
        fn read64(&mut self, o: u32) -> u64 {
            self.0.lock().unwrap().read64(o)
        }
        fn write64(&mut self, o: u32, v: u64) {
            self.0.lock().unwrap().write64(o, v)
        }
    }
    let mut m = X86::new(4, 64);
    let model = SharedHpet(std::sync::Arc::new(std::sync::Mutex::new(
        genmsi_x86::hpet::HpetModel::new(3, 2),
    )));
    let hpet = m.sys.add_device("hpet", genmsi::DeviceMeta::default());
    m.sys
        .create_device_domain(hpet, D, Box::new(HpetStore::new(model.clone())), m.vector)
        .unwrap();
    let irq = m
        .sys
        .alloc_at(
            hpet,
            D,
            1,
            &AllocOpts {
                affinity: Some(CpuMask::single(2)),
                ..AllocOpts::default()
            },
        )
        .unwrap();
    assert_eq!(
        m.sys.alloc_at(hpet, D, 2, &AllocOpts::default()).err(),
        Some(Error::Store {
            index: 2,
            reason: "timer has no FSB delivery"
        })
    );
    let msg = model
        .0
        .lock()
        .unwrap()
        .fire(1)
        .expect("enabled for FSB delivery");
    assert_eq!(
        m.write(&msg, 0),
        Arrival::Pending(2, m.with_vectors(|v| v.target(irq)).unwrap().vector)
    );
    m.service_all();
    assert_eq!(m.handled[&irq], 1);
    m.sys.free_index(hpet, D, 1).unwrap();
    assert_eq!(model.0.lock().unwrap().fire(1), None);
}
