//! The machine's interrupt layout at the end of a run, for the report's pictures: vector use
//! per CPU broken down by owner, every device's allocations, and the traffic over time.

use crate::devices::Device;
use crate::machine::{Ir, Machine};
use serde::Serialize;

/// Vectors of one CPU (256 per local APIC, SDM Vol. 3A 11.5).
const VECTORS_PER_CPU: u32 = 256;

/// One device's vectors on every CPU, index = CPU.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceVectors {
    /// The device.
    pub device: String,
    /// Ordinary vectors this device's irqs hold on each CPU.
    pub vectors: Vec<u32>,
    /// Managed vectors (kernel-owned affinity) this device's irqs hold on each CPU.
    pub managed: Vec<u32>,
}

/// Vector use per CPU, by owner. For every CPU,
/// `system + free + managed_unused + moving + other + sum(devices) = 256`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VectorMap {
    /// CPUs.
    pub cpus: u32,
    /// Online per CPU.
    pub online: Vec<bool>,
    /// Exceptions (0x00-0x1F), system vectors (timer, IPIs, spurious) and vectors reserved on
    /// every CPU: never handed to a device.
    pub system: Vec<u32>,
    /// Vectors free for ordinary allocation.
    pub free: Vec<u32>,
    /// Managed reservations not yet backed by an active irq.
    pub managed_unused: Vec<u32>,
    /// Old vectors of moves not yet complete (the device may still write to them).
    pub moving: Vec<u32>,
    /// Vectors allocated to irqs of no simulated device (platform irqs).
    pub other: Vec<u32>,
    /// Per device.
    pub devices: Vec<DeviceVectors>,
    /// Reservations (reservation mode: allocated irqs not yet activated), machine-wide.
    pub reserved: u32,
}

/// One allocated index of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AllocRow {
    /// Store index.
    pub index: u32,
    /// Irq number.
    pub irq: u32,
    /// The CPU it is delivered to, while active.
    pub cpu: Option<u32>,
    /// The vector on that CPU, while active.
    pub vector: Option<u8>,
    /// The interrupt-remapping table entry, when remapped.
    pub irte: Option<u32>,
    /// `active`, `reserved` (allocated, not activated), `shut down` (managed, CPUs offline),
    /// with `masked` and `managed` appended when they apply.
    pub state: String,
}

/// One device's allocations, by index.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceAllocations {
    /// The device.
    pub device: String,
    /// Allocated indices.
    pub rows: Vec<AllocRow>,
}

/// Interrupt outcomes per interval of steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timeline {
    /// Steps per bucket (the last bucket may be shorter).
    pub bucket_steps: u64,
    /// Raised by devices.
    pub raised: Vec<u64>,
    /// Handled by the irq that owns the source.
    pub delivered: Vec<u64>,
    /// Legitimate interrupts blocked by remapping.
    pub blocked: Vec<u64>,
    /// Lost.
    pub lost: Vec<u64>,
    /// Faults recorded by the remapping units (injected writes included).
    pub faults: Vec<u64>,
}

/// One scheduled event, where it happened on the timeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EventMark {
    /// Step.
    pub step: u64,
    /// Kind, as the scenario names it (`affinity`, `cpu-offline`, `storm`...).
    pub kind: String,
    /// What it did (the report's event line).
    pub text: String,
}

/// Counters sampled at the end of each bucket, turned into per-bucket deltas.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sampler {
    last: [u64; 5],
}

impl Sampler {
    /// Closes a bucket with the cumulative counters `now`
    /// (raised, delivered, blocked, lost, faults).
    pub(crate) fn close(&mut self, t: &mut Timeline, now: [u64; 5]) {
        let d: Vec<u64> = now
            .iter()
            .zip(self.last)
            .map(|(n, l)| n.saturating_sub(l))
            .collect();
        t.raised.push(d[0]);
        t.delivered.push(d[1]);
        t.blocked.push(d[2]);
        t.lost.push(d[3]);
        t.faults.push(d[4]);
        self.last = now;
    }
}

/// Buckets of a run of `steps` steps: about 200, never empty.
pub(crate) fn bucket_steps(steps: u64) -> u64 {
    steps.div_ceil(200).max(1)
}

fn state(desc: &genmsi::MsiDesc, shut_down: bool) -> String {
    let mut s = String::from(match (desc.active, shut_down) {
        (_, true) => "shut down",
        (true, _) => "active",
        (false, _) => "reserved",
    });
    if desc.masked {
        s.push_str(", masked");
    }
    if desc.managed {
        s.push_str(", managed");
    }
    s
}

/// Every device's allocations and the per-CPU vector map of `m`.
pub(crate) fn layout(m: &Machine, devices: &[Device]) -> (Vec<DeviceAllocations>, VectorMap) {
    let cpus = m.lapics.len();
    let mut map = VectorMap {
        cpus: cpus as u32,
        online: m.lapics.iter().map(|l| l.online).collect(),
        ..VectorMap::default()
    };
    let mut allocations = Vec::new();
    let mut attributed = vec![0u32; cpus];
    for d in devices {
        let mut dv = DeviceVectors {
            device: d.name.clone(),
            vectors: vec![0; cpus],
            managed: vec![0; cpus],
        };
        let mut rows = Vec::new();
        for (index, irq) in d.allocated(m) {
            let info = m.sys.irq_info(irq);
            let (target, old) = m.with_vectors(|v| (v.target(irq), v.old_targets(irq).to_vec()));
            let irte = m.ir.get(d.unit).and_then(|&ir| {
                m.sys
                    .with_domain::<Ir, _>(ir, |r| r.entry_of(irq))
                    .ok()
                    .flatten()
            });
            if let Some(t) = target {
                let cell = if t.managed {
                    &mut dv.managed
                } else {
                    &mut dv.vectors
                };
                if let Some(c) = cell.get_mut(t.cpu as usize) {
                    *c += 1;
                }
            }
            for t in old {
                if let Some(c) = map.moving.get_mut(t.cpu as usize) {
                    *c += 1;
                }
                if let Some(c) = attributed.get_mut(t.cpu as usize) {
                    *c += 1;
                }
            }
            let active = info.as_ref().is_some_and(|i| i.desc.active);
            rows.push(AllocRow {
                index,
                irq: irq.0,
                cpu: target.filter(|_| active).map(|t| t.cpu),
                vector: target.filter(|_| active).map(|t| t.vector.0),
                irte,
                state: info.map_or("unknown".into(), |i| state(&i.desc, i.shut_down)),
            });
        }
        for (a, (v, mg)) in attributed
            .iter_mut()
            .zip(dv.vectors.iter().zip(&dv.managed))
        {
            *a += v + mg;
        }
        allocations.push(DeviceAllocations {
            device: d.name.clone(),
            rows,
        });
        map.devices.push(dv);
    }
    map.moving.resize(cpus, 0);
    m.with_vectors(|v| {
        let mx = v.matrix();
        map.reserved = mx.global_reserved();
        for c in 0..cpus as u32 {
            let (managed_reserved, managed_allocated) = mx.managed(c);
            let allocated = mx.allocated(c) + managed_allocated;
            let free = mx.available(c);
            map.free.push(free);
            map.managed_unused
                .push(managed_reserved.saturating_sub(managed_allocated));
            map.other
                .push(allocated.saturating_sub(attributed[c as usize]));
            map.system
                .push(VECTORS_PER_CPU.saturating_sub(free + mx.allocated(c) + managed_reserved));
        }
    });
    (allocations, map)
}
