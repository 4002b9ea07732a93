//! The seeded event loop: traffic, scheduled events, fault injection, counting.

use crate::devices::{platform, Device, Raised, SetupError};
use crate::machine::{Arrival, Lapic, Machine};
use crate::report::{DeviceReport, IrqRow, Report, VectorUse};
use crate::scenario::{parse_cpulist, DeviceKind, EventKind, EventSpec, Scenario};
use crate::snapshot::{bucket_steps, EventMark, Sampler};
use genmsi::{CpuMask, Error, Irq};
use genmsi_x86::msi::CompatMsi;
use genmsi_x86::{FaultReason, Vector};
use std::collections::BTreeMap;

/// SplitMix64: small, fast, and the same sequence on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A message write on its way from a device to the interrupt controllers. Posted writes of one
/// device arrive in the order they were sent (PCI Express ordering); their latency is drawn
/// from the seed, so moves and cleanups run while writes to old targets are still in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    due: u64,
    device: usize,
    irq: Irq,
    msg: genmsi::Msg,
}

/// Longest posted-write latency, in steps.
const MAX_LATENCY: u64 = 3;

/// The one wait a driver makes before it frees vectors, and how the simulator models it.
pub const QUIESCE: &str = "driver quiesce before a free (modelled): a read of the device \
     flushes its posted writes (a read completion cannot pass them, PCIe ordering), so that \
     device's writes in flight land, in order, before its vectors are freed; every other \
     device's writes stay in flight";

/// The kernel's wait before a dying CPU stops, and how the simulator models it.
pub const OFFLINE_WAIT: &str = "CPU-offline wait (modelled): after the irqs moved, the dying \
     CPU waits as long as the longest write latency (MAX_LATENCY steps, like the delay in \
     Linux's fixup_irqs), so every write in flight lands, then cleanup retriggers what its IRR \
     still holds; no new traffic is generated during the wait";

/// A simulation ready to run.
#[derive(Debug)]
pub struct Sim {
    /// The machine.
    pub machine: Machine,
    /// The devices.
    pub devices: Vec<Device>,
    scenario: Scenario,
    rng: Rng,
    report: Report,
    per_irq: BTreeMap<Irq, (usize, u32)>,
    /// Writes in flight, in the order they will land.
    bus: std::collections::VecDeque<InFlight>,
    /// Per device, when its last posted write lands (writes never overtake each other).
    last_due: Vec<u64>,
    step: u64,
    sampler: Sampler,
}

fn fault_name(f: FaultReason) -> String {
    let what = match f {
        FaultReason::RequestReserved => "reserved fields in the request",
        FaultReason::IndexOutOfRange => "index beyond the table",
        FaultReason::NotPresent => "entry not present",
        FaultReason::TableAccess => "table access",
        FaultReason::EntryReserved => "reserved fields in the entry",
        FaultReason::CompatBlocked => "compatibility format blocked",
        FaultReason::SourceId => "source-id check failed",
    };
    format!("{:#04x} {what}", f.code())
}

impl Sim {
    /// Builds the machine and devices of `scenario` (the seed can be overridden).
    pub fn new(name: &str, scenario: Scenario, seed: Option<u64>) -> Result<Sim, SetupError> {
        let spec = &scenario.machine;
        let irqs: u64 = scenario
            .devices
            .iter()
            .map(|d| u64::from(d.get_ref().capacity.unwrap_or(d.get_ref().vectors)))
            .sum();
        // The scenario check bounds the total, so this fits.
        let irqs = u32::try_from(irqs + 1024).unwrap_or(u32::MAX);
        let mut machine = Machine::new(
            spec.cpus,
            spec.remapping,
            spec.iommus,
            irqs.checked_next_power_of_two().unwrap_or(u32::MAX),
        );
        // Every write lands within MAX_LATENCY steps: the platform's bound for the grace periods.
        machine.set_write_latency(MAX_LATENCY);
        platform(&mut machine)?;
        let mut devices = Vec::new();
        for (n, d) in scenario.devices.iter().enumerate() {
            devices.push(Device::new(&mut machine, n, d.get_ref())?);
        }
        let seed = seed.unwrap_or(scenario.seed);
        let report = Report {
            scenario: name.into(),
            seed,
            cpus: spec.cpus,
            remapping: spec.remapping,
            ..Report::default()
        };
        let last_due = vec![0; devices.len()];
        let mut sim = Sim {
            machine,
            devices,
            scenario,
            rng: Rng::new(seed),
            report,
            per_irq: BTreeMap::new(),
            bus: Default::default(),
            last_due,
            step: 0,
            sampler: Sampler::default(),
        };
        sim.index_irqs();
        Ok(sim)
    }

