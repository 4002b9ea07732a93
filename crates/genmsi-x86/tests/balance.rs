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

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
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
