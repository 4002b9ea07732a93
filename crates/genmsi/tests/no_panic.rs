//! No public function of the core panics on any argument: property tests that throw arbitrary
//! values (CPU numbers, irq numbers, indices, counts, device and domain ids, configurations)
//! at every constructor and entry point. Each call returns a typed result; after any sequence
//! of calls, freeing everything leaves no irq, vector or number behind.

use genmsi::soft::{MemStore, SoftRemap, SoftRoot, MAX_SOFT_ENTRIES};
use genmsi::*;
use proptest::prelude::*;

const D: SlotId = SlotId::Default;

/// Any u32, with the edges (0, 1, the limits, the top) drawn often.
fn num() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        Just(0u32),
        Just(u32::MAX),
        Just(MAX_CPUS),
        Just(MAX_CPUS - 1),
        Just(MAX_IRQS),
        0u32..40,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// CPU masks from any numbers: out-of-range CPUs are never in a mask.
    #[test]
    fn cpu_masks_take_any_number(a in num(), b in num(), cpus in proptest::collection::vec(num(), 0..8)) {
        let single = CpuMask::single(a);
        prop_assert_eq!(single.contains(a), a < MAX_CPUS);
        prop_assert_eq!(single.weight(), u32::from(a < MAX_CPUS));
        prop_assert_eq!(CpuMask::try_single(a).is_some(), a < MAX_CPUS);
        let range = CpuMask::range(a, b);
        let first_n = CpuMask::first_n(a);
        let from = CpuMask::from_cpus(cpus.iter().copied());
        for m in [&single, &range, &first_n, &from] {
            prop_assert!(m.iter().all(|c| c < MAX_CPUS));
            prop_assert_eq!(m.contains(b), m.iter().any(|c| c == b));
            let _ = (m.first(), m.last(), m.next_from(b), m.as_single(), m.as_range());
            let with = m.with(b);
            prop_assert_eq!(with.contains(b), b < MAX_CPUS);
            prop_assert!(!m.without(b).contains(b));
            prop_assert!(m.and(&range).is_subset(m));
            let _ = (m.intersects(&from), m.heap_bytes());
        }
    }

    /// A configuration beyond the documented limits is refused with a typed error by
    /// `try_new`, and clamped by `new`: neither panics nor allocates without bound.
    #[test]
    fn irq_systems_take_any_config(nr_cpus in num(), max_irqs in num(), max_handlers in num()) {
        let config = SystemConfig { nr_cpus, max_irqs, max_handlers };
        let fits = (1..=MAX_CPUS).contains(&nr_cpus) && max_irqs <= MAX_IRQS && max_handlers <= MAX_HANDLERS;
        match IrqSystem::<spin::Mutex<()>>::try_new(config) {
            Ok(sys) => {
                prop_assert!(fits);
                prop_assert_eq!(sys.online_cpus().weight(), nr_cpus);
            }
            Err(e) => {
                prop_assert!(!fits);
                prop_assert!(matches!(e, Error::InvalidConfig { .. }), "{:?}", e);
            }
        }
        let sys: IrqSystem = IrqSystem::new(config);
        let clamped = config.clamped();
        prop_assert_eq!(clamped.check(), Ok(()));
        prop_assert_eq!(sys.online_cpus().weight(), clamped.nr_cpus);
        prop_assert!(sys.table().capacity() >= clamped.max_irqs);
    }

}

proptest! {
    // Few cases: a clamped part still holds up to 1 Mi entries.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The software parts of any size are clamped at their documented limits.
    #[test]
    fn soft_parts_take_any_size(n in num(), per_cpu in num()) {
        let root = SoftRoot::new(n, per_cpu);
        prop_assert_eq!(root.used().len() as u32, n.min(MAX_CPUS));
        let remap = SoftRemap::new(n);
        prop_assert_eq!(remap.free_entries(), n.min(MAX_SOFT_ENTRIES));
        let store = MemStore::new(StoreCaps::dynamic(n));
        prop_assert_eq!(store.slots().len() as u32, n.min(MAX_SOFT_ENTRIES));
        prop_assert_eq!(store.caps().max_index, n.min(MAX_SOFT_ENTRIES));
    }
}

