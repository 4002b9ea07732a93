//! No public function of genmsi-x86 panics on any argument: property tests that throw
//! arbitrary CPU numbers, vectors, irq numbers, table sizes, entry indices, raw register
//! values and messages at its constructors and entry points (the matrix has its own, in
//! `matrix_api.rs`).

use genmsi::{Irq, Msg, MAX_CPUS};
use genmsi_x86::hpet::HpetModel;
use genmsi_x86::ioapic::{IoApicModel, Rte};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::{
    HpetStore, IoApicStore, IrUnit, Irte, IrteTable, PinConfig, SharedIrteTable, Vector,
    VectorDomain, MAX_IRTES,
};
use proptest::prelude::*;

/// Any u32, with the edges drawn often.
fn num() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        Just(0u32),
        Just(u32::MAX),
        Just(MAX_IRTES),
        0u32..300
    ]
}

/// The vector domain clamps its CPUs at MAX_CPUS rather than trying to allocate vector
/// tables for 2^32 CPUs (it aborted on allocation).
#[test]
fn a_vector_domain_of_u32_max_cpus_is_clamped() {
    let vd = VectorDomain::new(u32::MAX);
    assert_eq!(vd.matrix().nr_cpus(), MAX_CPUS);
    assert!(vd.apic_id(MAX_CPUS - 1).is_some());
    assert_eq!(vd.apic_id(MAX_CPUS), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The vector domain and its table answer any CPU, vector and irq.
    #[test]
    fn vector_domains_take_any_argument(cpus in 0u32..600, cpu in num(), vector in any::<u8>(), irq in num()) {
        let mut vd = VectorDomain::new(cpus);
        prop_assert_eq!(vd.apic_id(cpu).is_some(), cpu < cpus);
        let table = vd.table();
        let v = Vector(vector);
        prop_assert_eq!(table.lookup_ref(cpu, v), None);
        prop_assert_eq!(table.lookup(cpu, v), None);
        prop_assert_eq!(table.peek(cpu, v), None);
        prop_assert!(!table.seen(cpu, v));
        let irq = Irq(irq);
        prop_assert_eq!(vd.target(irq), None);
        prop_assert!(vd.old_targets(irq).is_empty());
        prop_assert!(!vd.move_pending(irq));
        vd.complete_move(irq);
        let _ = vd.cleanup_on_cpu(cpu, &|_| false);
        let _ = vd.cleanup(&|_, _| true);
    }

    /// A remapping table of any size is clamped at MAX_IRTES; a write past it is refused
    /// with the table's length and changes nothing; a read past it reads zero.
    #[test]
    fn irte_tables_take_any_size_and_index(entries in num(), index in num(), raw in any::<[u64; 2]>()) {
        let mut t = SharedIrteTable::new(entries);
        let len = entries.min(MAX_IRTES);
        prop_assert_eq!(t.len(), len);
        let r = t.try_write(index, raw);
        prop_assert_eq!(r.is_ok(), index < len);
        if let Err(e) = r {
            prop_assert_eq!((e.index, e.len), (index, len));
        }
        let want = if index < len { raw } else { [0, 0] };
        prop_assert_eq!(t.read(index), want);
        t.write(index, [0, 0]);
        prop_assert_eq!(t.read(index), [0, 0]);
    }

    /// Any message from any requester through any table contents: translated or blocked
    /// with a fault reason, never a panic.
    #[test]
    fn remapping_translates_any_write(
        address in any::<u64>(), data in any::<u32>(), rid in any::<u16>(),
        raws in proptest::collection::vec(any::<[u64; 2]>(), 0..8),
        x2apic in any::<bool>(), compat in any::<bool>(),
    ) {
        let mut t = SharedIrteTable::new(8);
        for (i, raw) in raws.iter().enumerate() {
            t.try_write(i as u32, *raw).unwrap();
            if let Ok(irte) = Irte::parse(*raw, x2apic) {
                let _ = (irte.emit(x2apic), irte.emit(!x2apic), irte.source_ok(rid));
            }
        }
        let mut unit = IrUnit::new(x2apic, compat);
        let msg = Msg::new(address, data);
        let _ = unit.translate(&msg, rid, &t);
        let _ = MsiFormat::parse(&msg).map(|f| format!("{f:?}"));
    }

    /// IO-APIC entries: any raw value decodes; any pin is read or refused with its limit.
    #[test]
    fn ioapic_takes_any_pin_and_entry(pins in num(), pin in num(), raw in any::<u64>()) {
        let _ = (Rte::decode(raw).encode(), Rte::status(raw));
        let model = IoApicModel::new(pins);
        let _ = model.rte(pin);
        let mut store = IoApicStore::new(model);
        let limit = pins.clamp(1, genmsi_x86::ioapic::MAX_PINS);
        prop_assert_eq!(store.read_rte(pin).is_ok(), pin < limit);
        prop_assert_eq!(store.set_pin(pin, PinConfig::LEVEL_LOW).is_ok(), pin < limit);
    }

    /// HPET: any timer number of a model of any size.
    #[test]
    fn hpet_takes_any_timer(timers in num(), fsb in num(), n in num()) {
        let model = HpetModel::new(timers, fsb);
        let exists = n < timers.clamp(1, 32);
        if !exists {
            prop_assert_eq!((model.route(n), model.config(n), model.fire(n)), ((0, 0), 0, None));
        }
        let mut store = HpetStore::new(model);
        prop_assert!(!store.fsb_capable(n) || exists);
    }
}
