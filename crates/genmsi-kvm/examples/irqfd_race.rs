//! An experiment on `/dev/kvm`: does `KVM_IRQFD` (assign) inject one eventfd write twice when
//! the write lands while the assign polls the eventfd? Each round assigns a fresh irqfd while
//! a writer thread writes its eventfd once, at a varying delay around the assign, then waits
//! for the project's guest to count the arrival and deassigns. A round with two arrivals for
//! its one write is a double injection.
//!
//! `cargo run --release -p genmsi-kvm --example irqfd_race -- [ROUNDS] [--locked]`; with
//! `--locked` the writer and the assign exclude each other (what `KvmMsix::unmask` does).

use genmsi_kvm::guest::Command;
use genmsi_kvm::harness::{raise_file_limit, FunctionConfig, Harness, HarnessConfig};
use genmsi_vmm::Strategy;
use kvm_bindings::{kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const VECTOR: u32 = 0x50;
const GSI: u32 = 100;

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let locked = std::env::args().any(|a| a == "--locked");
    raise_file_limit().expect("RLIMIT_NOFILE");
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
    let mut e = kvm_irq_routing_entry {
        gsi: GSI,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    e.u.msi.address_lo = 0xFEE0_0000;
    e.u.msi.data = VECTOR;
    let table = KvmIrqRouting::from_entries(&[e]).unwrap();
    h.vm().set_gsi_routing(&table).expect("KVM_SET_GSI_ROUTING");

    let efd = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    // Does the irqfd's wakeup read (clear) the eventfd's count, or leave it for the poll of
    // a later assign to see?
    h.vm().register_irqfd(&efd, GSI).expect("assign");
    efd.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let left = efd.read().map_or(0, |n| n);
    h.vm().unregister_irqfd(&efd, GSI).expect("deassign");
    let _ = efd.read();
    println!("count left in an assigned irqfd's eventfd after one write: {left}");
    let lock = Arc::new(Mutex::new(()));
    let arm = Arc::new(AtomicU64::new(0));
    let (a, w, l) = (arm.clone(), efd.clone(), lock.clone());
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
        {
            let _held = locked.then(|| l.lock().unwrap());
            w.write(1).unwrap();
        }
        a.store(0, Ordering::Release);
    });
    let base = h.count(VECTOR);
    let (mut doubles, mut lost_or_late, mut expected) = (Vec::new(), 0u64, 0u64);
    let start = Instant::now();
    for round in 0..rounds {
        let before = h.count(VECTOR) - base;
        arm.store(1 + (round * 7919) % 4000, Ordering::Release);
        {
            let _held = locked.then(|| lock.lock().unwrap());
            h.vm().register_irqfd(&efd, GSI).expect("assign");
        }
        while arm.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        expected += 1;
        // The deassign waits for the irqfd's injections in flight: after it, everything of
        // this round is in the guest's local APIC. Then wait (up to 1 s) until the guest has
        // counted this round's write, so that no round's arrival can merge with the next's;
        // a second injection of the same write shows as one arrival more than the writes.
        h.vm().unregister_irqfd(&efd, GSI).expect("deassign");
        let _ = efd.read();
        let wait = Instant::now();
        while h.count(VECTOR) - base < expected && wait.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_micros(20));
        }
        let got = h.count(VECTOR) - base - before;
        match got {
            1 => {}
            0 => lost_or_late += 1,
            n => doubles.push((round, n)),
        }
        expected = h.count(VECTOR) - base;
    }
    arm.store(u64::MAX, Ordering::Release);
    writer.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let total = h.count(VECTOR) - base;
    println!(
        "{rounds} rounds ({}), {:.1} s: arrivals {total} for {rounds} writes; rounds with 2+ arrivals: {} {:?}; rounds with 0 (lost or late): {lost_or_late}",
        if locked { "writer and assign exclusive" } else { "writer racing the assign" },
        start.elapsed().as_secs_f64(),
        doubles.len(),
        &doubles[..doubles.len().min(10)],
    );
    h.stop().unwrap();
}
