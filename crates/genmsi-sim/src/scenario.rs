//! Scenario files: the machine, its devices, the traffic and the events, in TOML.
//!
//! ```toml
//! seed = 7
//! [machine]
//! cpus = 64          # 1..=8192
//! remapping = true   # VT-d interrupt remapping (devices sit behind the IR domain)
//! steps = 20000      # traffic steps: one device interrupt each (at most MAX_STEPS)
//! quiesce = true     # drivers quiesce a device before they free its vectors (a model)
//! handler_steps = 2  # a handler holds its vector in service this long before its EOI
//! irqs_off_chance = 0.1  # an arrival finds its idle CPU with interrupts disabled...
//! irqs_off_steps = 4     # ...for 1..=4 steps
//!
//! [[device]]
//! kind = "nic"       # nic | nvme | legacy-msi | intx | ims | passthrough | hpet
//! name = "eth0"
//! vectors = 16
//!
//! [[event]]
//! at = 5000          # the traffic step it happens before
//! kind = "affinity"  # affinity | cpu-offline | cpu-online | spurious | wrong-rid | storm | guest-unmask
//! device = "eth0"
//! index = 3
//! cpus = "8-11"
//! ```
//!
//! Syntax and type errors come from the TOML parser with their line and column; the checks
//! that need the whole file (a device name that does not exist, a CPU beyond the machine) are
//! reported with the line of the table that is wrong and the field's name. Every size a
//! scenario gives is bounded (the `MAX_*` constants, each CPU or index by the machine or the
//! store), and a value out of its bounds is refused with [`ErrorKind::OutOfRange`] before
//! anything is built: a scenario cannot make the simulator run for ever or exhaust memory.

use genmsi::CpuMask;
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

/// The scenario the CLI runs when it is given no file.
pub const DEFAULT: &str = include_str!("../../../scenarios/default.toml");

/// Most devices a scenario may have.
pub const MAX_DEVICES: usize = 4096;
/// Most interrupts all devices' stores may hold together.
pub const MAX_TOTAL_CAPACITY: u64 = 1 << 20;
/// Largest `count` of an event, either way.
pub const MAX_EVENT_COUNT: u64 = 1_000_000;
/// Most traffic steps.
pub const MAX_STEPS: u64 = 10_000_000;
/// Most CPUs.
pub const MAX_CPUS: u64 = 8192;
/// Most remapping units.
pub const MAX_IOMMUS: u64 = 16;
/// Most events.
pub const MAX_EVENTS: u64 = 100_000;
/// Largest sum of the events' `count`s, either way: the writes and allocations they make.
pub const MAX_TOTAL_EVENT_COUNT: u64 = 10_000_000;
/// Longest `handler_steps` and `irqs_off_steps`.
pub const MAX_SERVICE_STEPS: u64 = 1000;

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seed of the run (the CLI's `--seed` overrides it).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The machine.
    pub machine: MachineSpec,
    /// The devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<Spanned<DeviceSpec>>,
    /// Scheduled events.
    #[serde(default, rename = "event")]
    pub events: Vec<Spanned<EventSpec>>,
}

fn default_seed() -> u64 {
    1
}

/// The machine.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    /// Number of CPUs (APIC id = CPU number).
    pub cpus: u32,
    /// Interrupt remapping: PCI devices and the IO-APIC sit behind VT-d IR domains, and
    /// compatibility-format interrupts are blocked.
    #[serde(default = "yes")]
    pub remapping: bool,
    /// Remapping units (each with its own 65,536-entry table); devices are spread over them.
    #[serde(default = "one")]
    pub iommus: u32,
    /// Traffic steps.
    #[serde(default = "default_steps")]
    pub steps: u64,
    /// Run the vector cleanup every this many steps.
    #[serde(default = "default_cleanup")]
    pub cleanup_every: u64,
    /// Drivers quiesce a device (flush its posted writes) before they free its vectors, as
    /// real drivers do. `false` frees with the writes still in flight: a check that the
    /// accounting sees what that costs.
    #[serde(default = "yes")]
    pub quiesce: bool,
    /// Steps a handler holds its vector in service before its end of interrupt: vectors of
    /// its priority class and below wait in the IRR meanwhile (0: the EOI comes at once).
    #[serde(default)]
    pub handler_steps: u64,
    /// Chance (0..=1) that an interrupt reaching an idle CPU finds it running with interrupts
    /// disabled.
    #[serde(default)]
    pub irqs_off_chance: f64,
    /// Longest interrupts-disabled window, in steps.
    #[serde(default)]
    pub irqs_off_steps: u64,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn default_steps() -> u64 {
    10_000
}
fn default_cleanup() -> u64 {
    64
}

