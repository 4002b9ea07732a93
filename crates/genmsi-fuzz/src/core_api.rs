//! API call sequences on the core over the x86 stack (device store -> VT-d remapping domain
//! -> vector domain), checked against a reference model after every call.
//!
//! The machine is sized so that no call can run out of vectors, IRTEs or irq numbers (4 CPUs,
//! 256 IRTEs, two devices of 16 indices): the model then says exactly which calls succeed and
//! with which error the others are refused, and the library must agree. After every call the
//! descriptors equal the model's (index, active, masked), and the irq, IRTE and vector counts
//! equal the allocated irqs; at the end everything is freed and every count is back to zero.

use arbitrary::{Arbitrary, Unstructured};
use genmsi::soft::MemStore;
use genmsi::{
    AllocOpts, CpuMask, DeviceId, DeviceMeta, DomainId, Error, Irq, IrqSystem, SlotId, StoreCaps,
    SystemConfig,
};
use genmsi_x86::{InvDescriptor, Invalidate, IrDomain, SharedIrteTable, VectorDomain};
use std::collections::{BTreeMap, BTreeSet};

const CPUS: u32 = 4;
const INDICES: u32 = 16;
const IRTES: u32 = 256;

/// Invalidation that always completes (the entry cache is not modelled here).
#[derive(Debug)]
struct Done;

impl Invalidate for Done {
    fn invalidate(&mut self, _: InvDescriptor) -> Result<(), &'static str> {
        Ok(())
    }
}

type Ir = IrDomain<SharedIrteTable, Done>;

#[derive(Arbitrary, Debug)]
enum Call {
    AllocAt {
        dev: bool,
        index: u8,
        activate: bool,
    },
    AllocAny {
        dev: bool,
    },
    AllocRange {
        dev: bool,
        first: u8,
        count: u8,
    },
    Free {
        dev: bool,
        index: u8,
    },
    FreeRange {
        dev: bool,
        first: u8,
        count: u8,
    },
    Activate {
        dev: bool,
        index: u8,
    },
    Deactivate {
        dev: bool,
        index: u8,
    },
    Affinity {
        dev: bool,
        index: u8,
        cpus: u8,
    },
    Mask {
        dev: bool,
        index: u8,
    },
    Unmask {
        dev: bool,
        index: u8,
    },
    Offline(u8),
    Online(u8),
    UnknownIrq(u16),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ModelIrq {
    active: bool,
    masked: bool,
}

/// The reference model: per device, index -> state; the online CPUs.
#[derive(Debug, Default)]
struct Model {
    devs: [BTreeMap<u32, ModelIrq>; 2],
    online: BTreeSet<u32>,
}

struct Stack {
    sys: IrqSystem,
    root: DomainId,
    ir: DomainId,
    devs: [DeviceId; 2],
}

impl Stack {
    fn new(soft_mask: bool) -> Stack {
        let sys: IrqSystem = IrqSystem::new(SystemConfig::new(CPUS, 512));
        // A platform whose writes land at once and whose IRRs hold nothing between calls:
        // freed resources are held until a pool runs dry, and the allocation that finds it
        // dry reclaims them (the clock and the probe), so the model never sees exhaustion.
        sys.set_grace_clock(Some(Box::new(|| 0)));
        let mut vectors = VectorDomain::new(CPUS);
        vectors.set_pending_probe(Some(Box::new(|_, _| false)));
        let root = sys.add_domain(Box::new(vectors), None).expect("root");
        let ir = IrDomain::new(SharedIrteTable::new(IRTES), Done, false);
        let ir = sys.add_domain(Box::new(ir), Some(root)).expect("ir");
        let mut devs = [DeviceId(0); 2];
        for (n, d) in devs.iter_mut().enumerate() {
            let meta = DeviceMeta::requester(0x0100 + n as u16 * 8);
            *d = sys.add_device("dev", meta);
            let caps = StoreCaps {
                per_vector_mask: !(soft_mask && n == 1),
                ..StoreCaps::dynamic(INDICES)
            };
            sys.create_device_domain(*d, SlotId::Default, Box::new(MemStore::new(caps)), ir)
                .expect("device domain");
        }
        Stack {
            sys,
            root,
            ir,
            devs,
        }
    }

