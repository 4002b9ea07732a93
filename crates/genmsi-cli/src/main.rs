//! The `genmsi` command: runs scenarios on the simulated machine.

use anyhow::Context;
use clap::{Parser, Subcommand};
use genmsi_sim::scenario::DEFAULT;
use indicatif::{ProgressBar, ProgressStyle};
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
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.ok())
}
