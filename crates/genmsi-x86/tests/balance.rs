//! The matrix against the Linux scan: the same choices, so the same balance, on random
//! workloads and on an 8,192-CPU machine.

use genmsi::CpuMask;
use genmsi_x86::reference::LinuxMatrix;
use genmsi_x86::{Vector, VectorMatrix};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc(MaskKind),
    Free(usize),
}

/// The whole matrix interface: reservations, managed vectors, system vectors, CPU hotplug.
#[derive(Clone, Debug)]
enum FullOp {
    Alloc(MaskKind, bool),
    Free(usize),
    Reserve,
    RemoveReserved,
    ReserveManaged(MaskKind),
    RemoveManaged(MaskKind),
    AllocManaged(MaskKind),
    System(u8),
    Offline(u32),
    Online(u32),
}

#[derive(Clone, Debug)]
enum MaskKind {
    All,
    Node(u32),
    Single(u32),
    Irregular(Vec<u32>),
}

fn mask(kind: &MaskKind, cpus: u32) -> CpuMask {
    match kind {
        MaskKind::All => CpuMask::first_n(cpus),
        MaskKind::Node(n) => {
            let node = (cpus / 4).max(1);
            let first = (n % 4) * node;
            CpuMask::range(first, first + node - 1)
        }
        MaskKind::Single(c) => CpuMask::single(c % cpus),
        MaskKind::Irregular(v) => CpuMask::from_cpus(v.iter().map(|c| c % cpus)),
    }
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        Just(MaskKind::All),
        (0u32..4).prop_map(MaskKind::Node),
        any::<u32>().prop_map(MaskKind::Single),
        proptest::collection::vec(any::<u32>(), 1..12).prop_map(MaskKind::Irregular),
    ];
    prop_oneof![3 => kind.prop_map(Op::Alloc), 1 => any::<usize>().prop_map(Op::Free)]
}

fn mask_kind() -> impl Strategy<Value = MaskKind> {
    prop_oneof![
        Just(MaskKind::All),
        (0u32..4).prop_map(MaskKind::Node),
        any::<u32>().prop_map(MaskKind::Single),
        proptest::collection::vec(any::<u32>(), 1..12).prop_map(MaskKind::Irregular),
    ]
}

fn full_op() -> impl Strategy<Value = FullOp> {
    prop_oneof![
        6 => (mask_kind(), any::<bool>()).prop_map(|(k, r)| FullOp::Alloc(k, r)),
        3 => any::<usize>().prop_map(FullOp::Free),
        1 => Just(FullOp::Reserve),
        1 => Just(FullOp::RemoveReserved),
        2 => mask_kind().prop_map(FullOp::ReserveManaged),
        1 => mask_kind().prop_map(FullOp::RemoveManaged),
        2 => mask_kind().prop_map(FullOp::AllocManaged),
        1 => (0x20u8..0xF0).prop_map(FullOp::System),
        1 => any::<u32>().prop_map(FullOp::Offline),
        1 => any::<u32>().prop_map(FullOp::Online),
    ]
}

/// Linux's `available` count minus ours, per CPU. They differ only where a managed vector was
/// reserved (+1) or given back (-1) while the CPU was offline: Linux adjusts an offline CPU's
/// count neither then nor when it comes back (`LinuxMatrix::reserve_managed`), ours always.
struct Drift(Vec<i64>);

impl Drift {
    /// The CPUs of `m` whose counts differ.
    fn touches(&self, m: &CpuMask) -> bool {
        m.iter()
            .any(|c| self.0.get(c as usize).is_some_and(|&d| d != 0))
    }
    /// Linux's global count minus ours: the drift of the online CPUs.
    fn global(&self, ours: &VectorMatrix) -> i64 {
        (0..self.0.len() as u32)
            .filter(|&c| ours.is_online(c))
            .map(|c| self.0[c as usize])
            .sum()
    }
}

