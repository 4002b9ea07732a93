//! The seam's conformance suite on the in-process model: every strategy × case passes.

use genmsi_vmm::conformance::{self, ModelRig, Table};

#[test]
fn the_model_backend_passes_every_case_with_every_strategy() {
    let rows = conformance::run(&mut ModelRig::default());
    let table = Table(&rows);
    println!("{table}");
    assert!(table.passed(), "{table}");
}
