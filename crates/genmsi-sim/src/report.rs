//! The run's report: counters that add up, the vector use per CPU, the busiest irqs in a
//! /proc/interrupts-style table, and what every event did.

use crate::snapshot::{DeviceAllocations, EventMark, Timeline, VectorMap};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// CPU columns of the busiest-irqs table.
pub const BUSIEST_CPU_COLUMNS: usize = 8;

/// The CPU columns of the busiest-irqs table: every row's busiest CPU (so no row shows only
/// zeros), then the busiest CPUs overall up to `max` columns; counts on the other CPUs go to an
/// "other CPUs" column.
pub fn busiest_columns(rows: &[Vec<(u32, u64)>], max: usize) -> Vec<u32> {
    let mut cols: Vec<u32> = Vec::new();
    for per_cpu in rows {
        let top = per_cpu
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        if let Some(&(c, _)) = top {
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
    }
    let mut by_cpu: BTreeMap<u32, u64> = BTreeMap::new();
    for (c, n) in rows.iter().flatten() {
        *by_cpu.entry(*c).or_default() += n;
    }
    let mut rest: Vec<(u32, u64)> = by_cpu.into_iter().collect();
    rest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (c, _) in rest {
        if cols.len() >= max {
            break;
        }
        if !cols.contains(&c) {
            cols.push(c);
        }
    }
    cols.sort_unstable();
    cols
}

/// Per row, the interrupts on CPUs outside `cols` (the "other CPUs" column); `None` when no
/// row ran anywhere else, and the table needs no such column.
pub fn busiest_other(rows: &[Vec<(u32, u64)>], cols: &[u32]) -> Option<Vec<u64>> {
    let other: Vec<u64> = rows
        .iter()
        .map(|pc| {
            pc.iter()
                .filter(|(c, _)| !cols.contains(c))
                .map(|x| x.1)
                .sum()
        })
        .collect();
    let outside = rows
        .iter()
        .any(|pc| pc.iter().any(|(c, _)| !cols.contains(c)));
    outside.then_some(other)
}

/// One device's line of the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceReport {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Store kind.
    pub store: String,
    /// Requester id, as bus:device.function.
    pub requester_id: String,
    /// Vectors allocated at the end.
    pub vectors: u32,
    /// Store capacity.
    pub capacity: u32,
    /// Interrupts raised.
    pub raised: u64,
    /// Interrupts handled by the right irq.
    pub delivered: u64,
}

/// Vector use per CPU.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VectorUse {
    /// Fewest vectors in use on a CPU.
    pub min: u32,
    /// Most vectors in use on a CPU.
    pub max: u32,
    /// Mean per CPU.
    pub mean: f64,
    /// All vectors in use.
    pub total: u32,
    /// The busiest CPUs: (cpu, vectors in use).
    pub top: Vec<(u32, u32)>,
}

/// One row of the busiest-irqs table.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IrqRow {
    /// Irq number.
    pub irq: u32,
    /// Owning device.
    pub device: String,
    /// Store index.
    pub index: u32,
    /// Store kind.
    pub store: String,
    /// Interrupts handled.
    pub total: u64,
    /// Per CPU: (cpu, count), CPUs with a count only.
    pub per_cpu: Vec<(u32, u64)>,
}

/// Writes injected on purpose, and what became of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Injected {
    /// Writes to vectors nobody owns.
    pub spurious: u64,
    /// Of those, blocked by remapping.
    pub spurious_blocked: u64,
    /// Replays of a device's message with another requester id.
    pub wrong_rid: u64,
    /// Of those, blocked.
    pub wrong_rid_blocked: u64,
    /// Of those, delivered (the spoof worked: only possible without remapping).
    pub wrong_rid_delivered: u64,
}

/// How late the simulated CPUs serviced interrupts (the scenario's settings, modelled).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceReport {
    /// Steps a handler kept its vector in service before its EOI.
    pub handler_steps: u64,
    /// Percentage of the interrupts reaching an idle CPU that found its interrupts disabled
    /// (the chance, in percent).
    pub irqs_off_percent: f64,
    /// Longest interrupts-disabled window, in steps.
    pub irqs_off_steps: u64,
}