fn same_state(
    ours: &VectorMatrix,
    linux: &LinuxMatrix,
    cpus: u32,
    drift: &Drift,
) -> Result<(), TestCaseError> {
    let plus = |x: u32, d: i64| x.wrapping_add(d as u32);
    for cpu in 0..cpus {
        prop_assert_eq!(
            plus(ours.available(cpu), drift.0[cpu as usize]),
            linux.available(cpu),
            "available on {}",
            cpu
        );
        prop_assert_eq!(ours.managed(cpu), linux.managed(cpu), "managed on {}", cpu);
    }
    prop_assert_eq!(
        plus(ours.global_available(), drift.global(ours)),
        linux.global_available()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Ours against Linux on every operation: the same CPU for every allocation; the same managed
    /// CPU whenever Linux's pick has a reserved vector (where it has none Linux fails and ours
    /// takes the next-best CPU: that allocation is undone so both go on from the same state);
    /// ours refuses exactly the reservations Linux warns about; system vectors and hotplug alike.
    /// Managed changes on offline CPUs make Linux's counts drift from the free vectors (see
    /// [`Drift`]): the test follows the drift exactly, and where it would steer Linux's choice
    /// (an allocation over a drifted CPU, a reservation while the global counts differ) the
    /// operation is left out for both, so every choice compared is made from the same counts.
    #[test]
    fn same_choices_as_linux_on_the_whole_interface(ops in proptest::collection::vec(full_op(), 1..300), cpus in 1u32..24) {
        let (mut ours, mut linux) = (VectorMatrix::new(cpus), LinuxMatrix::new(cpus));
        let mut live: Vec<(u32, Vector, bool)> = Vec::new();
        let mut drift = Drift(vec![0; cpus as usize]);
        for op in ops {
            match &op {
                FullOp::Alloc(k, reserved) => {
                    let m = mask(k, cpus);
                    if drift.touches(&m) {
                        continue;
                    }
                    let (a, b) = (ours.alloc(&m, *reserved), linux.alloc(&m, *reserved));
                    prop_assert_eq!(&a, &b);
                    if let Ok((cpu, v)) = a { live.push((cpu, v, false)); }
                }
                FullOp::Free(i) if !live.is_empty() => {
                    let (cpu, v, managed) = live.swap_remove(i % live.len());
                    ours.free(cpu, v, managed).unwrap();
                    linux.free(cpu, v, managed).unwrap();
                }
                FullOp::Free(_) => {}
                FullOp::Reserve => {
                    if drift.global(&ours) != 0 {
                        continue;
                    }
                    let warned = linux.warnings();
                    linux.reserve();
                    let refused = ours.reserve().is_err();
                    prop_assert_eq!(refused, linux.warnings() > warned);
                    if refused {
                        // A caller of ours does not go on with the refused reservation.
                        linux.remove_reserved();
                    }
                }
                FullOp::RemoveReserved => {
                    ours.remove_reserved();
                    linux.remove_reserved();
                }
                FullOp::ReserveManaged(k) => {
                    let m = mask(k, cpus);
                    if m.last().is_some_and(|c| c >= cpus) {
                        // A difference on purpose: a Linux cpumask cannot name a CPU beyond
                        // `nr_cpu_ids` (the reference drops it), ours refuses the reservation
                        // and changes nothing. Linux is not asked, so both go on alike.
                        let before = ours.clone();
                        prop_assert!(ours.reserve_managed(&m).is_err());
                        prop_assert_eq!(&ours, &before);
                        continue;
                    }
                    let result = ours.reserve_managed(&m);
                    prop_assert_eq!(&result, &linux.reserve_managed(&m));
                    if result.is_ok() {
                        for c in m.iter().filter(|&c| c < cpus && !ours.is_online(c)) {
                            drift.0[c as usize] += 1;
                        }
                    }
                }
                FullOp::RemoveManaged(k) => {
                    let m = mask(k, cpus);
                    let before: Vec<u32> = (0..cpus).map(|c| ours.managed(c).0).collect();
                    ours.remove_managed(&m);
                    linux.remove_managed(&m);
                    for c in (0..cpus).filter(|&c| !ours.is_online(c)) {
                        if ours.managed(c).0 < before[c as usize] {
                            drift.0[c as usize] -= 1;
                        }
                    }
                }
                FullOp::AllocManaged(k) => {
                    let m = mask(k, cpus);
                    match (ours.alloc_managed(&m), linux.alloc_managed(&m)) {
                        (a, Ok(b)) => {
                            prop_assert_eq!(a, Ok(b));
                            live.push((b.0, b.1, true));
                        }
                        (Ok((cpu, v)), Err(_)) => ours.free(cpu, v, true).unwrap(),
                        (Err(_), Err(_)) => {}
                    }
                }
                FullOp::System(v) => {
                    prop_assert_eq!(ours.reserve_system(Vector(*v)), linux.reserve_system(Vector(*v)));
                }
                FullOp::Offline(c) => prop_assert_eq!(ours.offline(c % (cpus + 1)), linux.offline(c % (cpus + 1))),
                FullOp::Online(c) => prop_assert_eq!(ours.online(c % (cpus + 1)), linux.online(c % (cpus + 1))),
            }
            same_state(&ours, &linux, cpus, &drift)?;
            ours.check().unwrap();
            linux.check().unwrap();
        }
    }

    #[test]
    fn same_choice_as_linux_every_time(ops in proptest::collection::vec(op(), 1..400), cpus in 1u32..40) {
        let (mut ours, mut linux) = (VectorMatrix::new(cpus), LinuxMatrix::new(cpus));
        let mut live: Vec<(u32, Vector)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(k) => {
                    let m = mask(&k, cpus);
                    let (a, b) = (ours.alloc(&m, false), linux.alloc(&m, false));
                    prop_assert_eq!(&a, &b);
                    if let Ok(t) = a { live.push(t); }
                }
                Op::Free(i) if !live.is_empty() => {
                    let (cpu, v) = live.swap_remove(i % live.len());
                    ours.free(cpu, v, false).unwrap();
                    linux.free(cpu, v, false).unwrap();
                }
                Op::Free(_) => {}
            }
            let all = CpuMask::first_n(cpus);
            prop_assert!(ours.spread(&all) <= linux.spread(&all) + 1);
        }
        ours.check().unwrap();
        linux.check().unwrap();
    }
}