/// A device kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// Multi-queue NIC with MSI-X.
    Nic,
    /// NVMe-like controller: MSI-X, one managed vector per queue spread over the CPUs.
    Nvme,
    /// An old device with 32-bit single-message MSI.
    LegacyMsi,
    /// A legacy device on an IO-APIC pin (level, active low).
    Intx,
    /// An accelerator with IMS: queue contexts hold the messages, queue id = cookie.
    Ims,
    /// A passed-through NIC whose guest unmasks MSI-X entries over time (host vectors on demand).
    Passthrough,
    /// The HPET's FSB-capable timers.
    Hpet,
}

/// One device.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// What it is.
    pub kind: DeviceKind,
    /// Its name in reports and events.
    pub name: String,
    /// Vectors (MSI-X entries, MSI messages, IMS queues, timers) allocated at start.
    #[serde(default = "one")]
    pub vectors: u32,
    /// Capacity of the store (MSI-X table size, IMS queues); defaults to `vectors`.
    pub capacity: Option<u32>,
    /// CPUs its vectors may target (a cpulist such as "0-7,16"); all by default.
    pub affinity: Option<String>,
    /// Relative share of the traffic.
    #[serde(default = "one_f")]
    pub weight: f64,
}

fn one_f() -> f64 {
    1.0
}

/// What an event does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Move `device`'s `index` (or every vector of the device) to `cpus`.
    Affinity,
    /// Take `cpu` offline.
    CpuOffline,
    /// Bring `cpu` back.
    CpuOnline,
    /// `count` writes to vectors nobody owns (expected: counted as spurious).
    Spurious,
    /// `device` replays its message `count` times with another requester id (expected: blocked
    /// with remapping, delivered without).
    WrongRid,
    /// Allocate on `device` (an IMS device) at any free index targeting `cpus` until the vectors
    /// run out; check the refusal changed nothing; free them all.
    Storm,
    /// The guest of a passthrough device unmasks entry `index`: the host allocates exactly it.
    GuestUnmask,
    /// The guest masks entry `index` for good: the host frees it.
    GuestMask,
    /// An IMS device creates (`count` > 0) or destroys queues.
    Queues,
}

impl EventKind {
    /// The name scenario files use.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Affinity => "affinity",
            EventKind::CpuOffline => "cpu-offline",
            EventKind::CpuOnline => "cpu-online",
            EventKind::Spurious => "spurious",
            EventKind::WrongRid => "wrong-rid",
            EventKind::Storm => "storm",
            EventKind::GuestUnmask => "guest-unmask",
            EventKind::GuestMask => "guest-mask",
            EventKind::Queues => "queues",
        }
    }
}

/// One event.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// The traffic step before which it happens.
    pub at: u64,
    /// What happens.
    pub kind: EventKind,
    /// The device concerned.
    pub device: Option<String>,
    /// The store index concerned.
    pub index: Option<u32>,
    /// A CPU list.
    pub cpus: Option<String>,
    /// A CPU.
    pub cpu: Option<u32>,
    /// A count.
    pub count: Option<i64>,
}

