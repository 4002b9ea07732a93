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

/// Found by the model test in CI: an ordinary irq whose only affinity CPU went offline while
/// it was inactive failed to activate (`NoVectors`). Linux (`assign_irq_vector_any_locked`)
/// falls back to any online CPU, as the model expects. The calls, decoded: allocate indices
/// 1.. of device 0, set index 4's affinity to CPU 0, deactivate it, allocate index 0, take
/// CPU 0 offline, activate index 4.
#[test]
fn activation_falls_back_to_online_cpus_when_the_affinity_has_none() {
    let calls: [[u8; 7]; 6] = [
        [40, 118, 98, 39, 0, 1, 40],
        [138, 157, 216, 137, 0, 4, 209],
        [119, 98, 39, 118, 0, 4, 0],
        [0; 7],
        [197, 78, 236, 196, 0, 0, 0],
        [99, 39, 118, 98, 0, 4, 0],
    ];
    core_api::run_chunks(false, calls.iter().map(|c| &c[..]));
}
