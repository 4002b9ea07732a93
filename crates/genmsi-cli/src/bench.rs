//! `genmsi bench ...`: the benchmarks.

use crate::{bench_deliver, bench_matrix, bench_scale};
use clap::{Args, Subcommand};
use genmsi_vmm::bench::{self, GrowConfig, GrowReport};
use std::process::ExitCode;

/// `genmsi bench <which>`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// A guest unmasks a passed-through function's MSI-X entries one by one while the enabled
    /// ones fire: host vectors on demand vs. disable/free/re-enable (older VFIO).
    VfioGrow {
        /// MSI-X entries the guest unmasks (1..=2048).
        #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=2048))]
        vectors: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A real guest on KVM unmasks a function's MSI-X entries one by one while the device fires
    /// the enabled ones through irqfds: GSI routes on demand vs. eager vs. disable/re-enable.
    KvmGrow {
        /// MSI-X entries of the function (1..=2048).
        #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=2048))]
        vectors: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The vector matrix against the Linux scan on every mask shape (machine, node, two nodes,
    /// single CPU, every 2nd / 3rd CPU, a random half, the machine with 1% of it offline).
    Matrix {
        /// CPUs of the machine (1..=65536).
        #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=65536))]
        cpus: u32,
        /// The short run of the test command (seconds).
        #[arg(long)]
        short: bool,
        /// Only these shapes (by name, as the report names them; repeatable).
        #[arg(long = "shape")]
        shapes: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Heap bytes per irq on the x86 + VT-d stack with CPUs offline and node and irregular
    /// masks mixed, beside Linux's layout for the same irqs (modelled).
    Scale {
        /// CPUs of the machine (2..=65536).
        #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(2..=65536))]
        cpus: u32,
        /// Irqs to allocate and activate (1..=1000000); by default 100,000, or 150 per online
        /// CPU on a machine too small for that.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        irqs: Option<u32>,
        /// CPUs to take offline first.
        #[arg(long, default_value_t = 0)]
        offline: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The delivery path (remapping, vector table, irq table, handler) on T threads at once, one
    /// irq per thread on its own CPU: nanoseconds per irq and scaling from 1 to T threads.
    Deliver {
        /// Threads (1..=256).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
        threads: u32,
        /// The short run of the test command (seconds).
        #[arg(long)]
        short: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the chosen benchmark.
pub fn run(args: BenchArgs) -> ExitCode {
    match args.which {
        Which::KvmGrow { vectors, json } => crate::kvm_grow::run(vectors, json),
        Which::VfioGrow { vectors, json } => match bench::vfio_grow(vectors) {
            Ok(report) if json => match serde_json::to_string_pretty(&report) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            },
            Ok(report) => {
                print_grow(&report);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Which::Matrix {
            cpus,
            short,
            shapes,
            json,
        } => {
            let size = if short {
                bench_matrix::Size::SHORT
            } else {
                bench_matrix::Size::FULL
            };
            report(
                bench_matrix::run(cpus, size, &shapes),
                json,
                bench_matrix::print,
            )
        }
        Which::Scale {
            cpus,
            irqs,
            offline,
            json,
        } => {
            let irqs = irqs.unwrap_or_else(|| (cpus.saturating_sub(offline) * 150).min(100_000));
            report(
                bench_scale::run(cpus, irqs, offline),
                json,
                bench_scale::print,
            )
        }
        Which::Deliver {
            threads,
            short,
            json,
        } => {
            let size = if short {
                bench_deliver::Size::SHORT
            } else {
                bench_deliver::Size::FULL
            };
            report(
                bench_deliver::run(threads, size),
                json,
                bench_deliver::print,
            )
        }
    }
}

/// Prints a JSON report as JSON or through `text`.
fn report(
    r: anyhow::Result<serde_json::Value>,
    json: bool,
    text: fn(&serde_json::Value),
) -> ExitCode {
    match r {
        Ok(v) if json => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            text(&v);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("genmsi bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn fail(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("genmsi bench: {e}");
    ExitCode::FAILURE
}

fn print_grow(r: &GrowReport) {
    let config = GrowConfig::new(r.vectors);
    let (a, b) = (&r.on_demand, &r.baseline);
    println!(
        "vfio-grow: a guest unmasks {} MSI-X entries one by one; between unmasks every enabled \
         entry fires once",
        r.vectors
    );
    println!(
        "host: {} CPUs, x86 vector domain{}; while host MSI-X is disabled the device fires once \
         per {} host vector operations",
        config.machine.cpus,
        if config.machine.irtes.is_some() {
            " behind VT-d remapping"
        } else {
            ""
        },
        config.ops_per_round
    );
    println!();
    println!("{:<28}{:>16}{:>16}", "", "on-demand", "baseline");
    println!("{:<28}{:>16}{:>16}", "host vector operations", a.ops, b.ops);
    println!(
        "{:<28}{:>16.1}{:>16.1}",
        "host vectors per unmask", a.touched_per_unmask, b.touched_per_unmask
    );
    println!(
        "{:<28}{:>16}{:>16}",
        "interrupts raised", a.raised, b.raised
    );
    println!("{:<28}{:>16}{:>16}", "interrupts lost", a.lost, b.lost);
    println!("{:<28}{:>16.4}{:>16.4}", "seconds", a.seconds, b.seconds);
    println!(
        "{:<28}{:>16.4}{:>16.4}",
        "host seconds", a.host_seconds, b.host_seconds
    );
    println!();
    println!(
        "speedup (baseline seconds / on-demand seconds): {:.1}x",
        r.speedup
    );
    println!(
        "host speedup (host vector operations only, traffic excluded): {:.1}x",
        r.host_speedup
    );
}