/// The report of one run.
/// `raised = delivered + blocked + lost + pending + merged + misdelivered + stale`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// CPUs.
    pub cpus: u32,
    /// Interrupt remapping on.
    pub remapping: bool,
    /// The drivers quiesce a device before they free its vectors (modelled).
    pub quiesce: bool,
    /// How late the CPUs serviced interrupts (modelled).
    pub service: ServiceReport,
    /// Traffic steps run.
    pub steps: u64,
    /// Interrupts devices raised.
    pub raised: u64,
    /// Handled by the irq that owns the source.
    pub delivered: u64,
    /// Blocked by remapping (legitimate traffic; should be 0).
    pub blocked: u64,
    /// Lost: landed nowhere, on the wrong irq, on an offline CPU, or the device was disabled.
    pub lost: u64,
    /// Latched at the device at the end (masked).
    pub pending: u64,
    /// Merged with an interrupt of the same irq already pending in the IRR (edge coalescing,
    /// or a level line asserted again).
    pub merged: u64,
    /// Handled by an irq other than the allocation the write was sent for (another owner of
    /// the vector or of the irq number): fails the run.
    pub misdelivered: u64,
    /// Sent for an allocation freed or shut down while the write was in flight, and handled
    /// by nobody (counted, as a write the driver gave up).
    pub stale: u64,
    /// Faults recorded by the remapping units, injected ones included: reason -> count.
    pub faults: BTreeMap<String, u64>,
    /// Why interrupts were lost: reason -> count.
    pub lost_reasons: BTreeMap<String, u64>,
    /// Why legitimate interrupts were blocked: fault reason -> count.
    pub blocked_reasons: BTreeMap<String, u64>,
    /// Which owner's writes were handled by which: description -> count.
    pub misdelivered_reasons: BTreeMap<String, u64>,
    /// Where the stale writes ended: reason -> count.
    pub stale_reasons: BTreeMap<String, u64>,
    /// Interrupts retriggered by cleanup (pending in the IRR of a CPU that went away).
    pub retriggered: u64,
    /// Writes flushed by a driver's quiesce before a free.
    pub quiesced: u64,
    /// Writes in flight when an event started, summed over the events (they race it).
    pub in_flight_at_events: u64,
    /// Interrupts waiting in an IRR (accepted, not yet handled) when an event started, summed
    /// over the events.
    pub pending_at_events: u64,
    /// Old vectors the cleanup kept because their CPU still held them in its IRR or ISR.
    pub held_in_irr: u64,
    /// What freed irqs owned (irq numbers, remapping entries, vectors) given back to their
    /// pools after their grace period.
    pub released_after_grace: u64,
    /// Still held in quarantine at the end (grace not over yet).
    pub held_at_end: u64,
    /// The waits the simulator models, each named with how it is modelled -> times used.
    pub waits: BTreeMap<String, u64>,
    /// Injected writes.
    pub injected: Injected,
    /// Things that should not have happened.
    pub unexpected: Vec<String>,
    /// Irqs allocated at the end.
    pub irqs: u32,
    /// Per device.
    pub devices: Vec<DeviceReport>,
    /// Vector use per CPU.
    pub vectors: VectorUse,
    /// The busiest irqs.
    pub busiest: Vec<IrqRow>,
    /// What each event did.
    pub events: Vec<String>,
    /// Old vectors released after moves.
    pub vectors_released: u64,
    /// Each event, with its step and kind.
    pub marks: Vec<EventMark>,
    /// Interrupt outcomes over time.
    pub timeline: Timeline,
    /// Vector use per CPU by owner, at the end.
    pub vector_map: VectorMap,
    /// Every device's allocations at the end.
    pub allocations: Vec<DeviceAllocations>,
}

