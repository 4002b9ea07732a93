//! `genmsi bench matrix`: the vector matrix against Linux's (the port of `kernel/irq/matrix.c`
//! in [`LinuxMatrix`]: masks as `nr_cpu_ids`-bit bitmaps walked CPU by CPU) on every mask shape a
//! user has, in one process, on the same seeded workload.
//!
//! For each shape both allocators get a fresh machine filled to about half its vectors (a
//! seeded quarter of the first fill freed again), the same CPUs offline, and then the same
//! operations: rounds of steady-state steps (allocate on the mask, free the allocation made 64
//! steps earlier) and a burst of up to 10,000 allocations on the mask, freed again. Each side
//! gets its masks in its own form, built before any timing (Linux's as bitmaps, as its callers
//! hand them over). The shapes:
//! - ordinary allocation on one mask (the machine, a node, a single CPU, every 2nd CPU...), and
//!   random scattered masks of the sizes just below and just above each of `CpuMask`'s
//!   representation thresholds at the machine's size (inline list, list, bitmap);
//! - churn: a different random 32-CPU mask for each allocation (64 masks in turn);
//! - managed: four managed reservations on every CPU of the mask first (not timed), then the
//!   same steps with managed allocations and frees (a node, a random 32 CPUs, the machine).
//!
//! Time is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), read at the ends of each chunk:
//! on a machine shared with other work, the time the thread spends descheduled is not charged
//! to whichever side happened to be running (the caches it comes back to still are).
//!
//! Within a round ours and Linux's run alternately, chunk by chunk (2,000 steps each), until
//! both have run for 2 ms or one of them for 16 ms: machine noise hits both, and the cheap
//! shapes (a single CPU costs about 13 ns) run long enough to be measured, not just timed.
//! Each side's figure is the median of its rounds' nanoseconds per allocation, so a round that
//! lost the CPU to another process does not count. Each shape runs on several freshly built
//! pairs of machines, built in alternating order, and the median is over all their rounds.
//! The buffers that record the choices are sized before any timing. Both sides must make the
//! same choice every time (the bench fails otherwise): the spread is then equal by
//! construction, and the figures compare only the cost of finding the CPU.

use genmsi::CpuMask;
use genmsi_x86::reference::{Cpumask, LinuxMatrix};
use genmsi_x86::{MatrixError, Vector, VectorMatrix};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;

/// The operations both allocators offer, each on masks in its own form ([`Matrix::Mask`]).
trait Matrix {
    type Mask;
    fn prepare(&self, mask: &CpuMask) -> Self::Mask;
    fn alloc(&mut self, mask: &Self::Mask) -> Result<(u32, Vector), MatrixError>;
    fn alloc_managed(&mut self, mask: &Self::Mask) -> Result<(u32, Vector), MatrixError>;
    fn reserve_managed(&mut self, mask: &Self::Mask) -> Result<(), MatrixError>;
    fn free(&mut self, cpu: u32, v: Vector, managed: bool) -> Result<(), MatrixError>;
    fn offline(&mut self, cpu: u32) -> Result<(), MatrixError>;
}

