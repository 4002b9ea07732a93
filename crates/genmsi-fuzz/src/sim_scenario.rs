//! Scenario files on `genmsi-sim`: arbitrary machines, devices and events (any kind, any
//! device name, index, CPU list or count, valid or not), written as TOML and run through the
//! same entry point as `genmsi run`. Invariants: no panic; a scenario is refused with a typed
//! error or runs to its end (steps are bounded); a run's counters add up, nothing is lost
//! or left pending, no write is handled by another owner, and no legitimate interrupt is
//! blocked; the CPUs serve at once or late (handlers holding their vector, interrupts
//! disabled for a while).

use arbitrary::{Arbitrary, Unstructured};
use std::fmt::Write;

const KINDS: [&str; 7] = [
    "nic",
    "nvme",
    "legacy-msi",
    "intx",
    "ims",
    "passthrough",
    "hpet",
];
const EVENTS: [&str; 10] = [
    "affinity",
    "cpu-offline",
    "cpu-online",
    "spurious",
    "wrong-rid",
    "storm",
    "guest-unmask",
    "guest-mask",
    "queues",
    "bogus",
];

#[derive(Arbitrary, Debug)]
struct DeviceIn {
    kind: u8,
    vectors: u16,
    capacity: Option<u16>,
    weight: u8,
}

#[derive(Arbitrary, Debug)]
struct EventIn {
    at: u16,
    kind: u8,
    device: u8,
    index: Option<u16>,
    cpus: Option<(u8, u8)>,
    cpu: Option<u8>,
    count: Option<i16>,
}

/// The scenario text `data` describes (exposed so a finding can be replayed with `genmsi run`).
pub fn scenario(data: &[u8]) -> Option<String> {
    let mut u = Unstructured::new(data);
    let cpus = u.int_in_range(1u32..=20).ok()?;
    let remapping = bool::arbitrary(&mut u).ok()?;
    let iommus = u.int_in_range(1u32..=3).ok()?;
    let steps = u.int_in_range(0u64..=600).ok()?;
    let seed = u32::arbitrary(&mut u).ok()?;
    // How late the CPUs serve: 0 at once, up to 3 (handlers hold 3 steps, interrupts disabled
    // at 30% of arrivals for up to 6 steps).
    let late = u.int_in_range(0u64..=3).ok()?;
    let n_devices = u.int_in_range(0usize..=6).ok()?;
    let devices: Vec<DeviceIn> = (0..n_devices)
        .map(|_| DeviceIn::arbitrary(&mut u))
        .collect::<Result<_, _>>()
        .ok()?;
    let events: Vec<EventIn> = u
        .arbitrary_take_rest_iter()
        .ok()?
        .take(12)
        .filter_map(Result::ok)
        .collect();
    let mut t = format!(
        "seed = {seed}\n[machine]\ncpus = {cpus}\nremapping = {remapping}\niommus = {iommus}\nsteps = {steps}\n\
         handler_steps = {late}\nirqs_off_chance = {}\nirqs_off_steps = {}\n",
        late as f64 / 10.0,
        late * 2
    );
    for (n, d) in devices.iter().enumerate() {
        let kind = KINDS[usize::from(d.kind) % KINDS.len()];
        // Mostly within each kind's limits, so that most scenarios run; now and then not.
        let (vectors, capacity) = match kind {
            _ if d.weight == u8::MAX => (u32::from(d.vectors), d.capacity.map(u32::from)),
            "legacy-msi" | "intx" => (1, None),
            "hpet" => (1 + u32::from(d.vectors) % 8, None),
            _ => {
                let v = 1 + u32::from(d.vectors) % 80;
                (v, d.capacity.map(|c| v.max(u32::from(c) % 2048)))
            }
        };
        let _ = write!(
            t,
            "[[device]]\nkind = \"{kind}\"\nname = \"d{n}\"\nvectors = {vectors}\nweight = {}\n",
            d.weight % 5
        );
        if let Some(c) = capacity {
            let _ = writeln!(t, "capacity = {c}");
        }
    }
    for e in &events {
        let kind = match e.kind {
            u8::MAX => "bogus",
            k => EVENTS[usize::from(k) % (EVENTS.len() - 1)],
        };
        let _ = write!(
            t,
            "[[event]]\nat = {}\nkind = \"{kind}\"\ndevice = \"d{}\"\n",
            u64::from(e.at) % (steps + 1),
            match e.device {
                u8::MAX => devices.len(),
                d => usize::from(d) % devices.len().max(1),
            }
        );
        if let Some(i) = e.index {
            let _ = writeln!(t, "index = {}", i % 100);
        }
        if let Some((a, b)) = e.cpus {
            let (a, b) = (u32::from(a) % (cpus + 2), u32::from(b) % (cpus + 2));
            let _ = writeln!(t, "cpus = \"{}-{}\"", a.min(b), a.max(b));
        }
        if let Some(c) = e.cpu {
            let _ = writeln!(t, "cpu = {}", u32::from(c) % (cpus + 2));
        }
        if let Some(c) = e.count {
            let _ = writeln!(t, "count = {}", c % 300);
        }
    }
    Some(t)
}

/// The harness (see the module docs).
pub fn run(data: &[u8]) {
    check(data);
}

/// The harness, returning the report when the scenario was accepted and ran.
pub fn check(data: &[u8]) -> Option<genmsi_sim::Report> {
    let text = scenario(data)?;
    let r = genmsi_sim::run_text("fuzz", &text, None, &mut |_, _| {}).ok()?;
    assert_eq!(r.raised, r.accounted(), "counters do not add up:\n{text}");
    assert_eq!(
        (r.lost, r.pending, r.blocked, r.misdelivered),
        (0, 0, 0, 0),
        "{:?} {:?} {:?}\n{text}",
        r.lost_reasons,
        r.blocked_reasons,
        r.misdelivered_reasons
    );
    Some(r)
}
