//! KVM_IRQFD assign racing the eventfd's writer, on `/dev/kvm` under the project's guest:
//! the question behind the baseline's "one arrival more than fired". An entry is unmasked
//! (its irqfd assigned, then the count KVM saw at the assign cleared) while the device writes
//! its eventfd once, at offsets around the assign; after each round the arrivals must be
//! exactly the writes (an irqfd injecting one write twice shows as one more, unless the two
//! merge in the local APIC). Skips, saying so, only when `/dev/kvm` cannot be
//! opened. (`examples/irqfd_race.rs` is the same race on bare irqfds, at length.)
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use genmsi::Msg;
use genmsi_kvm::guest::Command;
use genmsi_kvm::harness::{FunctionConfig, Harness, HarnessConfig};
use genmsi_vmm::kvm::{Fire, KvmMsix};
use genmsi_vmm::{MsiBackend, Strategy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

const VECTOR: u32 = 0x50;
const ROUNDS: u64 = 200;

#[test]
fn an_irqfd_assigned_while_its_eventfd_is_written_injects_no_write_twice() {
    if common::kvm_or_skip().is_none() {
        return;
    }
    let h = Harness::boot(&HarnessConfig {
        functions: vec![FunctionConfig {
            entries: 1,
            budget: 1,
            strategy: Strategy::OnDemand,
        }],
        grow: false,
    })
    .expect("boot");
    h.command(Command::ReadPending, 0, 0).expect("guest up");
    let mut b = KvmMsix::new(h.vm().clone(), h.routes().clone(), 1, 1).unwrap();
    b.enable(true).unwrap();
    b.back(0, Msg::new(0xFEE0_0000, VECTOR)).unwrap();
    b.commit().unwrap();
    let device = b.triggers();
    let base = h.count(VECTOR);
    // The writer: armed with a delay (spins) by the main thread, fires once after it.
    let arm = Arc::new(AtomicU64::new(0));
    let (a, d) = (arm.clone(), device.clone());
    let writer = std::thread::spawn(move || loop {
        let spins = match a.load(Ordering::Acquire) {
            0 => {
                std::hint::spin_loop();
                continue;
            }
            u64::MAX => return,
            spins => spins,
        };
        for _ in 0..spins {
            std::hint::spin_loop();
        }
        assert_eq!(d.fire(0), Fire::Sent);
        a.store(0, Ordering::Release);
    });
    let mut over = Vec::new();
    for round in 0..ROUNDS {
        // Offsets from before the assign to after it (the assign and clear take ~10-100 µs).
        arm.store(1 + (round * 7919) % 20_000, Ordering::Release);
        b.unmask(0).unwrap();
        while arm.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        // The deassign waits for the irqfd's injections in flight; then the guest counts
        // this round's write before the next round, so no two rounds' arrivals merge.
        b.mask(0).unwrap();
        let start = Instant::now();
        while h.count(VECTOR) - base <= round && start.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_micros(50));
        }
        let total = h.count(VECTOR) - base;
        if total != round + 1 {
            over.push((round, total));
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    arm.store(u64::MAX, Ordering::Release);
    writer.join().unwrap();
    assert!(
        over.is_empty(),
        "rounds after which the arrivals were not the writes (round, arrivals): {over:?}"
    );
    assert_eq!(h.count(VECTOR) - base, ROUNDS, "one arrival per write");
    h.stop().unwrap();
}
