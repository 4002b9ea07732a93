//! The `genmsi` command: runs scenarios on the simulated machine.

mod bench;
mod bench_deliver;
mod bench_matrix;
mod bench_scale;
mod bench_stack;
mod host;
mod html;
mod kvm_grow;
mod plan;

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
        /// Run with the drivers' quiesce off (`quiesce = false`), whatever the scenario says:
        /// frees race the writes still in flight.
        #[arg(long, conflicts_with = "quiesce")]
        no_quiesce: bool,
        /// Run with the drivers' quiesce on (`quiesce = true`), whatever the scenario says.
        #[arg(long)]
        quiesce: bool,
        /// Print one JSON object on stdout instead of the text report.
        #[arg(long)]
        json: bool,
        /// Also write the report as one self-contained HTML page to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// With --html: add the measured figures of a saved `genmsi bench kvm-grow --json`.
        #[arg(long, value_name = "FILE", requires = "html")]
        kvm: Option<PathBuf>,
    },
    /// Render a saved `genmsi run --json` report.
    Report {
        /// The saved JSON report.
        run: PathBuf,
        /// Write the report as one self-contained HTML page to this file.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        /// Add the measured figures of a saved `genmsi bench kvm-grow --json`.
        #[arg(long, value_name = "FILE")]
        kvm: Option<PathBuf>,
    },
    /// Run a benchmark.
    Bench(bench::BenchArgs),
    /// Read the interrupt layout of the Linux machine this runs on (or of a capture of its
    /// files): per-CPU vector use and headroom, devices and their vectors, and what could
    /// not be read.
    Host {
        /// Read the files under this directory instead of `/` (a capture).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Print one JSON object instead of the text report.
        #[arg(long)]
        json: bool,
        /// Also write one self-contained HTML page to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also write a scenario that `genmsi run` replays on the simulated machine.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
    },
    /// How many more passed-through functions fit on a host (read live, from a capture, or
    /// from a saved `genmsi host --json`), eager vs. on demand, run on the simulated host with
    /// the real library: where host vectors run out, where one VM's KVM routing table does.
    Plan {
        /// Read the files under this directory instead of `/` (a capture).
        #[arg(long, value_name = "DIR", conflicts_with = "host")]
        root: Option<PathBuf>,
        /// A saved `genmsi host --json`.
        #[arg(long, value_name = "FILE")]
        host: Option<PathBuf>,
        /// MSI-X entries per function (1..=2048).
        #[arg(long, default_value_t = 257, value_parser = clap::value_parser!(u32).range(1..=2048))]
        vectors: u32,
        /// Fraction of the entries a guest unmasks (0 < F <= 1).
        #[arg(long, default_value_t = 0.125)]
        unmask: f64,
        /// Functions to try at most.
        #[arg(long, default_value_t = plan::MAX_FUNCTIONS, value_parser = clap::value_parser!(u32).range(1..=plan::MAX_FUNCTIONS as i64))]
        functions: u32,
        /// Print one JSON object instead of the text report.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run {
        file: None,
        seed: None,
        no_quiesce: false,
        quiesce: false,
        json: false,
        html: None,
        kvm: None,
    });
    let result = match command {
        Command::Run {
            file,
            seed,
            no_quiesce,
            quiesce,
            json,
            html,
            kvm,
        } => {
            let quiesce = match (quiesce, no_quiesce) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            run(file, seed, quiesce, json, html.map(|h| (h, kvm)))
        }
        Command::Report { run, html, kvm } => report(&run, &html, kvm.as_deref()).map(|()| true),
        Command::Bench(args) => return bench::run(args),
        Command::Host {
            root,
            json,
            html,
            scenario,
        } => host(root, json, html, scenario).map(|()| true),
        Command::Plan {
            root,
            host,
            vectors,
            unmask,
            functions,
            json,
        } => plan(
            root,
            host,
            plan::PlanConfig {
                vectors,
                unmask,
                functions,
            },
            json,
        )
        .map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("genmsi: {e:#}");
            ExitCode::from(2)
        }
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