    fn irq(&self, dev: usize, index: u32) -> Option<Irq> {
        self.sys
            .desc(self.devs[dev], SlotId::Default, index)
            .ok()
            .map(|d| d.irq)
    }

    /// Every count agrees with the model.
    fn check(&self, m: &Model, call: &Call) {
        let mut total = 0;
        let mut active = 0;
        for (n, model) in m.devs.iter().enumerate() {
            let descs = self
                .sys
                .descs(self.devs[n], SlotId::Default)
                .expect("descs");
            let got: BTreeMap<u32, ModelIrq> = descs
                .iter()
                .map(|d| {
                    (
                        d.index,
                        ModelIrq {
                            active: d.active,
                            masked: d.masked,
                        },
                    )
                })
                .collect();
            assert_eq!(&got, model, "device {n} after {call:?}");
            total += descs.len() as u32;
            active += descs.iter().filter(|d| d.active).count() as u32;
        }
        let stats = self.sys.stats();
        assert_eq!(stats.irqs_allocated, total, "irqs after {call:?}");
        // Freed IRTEs and vectors are held for their grace (never advanced here): out of
        // their pools, but not in use.
        let irtes = self
            .sys
            .with_domain(self.ir, |d: &mut Ir| {
                IRTES - d.free_entries() - d.held_entries()
            })
            .expect("ir");
        assert_eq!(irtes, total, "IRTEs in use after {call:?}");
        let (vectors, moving) = self
            .sys
            .with_domain(self.root, |v: &mut VectorDomain| {
                let held = v.held_targets().len() as u32;
                (
                    v.matrix().total_allocated() - held,
                    v.moves_in_progress() as u32,
                )
            })
            .expect("root");
        // Each active irq holds its vector; a move in progress holds old ones too.
        assert!(
            vectors >= active && (moving > 0 || vectors == active),
            "vectors {vectors} for {active} active irqs ({moving} moving) after {call:?}"
        );
    }
}

fn cpus_of(bits: u8) -> CpuMask {
    let mut m = CpuMask::empty();
    for c in 0..CPUS {
        if bits & (1 << c) != 0 {
            m = m.with(c);
        }
    }
    m
}

/// The harness (see the module docs).
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let soft_mask = bool::arbitrary(&mut u).unwrap_or(false);
    let calls: Vec<Call> = u.arbitrary_take_rest_iter().map_or(Vec::new(), |it| {
        it.take(48).filter_map(Result::ok).collect()
    });
    check(soft_mask, &calls);
}

/// The harness on calls decoded one per chunk (a chunk too short for a call is skipped):
/// for generators that shape each call, such as the core's model test, which draws indices
/// from a few values so that calls meet on the same irq.
pub fn run_chunks<'a>(soft_mask: bool, chunks: impl IntoIterator<Item = &'a [u8]>) {
    let calls: Vec<Call> = chunks
        .into_iter()
        .filter_map(|c| Call::arbitrary(&mut Unstructured::new(c)).ok())
        .collect();
    check(soft_mask, &calls);
}

