//! `genmsi bench kvm-grow`: the three strategies on real KVM, with a real guest counting.

use genmsi_kvm::{kvm_grow, KvmGrowError, KvmGrowReport, StrategyReport};
use std::process::ExitCode;

/// Runs kvm-grow with `vectors` entries; prints the table or JSON, then fails if a figure
/// breaks what its strategy promises ([`KvmGrowReport::violations`]: on demand and eager lose
/// nothing and over-count nothing, the baseline loses exactly its disabled windows' fires,
/// nothing stays in the IRR, no vector stalls, nothing arrives elsewhere). When `/dev/kvm`
/// cannot be opened it says so in one line and succeeds with `"kvm": false`.
pub fn run(vectors: u32, json: bool) -> ExitCode {
    let report = match kvm_grow(vectors) {
        Ok(report) => report,
        Err(KvmGrowError::NoKvm { what, errno }) => {
            eprintln!("genmsi bench kvm-grow: skipped: {what} failed (errno {errno})");
            KvmGrowReport::without_kvm(vectors)
        }
        Err(KvmGrowError::Failed(strategy, e)) => {
            let strategy = strategy.unwrap_or("setup");
            eprintln!("genmsi bench kvm-grow: {strategy}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("genmsi bench kvm-grow: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_table(&report);
    }
    let violations = report.violations();
    for v in &violations {
        eprintln!("genmsi bench kvm-grow: {v}");
    }
    match violations.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

fn print_table(r: &KvmGrowReport) {
    let (Some(a), Some(b), Some(c)) = (&r.on_demand, &r.eager, &r.baseline) else {
        println!("kvm-grow: not run (/dev/kvm cannot be opened)");
        return;
    };
    println!(
        "kvm-grow: a real guest on KVM unmasks {} MSI-X entries one by one while the device \
         fires the enabled ones through irqfds; the guest counts every arrival",
        r.vectors
    );
    println!();
    println!(
        "{:<32}{:>14}{:>14}{:>14}",
        "", "on-demand", "eager", "baseline"
    );
    let row = |name: &str, f: &dyn Fn(&StrategyReport) -> String| {
        println!("{name:<32}{:>14}{:>14}{:>14}", f(a), f(b), f(c));
    };
    row("GSI routes, most held", &|s| s.routes_max.to_string());
    row("GSI routes at the end", &|s| s.routes_end.to_string());
    row("entries unmasked, most", &|s| s.unmasked_max.to_string());
    row("KVM_SET_GSI_ROUTING calls", &|s| {
        s.routing_calls.to_string()
    });
    row("  their time, ms", &|s| {
        format!("{:.1}", s.routing_seconds * 1e3)
    });
    row("host time for unmasks, ms", &|s| {
        format!("{:.1}", s.host_seconds * 1e3)
    });
    row("  per unmask, us", &|s| {
        format!("{:.1}", s.host_us_per_unmask)
    });
    row("interrupts fired (device)", &|s| s.fired.to_string());
    row("interrupts counted (guest)", &|s| s.counted.to_string());
    row("lost = fired - counted", &|s| s.lost.to_string());
    row("  fired while disabled", &|s| {
        s.dropped_while_disabled.to_string()
    });
    row("  left in the guest's IRR", &|s| s.held_in_irr.to_string());
    row("arrivals on other vectors", &|s| {
        s.other_arrivals.to_string()
    });
    row("vectors with a fire uncounted", &|s| {
        s.vectors_stalled.to_string()
    });
    row("wall time, s", &|s| format!("{:.2}", s.seconds));
}
