//! Fuzz harnesses for genmsi. Each harness takes raw bytes, turns them into structured input
//! with [`arbitrary`], drives the real crates and checks their invariants: no panic, no hang
//! (every input is bounded), no leaked irq, vector, IRTE or descriptor, and, for the core, the
//! state a reference model predicts.
//!
//! The same harnesses run two ways:
//! - under `cargo fuzz` (the `fuzz/` directory, outside the workspace; `scripts/fuzz` runs
//!   long campaigns), with coverage guidance;
//! - on stable as bounded tests (`cargo test -p genmsi-fuzz`), on [`bounded`] seeded random
//!   inputs each, so that the test command runs every harness.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

pub mod core_api;
pub mod pci_config;
pub mod sim_scenario;
pub mod vmm_msix;

/// Runs `harness` on `cases` inputs drawn from a fixed seed (SplitMix64), of 0 to `max_len`
/// bytes each: the stable, bounded form of a fuzz target.
pub fn bounded(harness: fn(&[u8]), cases: u32, max_len: usize, seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut buf = Vec::with_capacity(max_len);
    for _ in 0..cases {
        let len = (next() % (max_len as u64 + 1)) as usize;
        buf.clear();
        while buf.len() < len {
            buf.extend_from_slice(&next().to_le_bytes());
        }
        buf.truncate(len);
        harness(&buf);
    }
}
