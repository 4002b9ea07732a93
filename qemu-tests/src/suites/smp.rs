//! Affinity changes on a live interrupt (`-smp 4`): `genmsi-x86`'s vector domain moves an
//! HPET timer firing periodically by FSB around the CPUs; every arrival is counted exactly once.

use crate::devices::hpet::{self, Hpet};
use crate::{check, counts, platform, smp, time};
use alloc::boxed::Box;
use alloc::vec::Vec;
use genmsi::{AllocOpts, CpuMask, DeviceMeta, SlotId};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::HpetStore;

/// Timer period in HPET ticks (1 ms at QEMU's 100 MHz): long enough that QEMU rarely folds
/// late expiries together, so the bound on arrivals from the main counter stays tight.
const PERIOD: u64 = 100_000;
/// HPET timer configuration bit 6: the next comparator write also sets the period.
const TN_VAL_SET: u64 = 1 << 6;
/// Affinity changes at least: more on a machine with more CPUs, so that every CPU is visited.
const MIN_MOVES: u32 = 24;

/// Runs the SMP checks.
pub fn run() {
    let p = platform::init();
    let cpus = smp::online();
    let moves = MIN_MOVES.max(cpus);
    let hpet = Hpet::new();
    let mut store = HpetStore::new(hpet);
    let Some(timer) = (0..hpet.timers()).find(|&n| store.fsb_capable(n)) else {
        check!("smp: an HPET timer with FSB delivery", false);
        return;
    };
    // Periodic, counter stopped: the comparator write sets both the first expiry and the period.
    hpet.set_timer_config(timer, hpet::TN_PERIODIC | TN_VAL_SET);
    hpet.arm(timer, PERIOD);
    let dev = p.sys.add_device("hpet", DeviceMeta::default());
    p.sys
        .create_device_domain(dev, SlotId::Default, Box::new(store), p.vector)
        .expect("device domain");
    let opts = AllocOpts {
        affinity: Some(CpuMask::from_cpus([0])),
        ..AllocOpts::default()
    };
    let irq = p
        .sys
        .alloc_at(dev, SlotId::Default, timer, &opts)
        .expect("alloc timer");
    let raw_total = || -> u64 {
        (0..cpus)
            .flat_map(|c| (0x20..=0xef_u8).map(move |v| u64::from(counts::on(c, v))))
            .sum()
    };
    let raw_before = raw_total();
    let start = hpet.counter();
    hpet.enable();
    let mut failures = Vec::new();
    let mut visited = Vec::new();
    for i in 1..=moves {
        let cpu = i % cpus;
        let before = p.sys.table().cpu_count(cpu);
        if let Err(e) = p.sys.set_affinity(irq, &CpuMask::from_cpus([cpu])) {
            failures.push(e);
        }
        // The move completes with the timer's first arrival on the new CPU: wait for it (a
        // loaded host may hold the timer or the vCPU back) before the next move.
        time::wait_until(time::LATE_MS, || p.sys.table().cpu_count(cpu) > before);
        let target = p.with_vector(|v| v.target(irq));
        // What the timer will send now, read back from its FSB route register.
        let route = match MsiFormat::parse(&hpet.fsb_route(timer)) {
            Ok(MsiFormat::Compat(m)) => Some((m.dest, m.vector)),
            _ => None,
        };
        visited.push((cpu, target.map(|t| (t.cpu, t.vector)), route));
    }
    // The last move completes with the first arrival on its CPU, which a loaded host may delay.
    let last = moves % cpus;
    let on_last = p.sys.table().cpu_count(last);
    time::wait_until(time::LATE_MS, || p.sys.table().cpu_count(last) > on_last);
    // Stop the source, let the last arrivals land, then release the old vectors.
    p.sys.mask(irq).expect("mask");
    // The timer expires once per period from `start + PERIOD` on; QEMU folds expiries it
    // was late for into one message, so this many messages at most were sent.
    let periods = (hpet.counter() - start) / PERIOD;
    time::delay(10);
    let moving = p.with_vector(|v| v.moves_in_progress());
    let report = p.with_vector(|v| v.cleanup(&|_, _| false));
    let left = p.with_vector(|v| v.moves_in_progress());
    let counted = p.sys.table().count(irq);
    let raw = raw_total() - raw_before;
    let per_cpu: Vec<u64> = (0..cpus).map(|c| p.sys.table().cpu_count(c)).collect();
    check!(
        "smp: every affinity change lands on the requested CPU and in the timer's FSB route",
        failures.is_empty()
            && visited.iter().all(|&(want, target, route)| {
                target.is_some_and(|(cpu, vector)| {
                    cpu == want && route == Some((smp::apic_id(cpu), vector))
                })
            }),
        "errors {failures:?} moves (CPU, target, route) {visited:?}"
    );
    check!(
        "smp: the timer kept firing on every CPU while it moved",
        per_cpu.iter().all(|&n| n > 0) && counted > u64::from(moves),
        "per CPU {per_cpu:?}, counted {counted}"
    );
    check!(
        "smp: every arrival counted once, no more than the HPET's periods (none on a released vector, none spurious)",
        raw == counted
            && counted <= periods + 1
            && platform::unmapped() == 0
            && platform::spurious() == 0,
        "arrivals {raw}, counted {counted}, periods elapsed {periods}, unmapped {}, spurious {}",
        platform::unmapped(),
        platform::spurious()
    );
    check!(
        "smp: old vectors are released once the moves are complete",
        left == 0 && report.released.len() as u32 >= moving as u32 && report.retrigger.is_empty(),
        "moving {moving} left {left} report {report:?}"
    );
    p.sys.free_index(dev, SlotId::Default, timer).expect("free");
}
