//! An e1000e MSI-X vector moved around the CPUs (`-smp 4`) while it fires, with every
//! interrupt counted exactly once and each old vector released by the CPU that owns it.
//!
//! 1. The BSP raises the vector and at once asks genmsi for another CPU, racing the message and
//!    QEMU's throttling echo (sent about 128 us after a raise) against the table rewrite.
//! 2. It raises again: that message lands on the new target, which completes the move.
//! 3. Each CPU holding an old vector runs `VectorDomain::cleanup_on_cpu` itself, reading its
//!    own IRR (an xAPIC CPU cannot read another's): the BSP in line, an application
//!    processor in the handler of a cleanup IPI.

use crate::devices::e1000e::{E1000e, MAX_MESSAGES_PER_RAISE};
use crate::{check, counts, lapic, pcidev, platform, port, smp, time};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use genmsi::{AllocOpts, CpuMask};
use genmsi_pci::{pci_alloc_irq_vectors, pci_free_irq_vectors, IrqTypes, IrqVectors};
use genmsi_x86::{CleanupReport, Vector};

/// The IPI that asks a CPU to release its old vectors: above genmsi's allocatable range
/// (0x20..0xEC), among the system vectors.
const CLEANUP_VECTOR: u8 = 0xf1;
/// Affinity changes at least: more on a machine with more CPUs, so that every CPU is visited.
const MIN_MOVES: u32 = 16;

/// Per CPU: cleanup requests handled, old targets released there, and releases of a target
/// that belonged to another CPU (must stay zero).
static CLEANUPS: [AtomicU32; smp::MAX_CPUS] = [const { AtomicU32::new(0) }; smp::MAX_CPUS];
static RELEASED: [AtomicU32; smp::MAX_CPUS] = [const { AtomicU32::new(0) }; smp::MAX_CPUS];
static FOREIGN: AtomicU32 = AtomicU32::new(0);

/// Releases the calling CPU's old vectors whose moves are complete and which are not pending
/// in its IRR.
fn cleanup_here(cpu: u32) {
    let p = platform::get().expect("the platform is built before any cleanup");
    let report: CleanupReport =
        p.with_vector(|v| v.cleanup_on_cpu(cpu, &|vector: Vector| lapic::irr_pending(vector.0)));
    for (_, t) in &report.released {
        if t.cpu != cpu {
            FOREIGN.fetch_add(1, Ordering::SeqCst);
        }
    }
    RELEASED[cpu as usize].fetch_add(report.released.len() as u32, Ordering::SeqCst);
}

/// The cleanup IPI's handler (application processors).
fn on_cleanup_ipi(_vector: u8, cpu: u32) {
    cleanup_here(cpu);
    CLEANUPS[cpu as usize].fetch_add(1, Ordering::SeqCst);
    lapic::eoi();
}

/// Has `cpu` run its cleanup, and waits until it did.
pub fn cleanup_on(cpu: u32) -> bool {
    if cpu == crate::cpu::current_cpu() {
        // With interrupts off, a vector the IRR shows pending stays pending while it is read.
        port::cli_guard(|| cleanup_here(cpu));
        return true;
    }
    let before = CLEANUPS[cpu as usize].load(Ordering::SeqCst);
    lapic::send_fixed(smp::apic_id(cpu), CLEANUP_VECTOR);
    time::wait_until(time::LATE_MS, || {
        CLEANUPS[cpu as usize].load(Ordering::SeqCst) > before
    })
}

/// All interrupts that arrived on genmsi's vectors, on every CPU.
pub fn arrivals(cpus: u32) -> u64 {
    (0..cpus).map(arrivals_on).sum()
}

/// Interrupts that arrived on genmsi's vectors on `cpu`.
pub fn arrivals_on(cpu: u32) -> u64 {
    (0x20..0xec_u8).map(|v| u64::from(counts::on(cpu, v))).sum()
}