/// One call of the public API with arbitrary arguments.
#[derive(Clone, Debug)]
enum Call {
    Range(u32, u32, Option<u32>),
    At(u32, bool),
    Any(u64),
    Grow(u32),
    Shrink(u32),
    Free(u32),
    FreeRange(u32, u32),
    Activate(u32),
    Deactivate(u32),
    Affinity(u32, u32, u32),
    Mask(u32),
    Unmask(u32),
    Compose(u32),
    Info(u32),
    SetHandler(u32, u32, u32),
    Handle(u32, u32),
    HandleRef(u32, u32, u32),
    Offline(u32),
    Online(u32),
    Desc(u32, u32, bool),
    UnknownIds(u32, u32),
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (num(), num(), proptest::option::of(num())).prop_map(|(a, b, c)| Call::Range(a, b, c)),
        (num(), any::<bool>()).prop_map(|(a, b)| Call::At(a, b)),
        any::<u64>().prop_map(Call::Any),
        num().prop_map(Call::Grow),
        num().prop_map(Call::Shrink),
        num().prop_map(Call::Free),
        (num(), num()).prop_map(|(a, b)| Call::FreeRange(a, b)),
        num().prop_map(Call::Activate),
        num().prop_map(Call::Deactivate),
        (num(), num(), num()).prop_map(|(a, b, c)| Call::Affinity(a, b, c)),
        num().prop_map(Call::Mask),
        num().prop_map(Call::Unmask),
        num().prop_map(Call::Compose),
        num().prop_map(Call::Info),
        (num(), num(), num()).prop_map(|(a, b, c)| Call::SetHandler(a, b, c)),
        (num(), num()).prop_map(|(a, b)| Call::Handle(a, b)),
        (num(), num(), num()).prop_map(|(a, b, c)| Call::HandleRef(a, b, c)),
        num().prop_map(Call::Offline),
        num().prop_map(Call::Online),
        (num(), num(), any::<bool>()).prop_map(|(a, b, c)| Call::Desc(a, b, c)),
        (num(), num()).prop_map(|(a, b)| Call::UnknownIds(a, b)),
    ]
}

