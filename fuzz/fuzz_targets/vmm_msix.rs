//! cargo-fuzz target: the `vmm_msix` harness of `genmsi-fuzz` (see its docs for the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| genmsi_fuzz::vmm_msix::run(data));
