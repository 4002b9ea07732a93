//! What the CLI's test files share (not every file uses every helper).

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `genmsi` binary with `args` from the repository root.
pub fn genmsi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genmsi"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("the binary runs")
}

/// Runs `genmsi args`, requires exit status 0 and parses the one JSON object it prints.
pub fn genmsi_json(args: &[&str]) -> serde_json::Value {
    let out = genmsi(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// `genmsi run SCENARIO` passes (exit status 0).
pub fn replays(scenario: &std::path::Path) {
    let run = genmsi(&["run", scenario.to_str().unwrap()]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}
