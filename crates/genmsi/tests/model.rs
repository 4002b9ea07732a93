//! Model-based test: random sequences of allocation-API calls over several devices, checked
//! after every step against a reference model, and no leak once everything is freed.

mod common;

use common::{Machine, CPUS};
use genmsi::soft::{SoftRemap, SoftRoot};
use genmsi::{AllocOpts, CpuMask, DeviceId, Error, Irq, Msg, SlotId, StoreCaps};
use proptest::prelude::*;
use std::collections::BTreeMap;

const D: SlotId = SlotId::Default;

#[derive(Clone, Debug)]
enum Op {
    Range {
        dev: usize,
        first: u32,
        count: u32,
    },
    At {
        dev: usize,
        index: u32,
        reserve_only: bool,
    },
    Any {
        dev: usize,
        cookie: u64,
    },
    Free {
        dev: usize,
        index: u32,
    },
    FreeRange {
        dev: usize,
        first: u32,
        count: u32,
    },
    Affinity {
        dev: usize,
        index: u32,
        cpu: u32,
    },
    Activate {
        dev: usize,
        index: u32,
    },
    Deactivate {
        dev: usize,
        index: u32,
    },
    Raise {
        dev: usize,
        index: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let dev = 0usize..3;
    let idx = 0u32..34;
    prop_oneof![
        (dev.clone(), idx.clone(), 1u32..5).prop_map(|(dev, first, count)| Op::Range {
            dev,
            first,
            count
        }),
        (dev.clone(), idx.clone(), any::<bool>()).prop_map(|(dev, index, reserve_only)| Op::At {
            dev,
            index,
            reserve_only
        }),
        (dev.clone(), any::<u64>()).prop_map(|(dev, cookie)| Op::Any { dev, cookie }),
        (dev.clone(), idx.clone()).prop_map(|(dev, index)| Op::Free { dev, index }),
        (dev.clone(), idx.clone(), 1u32..4).prop_map(|(dev, first, count)| Op::FreeRange {
            dev,
            first,
            count
        }),
        (dev.clone(), idx.clone(), 0u32..CPUS + 1).prop_map(|(dev, index, cpu)| Op::Affinity {
            dev,
            index,
            cpu
        }),
        (dev.clone(), idx.clone()).prop_map(|(dev, index)| Op::Activate { dev, index }),
        (dev.clone(), idx.clone()).prop_map(|(dev, index)| Op::Deactivate { dev, index }),
        (dev, idx).prop_map(|(dev, index)| Op::Raise { dev, index }),
    ]
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Entry {
    active: bool,
    cookie: Option<u64>,
    cpu: Option<u32>,
}

struct Dev {
    id: DeviceId,
    limit: u32,
    any: bool,
    remapped: bool,
    entries: BTreeMap<u32, Entry>,
}

fn check(m: &Machine, devs: &[Dev]) -> Result<(), TestCaseError> {
    let mut total = 0;
    let mut remapped = 0;
    let mut irqs = std::collections::BTreeSet::new();
    for d in devs {
        let descs = m.sys.descs(d.id, D).unwrap();
        prop_assert_eq!(
            descs.iter().map(|x| x.index).collect::<Vec<_>>(),
            d.entries.keys().copied().collect::<Vec<_>>()
        );
        let slots = m.store(d.id, |s| s.slots().to_vec());
        for desc in &descs {
            let e = &d.entries[&desc.index];
            prop_assert!(irqs.insert(desc.irq), "irq numbers are unique");
            prop_assert_eq!(desc.active, e.active);
            prop_assert_eq!(desc.cookie, e.cookie);
            let slot = slots[desc.index as usize];
            prop_assert_eq!(slot.msg, desc.msg);
            if e.active {
                prop_assert_eq!(m.sys.compose_msg(desc.irq).unwrap(), desc.msg);
                prop_assert!(!slot.masked);
                let info = m.sys.irq_info(desc.irq).unwrap();
                if let Some(cpu) = e.cpu {
                    prop_assert_eq!(info.effective_cpu, Some(cpu));
                }
            } else {
                prop_assert!(slot.masked);
                prop_assert_eq!(slot.msg, Msg::ZERO);
            }
        }
        for (i, s) in slots.iter().enumerate() {
            if !d.entries.contains_key(&(i as u32)) {
                prop_assert!(
                    s.masked && s.msg == Msg::ZERO && s.cookie.is_none(),
                    "free slot {} is clean",
                    i
                );
            }
        }
        prop_assert_eq!(m.store(d.id, |s| s.enabled), !d.entries.is_empty());
        total += d.entries.len();
        if d.remapped {
            remapped += d.entries.len();
        }
    }
    let root_irqs = m
        .sys
        .with_domain::<SoftRoot, _>(m.root, |r| (r.irqs().count(), r.used().iter().sum::<u32>()))
        .unwrap();
    prop_assert_eq!(root_irqs, (total, total as u32));
    let free = m
        .sys
        .with_domain::<SoftRemap, _>(m.remap, |r| r.free_entries())
        .unwrap();
    prop_assert_eq!(free as usize, 64 - remapped);
    let stats = m.sys.stats();
    prop_assert_eq!(stats.irqs_allocated as usize, total);
    prop_assert_eq!(stats.irq_numbers_free as usize, 4096 - total);
    Ok(())
}

fn caps(limit: u32, any: bool) -> StoreCaps {
    StoreCaps {
        any_index: any,
        write_masked: !any,
        ..StoreCaps::dynamic(limit)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn allocation_api_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        // 6 vectors per CPU on 8 CPUs: exhaustion happens in long runs.
        let m = Machine::new(6, 64);
        let initial = m.snapshot(&[]);
        let mut devs = vec![
            Dev { id: m.device("msix", caps(16, false), m.remap), limit: 16, any: false, remapped: true, entries: BTreeMap::new() },
            Dev { id: m.device("ims", caps(32, true), m.remap), limit: 32, any: true, remapped: true, entries: BTreeMap::new() },
            Dev { id: m.device("direct", caps(8, false), m.root), limit: 8, any: false, remapped: false, entries: BTreeMap::new() },
        ];
        let ids: Vec<DeviceId> = devs.iter().map(|d| d.id).collect();
        for op in ops {
            let before = m.snapshot(&ids);
            let opts = AllocOpts::default();
            let result: Result<(), Error> = match op.clone() {
                Op::Range { dev, first, count } => {
                    let d = &mut devs[dev];
                    let expect = if first + count > d.limit {
                        Some(Error::IndexOutOfRange { index: first + count - 1, limit: d.limit })
                    } else {
                        (first..first + count).find(|i| d.entries.contains_key(i)).map(|index| Error::IndexInUse { index })
                    };
                    let r = m.sys.alloc_range(d.id, D, first, count, &opts);
                    if let Some(e) = expect { prop_assert_eq!(r.clone().err(), Some(e)); }
                    r.map(|_| { for i in first..first + count { d.entries.insert(i, Entry { active: true, ..Entry::default() }); } })
                }
                Op::At { dev, index, reserve_only } => {
                    let d = &mut devs[dev];
                    let r = m.sys.alloc_at(d.id, D, index, &AllocOpts { activate: !reserve_only, ..opts });
                    if index >= d.limit {
                        prop_assert_eq!(r.clone().err(), Some(Error::IndexOutOfRange { index, limit: d.limit }));
                    } else if d.entries.contains_key(&index) {
                        prop_assert_eq!(r.clone().err(), Some(Error::IndexInUse { index }));
                    }
                    r.map(|_| { d.entries.insert(index, Entry { active: !reserve_only, ..Entry::default() }); })
                }
                Op::Any { dev, cookie } => {
                    let d = &mut devs[dev];
                    let r = m.sys.alloc_any(d.id, D, &AllocOpts { cookie: Some(cookie), ..opts });
                    let lowest = (0..d.limit).find(|i| !d.entries.contains_key(i));
                    match (d.any, lowest) {
                        (false, _) => prop_assert_eq!(r.clone().err(), Some(Error::NotSupported(genmsi::Unsupported::AnyIndex))),
                        (true, None) => prop_assert_eq!(r.clone().err(), Some(Error::StoreFull { limit: d.limit })),
                        (true, Some(i)) => if let Ok((index, _)) = r { prop_assert_eq!(index, i) },
                    }
                    r.map(|(index, _)| { d.entries.insert(index, Entry { active: true, cookie: Some(cookie), cpu: None }); })
                }
                Op::Free { dev, index } => {
                    let d = &mut devs[dev];
                    let r = m.sys.free_index(d.id, D, index);
                    prop_assert_eq!(r.is_ok(), d.entries.remove(&index).is_some());
                    r
                }
                Op::FreeRange { dev, first, count } => {
                    let d = &mut devs[dev];
                    let all = (first..first + count).all(|i| d.entries.contains_key(&i));
                    let r = m.sys.free_range(d.id, D, first, count);
                    prop_assert_eq!(r.is_ok(), all);
                    if all { for i in first..first + count { d.entries.remove(&i); } }
                    r
                }
                Op::Affinity { dev, index, cpu } => {
                    let d = &mut devs[dev];
                    let Some(e) = d.entries.get_mut(&index) else { continue };
                    let irq = m.sys.desc(d.id, D, index).unwrap().irq;
                    let r = m.sys.set_affinity(irq, &CpuMask::single(cpu));
                    if cpu >= CPUS {
                        prop_assert_eq!(r.clone().err(), Some(Error::EmptyAffinity));
                    } else if !e.active {
                        prop_assert_eq!(r.clone().err(), Some(Error::NotActive(irq)));
                    }
                    r.map(|()| e.cpu = Some(cpu))
                }
                Op::Activate { dev, index } | Op::Deactivate { dev, index } => {
                    let d = &mut devs[dev];
                    let Some(e) = d.entries.get_mut(&index) else { continue };
                    let irq = m.sys.desc(d.id, D, index).unwrap().irq;
                    let on = matches!(op, Op::Activate { .. });
                    let r = if on { m.sys.activate(irq) } else { m.sys.deactivate(irq) };
                    r.map(|()| { if e.active != on { e.cpu = None; } e.active = on; })
                }
                Op::Raise { dev, index } => {
                    let d = &devs[dev];
                    let got = m.raise(d.id, index);
                    let want = d.entries.get(&index).filter(|e| e.active).map(|_| m.sys.desc(d.id, D, index).unwrap().irq);
                    prop_assert_eq!(got, want);
                    continue;
                }
            };
            if result.is_err() {
                prop_assert_eq!(m.snapshot(&ids), before, "a refused {:?} changed state", op);
            }
            check(&m, &devs)?;
        }
        for d in &mut devs {
            m.sys.free_all(d.id, D).unwrap();
            d.entries.clear();
        }
        check(&m, &devs)?;
        for d in &devs {
            m.sys.remove_device_domain(d.id, D).unwrap();
            m.sys.remove_device(d.id).unwrap();
        }
        prop_assert_eq!(m.snapshot(&[]), initial, "no leak");
        let _ = Irq(0);
    }
}
