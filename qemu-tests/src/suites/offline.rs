//! CPU offline under traffic: an application processor whose e1000e vectors are firing is taken
//! offline, its irqs move, it really stops (parked, then INIT), and it comes back.
//!
//! 1. Two e1000e MSI-X vectors are placed on the last CPU (the AP) and fire there.
//! 2. The BSP raises vector 0 and at once calls `IrqSystem::cpu_offline(AP)`: the racing
//!    message lands on the AP or on the new CPU. Raises continue, each waited for.
//! 3. The AP releases its old vectors itself (cleanup IPI, its own IRR), then parks on a park
//!    IPI (interrupts off, recording how many genmsi vectors were still pending in its IRR:
//!    must be none), and the BSP sends it INIT. Raises continue while it is down.
//! 4. INIT-SIPI-SIPI restarts it, `cpu_online` gives it back to genmsi, vector 0 moves back
//!    to it and delivers there.
//!
//! Every raise must arrive (one message, or one plus QEMU's echo) and be counted once.

use crate::devices::e1000e::{E1000e, MAX_MESSAGES_PER_RAISE};
use crate::suites::smp_msix::{alloc_on, arrivals, cleanup_on, cpu_setup, release};
use crate::{check, cpu, lapic, pcidev, platform, smp, time};
use alloc::vec::Vec;
use genmsi::{CpuMask, Irq};
use genmsi_x86::Vector;

/// The IPI that parks a CPU: among the system vectors, outside genmsi's range.
const PARK_VECTOR: u8 = 0xf2;
/// Raises while the AP is going offline, and again while it is down.
const RAISES: u32 = 8;

fn on_park_ipi(_vector: u8, cpu: u32) {
    let pending = (0x20..0xec_u8).filter(|&v| lapic::irr_pending(v)).count() as u32;
    lapic::eoi();
    smp::park_here(cpu, pending)
}

/// Per raise: which index, and whether genmsi counted a new arrival for it within `LATE_MS`.
struct Traffic<'a> {
    p: &'a platform::Platform,
    nic: E1000e,
    irqs: [Irq; 2],
    raises: u64,
    missing: Vec<u64>,
}

impl Traffic<'_> {
    fn raise(&mut self, index: usize) {
        let irq = self.irqs[index];
        let before = self.p.sys.table().count(irq);
        self.nic.raise(index as u32);
        self.raises += 1;
        if !time::wait_until(time::LATE_MS, || self.p.sys.table().count(irq) > before) {
            self.missing.push(self.raises);
        }
        // Room for the throttling echo.
        time::delay(1);
    }

    fn counted(&self) -> u64 {
        self.irqs.iter().map(|&i| self.p.sys.table().count(i)).sum()
    }

    fn on(&self, index: usize) -> Option<u32> {
        self.p
            .with_vector(|v| v.target(self.irqs[index]))
            .map(|t| t.cpu)
    }
}

