//! cargo-fuzz target: the `pci_config` harness of `genmsi-fuzz` (see its docs for the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| genmsi_fuzz::pci_config::run(data));
