//! The `genmsi` command: runs scenarios on the simulated machine.

mod bench;
mod bench_deliver;
mod bench_matrix;
mod bench_scale;
mod bench_stack;

use anyhow::Context;
use clap::{Parser, Subcommand};
use genmsi_sim::scenario::DEFAULT;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "genmsi",
    version,
    about = "Generic message-signalled interrupts on a simulated x86 machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario (the embedded default scenario without FILE). Exit status 0 when nothing
    /// was lost and nothing unexpected happened, 1 otherwise.
    Run {
        /// A scenario file (TOML); see scenarios/ for examples.
        file: Option<PathBuf>,
        /// Seed of the run (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Print one JSON object on stdout instead of the text report.
        #[arg(long)]
        json: bool,
    },
    /// Run a benchmark.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run {
        file: None,
        seed: None,
        json: false,
    });
    match command {
        Command::Run { file, seed, json } => match run(file, seed, json) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("genmsi: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Bench(args) => bench::run(args),
    }
}

/// A progress bar on stderr that appears only once a run has taken more than a second.
struct Progress {
    start: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn update(&mut self, done: u64, total: u64) {
        if self.bar.is_none() && self.start.elapsed() > Duration::from_secs(1) {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{elapsed:>4} [{bar:40}] {pos}/{len} steps")
                    .expect("template")
                    .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
}

fn run(file: Option<PathBuf>, seed: Option<u64>, json: bool) -> anyhow::Result<bool> {
    let (name, text) = match &file {
        Some(path) => (
            path.file_stem()
                .map_or("scenario".into(), |s| s.to_string_lossy().into_owned()),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => ("default".to_string(), DEFAULT.to_string()),
    };
    let mut progress = Progress {
        start: Instant::now(),
        bar: None,
    };
    let shown = file
        .as_ref()
        .map_or("the default scenario".into(), |p| p.display().to_string());
    let report = genmsi_sim::run_text(&name, &text, seed, &mut |d, t| progress.update(d, t))
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    if let Some(bar) = progress.bar {
        bar.finish_and_clear();
    }
    // The default run ends with the case that motivated the design: a guest unmasking a
    // passed-through function's entries, with host vectors on demand and the old
    // disable/re-enable strategy, on the same workload.
    let vmm = match file {
        None => Some(genmsi_vmm::bench::vfio_grow(VMM_VECTORS)?),
        Some(_) => None,
    };
    let vmm_ok = vmm.is_none_or(|v| v.on_demand.lost == 0);
    let mut out = String::new();
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(v) = &vmm {
            // Counts only: wall times would make two runs of the same seed differ.
            value["vmm"] = serde_json::json!({
                "vectors": v.vectors,
                "on_demand": { "ops": v.on_demand.ops, "lost": v.on_demand.lost, "raised": v.on_demand.raised },
                "baseline": { "ops": v.baseline.ops, "lost": v.baseline.lost, "raised": v.baseline.raised },
            });
        }
        writeln!(out, "{value}")?;
    } else {
        out.push_str(&report.text());
        if let Some(v) = &vmm {
            writeln!(
                out,
                "\nVMM: a guest unmasks {} MSI-X entries of a passed-through NIC one by one while the enabled ones fire", v.vectors)?;
            writeln!(out, "  {:<28} {:>12} {:>12}", "", "on-demand", "baseline")?;
            writeln!(
                out,
                "  {:<28} {:>12} {:>12}",
                "host vector operations", v.on_demand.ops, v.baseline.ops
            )?;
            writeln!(
                out,
                "  {:<28} {:>12.1} {:>12.1}",
                "host vectors per unmask",
                v.on_demand.touched_per_unmask,
                v.baseline.touched_per_unmask
            )?;
            writeln!(
                out,
                "  {:<28} {:>12} {:>12}",
                "interrupts raised", v.on_demand.raised, v.baseline.raised
            )?;
            writeln!(
                out,
                "  {:<28} {:>12} {:>12}",
                "interrupts lost", v.on_demand.lost, v.baseline.lost
            )?;
            writeln!(
                out,
                "  (`genmsi bench vfio-grow --vectors N` runs it alone, with timings)"
            )?;
        }
    }
    // A closed pipe (`genmsi run | head`) is the reader's choice, not a failure of the run.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(report.ok() && vmm_ok)
}

/// Entries the default run's VMM comparison unmasks.
const VMM_VECTORS: u32 = 64;