impl Matrix for VectorMatrix {
    type Mask = CpuMask;
    fn prepare(&self, mask: &CpuMask) -> CpuMask {
        mask.clone()
    }
    fn alloc(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError> {
        VectorMatrix::alloc(self, mask, false)
    }
    fn alloc_managed(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError> {
        VectorMatrix::alloc_managed(self, mask)
    }
    fn reserve_managed(&mut self, mask: &CpuMask) -> Result<(), MatrixError> {
        VectorMatrix::reserve_managed(self, mask)
    }
    fn free(&mut self, cpu: u32, v: Vector, managed: bool) -> Result<(), MatrixError> {
        VectorMatrix::free(self, cpu, v, managed)
    }
    fn offline(&mut self, cpu: u32) -> Result<(), MatrixError> {
        VectorMatrix::offline(self, cpu)
    }
}

/// Linux's bitmap, and the mask it came from (which only an error names).
impl Matrix for LinuxMatrix {
    type Mask = (Cpumask, CpuMask);
    fn prepare(&self, mask: &CpuMask) -> Self::Mask {
        (self.cpumask(mask), mask.clone())
    }
    fn alloc(&mut self, (bits, mask): &Self::Mask) -> Result<(u32, Vector), MatrixError> {
        self.alloc_in(bits, false, mask)
    }
    fn alloc_managed(&mut self, (bits, mask): &Self::Mask) -> Result<(u32, Vector), MatrixError> {
        self.alloc_managed_in(bits, mask)
    }
    fn reserve_managed(&mut self, (bits, mask): &Self::Mask) -> Result<(), MatrixError> {
        self.reserve_managed_in(bits, mask)
    }
    fn free(&mut self, cpu: u32, v: Vector, managed: bool) -> Result<(), MatrixError> {
        LinuxMatrix::free(self, cpu, v, managed)
    }
    fn offline(&mut self, cpu: u32) -> Result<(), MatrixError> {
        LinuxMatrix::offline(self, cpu)
    }
}

/// The calling thread's CPU time.
fn thread_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A seeded xorshift generator: the workload is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What a shape allocates on.
pub enum Work {
    /// Ordinary allocations on one mask.
    Plain(CpuMask),
    /// Ordinary allocations, each on the next of these masks.
    Churn(Vec<CpuMask>),
    /// Managed allocations on one mask, after four managed reservations on each of its CPUs.
    Managed(CpuMask),
}

/// A mask shape: its name, its work and the CPUs it takes offline.
pub struct Shape {
    /// The name the report gives it.
    pub name: String,
    /// What it allocates on.
    pub work: Work,
    /// CPUs offline during the shape.
    pub offline: Vec<u32>,
}

/// Managed reservations per CPU of a managed shape's mask.
const MANAGED_RESERVED: u32 = 4;
/// Distinct masks of the churn shape, used in turn.
const CHURN_MASKS: usize = 64;

/// `n` distinct CPUs below `cpus`, seeded.
fn scattered(rng: &mut Rng, cpus: u32, n: u32) -> CpuMask {
    let mut picked = std::collections::BTreeSet::new();
    while picked.len() < n.min(cpus) as usize {
        picked.insert((rng.next() % u64::from(cpus)) as u32);
    }
    CpuMask::from_cpus(picked)
}

/// The sizes of random scattered masks just below and just above each of [`CpuMask`]'s
/// representation thresholds on a machine of `cpus` CPUs: the inline list ([`CpuMask::FEW`]),
/// and the list against the bitmap ([`CpuMask::SMALL`] CPUs whatever their density, then up to
/// [`CpuMask::LIST`] CPUs at fewer than 4 per word of the bitmap).
fn boundary_sizes(cpus: u32) -> Vec<u32> {
    let words = cpus.div_ceil(64) as usize;
    let list_max = CpuMask::SMALL.max(CpuMask::LIST.min(4 * words - 1)) as u32;
    let few = CpuMask::FEW as u32;
    [few, few + 1, list_max, list_max + 1]
        .into_iter()
        .filter(|&n| n < cpus / 2)
        .collect()
}

/// How a mask is kept: "range", "list" or "bitmap".
fn representation(mask: &CpuMask) -> &'static str {
    if mask.as_range().is_some() {
        "range"
    } else if mask.as_list().is_some() {
        "list"
    } else {
        "bitmap"
    }
}

/// The mask shapes on a machine of `cpus` CPUs (see the module docs).
pub fn shapes(cpus: u32) -> Vec<Shape> {
    let node = 64.min(cpus);
    // A node in the middle of the machine, as a device's NUMA node would be.
    let first = (cpus / node / 2) * node;
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let half = CpuMask::from_cpus((0..cpus).filter(|_| rng.next() & 1 == 1));
    let offline: Vec<u32> = {
        let mut picked = std::collections::BTreeSet::new();
        while picked.len() < (cpus / 100).max(1) as usize {
            picked.insert((rng.next() % u64::from(cpus)) as u32);
        }
        picked.into_iter().collect()
    };
    let node_mask = CpuMask::range(first, first + node - 1);
    let plain = |name: &str, mask: CpuMask| Shape {
        name: name.to_string(),
        work: Work::Plain(mask),
        offline: vec![],
    };
    let mut shapes = vec![
        plain("machine", CpuMask::first_n(cpus)),
        plain("node", node_mask.clone()),
        plain(
            "two-nodes",
            CpuMask::range(first.saturating_sub(node), (first + node - 1).min(cpus - 1)),
        ),
        plain("single", CpuMask::single(cpus / 2)),
        plain("every-2nd", CpuMask::from_cpus((0..cpus).step_by(2))),
        plain("every-3rd", CpuMask::from_cpus((0..cpus).step_by(3))),
        plain("random-half", half),
        // A CPU and its SMT sibling (Linux numbers siblings half the machine apart), a few
        // CPUs scattered over the machine, the first CPU of every node (a housekeeping CPU
        // per node), and a node's cores with their siblings: small, sparse or split irregular
        // masks.
        plain("smt-pair", CpuMask::from_cpus([first, first + cpus / 2])),
        plain(
            "scattered-4",
            CpuMask::from_cpus((0..4).map(|i| (2 * i + 1) * cpus / 8)),
        ),
        plain(
            "node-firsts",
            CpuMask::from_cpus((0..cpus).step_by(node as usize)),
        ),
        plain(
            "smt-node",
            CpuMask::from_cpus((first / 2..first / 2 + node / 2).flat_map(|c| [c, c + cpus / 2])),
        ),
        Shape {
            name: "machine-1%-offline".to_string(),
            work: Work::Plain(CpuMask::first_n(cpus)),
            offline,
        },
    ];
    for n in boundary_sizes(cpus) {
        shapes.push(plain(&format!("random-{n}"), scattered(&mut rng, cpus, n)));
    }
    if cpus >= 64 {
        let churn = (0..CHURN_MASKS)
            .map(|_| scattered(&mut rng, cpus, 32))
            .collect();
        let managed = |name: &str, mask: CpuMask| Shape {
            name: name.to_string(),
            work: Work::Managed(mask),
            offline: vec![],
        };
        shapes.extend([
            Shape {
                name: "churn-32".to_string(),
                work: Work::Churn(churn),
                offline: vec![],
            },
            managed("managed-node", node_mask),
            managed("managed-random-32", scattered(&mut rng, cpus, 32)),
            managed("managed-machine", CpuMask::first_n(cpus)),
        ]);
    }
    shapes
}

/// One allocator under the workload.
struct Side<M: Matrix> {
    m: M,
    /// The shape's masks in this side's form, used in turn from `next`.
    masks: Vec<M::Mask>,
    next: usize,
    managed: bool,
    recent: VecDeque<(u32, Vector)>,
    /// The CPUs chosen since the last comparison, and a burst's allocations: sized before the
    /// timing starts, so that neither side's figure includes growing them.
    chosen: Vec<u32>,
    got: Vec<(u32, Vector)>,
    time: Duration,
    allocs: u64,
    /// Nanoseconds per allocation of each finished round.
    rounds: Vec<f64>,
}

impl<M: Matrix> Side<M> {
    /// A machine filled to about half its vectors (130 per CPU, then a seeded 30 per CPU freed
    /// at random), then `offline` taken offline and, for a managed shape, the reservations made;
    /// buffers for chunks of `steps` and bursts of `burst`.
    fn new(
        mut m: M,
        cpus: u32,
        shape: &Shape,
        steps: u32,
        burst: u32,
    ) -> Result<Self, MatrixError> {
        // The fill goes CPU by CPU (the same state for both, and cheap for the scan too), each
        // CPU's mask prepared once.
        let singles: Vec<M::Mask> = (0..cpus).map(|c| m.prepare(&CpuMask::single(c))).collect();
        let mut live = Vec::new();
        for i in 0..cpus * 130 {
            live.push(m.alloc(&singles[(i % cpus) as usize])?);
        }
        drop(singles);
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..cpus * 30 {
            let (cpu, v) = live.swap_remove((rng.next() % live.len() as u64) as usize);
            m.free(cpu, v, false)?;
        }
        for &cpu in &shape.offline {
            m.offline(cpu)?;
        }
        let masks: Vec<M::Mask> = match &shape.work {
            Work::Plain(mask) | Work::Managed(mask) => vec![m.prepare(mask)],
            Work::Churn(masks) => masks.iter().map(|mask| m.prepare(mask)).collect(),
        };
        let managed = matches!(shape.work, Work::Managed(_));
        if managed {
            for _ in 0..MANAGED_RESERVED {
                m.reserve_managed(&masks[0])?;
            }
        }
        Ok(Side {
            m,
            masks,
            next: 0,
            managed,
            recent: VecDeque::with_capacity(65),
            chosen: Vec::with_capacity(steps.max(burst) as usize),
            got: Vec::with_capacity(burst as usize),
            time: Duration::ZERO,
            allocs: 0,
            rounds: Vec::new(),
        })
    }

