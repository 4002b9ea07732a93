//! # genmsi-sim: a deterministic simulated machine for the genmsi crates
//!
//! The simulator runs the **real library code** against simulated hardware:
//!
//! 1. [`Machine`]: CPUs with local APICs (IRR, ISR, trigger mode, end of interrupt), the
//!    interrupt bus, VT-d remapping units that read the IRTE bytes the library wrote and check
//!    them ([`genmsi_x86::IrUnit`]), an IO-APIC and an HPET whose registers hold what the
//!    library's stores wrote.
//! 2. [`devices`]: PCI functions with real configuration spaces and BARs (a multi-queue NIC
//!    with MSI-X, an NVMe-like controller with managed vectors, a 32-bit single-MSI device, an
//!    INTx device on the IO-APIC, an IMS accelerator whose messages live in queue contexts, a
//!    passthrough NIC whose guest unmasks entries over time), programmed through genmsi-pci's
//!    `pci_*` conveniences. A device raises an interrupt by reading its own message storage and
//!    writing data to address.
//! 3. [`Sim`]: a seeded event loop (same seed, same report, byte for byte) with traffic,
//!    scheduled events and fault injection (spurious writes, wrong requester ids, CPUs going
//!    offline, affinity changes, allocation storms), and a [`Report`] whose counters add up:
//!    `raised = delivered + blocked + lost + pending + merged + misdelivered + stale`. Every
//!    write carries the irq allocation it was sent for, so a write handled by another owner
//!    is counted as misdelivered (and fails the run), never as delivered.
//!
//! Scenarios are TOML files ([`scenario`]); [`scenario::DEFAULT`] is the embedded default.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

pub mod devices;
pub mod layout;
pub mod machine;
pub mod mem;
pub mod report;
pub mod run;
pub mod scenario;
pub mod snapshot;

pub use machine::Machine;
pub use report::Report;
pub use run::Sim;
pub use scenario::{Scenario, ScenarioError};

/// Parses `text` and runs it: the whole pipeline in one call.
pub fn run_text(
    name: &str,
    text: &str,
    seed: Option<u64>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, Box<dyn std::error::Error>> {
    run_scenario(name, Scenario::parse(text)?, seed, progress)
}

/// Runs a parsed (and perhaps adjusted) scenario.
pub fn run_scenario(
    name: &str,
    scenario: Scenario,
    seed: Option<u64>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, Box<dyn std::error::Error>> {
    let sim = Sim::new(name, scenario, seed)?;
    Ok(sim.run(progress))
}