fn run(
    file: Option<PathBuf>,
    seed: Option<u64>,
    quiesce: Option<bool>,
    json: bool,
    html: Option<(PathBuf, Option<PathBuf>)>,
) -> anyhow::Result<bool> {
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
    let mut scenario =
        genmsi_sim::Scenario::parse(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    if let Some(q) = quiesce {
        scenario.machine.quiesce = q;
    }
    let report = genmsi_sim::run_scenario(&name, scenario, seed, &mut |d, t| progress.update(d, t))
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
    let vmm_ok = vmm.as_ref().is_none_or(|v| v.on_demand.lost == 0);
    let mut value = serde_json::to_value(&report)?;
    if let Some(v) = &vmm {
        value["vmm"] = vmm_json(v);
    }
    if let Some((path, kvm)) = html {
        write_html(&value, &path, kvm.as_deref())?;
    }
    let mut out = String::new();
    if json {
        writeln!(out, "{value}")?;
    } else {
        out.push_str(&report.text());
        if let Some(v) = &vmm {
            vmm_text(&mut out, v)?;
        }
    }
    // A closed pipe (`genmsi run | head`) is the reader's choice, not a failure of the run.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(report.ok() && vmm_ok)
}

/// What the VMM comparison's modelled figures depend on.
fn vmm_model(v: &genmsi_vmm::bench::GrowReport) -> String {
    let config = genmsi_vmm::bench::GrowConfig::new(v.vectors);
    format!(
        "genmsi-vmm's in-process host model: while host MSI-X is disabled the device fires \
         once per {} host vector operations, and interrupts fired then are lost",
        config.ops_per_round
    )
}

/// The VMM comparison in the JSON report: counts only (wall times would make two runs of the
/// same seed differ).
fn vmm_json(v: &genmsi_vmm::bench::GrowReport) -> serde_json::Value {
    let mode = |m: &genmsi_vmm::bench::ModeReport| {
        serde_json::json!({
            "ops": m.ops,
            "touched_per_unmask": m.touched_per_unmask,
            "raised": m.raised,
            "lost": m.lost,
        })
    };
    serde_json::json!({
        "vectors": v.vectors,
        "model": vmm_model(v),
        "modelled": ["raised", "lost"],
        "on_demand": mode(&v.on_demand),
        "baseline": mode(&v.baseline),
    })
}

fn vmm_text(out: &mut String, v: &genmsi_vmm::bench::GrowReport) -> std::fmt::Result {
    writeln!(
        out,
        "\nVMM: a guest unmasks {} MSI-X entries of a passed-through NIC one by one while the enabled ones fire",
        v.vectors
    )?;
    writeln!(out, "  {:<34} {:>12} {:>12}", "", "on-demand", "baseline")?;
    let (a, b) = (&v.on_demand, &v.baseline);
    let rows = [
        (
            "host vector operations",
            a.ops.to_string(),
            b.ops.to_string(),
        ),
        (
            "host vectors per unmask",
            format!("{:.1}", a.touched_per_unmask),
            format!("{:.1}", b.touched_per_unmask),
        ),
        (
            "interrupts raised (modelled)",
            a.raised.to_string(),
            b.raised.to_string(),
        ),
        (
            "interrupts lost (modelled)",
            a.lost.to_string(),
            b.lost.to_string(),
        ),
    ];
    for (name, x, y) in rows {
        writeln!(out, "  {name:<34} {x:>12} {y:>12}")?;
    }
    writeln!(out, "  modelled: {}", vmm_model(v))?;
    writeln!(
        out,
        "  (`genmsi bench vfio-grow --vectors N` runs it alone, with timings)"
    )
}

fn read_json(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a JSON report", path.display()))
}

fn write_html(
    run: &serde_json::Value,
    path: &std::path::Path,
    kvm: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let kvm = kvm.map(read_json).transpose()?;
    let page = html::render(run, kvm.as_ref());
    std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))
}

/// `genmsi report RUN.json --html FILE`: the page of a saved run.
fn report(
    run: &std::path::Path,
    html: &std::path::Path,
    kvm: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let value = read_json(run)?;
    if !value["raised"].is_u64() || !value["timeline"].is_object() {
        anyhow::bail!(
            "{}: not a `genmsi run --json` report (no `raised` or `timeline`)",
            run.display()
        );
    }
    write_html(&value, html, kvm)
}

/// `genmsi host`.
fn host(
    root: Option<PathBuf>,
    json: bool,
    html: Option<PathBuf>,
    scenario: Option<PathBuf>,
) -> anyhow::Result<()> {
    let root = root.unwrap_or_else(|| PathBuf::from("/"));
    if !root.is_dir() {
        anyhow::bail!("{}: not a directory", root.display());
    }
    let h = host::read(&root);
    if let Some(path) = &html {
        let page = html::render_host(&serde_json::to_value(&h)?, &h.vector_map());
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &scenario {
        std::fs::write(path, h.scenario())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let out = if json {
        format!("{}\n", serde_json::to_string(&h)?)
    } else {
        h.text()
    };
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `genmsi plan`.
fn plan(
    root: Option<PathBuf>,
    saved: Option<PathBuf>,
    config: plan::PlanConfig,
    json: bool,
) -> anyhow::Result<()> {
    if !(config.unmask > 0.0 && config.unmask <= 1.0) {
        anyhow::bail!(
            "--unmask {}: a fraction above 0 and at most 1",
            config.unmask
        );
    }
    let h: host::HostReport = match saved {
        Some(path) => serde_json::from_value(read_json(&path)?)
            .with_context(|| format!("{}: not a `genmsi host --json` report", path.display()))?,
        None => {
            let root = root.unwrap_or_else(|| PathBuf::from("/"));
            if !root.is_dir() {
                anyhow::bail!("{}: not a directory", root.display());
            }
            host::read(&root)
        }
    };
    if h.online.is_empty() || h.vectors.is_empty() {
        anyhow::bail!("{}: no online CPU or no vector table was read", h.source);
    }
    let p = plan::plan(&h, config)?;
    let out = if json {
        format!("{}\n", serde_json::to_string(&p)?)
    } else {
        p.text()
    };
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Entries the default run's VMM comparison unmasks.
const VMM_VECTORS: u32 = 64;