/// Runs the e1000e affinity checks.
pub fn run(p: &platform::Platform) {
    let Some(nic) = E1000e::find() else {
        check!("smp: an e1000e device", false);
        return;
    };
    cpu_setup(p);
    let cpus = smp::online();
    let nr_moves = MIN_MOVES.max(cpus);
    let per_fire = u64::from(MAX_MESSAGES_PER_RAISE);
    let dev = pcidev::register(&p.sys, "e1000e", nic.pci);
    let Some(vectors) = alloc_on(p, &dev, 1, 0, "smp: one e1000e MSI-X vector") else {
        return;
    };
    let irq = vectors.irqs()[0];
    let raw_before = arrivals(cpus);
    let cpu_before: Vec<u64> = (0..cpus).map(|c| p.sys.table().cpu_count(c)).collect();
    let mut raises = 0u64;
    let mut moves = Vec::new();
    let mut errors = Vec::new();
    let mut unanswered = 0;
    // Per move: arrivals on the old and new CPU after the raise that races the move, and on
    // the new CPU after the raise that follows it.
    let mut per_raise = Vec::new();
    let mut first_entry = None;
    let mut remap_mismatch = Vec::new();
    for i in 1..=nr_moves {
        let cpu = i % cpus;
        let from = p.with_vector(|v| v.target(irq)).map(|t| t.cpu);
        let old_cpu = from.unwrap_or(cpu);
        let (old0, new0) = (arrivals_on(old_cpu), arrivals_on(cpu));
        nic.raise(0);
        if let Err(e) = p.sys.set_affinity(irq, &CpuMask::from_cpus([cpu])) {
            errors.push(e);
        }
        // The racing message lands on the old or the new CPU; a loaded host may delay it, so
        // wait for it (a message still missing after `LATE_MS` is lost), then room for its echo
        // (about 128 us later).
        time::wait_until(time::LATE_MS, || {
            arrivals_on(old_cpu) > old0 || (old_cpu != cpu && arrivals_on(cpu) > new0)
        });
        time::delay(1);
        let on_new = p.sys.table().cpu_count(cpu);
        let raced = arrivals_on(old_cpu) - old0
            + if old_cpu == cpu {
                0
            } else {
                arrivals_on(cpu) - new0
            };
        let new1 = arrivals_on(cpu);
        nic.raise(0);
        raises += 2;
        // The move completes with this arrival, which a loaded host may delay; then room for
        // its echo.
        time::wait_until(time::LATE_MS, || p.sys.table().cpu_count(cpu) > on_new);
        time::delay(1);
        per_raise.push((raced, arrivals_on(cpu) - new1));
        let to = p.with_vector(|v| v.target(irq)).map(|t| t.cpu);
        moves.push((from, to));
        if p.remap.is_some() {
            // Under remapping a move rewrites the IRTE in place: its destination follows the
            // CPU's APIC id and the device's MSI-X entry keeps naming the same IRTE.
            let e = crate::suites::vtd_msix::irte(p, irq);
            let entry = crate::suites::msix::table(p, &dev).1[0];
            if !(e.is_some_and(|(_, e)| e.present && e.dest == smp::apic_id(cpu))
                && Some(entry) == *first_entry.get_or_insert(Some(entry)))
            {
                remap_mismatch.push((cpu, e, entry));
            }
        }
        let old: Vec<u32> = p.with_vector(|v| v.old_targets(irq).iter().map(|t| t.cpu).collect());
        for c in old {
            unanswered += u32::from(!cleanup_on(c));
        }
    }
    time::delay(5);
    // A move whose old vector was still pending is finished by one more round.
    let old: Vec<u32> = p.with_vector(|v| v.old_targets(irq).iter().map(|t| t.cpu).collect());
    for c in old {
        unanswered += u32::from(!cleanup_on(c));
    }
    let counted = p.sys.table().count(irq);
    let raw = arrivals(cpus) - raw_before;
    let per_cpu: Vec<u64> = (0..cpus)
        .map(|c| p.sys.table().cpu_count(c) - cpu_before[c as usize])
        .collect();
    let left = p.with_vector(|v| v.moves_in_progress());
    let released: Vec<u32> = (0..cpus)
        .map(|c| RELEASED[c as usize].load(Ordering::SeqCst))
        .collect();
    crate::println!(
        "smp: e1000e raised {raises} times, {counted} counted, per CPU {per_cpu:?}, old vectors released per CPU {released:?}"
    );
    check!(
        "smp: every affinity change moves the e1000e vector to the requested CPU",
        errors.is_empty()
            && moves
                .iter()
                .zip(1..)
                .all(|(&(_, to), i)| to == Some(i % cpus)),
        "errors {errors:?} moves {moves:?}"
    );
    check!(
        "smp: each e1000e raise arrived: the one racing a move on the old or new CPU, the next on the new CPU",
        per_raise.len() == nr_moves as usize
            && per_raise.iter().all(|&(raced, after)| raced >= 1 && after >= 1),
        "arrivals per move (racing raise, raise after the move) {per_raise:?}"
    );
    check!(
        "smp: the e1000e vector fired on every CPU; every arrival counted once, 1 or 2 messages per raise in total",
        per_cpu.iter().all(|&n| n > 0)
            && counted == raw
            && (raises..=raises * per_fire).contains(&counted)
            && platform::unmapped() == 0
            && platform::spurious() == 0,
        "per CPU {per_cpu:?}, raises {raises}, counted {counted}, arrived {raw}, unmapped {}, spurious {}",
        platform::unmapped(),
        platform::spurious()
    );
    check!(
        "smp: each old vector released by its own CPU (cleanup_on_cpu, own IRR)",
        left == 0
            && unanswered == 0
            && FOREIGN.load(Ordering::SeqCst) == 0
            && released.iter().sum::<u32>() == nr_moves,
        "moves left {left}, unanswered {unanswered}, released per CPU {released:?}, foreign {}",
        FOREIGN.load(Ordering::SeqCst)
    );
    if p.remap.is_some() {
        check!(
            "smp: under VT-d every move rewrote the IRTE in place (destination = the CPU's APIC id), the MSI-X entry never changed",
            remap_mismatch.is_empty() && first_entry.is_some(),
            "mismatches (CPU, IRTE, entry) {remap_mismatch:?}"
        );
    }
    release(p, &dev, &vectors, &nic);
    p.sys.remove_device(dev.id).expect("no vectors left");
}

