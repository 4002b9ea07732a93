//! cargo-fuzz target: the `core_api` harness of `genmsi-fuzz` (see its docs for the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| genmsi_fuzz::core_api::run(data));