    /// One allocation, on the next mask.
    #[inline(always)]
    fn alloc(&mut self) -> Result<(u32, Vector), MatrixError> {
        let mask = &self.masks[self.next];
        self.next += 1;
        if self.next == self.masks.len() {
            self.next = 0;
        }
        if self.managed {
            self.m.alloc_managed(mask)
        } else {
            self.m.alloc(mask)
        }
    }

    /// `steps` steady-state steps (into `chosen`, cleared first); returns their time.
    fn steady(&mut self, steps: u32) -> anyhow::Result<Duration> {
        self.chosen.clear();
        let start = thread_time();
        for _ in 0..steps {
            let t = self.alloc()?;
            self.chosen.push(t.0);
            self.recent.push_back(t);
            if self.recent.len() > 64 {
                let (cpu, v) = self.recent.pop_front().expect("more than 64");
                self.m.free(cpu, v, self.managed)?;
            }
        }
        Ok(self.record(start, steps))
    }

    /// A burst of `n` allocations (into `chosen`, cleared first), then their frees.
    fn burst(&mut self, n: u32) -> anyhow::Result<()> {
        self.chosen.clear();
        self.got.clear();
        let start = thread_time();
        for _ in 0..n {
            let t = self.alloc()?;
            self.chosen.push(t.0);
            self.got.push(t);
        }
        for &(cpu, v) in &self.got {
            self.m.free(cpu, v, self.managed)?;
        }
        self.record(start, n);
        Ok(())
    }