    fn index_irqs(&mut self) {
        self.per_irq.clear();
        for (n, d) in self.devices.iter_mut().enumerate() {
            d.refresh(&self.machine);
            for &(index, irq) in &d.live {
                self.per_irq.insert(irq, (n, index));
            }
        }
    }

    /// Runs every step, calling `progress(done, total)` now and then; returns the report.
    pub fn run(mut self, progress: &mut dyn FnMut(u64, u64)) -> Report {
        let steps = self.scenario.machine.steps;
        let cleanup_every = self.scenario.machine.cleanup_every.max(1);
        let mut events: Vec<EventSpec> = self
            .scenario
            .events
            .iter()
            .map(|e| e.get_ref().clone())
            .collect();
        events.sort_by_key(|e| e.at);
        let mut next_event = 0;
        let bucket = bucket_steps(steps);
        self.report.timeline.bucket_steps = bucket;
        let weights: Vec<f64> = self.devices.iter().map(|d| d.weight).collect();
        let total_weight: f64 = weights.iter().sum();
        for step in 0..steps {
            self.step = step;
            self.machine.set_time(step);
            self.land(step);
            while next_event < events.len() && events[next_event].at <= step {
                let e = events[next_event].clone();
                self.marked_event(step, &e);
                self.replay_latched();
                next_event += 1;
            }
            if total_weight > 0.0 {
                self.traffic_step(&weights, total_weight);
            }
            if step % cleanup_every == cleanup_every - 1 {
                self.cleanup();
            }
            if step % 4096 == 0 {
                progress(step, steps);
            }
            if (step + 1) % bucket == 0 && step + 1 < steps {
                self.sample();
            }
        }
        self.step = steps;
        self.land(u64::MAX);
        // Every write has landed: the time runs on past the bound for the last cleanup.
        self.machine.set_time(steps + MAX_LATENCY);
        for e in &events[next_event..] {
            self.marked_event(steps, e);
            self.replay_latched();
        }
        self.cleanup();
        self.sample();
        progress(steps, steps);
        self.report.steps = steps;
        self.finish()
    }

    /// Closes a timeline bucket.
    fn sample(&mut self) {
        let r = &self.report;
        let faults = self.machine.faults().values().sum();
        let now = [r.raised, r.delivered, r.blocked, r.lost, faults];
        self.sampler.close(&mut self.report.timeline, now);
    }

    /// Runs event `e` and marks it on the timeline with the lines it logged.
    fn marked_event(&mut self, step: u64, e: &EventSpec) {
        let before = self.report.events.len();
        self.event(step, e);
        for line in &self.report.events[before..] {
            let text = line.split_once(": ").map_or(line.as_str(), |(_, t)| t);
            self.report.marks.push(EventMark {
                step,
                kind: e.kind.name().into(),
                text: text.into(),
            });
        }
    }

