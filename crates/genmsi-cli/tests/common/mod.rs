//! What the CLI's test files share.

use std::process::{Command, Output};

/// Runs the `genmsi` binary with `args` from the repository root.
pub fn genmsi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genmsi"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("the binary runs")
}
