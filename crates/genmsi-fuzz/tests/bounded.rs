//! Every fuzz harness on a bounded number of seeded random inputs (the stable form of the
//! `fuzz/` targets, run by `cargo test`). Long campaigns: `scripts/fuzz`.

use genmsi_fuzz::{bounded, core_api, pci_config, sim_scenario, vmm_msix};
use std::sync::atomic::{AtomicU32, Ordering};

#[test]
fn core_api_against_the_model() {
    bounded(core_api::run, 20_000, 512, 1);
}

#[test]
fn pci_config_spaces() {
    bounded(pci_config::run, 5_000, 4200, 2);
}

#[test]
fn vmm_guest_msix_sequences() {
    bounded(vmm_msix::run, 5_000, 512, 3);
}

static RAN: AtomicU32 = AtomicU32::new(0);

#[test]
fn sim_scenarios() {
    bounded(
        |data| {
            if sim_scenario::check(data).is_some() {
                RAN.fetch_add(1, Ordering::Relaxed);
            }
        },
        1_000,
        256,
        4,
    );
    // Most random scenarios are refused by the scenario check; enough must run for the
    // harness to mean something.
    assert!(
        RAN.load(Ordering::Relaxed) >= 100,
        "{} ran",
        RAN.load(Ordering::Relaxed)
    );
}