/// Worked by hand from `kernel/irq/matrix.c`: 4 CPUs of 0xEC - 0x20 = 204 vectors, CPU 1
/// offline while a managed vector is reserved on all four. Linux lowers the count of the three
/// online CPUs only and adds CPU 1's stale 204 back when it returns; ours counts 203 there too.
#[test]
fn linux_counts_drift_after_a_managed_reservation_on_an_offline_cpu() {
    let (mut ours, mut linux) = (VectorMatrix::new(4), LinuxMatrix::new(4));
    ours.offline(1).unwrap();
    linux.offline(1).unwrap();
    let all = CpuMask::first_n(4);
    ours.reserve_managed(&all).unwrap();
    linux.reserve_managed(&all).unwrap();
    let counts = |f: &dyn Fn(u32) -> u32| (0..4).map(f).collect::<Vec<_>>();
    assert_eq!(counts(&|c| ours.available(c)), [203, 203, 203, 203]);
    assert_eq!(counts(&|c| linux.available(c)), [203, 204, 203, 203]);
    assert_eq!(
        (ours.global_available(), linux.global_available()),
        (609, 609)
    );
    ours.online(1).unwrap();
    linux.online(1).unwrap();
    assert_eq!(
        (ours.global_available(), linux.global_available()),
        (812, 813)
    );
    // The next allocation over CPUs 0 and 1: a tie at 203 for ours (the lowest CPU wins),
    // CPU 1's stale 204 for Linux. Vector 0x20 is each CPU's managed reservation.
    let pair = CpuMask::range(0, 1);
    assert_eq!(ours.alloc(&pair, false), Ok((0, Vector(0x21))));
    assert_eq!(linux.alloc(&pair, false), Ok((1, Vector(0x21))));
    // CPU 1 has 202 free vectors left. Once they are taken Linux still counts one, picks CPU 1
    // and fails in its bitmap search; ours counts none.
    let one = CpuMask::single(1);
    for _ in 0..202 {
        linux.alloc(&one, false).unwrap();
    }
    for _ in 0..203 {
        ours.alloc(&one, false).unwrap();
    }
    assert_eq!((ours.available(1), linux.available(1)), (0, 1));
    assert!(ours.alloc(&one, false).is_err() && linux.alloc(&one, false).is_err());
    ours.check().unwrap();
    linux.check().unwrap();
}

/// A seeded xorshift step: the workloads are the same on every run.
fn xorshift(seed: &mut u64) {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
}