    /// Adds the time since `start` and its `allocs` allocations to the round; that time.
    fn record(&mut self, start: Duration, allocs: u32) -> Duration {
        let took = thread_time().saturating_sub(start);
        self.time += took;
        self.allocs += u64::from(allocs);
        took
    }

    fn end_round(&mut self) {
        self.rounds
            .push(self.time.as_nanos() as f64 / self.allocs.max(1) as f64);
        (self.time, self.allocs) = (Duration::ZERO, 0);
    }
}

/// A heap block of a seeded 64 bytes to 4 KiB, kept while a machine lives (see `run`).
fn spacer(rng: &mut Rng) -> Vec<u8> {
    Vec::with_capacity(64 * (1 + (rng.next() % 64) as usize))
}

/// The median of per-round figures.
fn median(mut rounds: Vec<f64>) -> f64 {
    rounds.sort_by(f64::total_cmp);
    rounds.get(rounds.len() / 2).copied().unwrap_or(0.0)
}

/// How long a run is.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Machines built per shape (each side gets a fresh one).
    pub machines: u32,
    /// Rounds per machine.
    pub rounds: u32,
    /// Steady-state steps per chunk; a round alternates chunks, ours then Linux's.
    pub steps: u32,
    /// A round takes chunks until both sides have run for this long, or one side eight times
    /// this long: cheap shapes (a single CPU, 20 ns) get rounds long enough to measure, while
    /// the expensive scans (microseconds per allocation) are not run for minutes.
    pub round: Duration,
    /// Largest burst (allocations) per round.
    pub burst: u32,
}