    fn traffic_step(&mut self, weights: &[f64], total: f64) {
        let mut pick = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut n = weights.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                n = i;
                break;
            }
            pick -= w;
        }
        let dev = &self.devices[n];
        if dev.live.is_empty() {
            return;
        }
        let (index, irq) = dev.live[self.rng.below(dev.live.len() as u64) as usize];
        self.raise(n, index, irq);
    }

    /// Device `n` raises `index` whose irq is `irq`; counts the outcome.
    fn raise(&mut self, n: usize, index: u32, irq: Irq) {
        self.report.raised += 1;
        self.devices[n].raised += 1;
        let outcome = self.devices[n].raise(&mut self.machine, index);
        self.account(n, irq, outcome);
    }

    /// Lands every write due by `now`, in order.
    fn land(&mut self, now: u64) {
        while self.bus.front().is_some_and(|w| w.due <= now) {
            let w = self.bus.pop_front().expect("checked");
            self.land_one(w);
        }
    }

    fn land_one(&mut self, w: InFlight) {
        let d = &self.devices[w.device];
        let arrival = self.machine.write(&w.msg, d.rid, d.unit);
        self.account(w.device, w.irq, Raised::Sent(arrival));
    }

    /// Devices with a managed irq whose effective CPU is `cpu`.
    fn managed_on(&self, cpu: u32) -> Vec<usize> {
        (0..self.devices.len())
            .filter(|&n| {
                self.devices[n].live.iter().any(|&(_, irq)| {
                    self.machine
                        .sys
                        .irq_info(irq)
                        .is_some_and(|i| i.desc.managed && i.effective_cpu == Some(cpu))
                })
            })
            .collect()
    }

    fn account(&mut self, n: usize, irq: Irq, outcome: Raised) {
        self.account_one(n, irq, outcome);
        self.settle();
    }

    /// Accounts the arrivals that answer no write of their own: each ends an interrupt that
    /// was counted as pending (waiting in an IRR, or latched at a pin or an entry).
    fn settle(&mut self) {
        for arrival in self.machine.take_late() {
            self.settle_one(arrival);
        }
    }

    fn settle_one(&mut self, arrival: Arrival) {
        {
            let r = &mut self.report;
            if r.pending == 0 {
                r.unexpected.push(format!(
                    "an arrival no raised interrupt waits for: {arrival:?}"
                ));
                return;
            }
            r.pending -= 1;
            match arrival {
                Arrival::Handled { irq, .. } => {
                    r.delivered += 1;
                    if let Some(&(n, _)) = self.per_irq.get(&irq) {
                        self.devices[n].delivered += 1;
                    }
                }
                Arrival::Merged => r.merged += 1,
                Arrival::Pending { .. } => r.pending += 1,
                other => {
                    r.lost += 1;
                    let why = format!("a latched interrupt went out and ended {other:?}");
                    *r.lost_reasons.entry(why).or_default() += 1;
                }
            }
        }
    }

    /// A masked MSI-X entry latches its interrupt in the PBA; once the entry is unmasked the
    /// device sends it. After every event (which may unmask entries) each live entry with its
    /// pending bit set is replayed, and the replay settles the latched interrupt.
    fn replay_latched(&mut self) {
        for n in 0..self.devices.len() {
            let live: Vec<u32> = self.devices[n].live.iter().map(|&(i, _)| i).collect();
            for index in live {
                if let Some(arrival) = self.devices[n].replay(&mut self.machine, index) {
                    self.settle_one(arrival);
                }
            }
        }
        self.settle();
    }

    fn account_one(&mut self, n: usize, irq: Irq, outcome: Raised) {
        let r = &mut self.report;
        let mut lost = |why: String| {
            r.lost += 1;
            *r.lost_reasons.entry(why).or_default() += 1;
        };
        match outcome {
            Raised::Posted(msg) => {
                let due = (self.step + self.rng.below(MAX_LATENCY + 1)).max(self.last_due[n]);
                self.last_due[n] = due;
                // Keep the bus sorted by due step; equal steps stay in sending order.
                let at = self.bus.partition_point(|w| w.due <= due);
                self.bus.insert(
                    at,
                    InFlight {
                        due,
                        device: n,
                        irq,
                        msg,
                    },
                );
            }
            Raised::Sent(Arrival::Handled { irq: got, .. }) if got == irq => {
                r.delivered += 1;
                self.devices[n].delivered += 1;
            }
            Raised::Sent(Arrival::Handled { irq: got, .. }) => lost(format!(
                "handled by another irq ({} instead of {})",
                got.0, irq.0
            )),
            Raised::Sent(Arrival::Merged) => r.merged += 1,
            Raised::Sent(Arrival::Blocked(f)) => {
                r.blocked += 1;
                *r.blocked_reasons.entry(fault_name(f)).or_default() += 1;
                r.unexpected.push(format!(
                    "{}: legitimate interrupt of irq {} blocked: {}",
                    self.devices[n].name,
                    irq.0,
                    fault_name(f)
                ));
            }
            Raised::Sent(Arrival::Stale { .. }) => lost("landed on a vector no irq owns".into()),
            Raised::Sent(Arrival::NoCpu(c)) => lost(format!("sent to offline CPU {c}")),
            Raised::Sent(Arrival::NotInterrupt) => {
                lost("written outside the interrupt range".into())
            }
            Raised::Sent(Arrival::Pending { .. }) | Raised::Latched => r.pending += 1,
            Raised::Disabled => lost("the device's interrupt mechanism was disabled".into()),
        }
    }

    fn cleanup(&mut self) {
        // A retriggered interrupt was pending in the IRR of a CPU that went away: its raise was
        // counted as pending, and the retrigger's arrival settles it.
        let (released, retriggered) = self.machine.cleanup();
        self.report.vectors_released += released as u64;
        self.report.retriggered += retriggered as u64;
        self.settle();
    }

    /// The driver's quiesce before it frees vectors of device `n` (modelled, see
    /// [`QUIESCE`]): the device's posted writes land now, in order; every other device's
    /// writes stay in flight.
    fn quiesce(&mut self, n: usize) {
        if !self.scenario.machine.quiesce {
            return;
        }
        let (mine, rest): (std::collections::VecDeque<InFlight>, _) = std::mem::take(&mut self.bus)
            .into_iter()
            .partition(|w| w.device == n);
        self.bus = rest;
        self.report.quiesced += mine.len() as u64;
        self.note_wait(QUIESCE);
        for w in mine {
            self.land_one(w);
        }
    }

    fn note_wait(&mut self, what: &str) {
        *self.report.waits.entry(what.into()).or_default() += 1;
    }

    fn device(&self, name: &Option<String>) -> usize {
        let name = name.as_deref().unwrap_or_default();
        self.devices
            .iter()
            .position(|d| d.name == name)
            .expect("the scenario check found the device")
    }

    fn event(&mut self, step: u64, e: &EventSpec) {
        // Writes still on their way when the event starts: they race it.
        self.report.in_flight_at_events += self.bus.len() as u64;
        let log =
            |s: &mut Sim, text: String| s.report.events.push(format!("step {step:>7}: {text}"));
        match e.kind {
            EventKind::Affinity => {
                let n = self.device(&e.device);
                let mask = parse_cpulist(e.cpus.as_deref().unwrap_or_default()).expect("checked");
                let targets: Vec<(u32, Irq)> = self.devices[n]
                    .live
                    .iter()
                    .copied()
                    .filter(|(i, _)| e.index.is_none_or(|x| x == *i))
                    .collect();
                let (mut moved, mut refused, mut first_refusal) = (0, 0, None);
                for (_, irq) in &targets {
                    match self.machine.sys.set_affinity(*irq, &mask) {
                        Ok(()) => moved += 1,
                        Err(err) => {
                            refused += 1;
                            first_refusal.get_or_insert(err);
                        }
                    }
                }
                // Clean up at once, with writes to the old targets still in flight: only moves
                // that are complete may give their old vectors back.
                self.cleanup();
                let tail = first_refusal.map_or(String::new(), |e| {
                    format!("; {refused} refused, left where they were: {e}")
                });
                let text = format!(
                    "{}: {moved} irq(s) moved to CPUs {mask}{tail}",
                    self.devices[n].name
                );
                log(self, text);
            }
            EventKind::CpuOffline => {
                let cpu = e.cpu.expect("checked");
                // Drivers of managed irqs on this CPU quiesce their queues before it goes
                // (blk-mq drains a dying CPU's hardware queue; their irqs are shut down below).
                for n in self.managed_on(cpu) {
                    self.quiesce(n);
                }
                // Every other write stays in flight across the moves.
                match self.machine.sys.cpu_offline(cpu) {
                    Ok(r) => {
                        // The kernel's wait before a dying CPU stops (modelled, see
                        // [`OFFLINE_WAIT`]), then the cleanup retriggers what is still pending
                        // in its IRR before its local APIC goes away.
                        self.note_wait(OFFLINE_WAIT);
                        self.land(self.step + MAX_LATENCY);
                        self.cleanup();
                        self.machine.lapics[cpu as usize] = Lapic::default();
                        let text = format!(
                            "CPU {cpu} offline: {} irq(s) moved, {} managed irq(s) shut down",
                            r.moved.len(),
                            r.shut_down.len()
                        );
                        log(self, text);
                    }
                    Err(err) => log(self, format!("CPU {cpu} offline refused: {err}")),
                }
                self.cleanup();
                self.index_irqs();
            }
            EventKind::CpuOnline => {
                let cpu = e.cpu.expect("checked");
                self.machine.lapics[cpu as usize].online = true;
                match self.machine.sys.cpu_online(cpu) {
                    Ok(restarted) => log(
                        self,
                        format!(
                            "CPU {cpu} online: {} managed irq(s) restarted",
                            restarted.len()
                        ),
                    ),
                    Err(err) => log(self, format!("CPU {cpu} online refused: {err}")),
                }
                self.index_irqs();
            }
            EventKind::Spurious => self.spurious(e.count.unwrap_or(1).max(0) as u64, step),
            EventKind::WrongRid => self.wrong_rid(
                self.device(&e.device),
                e.count.unwrap_or(1).max(0) as u64,
                step,
            ),
            EventKind::Storm => {
                let n = self.device(&e.device);
                let mask = parse_cpulist(e.cpus.as_deref().unwrap_or_default()).expect("checked");
                self.storm(n, &mask, step);
            }
            EventKind::GuestUnmask | EventKind::GuestMask => {
                let n = self.device(&e.device);
                let index = e.index.expect("checked");
                let unmask = e.kind == EventKind::GuestUnmask;
                if !unmask {
                    // The VMM quiesces the host entry before it frees its vector.
                    self.quiesce(n);
                }
                let name = self.devices[n].name.clone();
                let r = match unmask {
                    true => self.devices[n].alloc_at(&self.machine, index).map(|irq| format!("guest unmasked entry {index}: host vector allocated at index {index} (irq {}) with the others live", irq.0)),
                    false => self.devices[n].free_at(&self.machine, index).map(|()| format!("guest masked entry {index}: host vector freed")),
                };
                let text = r.unwrap_or_else(|err| format!("entry {index} refused: {err}"));
                log(self, format!("{name}: {text}"));
                self.index_irqs();
            }
            EventKind::Queues => {
                let n = self.device(&e.device);
                let count = e.count.unwrap_or(0);
                if count < 0 {
                    // The driver quiesces the queues it destroys; creation needs no wait.
                    self.quiesce(n);
                }
                let mask = e.cpus.as_deref().and_then(parse_cpulist);
                let (mut done, mut refused) = (0, None);
                for _ in 0..count.unsigned_abs() {
                    let r = if count > 0 {
                        self.devices[n]
                            .add_queue(&self.machine, mask.as_ref())
                            .map(drop)
                    } else {
                        match self.devices[n].queue_indices().last() {
                            Some(&i) => self.devices[n].remove_queue(&self.machine, i),
                            None => break,
                        }
                    };
                    match r {
                        Ok(()) => done += 1,
                        Err(err) => {
                            refused = Some(err.to_string());
                            break;
                        }
                    }
                }
                let verb = if count > 0 { "created" } else { "destroyed" };
                let name = self.devices[n].name.clone();
                let tail = refused.map_or(String::new(), |r| format!(", then refused: {r}"));
                log(self, format!("{name}: {done} queue(s) {verb}{tail}"));
                self.index_irqs();
            }
        }
    }

    /// Writes to vectors no irq owns: a compatibility message to the highest allocatable
    /// vector of CPU 0 (blocked when remapping enforces) or, with remapping, a request naming
    /// an entry nobody uses.
    fn spurious(&mut self, count: u64, step: u64) {
        let mut blocked = 0;
        let mut handled = 0;
        for i in 0..count {
            let msg = if self.machine.ir.is_empty() {
                let cpu = (i % self.machine.lapics.len() as u64) as u32;
                let free = (0x20..0xEC).rev().map(Vector).find(|&v| {
                    !self
                        .machine
                        .with_vectors(|d| d.matrix().is_allocated(cpu, v))
                });
                CompatMsi::fixed(cpu, free.unwrap_or(Vector(0xEB))).emit()
            } else {
                genmsi_x86::msi::RemappableMsi {
                    handle: 0xFFFF - i as u16 % 16,
                    subhandle: Some(0),
                }
                .emit()
            };
            match self.machine.write(&msg, 0x0000, 0) {
                Arrival::Blocked(_) => blocked += 1,
                Arrival::Handled { irq, .. } => {
                    handled += 1;
                    self.report
                        .unexpected
                        .push(format!("spurious write handled by irq {}", irq.0));
                }
                _ => {}
            }
        }
        self.report.injected.spurious += count;
        self.report.injected.spurious_blocked += blocked;
        self.report.events.push(format!("step {step:>7}: {count} spurious write(s): {blocked} blocked, {} landed on unowned vectors, {handled} handled", count - blocked - handled));
    }

    /// The device's first live MSI-X message replayed with the requester id of a device that
    /// does not own it.
    fn wrong_rid(&mut self, n: usize, count: u64, step: u64) {
        let d = &self.devices[n];
        let Some(&(index, irq)) = d.live.first() else {
            return;
        };
        let Some(msg) = d.current_msg(index) else {
            self.report
                .events
                .push(format!("step {step:>7}: {}: no message to replay", d.name));
            return;
        };
        let (rid, unit, name) = (d.rid ^ 0x0008, d.unit, d.name.clone());
        let (mut blocked, mut delivered) = (0, 0);
        for _ in 0..count {
            match self.machine.write(&msg, rid, unit) {
                Arrival::Blocked(FaultReason::SourceId) => blocked += 1,
                Arrival::Handled { irq: got, .. } if got == irq => delivered += 1,
                other => self
                    .report
                    .unexpected
                    .push(format!("spoofed write from {rid:#06x}: {other:?}")),
            }
        }
        if delivered > 0 {
            self.report.unexpected.push(format!(
                "{delivered} write(s) spoofing {name} with requester id {rid:#06x} reached irq {}",
                irq.0
            ));
        }
        let inj = &mut self.report.injected;
        inj.wrong_rid += count;
        inj.wrong_rid_blocked += blocked;
        inj.wrong_rid_delivered += delivered;
        self.report.events.push(format!("step {step:>7}: {count} write(s) spoofing {name} from requester id {rid:#06x}: {blocked} blocked (source-id), {delivered} delivered"));
    }

    /// Allocates IMS entries on `mask` until the platform refuses, checks that the refusal
    /// changed nothing, then frees them.
    /// Irqs allocated, irqs active and vectors in use (held vectors, waiting for their grace
    /// after a free, are not in use; a refused allocation may reclaim them).
    fn live_counts(&self) -> (u32, u32, u32) {
        let stats = self.machine.sys.stats();
        let vectors = self
            .machine
            .with_vectors(|v| v.matrix().total_allocated() - v.held_targets().len() as u32);
        (stats.irqs_allocated, stats.irqs_active, vectors)
    }

    fn storm(&mut self, n: usize, mask: &CpuMask, step: u64) {
        let before = self.live_counts();
        let mut made = Vec::new();
        let refusal = loop {
            let counts = self.live_counts();
            match self.devices[n].add_queue(&self.machine, Some(mask)) {
                Ok(i) => made.push(i),
                Err(err) => {
                    let after = self.live_counts();
                    if after != counts {
                        self.report
                            .unexpected
                            .push(format!("the refused allocation changed state: {err}"));
                    }
                    break err;
                }
            }
        };
        let expected = matches!(
            refusal,
            genmsi_pci::PciError::Core(
                Error::NoVectors { .. } | Error::StoreFull { .. } | Error::NoRemapEntries { .. }
            )
        );
        if !expected {
            self.report
                .unexpected
                .push(format!("storm ended with an unexpected error: {refusal}"));
        }
        for i in &made {
            if let Err(err) = self.devices[n].remove_queue(&self.machine, *i) {
                self.report.unexpected.push(format!("storm cleanup: {err}"));
            }
        }
        let after = self.live_counts();
        if after != before {
            self.report
                .unexpected
                .push("the storm leaked irqs or vectors".into());
        }
        let name = self.devices[n].name.clone();
        self.report.events.push(format!("step {step:>7}: {name}: allocation storm on CPUs {mask}: {} allocated, then refused with `{refusal}`; all freed, counts back to {} irqs / {} vectors", made.len(), after.0, after.2));
        self.index_irqs();
    }

    fn finish(mut self) -> Report {
        let m = &self.machine;
        for (reason, count) in m.faults() {
            self.report.faults.insert(fault_name(reason), count);
        }
        let mut r = self.report;
        r.irqs = m.sys.stats().irqs_allocated;
        for d in &self.devices {
            let vectors = match d.kind {
                DeviceKind::Intx => d.live.len() as u32,
                _ => m.sys.descs(d.id, d.slot).map_or(0, |v| v.len() as u32),
            };
            let rid = genmsi_pci::PciAddress::from_requester_id(d.rid);
            r.devices.push(DeviceReport {
                name: d.name.clone(),
                kind: format!("{:?}", d.kind).to_lowercase(),
                store: d.store_name().into(),
                requester_id: format!("{rid}"),
                vectors,
                capacity: d.capacity,
                raised: d.raised,
                delivered: d.delivered,
            });
        }
        let used: Vec<(u32, u32)> = m.with_vectors(|v| {
            let mx = v.matrix();
            (0..mx.nr_cpus())
                .map(|c| (c, mx.allocated(c) + mx.managed(c).1))
                .collect()
        });
        let total: u32 = used.iter().map(|u| u.1).sum();
        let mut top = used.clone();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(5);
        r.vectors = VectorUse {
            min: used.iter().map(|u| u.1).min().unwrap_or(0),
            max: used.iter().map(|u| u.1).max().unwrap_or(0),
            mean: f64::from(total) / used.len().max(1) as f64,
            total,
            top,
        };
        // The library's own per-(irq, CPU) counts, as /proc/interrupts shows them: live irqs
        // only (a freed irq's counts go with it).
        let table = m.sys.table();
        let mut rows: Vec<IrqRow> = self
            .per_irq
            .iter()
            .map(|(&irq, &(n, index))| IrqRow {
                irq: irq.0,
                device: self.devices[n].name.clone(),
                index,
                store: self.devices[n].store_name().to_string(),
                total: table.count(irq),
                per_cpu: table.irq_cpu_counts(irq),
            })
            .filter(|r| r.total > 0)
            .collect();
        rows.sort_by(|a, b| b.total.cmp(&a.total).then(a.irq.cmp(&b.irq)));
        rows.truncate(10);
        r.busiest = rows;
        (r.allocations, r.vector_map) = crate::snapshot::layout(m, &self.devices);
        r
    }
}