/// Runs the CPU offline checks on the platform `p` (at least two CPUs).
pub fn run(p: &platform::Platform) {
    let cpus = smp::online();
    let Some(nic) = E1000e::find() else {
        check!("offline: an e1000e device", false);
        return;
    };
    if cpus < 2 {
        check!("offline: an application processor to take offline", false);
        return;
    }
    let ap = cpus - 1;
    cpu_setup(p);
    let _ = p.with_vector(|v| v.matrix_mut().reserve_system(Vector(PARK_VECTOR)));
    cpu::set_vector_handler(PARK_VECTOR, on_park_ipi);
    let dev = pcidev::register(&p.sys, "e1000e", nic.pci);
    let Some(vectors) = alloc_on(p, &dev, 2, ap, "offline: two e1000e MSI-X vectors") else {
        return;
    };
    let irqs = vectors.irqs();
    let mut t = Traffic {
        p,
        nic,
        irqs: [irqs[0], irqs[1]],
        raises: 0,
        missing: Vec::new(),
    };
    let (raw0, counted0) = (arrivals(cpus), t.counted());
    t.raise(0);
    t.raise(1);
    let on_ap = p.sys.table().cpu_count(ap);
    check!(
        "offline: both vectors deliver on the AP before it goes",
        t.on(0) == Some(ap) && t.on(1) == Some(ap) && on_ap >= 2 && t.missing.is_empty(),
        "targets {:?} {:?}, on the AP {on_ap}, missing {:?}",
        t.on(0),
        t.on(1),
        t.missing
    );

    // Offline while vector 0's message is in flight.
    t.nic.raise(0);
    t.raises += 1;
    let report = p.sys.cpu_offline(ap);
    for k in 0..RAISES {
        t.raise(k as usize % 2);
    }
    let targets = [t.on(0), t.on(1)];
    let cleaned = cleanup_on(ap) && p.with_vector(|v| v.moves_in_progress()) == 0;
    let before_park = p.sys.table().cpu_count(ap);
    lapic::send_fixed(smp::apic_id(ap), PARK_VECTOR);
    let parked = time::wait_until(time::LATE_MS, || smp::parked(ap).is_some());
    smp::stop_ap(ap);
    let pending_at_park = smp::parked(ap);
    for k in 0..RAISES {
        t.raise(k as usize % 2);
    }
    let on_ap_down = p.sys.table().cpu_count(ap) - before_park;
    check!(
        "offline: cpu_offline under traffic moves both irqs off the AP; the AP releases its old vectors and parks with none pending",
        report.as_ref().is_ok_and(|r| r.moved.len() == 2 && r.shut_down.is_empty())
            && targets.iter().all(|c| c.is_some_and(|c| c != ap))
            && !p.sys.online_cpus().contains(ap)
            && cleaned
            && parked
            && pending_at_park == Some(0)
            && on_ap_down == 0,
        "report {report:?}, targets {targets:?}, cleaned {cleaned}, parked {parked} (pending {pending_at_park:?}), counted on the AP while down {on_ap_down}"
    );

    // Back: restart, online, move vector 0 back and let its move complete on the AP.
    let restarted = smp::start_ap(ap);
    let online = p.sys.cpu_online(ap);
    let moved = p.sys.set_affinity(t.irqs[0], &CpuMask::from_cpus([ap]));
    let before_back = p.sys.table().cpu_count(ap);
    t.raise(0);
    t.raise(0);
    let old: Vec<u32> = p.with_vector(|v| {
        v.old_targets(t.irqs[0])
            .iter()
            .map(|target| target.cpu)
            .collect()
    });
    let released = old.iter().all(|&c| cleanup_on(c));
    let delivered_back = p.sys.table().cpu_count(ap) - before_back;
    check!(
        "offline: the AP restarts (INIT-SIPI-SIPI), comes back online and an irq moved back delivers on it",
        restarted
            && online.is_ok()
            && p.sys.online_cpus().contains(ap)
            && moved.is_ok()
            && t.on(0) == Some(ap)
            && delivered_back >= 2
            && released
            && p.with_vector(|v| v.moves_in_progress()) == 0,
        "restarted {restarted}, online {online:?}, move {moved:?}, target {:?}, delivered there {delivered_back}, old released {released}",
        t.on(0)
    );
    let counted = t.counted() - counted0;
    let raw = arrivals(cpus) - raw0;
    check!(
        "offline: every raise before, during and after the offline arrived and was counted once",
        t.missing.is_empty()
            && counted == raw
            && (t.raises..=t.raises * u64::from(MAX_MESSAGES_PER_RAISE)).contains(&counted)
            && platform::unmapped() == 0
            && platform::spurious() == 0,
        "raises {}, missing {:?}, counted {counted}, arrived {raw}, unmapped {}, spurious {}",
        t.raises,
        t.missing,
        platform::unmapped(),
        platform::spurious()
    );
    release(p, &dev, &vectors, &t.nic);
    p.sys.remove_device(dev.id).expect("no vectors left");
}