/// Applies `calls` on a fresh stack, checking it against the model after each, then frees
/// everything and checks that nothing leaked.
fn check(soft_mask: bool, calls: &[Call]) {
    let s = Stack::new(soft_mask);
    let mut m = Model {
        online: (0..CPUS).collect(),
        ..Model::default()
    };
    for call in calls {
        apply(&s, &mut m, call);
        s.check(&m, call);
    }
    for dev in s.devs {
        s.sys.free_all(dev, SlotId::Default).expect("free all");
    }
    m.devs = Default::default();
    s.check(&m, &Call::Offline(u8::MAX));
    // The grace ends (a zero bound, nothing pending in any IRR): every held resource goes
    // back, and nothing else is left.
    s.sys.advance_grace(0);
    let (vectors, held) = s
        .sys
        .with_domain(s.root, |v: &mut VectorDomain| {
            let r = v.cleanup(&|_, _| false);
            (v.matrix().total_allocated(), r.held)
        })
        .expect("root");
    assert_eq!((vectors, held), (0, 0), "vectors leaked");
    let irtes = s
        .sys
        .with_domain(s.ir, |d: &mut Ir| d.free_entries())
        .expect("ir");
    assert_eq!(irtes, IRTES, "IRTEs leaked");
    let stats = s.sys.stats();
    assert_eq!((stats.irq_numbers_held, stats.domain_held), (0, 0));
}