/// Frees `vectors` of the e1000e `dev` with nothing left in flight: every vector is masked
/// first (QEMU's throttling echo then only sets a PBA bit), then each other CPU answers two
/// IPIs in turn. An IPI outranks every genmsi vector, but the second can only be taken once the
/// handler of anything that was pending behind the first has returned, so afterwards no CPU
/// holds an arrival for a vector about to be released.
pub fn release(p: &platform::Platform, dev: &pcidev::Function, vectors: &IrqVectors, nic: &E1000e) {
    for &irq in vectors.irqs() {
        p.sys.mask(irq).expect("mask");
    }
    let me = crate::cpu::current_cpu();
    let others = (0..smp::online()).filter(|&c| c != me);
    let flushed = others.into_iter().all(|c| (0..2).all(|_| cleanup_on(c)));
    if !flushed {
        crate::println!("smp: a CPU did not answer the flush before the vectors were freed");
    }
    pci_free_irq_vectors(&p.sys, dev, vectors, None).expect("free");
    nic.quiesce();
}

/// Allocates `n` MSI-X vectors of `dev` on `cpu`; on failure, the check `name` fails.
pub fn alloc_on(
    p: &platform::Platform,
    dev: &pcidev::Function,
    n: u32,
    cpu: u32,
    name: &str,
) -> Option<IrqVectors> {
    let opts = AllocOpts {
        affinity: Some(CpuMask::from_cpus([cpu])),
        ..AllocOpts::default()
    };
    match pci_alloc_irq_vectors(&p.sys, dev, p.parent(), n..=n, IrqTypes::MSIX, &opts, None) {
        Ok(v @ IrqVectors::Msix(_)) => Some(v),
        other => {
            check!(name, false, "{other:?}");
            None
        }
    }
}

/// Installs the cleanup IPI on every CPU (the IDT is shared) and keeps its vector out of
/// genmsi's hands.
pub fn cpu_setup(p: &platform::Platform) {
    // Outside the allocatable range the reservation is a no-op, which is as good.
    let _ = p.with_vector(|v| v.matrix_mut().reserve_system(Vector(CLEANUP_VECTOR)));
    crate::cpu::set_vector_handler(CLEANUP_VECTOR, on_cleanup_ipi);
}
