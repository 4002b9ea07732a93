//! The real guest on KVM: genmsi-vmm's MSI-X emulation and KVM backend under a guest of the
//! project's own. Every test skips, saying so, when `/dev/kvm` is not usable.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use genmsi_kvm::guest::{vector_of, Command};
use genmsi_kvm::harness::{kvm_usable, FunctionConfig, Harness, HarnessConfig};
use genmsi_vmm::kvm::Fire;
use genmsi_vmm::{Error, Strategy};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn boot(functions: Vec<FunctionConfig>) -> Option<Harness> {
    if let Err(e) = kvm_usable() {
        eprintln!("skipped: {e}");
        return None;
    }
    let h = Harness::boot(&HarnessConfig {
        functions,
        grow: false,
    })
    .expect("boot");
    // The guest has enabled MSI-X once it has reported its entries and serves commands.
    h.command(Command::ReadPending, 0, 0).expect("guest up");
    Some(h)
}

fn on_demand(entries: u32, budget: u32) -> FunctionConfig {
    FunctionConfig {
        entries,
        budget,
        strategy: Strategy::OnDemand,
    }
}

/// Waits until the guest counted `expected` on `vector`, then checks no more arrive.
fn expect_count(h: &Harness, vector: u32, expected: u64) {
    h.wait_for("arrivals", WAIT, |h| h.count(vector) >= expected)
        .unwrap_or_else(|e| panic!("vector {vector:#x}: {e}, counted {}", h.count(vector)));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.count(vector), expected, "vector {vector:#x}");
}

#[test]
fn an_unmasked_entry_gets_exactly_one_route_and_delivers() {
    let Some(h) = boot(vec![on_demand(64, 64)]) else {
        return;
    };
    assert!(h.function(0).virt().emul().control().enabled());
    assert_eq!(h.routes().lock().unwrap().len(), 0, "nothing before an unmask");
    h.command(Command::Unmask, 5, 0).unwrap();
    assert_eq!(h.routes().lock().unwrap().len(), 1);
    assert_eq!(h.function(0).virt().budget().in_use, 1);
    assert_eq!(h.triggers(0).fire(5), Fire::Sent);
    expect_count(&h, vector_of(5), 1);
    assert!(h.function(0).errors().is_empty());
    h.stop().unwrap();
}