impl Size {
    /// The full run: 8 machines of 3 rounds of at least 2 ms and a burst of 10,000.
    pub const FULL: Size = Size {
        machines: 8,
        rounds: 3,
        steps: 2000,
        round: Duration::from_millis(2),
        burst: 10_000,
    };
    /// The short run of the test command.
    pub const SHORT: Size = Size {
        machines: 1,
        rounds: 3,
        steps: 200,
        round: Duration::from_micros(100),
        burst: 1000,
    };
}

/// Runs every shape at `cpus` CPUs, or those `only` names; the JSON report (see the module
/// docs).
pub fn run(cpus: u32, size: Size, only: &[String]) -> anyhow::Result<Value> {
    anyhow::ensure!(cpus >= 1, "--cpus must be at least 1");
    let all = shapes(cpus);
    if let Some(unknown) = only.iter().find(|n| !all.iter().any(|s| &s.name == *n)) {
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!("no shape {unknown:?}; the shapes: {}", names.join(", "));
    }
    let mut rows = Vec::new();
    let chosen = all
        .into_iter()
        .filter(|s| only.is_empty() || only.contains(&s.name));
    for shape in chosen {
        let name = &shape.name;
        // The mask the spread and the burst's room are measured on, and the report names.
        let (mask, managed) = match &shape.work {
            Work::Plain(mask) => (mask.clone(), false),
            Work::Managed(mask) => (mask.clone(), true),
            Work::Churn(masks) => (masks[0].clone(), false),
        };
        // Several machines per shape, built in alternating order, so that where the allocator
        // happened to put one side's memory does not decide the comparison.
        let (mut ours_rounds, mut linux_rounds) = (Vec::new(), Vec::new());
        let mut spreads = (0, 0);
        let mut placement = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(cpus));
        for machine in 0..size.machines {
            // Each side on the heap, behind a seeded spacer of 64 bytes to 4 KiB, so that every
            // machine of a shape has its own placement (freed machines of the same sizes would
            // otherwise come back at the same addresses). A side whose hot counters share their
            // low 12 address bits with its CPU records (4 KiB aliasing, a stall on every
            // allocation) is then one machine of several, not the whole shape or the whole run.
            let mut spacers = Vec::new();
            let new_ours = || {
                let m = VectorMatrix::new(cpus);
                Side::new(m, cpus, &shape, size.steps, size.burst).map(Box::new)
            };
            let new_linux = || {
                let m = LinuxMatrix::new(cpus);
                Side::new(m, cpus, &shape, size.steps, size.burst).map(Box::new)
            };
            let (mut ours, mut linux) = if machine % 2 == 0 {
                spacers.push(spacer(&mut placement));
                let o = new_ours()?;
                spacers.push(spacer(&mut placement));
                (o, new_linux()?)
            } else {
                spacers.push(spacer(&mut placement));
                let l = new_linux()?;
                spacers.push(spacer(&mut placement));
                (new_ours()?, l)
            };
            // A burst takes at most half of what the mask has left beside the 64 allocations
            // the steady state keeps, so it never runs dry (managed: of its reservations; churn:
            // of its first mask, as full as the others).
            let room: u32 = if managed {
                MANAGED_RESERVED * mask.weight()
            } else {
                mask.iter()
                    .filter(|c| !shape.offline.contains(c))
                    .map(|c| linux.m.available(c))
                    .sum()
            };
            let burst = size.burst.min(room.saturating_sub(64) / 2);
            for round in 0..size.rounds {
                let differ =
                    || format!("{name}: ours and Linux chose different CPUs in round {round}");
                let (mut o, mut l) = (Duration::ZERO, Duration::ZERO);
                while o.min(l) < size.round && o.max(l) < 8 * size.round {
                    o += ours.steady(size.steps)?;
                    l += linux.steady(size.steps)?;
                    anyhow::ensure!(ours.chosen == linux.chosen, differ());
                }
                ours.burst(burst)?;
                linux.burst(burst)?;
                anyhow::ensure!(ours.chosen == linux.chosen, differ());
                ours.end_round();
                linux.end_round();
            }
            // The spacers live as long as the machines (and are not optimised away).
            std::hint::black_box(&spacers);
            ours_rounds.append(&mut ours.rounds);
            linux_rounds.append(&mut linux.rounds);
            spreads = (ours.m.spread(&mask), linux.m.spread(&mask));
        }
        let (o, l) = (median(ours_rounds), median(linux_rounds));
        rows.push(json!({
            "shape": name,
            "mask": representation(&mask),
            "weight": mask.weight(),
            "managed": managed,
            "ours_ns": round2(o),
            "linux_ns": round2(l),
            "speedup": round2(l / o),
            "ours_spread": spreads.0,
            "linux_spread": spreads.1,
        }));
    }
    let speedup = |r: &Value| r["speedup"].as_f64().unwrap_or(0.0);
    let min = rows.iter().map(speedup).fold(f64::INFINITY, f64::min);
    // Null when the machine shape was not run (`--shape`).
    let machine = rows.iter().find(|r| r["shape"] == "machine").map(speedup);
    let min_shape = rows
        .iter()
        .min_by(|a, b| speedup(a).total_cmp(&speedup(b)))
        .map(|r| r["shape"].clone());
    let managed_min = rows
        .iter()
        .filter(|r| r["managed"] == true)
        .map(speedup)
        .reduce(f64::min);
    Ok(json!({
        "cpus": cpus,
        "shapes": rows,
        "min_speedup": min,
        "min_shape": min_shape,
        "managed_min_speedup": managed_min,
        "machine_speedup": machine,
    }))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Prints the report as a table.