/// Applies one call; every result is typed (the test only needs it not to panic).
fn apply(sys: &IrqSystem, dev: DeviceId, call: &Call) {
    let irq = |n: u32| Irq(n % 64); // mostly numbers that exist, some that do not
    match *call {
        Call::Range(first, count, cpu) => {
            let opts = AllocOpts {
                affinity: cpu.map(CpuMask::single),
                spread: cpu.is_some_and(|c| c % 2 == 0),
                ..AllocOpts::default()
            };
            let _ = sys.alloc_range(dev, D, first, count, &opts);
        }
        Call::At(index, activate) => {
            let opts = AllocOpts {
                activate,
                ..AllocOpts::default()
            };
            let _ = sys.alloc_at(dev, D, index, &opts);
        }
        Call::Any(cookie) => {
            let opts = AllocOpts {
                cookie: Some(cookie),
                ..AllocOpts::default()
            };
            let _ = sys.alloc_any(dev, D, &opts);
        }
        Call::Grow(n) => {
            let _ = sys.grow_to(dev, D, n, &AllocOpts::default());
        }
        Call::Shrink(n) => {
            let _ = sys.shrink_to(dev, D, n);
        }
        Call::Free(i) => {
            let _ = sys.free_index(dev, D, i);
        }
        Call::FreeRange(first, count) => {
            let _ = sys.free_range(dev, D, first, count);
        }
        Call::Activate(n) => {
            let _ = sys.activate(irq(n));
        }
        Call::Deactivate(n) => {
            let _ = sys.deactivate(irq(n));
        }
        Call::Affinity(n, first, last) => {
            let _ = sys.set_affinity(irq(n), &CpuMask::range(first, last));
            let _ = sys.set_affinity(Irq(n), &CpuMask::single(first));
        }
        Call::Mask(n) => {
            let _ = sys.mask(irq(n));
        }
        Call::Unmask(n) => {
            let _ = sys.unmask(irq(n));
        }
        Call::Compose(n) => {
            let _ = sys.compose_msg(Irq(n));
        }
        Call::Info(n) => {
            let _ = (sys.irq_info(Irq(n)), sys.table().count(Irq(n)));
            let _ = (
                sys.table().irq_cpu_counts(Irq(n)),
                sys.table().is_pending(Irq(n)),
            );
            let _ = (sys.table().irq_ref(Irq(n)), sys.table().cpu_count(n));
        }
        Call::SetHandler(n, handler, data) => {
            let _ = sys.set_handler(irq(n), HandlerId(handler), data);
        }
        Call::Handle(n, cpu) => {
            let _ = sys.handle(Irq(n), cpu);
            let _ = sys.handle(irq(n), cpu);
        }
        Call::HandleRef(n, generation, cpu) => {
            let irq = irq(n);
            let _ = sys.handle_ref(IrqRef { irq, generation }, cpu);
            let _ = sys.handle_ref(sys.table().irq_ref(irq), cpu);
        }
        Call::Offline(cpu) => {
            let _ = sys.cpu_offline(cpu);
        }
        Call::Online(cpu) => {
            let _ = sys.cpu_online(cpu);
        }
        Call::Desc(device, index, secondary) => {
            let slot = match secondary {
                true => SlotId::Secondary,
                false => D,
            };
            let _ = sys.desc(DeviceId(device), slot, index);
            let _ = sys.desc(dev, D, index);
            let _ = (
                sys.descs(DeviceId(device), slot),
                sys.store_caps(DeviceId(device), slot),
            );
        }
        Call::UnknownIds(device, domain) => {
            // Ids that name nothing (the test's own device and domains are 0..2).
            let (device, domain) = (DeviceId(device.max(1)), DomainId(domain.max(2)));
            let _ = sys.remove_device(device);
            let _ = sys.remove_device_domain(device, D);
            let _ = sys.remove_domain(domain);
            let _ = sys.with_domain(domain, |_: &mut SoftRoot| ());
            let _ = sys.with_store(device, D, |_: &mut MemStore| ());
            let store = Box::new(MemStore::new(StoreCaps::dynamic(4)));
            let _ = sys.create_device_domain(device, D, store, domain);
            let child = Box::new(SoftRoot::new(1, 1));
            assert_eq!(
                sys.add_domain(child, Some(domain)).err(),
                Some(Error::UnknownDomain(domain))
            );
            let _ = sys.dump();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of calls with any arguments: typed results only, and once everything is
    /// freed, no irq, vector or irq number is left.
    #[test]
    fn entry_points_take_any_argument(calls in proptest::collection::vec(call(), 1..40)) {
        let sys: IrqSystem = IrqSystem::new(SystemConfig::new(4, 64));
        let root = sys.add_domain(Box::new(SoftRoot::new(4, 8)), None).unwrap();
        let dev = sys.add_device("dev", DeviceMeta::requester(0x10));
        let caps = StoreCaps { any_index: true, ..StoreCaps::dynamic(48) };
        sys.create_device_domain(dev, D, Box::new(MemStore::new(caps)), root).unwrap();
        for call in &calls {
            apply(&sys, dev, call);
        }
        for cpu in 0..4 {
            let _ = sys.cpu_online(cpu);
        }
        sys.free_all(dev, D).unwrap();
        prop_assert_eq!(sys.stats().irqs_allocated, 0);
        // Freed numbers go back once the grace clock passes their bound (zero here).
        sys.advance_grace(0);
        prop_assert_eq!(sys.stats().irq_numbers_held, 0);
        prop_assert_eq!(sys.stats().irq_numbers_free, 64);
        let used = sys.with_domain(root, |r: &mut SoftRoot| r.used().iter().sum::<u32>()).unwrap();
        prop_assert_eq!(used, 0);
        sys.remove_device_domain(dev, D).unwrap();
        sys.remove_device(dev).unwrap();
        sys.remove_domain(root).unwrap();
    }
}
