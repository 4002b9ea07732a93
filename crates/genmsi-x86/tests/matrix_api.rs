//! Every public entry point of the vector matrix, thrown arbitrary arguments: no panic, a typed
//! error that leaves the matrix exactly as it was, and invariants that hold after every call.

use genmsi::{CpuMask, MAX_CPUS};
use genmsi_x86::matrix::MatrixConfig;
use genmsi_x86::{MatrixError, Vector, VectorMatrix};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc(Vec<u32>, bool),
    AllocRange(u32, u32),
    AllocPair(Vec<u32>, u32),
    Free(u32, u8, bool),
    FreeLive(usize),
    Reserve,
    RemoveReserved,
    ReserveManaged(Vec<u32>),
    RemoveManaged(Vec<u32>),
    AllocManaged(Vec<u32>),
    ReserveSystem(u8),
    Offline(u32),
    Online(u32),
}

/// CPU numbers mostly near the machine, sometimes anywhere.
fn cpu() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..80, 1 => any::<u32>()]
}

fn op() -> impl Strategy<Value = Op> {
    let cpus = || proptest::collection::vec(cpu(), 0..6);
    prop_oneof![
        (cpus(), any::<bool>()).prop_map(|(c, r)| Op::Alloc(c, r)),
        (cpu(), cpu()).prop_map(|(a, b)| Op::AllocRange(a, b)),
        (cpus(), cpu()).prop_map(|(c, o)| Op::AllocPair(c, o)),
        (cpu(), any::<u8>(), any::<bool>()).prop_map(|(c, v, m)| Op::Free(c, v, m)),
        any::<usize>().prop_map(Op::FreeLive),
        Just(Op::Reserve),
        Just(Op::RemoveReserved),
        cpus().prop_map(Op::ReserveManaged),
        cpus().prop_map(Op::RemoveManaged),
        cpus().prop_map(Op::AllocManaged),
        any::<u8>().prop_map(Op::ReserveSystem),
        cpu().prop_map(Op::Offline),
        cpu().prop_map(Op::Online),
    ]
}

fn mask(cpus: &[u32]) -> CpuMask {
    CpuMask::from_cpus(cpus.iter().copied())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn constructors_refuse_bad_configs_and_never_panic(nr in prop_oneof![0u32..100, any::<u32>().prop_map(|n| n % 200)], first in any::<u8>(), end in any::<u16>()) {
        let cfg = MatrixConfig { first: Vector(first), end };
        match VectorMatrix::with_config(nr, cfg) {
            Ok(m) => {
                prop_assert!(end <= 0x100 && u16::from(first) <= end);
                prop_assert_eq!(m.nr_cpus(), nr);
                prop_assert_eq!(m.global_available(), nr * u32::from(end - u16::from(first)));
                m.check().unwrap();
            }
            Err(e) => {
                prop_assert!(end > 0x100 || u16::from(first) > end);
                prop_assert_eq!(e, MatrixError::BadConfig(cfg));
            }
        }
        let m = VectorMatrix::new(nr);
        prop_assert_eq!(m.nr_cpus(), nr);
        m.check().unwrap();
    }

    #[test]
    fn every_entry_point_is_total(nr in 0u32..70, first in 0u8..0x30, width in 0u16..40, ops in proptest::collection::vec(op(), 1..120)) {
        let cfg = MatrixConfig { first: Vector(first), end: u16::from(first) + width };
        let mut m = VectorMatrix::with_config(nr, cfg).unwrap();
        let mut live: Vec<(u32, Vector, bool)> = Vec::new();
        for op in ops {
            let before = m.clone();
            let failed = match &op {
                Op::Alloc(c, reserved) => match m.alloc(&mask(c), *reserved) {
                    Ok((cpu, v)) => {
                        prop_assert!(mask(c).contains(cpu) && m.is_allocated(cpu, v));
                        live.push((cpu, v, false));
                        false
                    }
                    Err(_) => true,
                },
                Op::AllocRange(a, b) => match m.alloc(&CpuMask::range(*a, *b), false) {
                    Ok((cpu, v)) => { live.push((cpu, v, false)); false }
                    Err(_) => true,
                },
                Op::AllocPair(c, also) => match m.alloc_pair(&mask(c), *also) {
                    Ok((cpu, v)) => {
                        live.push((cpu, v, false));
                        live.push((*also, v, false));
                        false
                    }
                    Err(_) => true,
                },
                Op::Free(cpu, v, managed) => {
                    let r = m.free(*cpu, Vector(*v), *managed);
                    if r.is_ok() {
                        live.retain(|&(c, x, _)| (c, x) != (*cpu, Vector(*v)));
                    }
                    r.is_err()
                }
                Op::FreeLive(i) if !live.is_empty() => {
                    let (cpu, v, managed) = live.swap_remove(i % live.len());
                    m.free(cpu, v, managed).unwrap();
                    false
                }
                Op::FreeLive(_) => false,
                Op::Reserve => m.reserve().is_err(),
                Op::RemoveReserved => { m.remove_reserved(); false }
                Op::ReserveManaged(c) => m.reserve_managed(&mask(c)).is_err(),
                Op::RemoveManaged(c) => { m.remove_managed(&mask(c)); false }
                Op::AllocManaged(c) => match m.alloc_managed(&mask(c)) {
                    Ok((cpu, v)) => { live.push((cpu, v, true)); false }
                    Err(_) => true,
                },
                Op::ReserveSystem(v) => m.reserve_system(Vector(*v)).is_err(),
                Op::Offline(cpu) => m.offline(*cpu).is_err(),
                Op::Online(cpu) => m.online(*cpu).is_err(),
            };
            if failed {
                prop_assert_eq!(&m, &before, "a failed {:?} changed the matrix", op);
            }
            m.check().map_err(|e| TestCaseError::fail(format!("{e} after {op:?}")))?;
            // The queries are total too.
            for probe in [0, nr.saturating_sub(1), nr, u32::MAX] {
                let _ = (m.available(probe), m.allocated(probe), m.managed(probe), m.is_online(probe));
                let _ = m.is_allocated(probe, Vector(first));
                let _ = m.best_cpu(&CpuMask::range(probe, probe.saturating_add(3)));
            }
            let _ = m.spread(&CpuMask::first_n(nr.saturating_add(5)));
        }
    }
}

#[test]
fn zero_cpus_and_huge_counts_are_typed_not_panics() {
    let mut m = VectorMatrix::new(0);
    for mask in [
        CpuMask::first_n(64),
        CpuMask::single(0),
        CpuMask::from_cpus([1, 5, 9]),
        CpuMask::empty(),
    ] {
        assert!(matches!(
            m.alloc(&mask, false),
            Err(MatrixError::NoVectors { .. })
        ));
        assert_eq!(m.best_cpu(&mask), None);
    }
    assert_eq!(m.offline(0), Err(MatrixError::NoSuchCpu(0)));
    assert_eq!(
        m.reserve(),
        Err(MatrixError::ReservationsExhausted { available: 0 })
    );
    let big = VectorMatrix::new(u32::MAX);
    assert_eq!(big.nr_cpus(), MAX_CPUS, "clamped where masks end");
    big.check().unwrap();
    let bad = MatrixConfig {
        first: Vector(0x20),
        end: 0x101,
    };
    assert_eq!(
        VectorMatrix::with_config(4, bad),
        Err(MatrixError::BadConfig(bad))
    );
}