pub fn print(r: &Value) {
    println!(
        "vector matrix vs. Linux's matrix.c at {} CPUs (ns per allocation, frees included)",
        r["cpus"]
    );
    println!(
        "{:<20}{:>8}{:>12}{:>12}{:>10}{:>8}{:>8}",
        "shape", "mask", "ours ns", "linux ns", "speedup", "spread", "linux"
    );
    for s in r["shapes"].as_array().into_iter().flatten() {
        println!(
            "{:<20}{:>8}{:>12}{:>12}{:>9}x{:>8}{:>8}",
            s["shape"].as_str().unwrap_or("?"),
            s["mask"].as_str().unwrap_or("?"),
            s["ours_ns"].to_string(),
            s["linux_ns"].to_string(),
            s["speedup"].to_string(),
            s["ours_spread"].to_string(),
            s["linux_spread"].to_string()
        );
    }
    let machine = r["machine_speedup"]
        .as_f64()
        .map_or("not run".to_string(), |m| format!("{m:.1}x"));
    let managed = r["managed_min_speedup"]
        .as_f64()
        .map_or("not run".to_string(), |m| format!("{m:.2}x"));
    println!(
        "min speedup {:.2}x ({}), managed min {managed}, machine-wide {machine}",
        r["min_speedup"].as_f64().unwrap_or(0.0),
        r["min_shape"].as_str().unwrap_or("-")
    );
}