impl Report {
    /// True when every raised interrupt ended delivered (once) to the allocation it was sent
    /// for, as a named merge, or stale (its owner gave it up): nothing lost, nothing
    /// misdelivered, nothing blocked, nothing still pending, nothing unexpected, and the
    /// counters add up.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.misdelivered == 0
            && self.blocked == 0
            && self.pending == 0
            && self.unexpected.is_empty()
            && self.raised == self.accounted()
    }

    /// `delivered + blocked + lost + pending + merged + misdelivered + stale`: equals `raised`.
    pub fn accounted(&self) -> u64 {
        self.delivered
            + self.blocked
            + self.lost
            + self.pending
            + self.merged
            + self.misdelivered
            + self.stale
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "genmsi simulation `{}`: {} CPUs, remapping {}, seed {}, {} steps",
            self.scenario,
            self.cpus,
            if self.remapping { "on" } else { "off" },
            self.seed,
            self.steps
        );
        let sv = &self.service;
        let _ = writeln!(
            o,
            "  drivers' quiesce {}; service (modelled): handlers hold their vector {} step(s), \
             interrupts disabled at {:.1}% of arrivals for up to {} step(s)",
            if self.quiesce { "on" } else { "off" },
            sv.handler_steps,
            sv.irqs_off_percent,
            sv.irqs_off_steps
        );
        let _ = writeln!(o, "\nDevices ({} irqs allocated)", self.irqs);
        let _ = writeln!(
            o,
            "  {:<14} {:<12} {:<10} {:<8} {:>8} {:>9} {:>10} {:>10}",
            "name", "kind", "store", "rid", "vectors", "capacity", "raised", "delivered"
        );
        for d in &self.devices {
            let _ = writeln!(
                o,
                "  {:<14} {:<12} {:<10} {:<8} {:>8} {:>9} {:>10} {:>10}",
                d.name,
                d.kind,
                d.store,
                d.requester_id,
                d.vectors,
                d.capacity,
                d.raised,
                d.delivered
            );
        }
        let v = &self.vectors;
        let _ = writeln!(
            o,
            "\nVectors per CPU: min {} max {} mean {:.1} total {}",
            v.min, v.max, v.mean, v.total
        );
        let top: Vec<String> = v.top.iter().map(|(c, n)| format!("cpu{c}={n}")).collect();
        let _ = writeln!(o, "  busiest: {}", top.join(" "));
        let _ = writeln!(o, "\nInterrupts");
        let _ = writeln!(o, "  raised    {:>10}", self.raised);
        let _ = writeln!(o, "  delivered {:>10}", self.delivered);
        let _ = writeln!(o, "  blocked   {:>10}", self.blocked);
        let _ = writeln!(o, "  lost      {:>10}", self.lost);
        let _ = writeln!(o, "  pending   {:>10}", self.pending);
        let _ = writeln!(o, "  merged    {:>10}", self.merged);
        let _ = writeln!(o, "  misdelivered {:>7}", self.misdelivered);
        let _ = writeln!(o, "  stale     {:>10}", self.stale);
        for (what, map) in [
            ("lost", &self.lost_reasons),
            ("blocked", &self.blocked_reasons),
            ("misdelivered", &self.misdelivered_reasons),
            ("stale", &self.stale_reasons),
        ] {
            for (r, n) in map {
                let _ = writeln!(o, "    {what}: {r}: {n}");
            }
        }
        let _ = writeln!(o, "  retriggered {:>8}", self.retriggered);
        let _ = writeln!(o, "  pending at events {:>8}", self.pending_at_events);
        let _ = writeln!(
            o,
            "  old vectors held in IRR/ISR at cleanup {:>8}",
            self.held_in_irr
        );
        let _ = writeln!(
            o,
            "  freed resources released after their grace {:>8} (held at the end: {})",
            self.released_after_grace, self.held_at_end
        );
        let _ = writeln!(o, "  quiesced   {:>8}", self.quiesced);
        let _ = writeln!(o, "  in flight at events {:>8}", self.in_flight_at_events);
        for (w, n) in &self.waits {
            let _ = writeln!(o, "    wait x{n}: {w}");
        }
        let i = &self.injected;
        let _ = writeln!(
            o,
            "  injected: {} spurious writes ({} blocked), {} wrong-requester-id writes ({} blocked, {} delivered)",
            i.spurious, i.spurious_blocked, i.wrong_rid, i.wrong_rid_blocked, i.wrong_rid_delivered
        );
        for (r, n) in &self.faults {
            let _ = writeln!(o, "  remapping fault {r}: {n}");
        }
        let _ = writeln!(
            o,
            "  old vectors released after moves: {}",
            self.vectors_released
        );
        if !self.busiest.is_empty() {
            let counts: Vec<Vec<(u32, u64)>> =
                self.busiest.iter().map(|r| r.per_cpu.clone()).collect();
            let cpus = busiest_columns(&counts, BUSIEST_CPU_COLUMNS);
            let other = busiest_other(&counts, &cpus);
            let _ = writeln!(o, "\nBusiest irqs");
            let mut head = format!("  {:>6}", "IRQ");
            for c in &cpus {
                let _ = write!(head, " {:>9}", format!("CPU{c}"));
            }
            if other.is_some() {
                let _ = write!(head, " {:>11}", "other CPUs");
            }
            let _ = writeln!(o, "{head}  {:>9}  store      device", "total");
            for (k, r) in self.busiest.iter().enumerate() {
                let mut line = format!("  {:>5}:", r.irq);
                for c in &cpus {
                    let n = r.per_cpu.iter().find(|x| x.0 == *c).map_or(0, |x| x.1);
                    let _ = write!(line, " {n:>9}");
                }
                if let Some(other) = &other {
                    let _ = write!(line, " {:>11}", other[k]);
                }
                let _ = writeln!(
                    o,
                    "{line}  {:>9}  {:<10} {}[{}]",
                    r.total, r.store, r.device, r.index
                );
            }
        }
        if !self.events.is_empty() {
            let _ = writeln!(o, "\nEvents");
            for e in &self.events {
                let _ = writeln!(o, "  {e}");
            }
        }
        for u in &self.unexpected {
            let _ = writeln!(o, "UNEXPECTED: {u}");
        }
        let _ = writeln!(
            o,
            "\nresult: {} (lost {}, misdelivered {}, unexpected {})",
            if self.ok() { "ok" } else { "FAILED" },
            self.lost,
            self.misdelivered,
            self.unexpected.len()
        );
        o
    }
}
