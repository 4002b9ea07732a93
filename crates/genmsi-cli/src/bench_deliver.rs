//! `genmsi bench deliver`: the delivery path from a message write to the handler, on several
//! threads at once, each one irq targeting its own CPU.
//!
//! Per interrupt a thread does what the machine does when a device writes its message: the
//! remapping unit translates the write (the IRTE named by the handle, checked against the
//! requester id), the destination CPU's vector table names the irq, and the irq table counts
//! it (per irq and per CPU) and calls its handler (the built-in one, which only counts). Each
//! thread has its own remapping unit model (the hardware's entry cache is per unit; sharing one
//! model would put a lock on the path that the hardware does not have). The library itself has
//! no EOI step: acknowledging the local APIC belongs to the CPU (the simulator models it).
//!
//! The run alternates rounds of 1 thread and of T threads in one process and reports the median
//! of each; `scaling` is throughput at T threads over throughput at 1.

use crate::bench_stack::Stack;
use genmsi::{AllocOpts, CpuMask, Delivery, Msg, SlotId};
use genmsi_x86::IrUnit;
use serde_json::{json, Value};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// How long a run is.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Rounds (each one of 1 thread and one of T threads).
    pub rounds: u32,
    /// Interrupts per thread per round.
    pub per_thread: u32,
}

impl Size {
    /// The full run.
    pub const FULL: Size = Size {
        rounds: 9,
        per_thread: 2_000_000,
    };
    /// The short run of the test command.
    pub const SHORT: Size = Size {
        rounds: 3,
        per_thread: 100_000,
    };
}

const RID: u16 = 0x0300;

/// Delivers `n` interrupts of each message on its own thread; the wall time.
fn round(stack: &Stack, msgs: &[Msg], n: u32) -> anyhow::Result<Duration> {
    let start = Barrier::new(msgs.len() + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = msgs
            .iter()
            .map(|msg| {
                let start = &start;
                s.spawn(move || -> anyhow::Result<()> {
                    let mut unit = IrUnit::new(stack.x2apic, false);
                    start.wait();
                    for _ in 0..n {
                        let t = unit
                            .translate(msg, RID, &stack.units[0].1)
                            .map_err(|r| anyhow::anyhow!("blocked: {r:?}"))?;
                        let irq = stack
                            .vectors
                            .lookup(t.dest, t.vector)
                            .ok_or_else(|| anyhow::anyhow!("vector not mapped"))?;
                        anyhow::ensure!(
                            stack.sys.handle(irq, t.dest) == Delivery::Handled,
                            "irq {irq:?} not handled"
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a delivery thread panicked"))??;
        }
        Ok(t.elapsed())
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the benchmark with `threads` threads; the JSON report.
pub fn run(threads: u32, size: Size) -> anyhow::Result<Value> {
    anyhow::ensure!((1..=256).contains(&threads), "--threads must be 1..=256");
    let cpus = threads.max(2);
    let stack = Stack::new(cpus, 1024)?;
    let dev = stack.device("nic", RID, threads, 0)?;
    let mut msgs = Vec::new();
    for i in 0..threads {
        let opts = AllocOpts {
            affinity: Some(CpuMask::single(i)),
            ..AllocOpts::default()
        };
        let irq = stack.sys.alloc_at(dev, SlotId::Default, i, &opts)?;
        msgs.push(stack.sys.compose_msg(irq)?);
    }
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for _ in 0..size.rounds {
        let t1 = round(&stack, &msgs[..1], size.per_thread)?;
        let tn = round(&stack, &msgs, size.per_thread)?;
        one.push(t1.as_nanos() as f64 / f64::from(size.per_thread));
        many.push(tn.as_nanos() as f64 / f64::from(size.per_thread));
    }
    let (ns_one, ns_many) = (median(one), median(many));
    // Throughput at T over throughput at 1: (T / ns_many) / (1 / ns_one).
    let scaling = f64::from(threads) * ns_one / ns_many;
    let counted: u64 = (0..threads).map(|c| stack.sys.table().cpu_count(c)).sum();
    let expected = u64::from(size.rounds) * u64::from(size.per_thread) * u64::from(threads + 1);
    anyhow::ensure!(
        counted == expected,
        "per-CPU counts add up to {counted}, {expected} delivered"
    );
    Ok(json!({
        "threads": threads,
        "ns_per_irq": (ns_many * 100.0).round() / 100.0,
        "ns_per_irq_one_thread": (ns_one * 100.0).round() / 100.0,
        "scaling": (scaling * 1000.0).round() / 1000.0,
        "host_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
    }))
}

/// Prints the report as text.
pub fn print(r: &Value) {
    println!(
        "delivery path (remapping -> vector table -> irq table -> handler), one irq per thread"
    );
    println!(
        "{} threads: {} ns per irq per thread (1 thread: {} ns); scaling {}x (ideal {}); host has {} CPUs",
        r["threads"], r["ns_per_irq"], r["ns_per_irq_one_thread"], r["scaling"], r["threads"], r["host_cpus"]
    );
}