fn apply(s: &Stack, m: &mut Model, call: &Call) {
    let opts = |activate| AllocOpts {
        activate,
        ..AllocOpts::default()
    };
    let d = |dev: bool| usize::from(dev);
    match *call {
        Call::AllocAt {
            dev,
            index,
            activate,
        } => {
            let (n, i) = (d(dev), u32::from(index) % (INDICES + 4));
            let got = s
                .sys
                .alloc_at(s.devs[n], SlotId::Default, i, &opts(activate));
            let want = if i >= INDICES {
                Err(Error::IndexOutOfRange {
                    index: i,
                    limit: INDICES,
                })
            } else if m.devs[n].contains_key(&i) {
                Err(Error::IndexInUse { index: i })
            } else {
                Ok(())
            };
            assert_eq!(got.map(drop), want, "{call:?}");
            if want.is_ok() {
                m.devs[n].insert(
                    i,
                    ModelIrq {
                        active: activate,
                        masked: false,
                    },
                );
            }
        }
        Call::AllocAny { dev } => {
            let n = d(dev);
            let got = s.sys.alloc_any(s.devs[n], SlotId::Default, &opts(true));
            match (0..INDICES).find(|i| !m.devs[n].contains_key(i)) {
                Some(i) => {
                    assert_eq!(got.map(|g| g.0), Ok(i), "{call:?}");
                    m.devs[n].insert(
                        i,
                        ModelIrq {
                            active: true,
                            masked: false,
                        },
                    );
                }
                None => assert_eq!(
                    got.map(drop),
                    Err(Error::StoreFull { limit: INDICES }),
                    "{call:?}"
                ),
            }
        }
        Call::AllocRange { dev, first, count } => {
            let (n, first, count) = (d(dev), u32::from(first % 20), u32::from(count % 6));
            let got = s
                .sys
                .alloc_range(s.devs[n], SlotId::Default, first, count, &opts(true));
            let last = first + count.saturating_sub(1);
            let want = if count == 0 {
                Err(Error::InvalidCount { count: 0 })
            } else if last >= INDICES {
                Err(Error::IndexOutOfRange {
                    index: last,
                    limit: INDICES,
                })
            } else if let Some(i) = (first..=last).find(|i| m.devs[n].contains_key(i)) {
                Err(Error::IndexInUse { index: i })
            } else {
                Ok(())
            };
            assert_eq!(got.map(drop), want, "{call:?}");
            if want.is_ok() {
                for i in first..=last {
                    m.devs[n].insert(
                        i,
                        ModelIrq {
                            active: true,
                            masked: false,
                        },
                    );
                }
            }
        }
        Call::Free { dev, index } => {
            let (n, i) = (d(dev), u32::from(index) % (INDICES + 4));
            let got = s.sys.free_index(s.devs[n], SlotId::Default, i);
            match m.devs[n].remove(&i) {
                Some(_) => assert_eq!(got, Ok(()), "{call:?}"),
                None => assert_eq!(got, Err(Error::NotAllocated { index: i }), "{call:?}"),
            }
        }
        Call::FreeRange { dev, first, count } => {
            let (n, first, count) = (d(dev), u32::from(first % 20), u32::from(count % 6));
            let got = s.sys.free_range(s.devs[n], SlotId::Default, first, count);
            let missing = (first..first + count).find(|i| !m.devs[n].contains_key(i));
            let want = match (count, missing) {
                (0, _) => Err(Error::InvalidCount { count: 0 }),
                (_, Some(i)) => Err(Error::NotAllocated { index: i }),
                (_, None) => Ok(()),
            };
            assert_eq!(got, want, "{call:?}");
            if want.is_ok() {
                for i in first..first + count {
                    m.devs[n].remove(&i);
                }
            }
        }
        Call::Activate { dev, index } | Call::Deactivate { dev, index } => {
            let (n, i) = (d(dev), u32::from(index) % INDICES);
            let on = matches!(call, Call::Activate { .. });
            let Some(irq) = s.irq(n, i) else {
                assert!(!m.devs[n].contains_key(&i));
                return;
            };
            let got = match on {
                true => s.sys.activate(irq),
                false => s.sys.deactivate(irq),
            };
            assert_eq!(got, Ok(()), "{call:?}");
            m.devs[n].get_mut(&i).expect("model has it").active = on;
        }
        Call::Affinity { dev, index, cpus } => {
            let (n, i) = (d(dev), u32::from(index) % INDICES);
            let Some(irq) = s.irq(n, i) else {
                return;
            };
            let mask = cpus_of(cpus);
            let reachable = m.online.iter().any(|&c| mask.contains(c));
            let got = s.sys.set_affinity(irq, &mask);
            let state = m.devs[n][&i];
            let want = if !reachable {
                Err(Error::EmptyAffinity)
            } else if state.active {
                // 4 CPUs of about 200 free vectors each: a move always finds one.
                Ok(())
            } else {
                // An inactive irq holds no vector to move.
                Err(Error::NotActive(irq))
            };
            assert_eq!(got, want, "{call:?}");
        }
        Call::Mask { dev, index } | Call::Unmask { dev, index } => {
            let (n, i) = (d(dev), u32::from(index) % INDICES);
            let Some(irq) = s.irq(n, i) else {
                return;
            };
            let mask = matches!(call, Call::Mask { .. });
            let got = match mask {
                true => s.sys.mask(irq),
                false => s.sys.unmask(irq).map(drop),
            };
            assert_eq!(got, Ok(()), "{call:?}");
            m.devs[n].get_mut(&i).expect("model has it").masked = mask;
        }
        Call::Offline(c) => {
            let cpu = u32::from(c) % (CPUS + 1);
            let got = s.sys.cpu_offline(cpu).map(drop);
            let last = m.online.len() == 1 && m.online.contains(&cpu);
            if last {
                assert_eq!(got, Err(Error::EmptyAffinity), "{call:?}");
            } else {
                assert_eq!(got, Ok(()), "{call:?}");
                m.online.remove(&cpu);
            }
        }
        Call::Online(c) => {
            let cpu = u32::from(c) % (CPUS + 1);
            let got = s.sys.cpu_online(cpu).map(drop);
            if cpu >= CPUS {
                assert_eq!(got, Err(Error::EmptyAffinity), "{call:?}");
            } else {
                assert_eq!(got, Ok(()), "{call:?}");
                m.online.insert(cpu);
            }
        }
        Call::UnknownIrq(n) => {
            let irq = Irq(u32::from(n) + 1000);
            assert_eq!(s.sys.activate(irq), Err(Error::UnknownIrq(irq)));
            assert_eq!(s.sys.mask(irq), Err(Error::UnknownIrq(irq)));
            // The mask is checked against the online CPUs first.
            let want = match m.online.contains(&0) {
                true => Error::UnknownIrq(irq),
                false => Error::EmptyAffinity,
            };
            assert_eq!(s.sys.set_affinity(irq, &CpuMask::single(0)), Err(want));
        }
    }
}
