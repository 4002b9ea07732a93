//! cargo-fuzz target: the `sim_scenario` harness of `genmsi-fuzz` (see its docs for the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| genmsi_fuzz::sim_scenario::run(data));