/// Every way the matrix answers an irregular mask on a big machine, against Linux: CPUs listed
/// in the mask (a few inline, or a sparse set), a small dense bitmap and a node's cores and
/// siblings (level walks over a few words) and a dense bitmap (a level walk over the
/// summaries), with frees in between and a CPU going offline and back, which drain some CPUs
/// below the rest.
#[test]
fn every_irregular_path_matches_linux_on_a_big_machine() {
    let cpus = 1024;
    let (mut ours, mut linux) = (VectorMatrix::new(cpus), LinuxMatrix::new(cpus));
    let masks = [
        CpuMask::from_cpus([256, 768]),
        CpuMask::from_cpus([128, 384, 640, 896]),
        CpuMask::from_cpus((0..20).map(|i| i * 3 + 5)),
        CpuMask::from_cpus((0..40).map(|i| i * 25 + 3)),
        CpuMask::from_cpus((256..288).flat_map(|c| [c, c + 512])),
        CpuMask::from_cpus((0..cpus).step_by(3)),
        CpuMask::first_n(cpus),
    ];
    let listed = |m: &CpuMask| m.as_list().is_some();
    assert!(listed(&masks[0]) && listed(&masks[1]) && listed(&masks[3]));
    assert!(masks[2].as_words().is_some() && masks[4].as_words().is_some());
    let mut live = Vec::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..40_000u32 {
        xorshift(&mut seed);
        if i == 20_000 {
            assert_eq!(ours.offline(768), linux.offline(768));
        }
        if i == 30_000 {
            assert_eq!(ours.online(768), linux.online(768));
        }
        if seed % 4 == 0 && !live.is_empty() {
            let (cpu, v) = live.swap_remove((seed >> 8) as usize % live.len());
            ours.free(cpu, v, false).unwrap();
            linux.free(cpu, v, false).unwrap();
            continue;
        }
        let m = &masks[(seed >> 4) as usize % masks.len()];
        let got = ours.alloc(m, false);
        assert_eq!(got, linux.alloc(m, false), "allocation {i} on {m}");
        live.extend(got);
    }
    for m in &masks {
        assert_eq!(ours.spread(m), linux.spread(m));
    }
    ours.check().unwrap();
}

#[test]
fn big_machine_balance_matches_linux() {
    let cpus = 8192;
    let (mut ours, mut linux) = (VectorMatrix::new(cpus), LinuxMatrix::new(cpus));
    let masks = [
        CpuMask::first_n(cpus),
        CpuMask::range(1024, 2047),
        CpuMask::from_cpus((0..cpus).step_by(3)),
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..5_000u32 {
        xorshift(&mut seed);
        let m = &masks[(seed % 3) as usize];
        assert_eq!(
            ours.alloc(m, false),
            linux.alloc(m, false),
            "allocation {i}"
        );
    }
    for m in &masks {
        assert_eq!(ours.spread(m), linux.spread(m));
    }
    // Alone, a machine-wide mask stays balanced within one vector.
    let all = &masks[0];
    let mut alone = VectorMatrix::new(cpus);
    for _ in 0..3 * cpus + 17 {
        alone.alloc(all, false).unwrap();
    }
    assert_eq!(alone.spread(all), 1);
    ours.check().unwrap();
}

/// The one managed difference on purpose: Linux picks by the counts alone (the last CPU with
/// the fewest managed vectors allocated) and fails when that CPU's reservations are all in use;
/// ours picks among the CPUs with a reservation left, so it takes the next CPU by the same rule.
#[test]
fn managed_pick_skips_a_cpu_without_a_spare_reservation_where_linux_fails() {
    let (mut ours, mut linux) = (VectorMatrix::new(4), LinuxMatrix::new(4));
    let all = CpuMask::first_n(4);
    for m in [&all, &CpuMask::single(0)] {
        ours.reserve_managed(m).unwrap();
        linux.reserve_managed(m).unwrap();
    }
    for _ in 0..4 {
        assert_eq!(ours.alloc_managed(&all), linux.alloc_managed(&all));
    }
    // Every CPU has one allocated; CPU 3 is Linux's pick and has no reservation left.
    assert!(linux.alloc_managed(&all).is_err());
    assert_eq!(ours.alloc_managed(&all), Ok((0, Vector(0x21))));
    assert!(
        ours.alloc_managed(&all).is_err(),
        "nothing reserved is left"
    );
    ours.check().unwrap();
    linux.check().unwrap();
}
