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

fn same_state(ours: &VectorMatrix, linux: &LinuxMatrix, cpus: u32) -> Result<(), TestCaseError> {
    for cpu in 0..cpus {
        prop_assert_eq!(
            ours.available(cpu),
            linux.available(cpu),
            "available on {}",
            cpu
        );
        prop_assert_eq!(ours.managed(cpu), linux.managed(cpu), "managed on {}", cpu);
    }
    prop_assert_eq!(ours.global_available(), linux.global_available());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Ours against Linux on every operation: the same CPU for every allocation; the same managed
    /// CPU whenever Linux's pick has a reserved vector (where it has none Linux fails and ours
    /// takes the next-best CPU: that allocation is undone so both go on from the same state);
    /// ours refuses exactly the reservations Linux warns about; system vectors and hotplug alike.
    #[test]
    fn same_choices_as_linux_on_the_whole_interface(ops in proptest::collection::vec(full_op(), 1..300), cpus in 1u32..24) {
        let (mut ours, mut linux) = (VectorMatrix::new(cpus), LinuxMatrix::new(cpus));
        let mut live: Vec<(u32, Vector, bool)> = Vec::new();
        for op in ops {
            match &op {
                FullOp::Alloc(k, reserved) => {
                    let m = mask(k, cpus);
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
                    prop_assert_eq!(ours.reserve_managed(&m), linux.reserve_managed(&m));
                }
                FullOp::RemoveManaged(k) => {
                    let m = mask(k, cpus);
                    ours.remove_managed(&m);
                    linux.remove_managed(&m);
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
            same_state(&ours, &linux, cpus)?;
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
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
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
