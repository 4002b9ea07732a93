//! The vector matrix against the Linux scan, on the same seeded allocate/free workload, at
//! 64, 1,024 and 8,192 CPUs with machine-wide, node-sized and single-CPU masks.
//!
//! `cargo bench -p genmsi-x86` runs the criterion groups, then prints a side-by-side table of
//! nanoseconds per operation and the ratio reference / ours, measured in the same run.

use criterion::{black_box, BenchmarkId, Criterion};
use genmsi::CpuMask;
use genmsi_x86::reference::LinuxMatrix;
use genmsi_x86::{MatrixError, Vector, VectorMatrix};
use std::time::{Duration, Instant};

trait Matrix {
    fn alloc(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError>;
    fn free(&mut self, cpu: u32, v: Vector);
}

impl Matrix for VectorMatrix {
    fn alloc(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError> {
        VectorMatrix::alloc(self, mask, false)
    }
    fn free(&mut self, cpu: u32, v: Vector) {
        VectorMatrix::free(self, cpu, v, false).unwrap()
    }
}

impl Matrix for LinuxMatrix {
    fn alloc(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError> {
        LinuxMatrix::alloc(self, mask, false)
    }
    fn free(&mut self, cpu: u32, v: Vector) {
        LinuxMatrix::free(self, cpu, v, false).unwrap()
    }
}

/// A machine of `cpus` CPUs filled to about half its vectors, and the seeded stream of
/// operations: allocate on `mask`, free a random earlier allocation.
struct Workload<M: Matrix> {
    m: M,
    live: Vec<(u32, Vector)>,
    seed: u64,
}

impl<M: Matrix> Workload<M> {
    fn new(m: M, cpus: u32) -> Self {
        let mut w = Workload {
            m,
            live: Vec::new(),
            seed: 0x2545_F491_4F6C_DD1D,
        };
        let all = CpuMask::first_n(cpus);
        for _ in 0..cpus * 100 {
            let t = w.m.alloc(&all).unwrap();
            w.live.push(t);
        }
        w
    }

    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    /// One allocation on `mask` and one free: the steady state of a busy machine.
    fn step(&mut self, mask: &CpuMask) {
        let t = self.m.alloc(mask).unwrap();
        self.live.push(t);
        let i = (self.next() % self.live.len() as u64) as usize;
        let (cpu, v) = self.live.swap_remove(i);
        self.m.free(cpu, v);
    }
}

fn masks(cpus: u32) -> [(&'static str, CpuMask); 3] {
    [
        ("machine", CpuMask::first_n(cpus)),
        ("node", CpuMask::range(0, cpus.min(64) - 1)),
        ("single", CpuMask::single(cpus / 2)),
    ]
}

const SIZES: [u32; 3] = [64, 1024, 8192];

fn criterion_groups(c: &mut Criterion) {
    for cpus in SIZES {
        let mut g = c.benchmark_group(format!("matrix-{cpus}-cpus"));
        g.measurement_time(Duration::from_millis(800))
            .warm_up_time(Duration::from_millis(200))
            .sample_size(20);
        for (name, mask) in masks(cpus) {
            let mut ours = Workload::new(VectorMatrix::new(cpus), cpus);
            g.bench_function(BenchmarkId::new("genmsi", name), |b| {
                b.iter(|| ours.step(black_box(&mask)))
            });
            let mut linux = Workload::new(LinuxMatrix::new(cpus), cpus);
            g.bench_function(BenchmarkId::new("linux-scan", name), |b| {
                b.iter(|| linux.step(black_box(&mask)))
            });
        }
        g.finish();
    }
}

/// Nanoseconds per step, ours and the reference interleaved in rounds so machine noise hits both.
fn side_by_side(cpus: u32, mask: &CpuMask) -> (f64, f64, u32, u32) {
    let mut ours = Workload::new(VectorMatrix::new(cpus), cpus);
    let mut linux = Workload::new(LinuxMatrix::new(cpus), cpus);
    let steps = if cpus >= 8192 && mask.weight() > 1000 {
        200
    } else {
        4000
    };
    let (mut t_ours, mut t_linux) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..steps {
            ours.step(mask);
        }
        t_ours += t.elapsed();
        let t = Instant::now();
        for _ in 0..steps {
            linux.step(mask);
        }
        t_linux += t.elapsed();
    }
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(5 * steps);
    (
        per(t_ours),
        per(t_linux),
        ours.m.spread(mask),
        linux.m.spread(mask),
    )
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    criterion_groups(&mut c);
    println!(
        "\n{:>6} {:>8} {:>12} {:>12} {:>8} {:>7} {:>7}",
        "cpus", "mask", "genmsi ns", "linux ns", "ratio", "spread", "linux"
    );
    for cpus in SIZES {
        for (name, mask) in masks(cpus) {
            let (o, l, so, sl) = side_by_side(cpus, &mask);
            println!(
                "{cpus:>6} {name:>8} {o:>12.1} {l:>12.1} {:>7.1}x {so:>7} {sl:>7}",
                l / o
            );
        }
    }
}