/// What kind of problem a [`ScenarioError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not TOML, or a field of the wrong type or name (the parser's message).
    Syntax,
    /// A size or count outside its bounds.
    OutOfRange {
        /// The value given (the magnitude, for a signed count).
        value: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A value that does not fit the rest of the scenario (an unknown device, a CPU list
    /// naming CPUs the machine does not have, an event on a device it cannot act on...).
    Invalid,
}

/// A scenario that cannot run, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// 1-based line of the problem (0 when unknown).
    pub line: usize,
    /// The field concerned.
    pub field: String,
    /// What kind of problem.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// The 1-based line of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses a cpulist ("0-3,8,10-11").
pub fn parse_cpulist(s: &str) -> Option<CpuMask> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b): (u32, u32) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let c = part.parse().ok()?;
                (c, c)
            }
        };
        if a > b || b >= genmsi::MAX_CPUS {
            return None;
        }
        cpus.extend(a..=b);
    }
    (!cpus.is_empty()).then(|| CpuMask::from_cpus(cpus))
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |r| line_at(text, r.start));
            ScenarioError {
                line,
                field: "scenario".into(),
                kind: ErrorKind::Syntax,
                message: e.message().trim().to_string(),
            }
        })?;
        s.check(text)?;
        Ok(s)
    }

    fn check(&self, text: &str) -> Result<(), ScenarioError> {
        let line_of = |span: std::ops::Range<usize>| line_at(text, span.start);
        let err = |line, field: &str, message: String| ScenarioError {
            line,
            field: field.into(),
            kind: ErrorKind::Invalid,
            message,
        };
        // A size checked against its bounds.
        let bound = |line, field: &str, value: u64, (min, max): (u64, u64)| {
            if (min..=max).contains(&value) {
                return Ok(());
            }
            Err(ScenarioError {
                line,
                field: field.into(),
                kind: ErrorKind::OutOfRange { value, min, max },
                message: format!("{value}: must be {min}..={max}"),
            })
        };
        let m = &self.machine;
        let mline = text
            .lines()
            .position(|l| l.trim_start().starts_with("[machine]"))
            .map_or(0, |i| i + 1);
        bound(mline, "machine.cpus", m.cpus.into(), (1, MAX_CPUS))?;
        bound(mline, "machine.iommus", m.iommus.into(), (1, MAX_IOMMUS))?;
        bound(mline, "machine.steps", m.steps, (0, MAX_STEPS))?;
        bound(
            mline,
            "machine.cleanup_every",
            m.cleanup_every,
            (1, MAX_STEPS),
        )?;
        bound(
            mline,
            "machine.handler_steps",
            m.handler_steps,
            (0, MAX_SERVICE_STEPS),
        )?;
        bound(
            mline,
            "machine.irqs_off_steps",
            m.irqs_off_steps,
            (0, MAX_SERVICE_STEPS),
        )?;
        if !(0.0..=1.0).contains(&m.irqs_off_chance) {
            return Err(err(
                mline,
                "machine.irqs_off_chance",
                format!("{}: must be a chance, 0..=1", m.irqs_off_chance),
            ));
        }
        if m.cpus > 255 && !m.remapping {
            return Err(err(
                mline,
                "machine.remapping",
                "APIC ids above 255 are reachable only through remapping (x2APIC)".into(),
            ));
        }
        bound(
            mline,
            "device",
            self.devices.len() as u64,
            (0, MAX_DEVICES as u64),
        )?;
        bound(mline, "event", self.events.len() as u64, (0, MAX_EVENTS))?;
        let mut names = std::collections::BTreeSet::new();
        let (mut total_capacity, mut total_weight, mut intx) = (0u64, 0f64, 0);
        for d in &self.devices {
            let line = line_of(d.span());
            let d = d.get_ref();
            if !names.insert(d.name.as_str()) {
                return Err(err(
                    line,
                    "device.name",
                    format!("`{}` is used twice", d.name),
                ));
            }
            bound(
                line,
                "device.vectors",
                d.vectors.into(),
                (1, u32::MAX.into()),
            )
            .map_err(|e| ScenarioError {
                message: "must be at least 1".into(),
                ..e
            })?;
            if d.capacity.is_some_and(|c| c < d.vectors) {
                return Err(err(
                    line,
                    "device.capacity",
                    format!(
                        "{} is smaller than vectors = {}",
                        d.capacity.unwrap(),
                        d.vectors
                    ),
                ));
            }
            let limit = match d.kind {
                DeviceKind::LegacyMsi => 1,
                DeviceKind::Intx => 1,
                DeviceKind::Hpet => 8,
                DeviceKind::Nic | DeviceKind::Nvme | DeviceKind::Passthrough => 2048,
                DeviceKind::Ims => 1 << 17,
            };
            let capacity = d.capacity.unwrap_or(d.vectors);
            let field = match d.capacity {
                Some(_) => "device.capacity",
                None => "device.vectors",
            };
            bound(line, field, capacity.into(), (1, limit)).map_err(|e| ScenarioError {
                message: format!("{}: a {:?} device holds at most {limit}", capacity, d.kind),
                ..e
            })?;
            total_capacity += u64::from(capacity);
            bound(
                line,
                "device.capacity",
                total_capacity,
                (0, MAX_TOTAL_CAPACITY),
            )
            .map_err(|e| ScenarioError {
                message: format!(
                    "the devices hold more than {MAX_TOTAL_CAPACITY} interrupts in all"
                ),
                ..e
            })?;
            total_weight += d.weight;
            if d.kind == DeviceKind::Intx {
                intx += 1;
                if intx > 8 {
                    return Err(err(
                        line,
                        "device.kind",
                        "at most 8 INTx devices (IO-APIC pins 16..=23)".into(),
                    ));
                }
            }
            if let Some(a) = &d.affinity {
                self.check_cpus(a)
                    .map_err(|m| err(line, "device.affinity", m))?;
            }
            if !(d.weight >= 0.0 && d.weight.is_finite()) {
                return Err(err(
                    line,
                    "device.weight",
                    "must be a finite number >= 0".into(),
                ));
            }
        }
        if !total_weight.is_finite() {
            return Err(err(
                mline,
                "device.weight",
                "the weights add up to more than a finite number".into(),
            ));
        }
        let mut total_count = 0u64;
        for e in &self.events {
            let line = line_of(e.span());
            let e = e.get_ref();
            if let Some(c) = e.count {
                bound(line, "event.count", c.unsigned_abs(), (0, MAX_EVENT_COUNT)).map_err(
                    |e| ScenarioError {
                        message: format!("{c}: at most {MAX_EVENT_COUNT} either way"),
                        ..e
                    },
                )?;
                total_count += c.unsigned_abs();
                bound(line, "event.count", total_count, (0, MAX_TOTAL_EVENT_COUNT)).map_err(
                    |e| ScenarioError {
                        message: format!(
                            "the events' counts add up to more than {MAX_TOTAL_EVENT_COUNT}"
                        ),
                        ..e
                    },
                )?;
            }
            if e.at > m.steps {
                return Err(err(
                    line,
                    "event.at",
                    format!("step {} is after the last step {}", e.at, m.steps),
                ));
            }
            let needs_device = !matches!(
                e.kind,
                EventKind::CpuOffline | EventKind::CpuOnline | EventKind::Spurious
            );
            match (&e.device, needs_device) {
                (None, true) => {
                    return Err(err(
                        line,
                        "event.device",
                        format!("a {:?} event needs a device", e.kind),
                    ))
                }
                (Some(n), _) => {
                    let Some(d) = self
                        .devices
                        .iter()
                        .map(|d| d.get_ref())
                        .find(|d| &d.name == n)
                    else {
                        return Err(err(line, "event.device", format!("no device named `{n}`")));
                    };
                    let fits = match e.kind {
                        EventKind::Storm | EventKind::Queues => d.kind == DeviceKind::Ims,
                        EventKind::GuestUnmask | EventKind::GuestMask => {
                            d.kind == DeviceKind::Passthrough
                        }
                        EventKind::WrongRid => matches!(
                            d.kind,
                            DeviceKind::Nic | DeviceKind::Nvme | DeviceKind::Passthrough
                        ),
                        _ => true,
                    };
                    if !fits {
                        return Err(err(
                            line,
                            "event.device",
                            format!(
                                "a {:?} event cannot act on `{n}`, a {:?} device",
                                e.kind, d.kind
                            ),
                        ));
                    }
                    if let Some(i) = e.index {
                        let capacity = d.capacity.unwrap_or(d.vectors);
                        if d.kind == DeviceKind::Intx || i >= capacity {
                            return Err(err(
                                line,
                                "event.index",
                                format!("`{n}` has no index {i} ({capacity} in its store)"),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Some(c) = &e.cpus {
                self.check_cpus(c).map_err(|m| err(line, "event.cpus", m))?;
            }
            if matches!(e.kind, EventKind::CpuOffline | EventKind::CpuOnline) {
                match e.cpu {
                    None => return Err(err(line, "event.cpu", "missing".into())),
                    Some(c) if c >= m.cpus => {
                        return Err(err(
                            line,
                            "event.cpu",
                            format!("CPU {c} does not exist ({} CPUs)", m.cpus),
                        ))
                    }
                    _ => {}
                }
            }
            if matches!(e.kind, EventKind::Affinity | EventKind::Storm) && e.cpus.is_none() {
                return Err(err(
                    line,
                    "event.cpus",
                    format!("a {:?} event needs cpus", e.kind),
                ));
            }
            if matches!(e.kind, EventKind::GuestUnmask | EventKind::GuestMask) && e.index.is_none()
            {
                return Err(err(line, "event.index", "missing".into()));
            }
        }
        Ok(())
    }

    fn check_cpus(&self, list: &str) -> Result<CpuMask, String> {
        let mask = parse_cpulist(list)
            .ok_or_else(|| format!("`{list}` is not a CPU list such as \"0-3,8\""))?;
        match mask.last() {
            Some(c) if c >= self.machine.cpus => Err(format!(
                "CPU {c} does not exist ({} CPUs)",
                self.machine.cpus
            )),
            _ => Ok(mask),
        }
    }
}
