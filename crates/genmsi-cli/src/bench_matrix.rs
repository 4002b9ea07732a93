//! `genmsi bench matrix`: the vector matrix against the Linux scan on every mask shape a user
//! has, in one process, on the same seeded workload.
//!
//! For each shape both allocators get a fresh machine filled to about half its vectors (a
//! seeded quarter of the first fill freed again), the same CPUs offline, and then the same
//! operations: rounds of steady-state steps (allocate on the mask, free the allocation made 64
//! steps earlier) and a burst of up to 10,000 allocations on the mask, freed again.
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
use genmsi_x86::reference::LinuxMatrix;
use genmsi_x86::{MatrixError, Vector, VectorMatrix};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The operations both allocators offer.
trait Matrix {
    fn alloc(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError>;
    fn free(&mut self, cpu: u32, v: Vector) -> Result<(), MatrixError>;
    fn offline(&mut self, cpu: u32) -> Result<(), MatrixError>;
}

macro_rules! impl_matrix {
    ($t:ty) => {
        impl Matrix for $t {
            fn alloc(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError> {
                <$t>::alloc(self, mask, false)
            }
            fn free(&mut self, cpu: u32, v: Vector) -> Result<(), MatrixError> {
                <$t>::free(self, cpu, v, false)
            }
            fn offline(&mut self, cpu: u32) -> Result<(), MatrixError> {
                <$t>::offline(self, cpu)
            }
        }
    };
}
impl_matrix!(VectorMatrix);
impl_matrix!(LinuxMatrix);

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

/// The mask shapes, by name, on a machine of `cpus` CPUs, with the CPUs each takes offline.
pub fn shapes(cpus: u32) -> Vec<(&'static str, CpuMask, Vec<u32>)> {
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
    vec![
        ("machine", CpuMask::first_n(cpus), vec![]),
        ("node", CpuMask::range(first, first + node - 1), vec![]),
        (
            "two-nodes",
            CpuMask::range(first.saturating_sub(node), (first + node - 1).min(cpus - 1)),
            vec![],
        ),
        ("single", CpuMask::single(cpus / 2), vec![]),
        (
            "every-2nd",
            CpuMask::from_cpus((0..cpus).step_by(2)),
            vec![],
        ),
        (
            "every-3rd",
            CpuMask::from_cpus((0..cpus).step_by(3)),
            vec![],
        ),
        ("random-half", half, vec![]),
        // A CPU and its SMT sibling (Linux numbers siblings half the machine apart), a few
        // CPUs scattered over the machine, the first CPU of every node (a housekeeping CPU
        // per node), and a node's cores with their siblings: small, sparse or split irregular
        // masks.
        (
            "smt-pair",
            CpuMask::from_cpus([first, first + cpus / 2]),
            vec![],
        ),
        (
            "scattered-4",
            CpuMask::from_cpus((0..4).map(|i| (2 * i + 1) * cpus / 8)),
            vec![],
        ),
        (
            "node-firsts",
            CpuMask::from_cpus((0..cpus).step_by(node as usize)),
            vec![],
        ),
        (
            "smt-node",
            CpuMask::from_cpus((first / 2..first / 2 + node / 2).flat_map(|c| [c, c + cpus / 2])),
            vec![],
        ),
        ("machine-1%-offline", CpuMask::first_n(cpus), offline),
    ]
}

/// One allocator under the workload.
struct Side<M: Matrix> {
    m: M,
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
    /// at random), then `offline` taken offline; buffers for chunks of `steps` and bursts of
    /// `burst`.
    fn new(
        mut m: M,
        cpus: u32,
        offline: &[u32],
        steps: u32,
        burst: u32,
    ) -> Result<Self, MatrixError> {
        // The fill goes CPU by CPU (the same state for both, and cheap for the scan too).
        let mut live = Vec::new();
        for i in 0..cpus * 130 {
            live.push(m.alloc(&CpuMask::single(i % cpus))?);
        }
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..cpus * 30 {
            let (cpu, v) = live.swap_remove((rng.next() % live.len() as u64) as usize);
            m.free(cpu, v)?;
        }
        for &cpu in offline {
            m.offline(cpu)?;
        }
        Ok(Side {
            m,
            recent: VecDeque::with_capacity(65),
            chosen: Vec::with_capacity(steps.max(burst) as usize),
            got: Vec::with_capacity(burst as usize),
            time: Duration::ZERO,
            allocs: 0,
            rounds: Vec::new(),
        })
    }

    /// `steps` steady-state steps (into `chosen`, cleared first); returns their time.
    fn steady(&mut self, mask: &CpuMask, steps: u32) -> anyhow::Result<Duration> {
        self.chosen.clear();
        let start = Instant::now();
        for _ in 0..steps {
            let t = self.m.alloc(mask)?;
            self.chosen.push(t.0);
            self.recent.push_back(t);
            if self.recent.len() > 64 {
                let (cpu, v) = self.recent.pop_front().expect("more than 64");
                self.m.free(cpu, v)?;
            }
        }
        Ok(self.record(start, steps))
    }

    /// A burst of `n` allocations on `mask` (into `chosen`, cleared first), then their frees.
    fn burst(&mut self, mask: &CpuMask, n: u32) -> anyhow::Result<()> {
        self.chosen.clear();
        self.got.clear();
        let start = Instant::now();
        for _ in 0..n {
            let t = self.m.alloc(mask)?;
            self.chosen.push(t.0);
            self.got.push(t);
        }
        for &(cpu, v) in &self.got {
            self.m.free(cpu, v)?;
        }
        self.record(start, n);
        Ok(())
    }

    /// Adds the time since `start` and its `allocs` allocations to the round; that time.
    fn record(&mut self, start: Instant, allocs: u32) -> Duration {
        let took = start.elapsed();
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
    if let Some(unknown) = only.iter().find(|n| !all.iter().any(|s| s.0 == n.as_str())) {
        let names: Vec<&str> = all.iter().map(|s| s.0).collect();
        anyhow::bail!("no shape {unknown:?}; the shapes: {}", names.join(", "));
    }
    let mut rows = Vec::new();
    let chosen = all
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.0));
    for (name, mask, offline) in chosen {
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
                Side::new(m, cpus, &offline, size.steps, size.burst).map(Box::new)
            };
            let new_linux = || {
                let m = LinuxMatrix::new(cpus);
                Side::new(m, cpus, &offline, size.steps, size.burst).map(Box::new)
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
            // the steady state keeps, so it never runs dry.
            let room: u32 = mask
                .iter()
                .filter(|c| !offline.contains(c))
                .map(|c| linux.m.available(c))
                .sum();
            let burst = size.burst.min(room.saturating_sub(64) / 2);
            for round in 0..size.rounds {
                let differ =
                    || format!("{name}: ours and Linux chose different CPUs in round {round}");
                let (mut o, mut l) = (Duration::ZERO, Duration::ZERO);
                while o.min(l) < size.round && o.max(l) < 8 * size.round {
                    o += ours.steady(&mask, size.steps)?;
                    l += linux.steady(&mask, size.steps)?;
                    anyhow::ensure!(ours.chosen == linux.chosen, differ());
                }
                ours.burst(&mask, burst)?;
                linux.burst(&mask, burst)?;
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
    Ok(json!({
        "cpus": cpus,
        "shapes": rows,
        "min_speedup": min,
        "machine_speedup": machine,
    }))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Prints the report as a table.
pub fn print(r: &Value) {
    println!(
        "vector matrix vs. the Linux scan at {} CPUs (ns per allocation, frees included)",
        r["cpus"]
    );
    println!(
        "{:<20}{:>12}{:>12}{:>10}{:>8}{:>8}",
        "shape", "ours ns", "linux ns", "speedup", "spread", "linux"
    );
    for s in r["shapes"].as_array().into_iter().flatten() {
        println!(
            "{:<20}{:>12}{:>12}{:>9}x{:>8}{:>8}",
            s["shape"].as_str().unwrap_or("?"),
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
    println!(
        "min speedup {:.2}x, machine-wide {machine}",
        r["min_speedup"].as_f64().unwrap_or(0.0)
    );
}
