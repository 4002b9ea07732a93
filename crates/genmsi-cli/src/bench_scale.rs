//! `genmsi bench scale`: heap bytes per irq on the real x86 stack (vector domain behind VT-d
//! remapping), with CPUs offline and node and irregular affinity masks mixed, beside what
//! Linux's layout would take for the same irqs; then the same irqs with a distinct random
//! 32-CPU mask each; and the fixed bytes the stack keeps per CPU.
//!
//! A counting global allocator measures the heap bytes the allocation and activation of the
//! irqs add (the devices and their message stores exist before, as device memory does). The
//! fixed bytes per CPU are the slope of the stack's heap between a 1-CPU and the measured
//! machine (built with one irq). Linux's figures are a **model** from its data structures (see
//! [`linux_bytes_per_irq`] and [`linux_bytes_per_cpu`]); they are labelled as modelled wherever
//! they are shown.

use crate::bench_stack::Stack;
use genmsi::{AllocOpts, CpuMask, SlotId};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// Forwards to the system allocator and counts the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; the new size is the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Entries per device (an MSI-X table's maximum).
const PER_DEVICE: u32 = 2048;

/// Linux's heap bytes per irq for a remapped MSI-X irq on `cpus` possible CPUs (x86-64,
/// `CONFIG_CPUMASK_OFFSTACK`, as distributions build for large machines), a **model** summed
/// from the objects Linux allocates per irq, each at its slab size class:
/// - `struct irq_desc`: 512 bytes (kmalloc-512);
/// - per-CPU interrupt statistics (`kstat_irqs`, `struct irqstat`): 8 bytes per possible CPU;
/// - off-stack cpumasks: the affinity, the effective affinity and the pending mask, each
///   `nr_cpu_ids / 8` bytes (at least 8);
/// - one `struct irq_data` per parent domain level (remapping, vector): 2 x 96 bytes;
/// - the vector domain's `struct apic_chip_data`: 128 bytes;
/// - the remapping domain's `struct intel_ir_data`: 64 bytes, and its 16-byte IRTE.
pub fn linux_bytes_per_irq(cpus: u32) -> u64 {
    let cpus = u64::from(cpus);
    let mask = (cpus.div_ceil(8)).max(8).next_power_of_two();
    512 + 8 * cpus + 3 * mask + 2 * 96 + 128 + 64 + 16
}

/// Linux's fixed bytes per possible CPU for the same job, a **model**: the vector matrix's
/// `struct cpumap` (88 bytes) and x86's per-CPU `vector_irq` table (256 descriptor pointers,
/// 2,048 bytes).
pub fn linux_bytes_per_cpu() -> u64 {
    88 + 256 * 8
}

/// The heap bytes a stack of `cpus` CPUs and one irq holds.
fn stack_bytes(cpus: u32) -> anyhow::Result<isize> {
    let before = LIVE.load(Ordering::Relaxed);
    let stack = Stack::new(cpus, 1)?;
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(stack);
    Ok(bytes)
}

/// Which affinity each irq gets.
#[derive(Clone, Copy)]
enum Masks {
    /// Node masks and every 2nd CPU of a node, one mask per node shared by its irqs.
    Nodes,
    /// A distinct random 32-CPU mask per irq (seeded), built as the irq is allocated.
    Random32,
}

/// Allocates and activates `irqs` irqs on `cpus` CPUs with `offline` CPUs offline; the report.
pub fn run(cpus: u32, irqs: u32, offline: u32) -> anyhow::Result<Value> {
    anyhow::ensure!(cpus >= 2, "--cpus must be at least 2");
    anyhow::ensure!(offline < cpus, "--offline must leave a CPU online");
    let (per_irq, seconds) = measure(cpus, irqs, offline, Masks::Nodes)?;
    let (random_per_irq, _) = measure(cpus, irqs, offline, Masks::Random32)?;
    let per_cpu = (stack_bytes(cpus)? - stack_bytes(1)?) as f64 / f64::from(cpus - 1);
    let tenth = |x: f64| (x * 10.0).round() / 10.0;
    Ok(json!({
        "cpus": cpus,
        "irqs": irqs,
        "offline": offline,
        "bytes_per_irq": tenth(per_irq),
        "linux_bytes_per_irq": linux_bytes_per_irq(cpus),
        "linux_bytes_per_irq_is_modelled": true,
        "linux_ratio": tenth(linux_bytes_per_irq(cpus) as f64 / per_irq),
        "random32_bytes_per_irq": tenth(random_per_irq),
        "fixed_bytes_per_cpu": tenth(per_cpu),
        "linux_bytes_per_cpu": linux_bytes_per_cpu(),
        "linux_bytes_per_cpu_is_modelled": true,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    }))
}

/// Heap bytes per irq of `irqs` irqs with affinities of `masks`, and the seconds they took.
fn measure(cpus: u32, irqs: u32, offline: u32, masks: Masks) -> anyhow::Result<(f64, f64)> {
    let stack = Stack::new(cpus, irqs)?;
    // Offline CPUs spread over the machine, none of them CPU 0.
    for k in 0..offline {
        stack.sys.cpu_offline(1 + k * (cpus - 1) / offline.max(1))?;
    }
    let devices: Vec<_> = (0..irqs.div_ceil(PER_DEVICE))
        .map(|d| {
            let unit = (d * PER_DEVICE / 65_536) as usize;
            stack.device(&format!("dev{d}"), d as u16, PER_DEVICE, unit)
        })
        .collect::<anyhow::Result<_>>()?;
    // Node masks (64 CPUs) and irregular ones (every 2nd CPU of a node: a housekeeping set),
    // each node's mask built once and shared by its irqs, as a driver passes one mask.
    let node = 64.min(cpus);
    let nodes = cpus / node;
    let node_masks: Vec<CpuMask> = (0..nodes)
        .flat_map(|n| {
            let first = n * node;
            [
                CpuMask::range(first, first + node - 1),
                CpuMask::from_cpus((first..first + node).step_by(2)),
            ]
        })
        .collect();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut random32 = || {
        let mut picked = std::collections::BTreeSet::new();
        while picked.len() < 32.min(cpus as usize) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            picked.insert((rng % u64::from(cpus)) as u32);
        }
        CpuMask::from_cpus(picked)
    };
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    for i in 0..irqs {
        let affinity = match masks {
            Masks::Nodes => node_masks[(i as usize) % node_masks.len()].clone(),
            Masks::Random32 => random32(),
        };
        let opts = AllocOpts {
            affinity: Some(affinity),
            ..AllocOpts::default()
        };
        let dev = devices[(i / PER_DEVICE) as usize];
        stack
            .sys
            .alloc_at(dev, SlotId::Default, i % PER_DEVICE, &opts)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    anyhow::ensure!(
        stack.sys.stats().irqs_active == irqs,
        "not every irq is active"
    );
    Ok((bytes as f64 / f64::from(irqs), seconds))
}

/// Prints the report as text.
pub fn print(r: &Value) {
    println!(
        "{} irqs on {} CPUs ({} offline), x86 vector domain behind VT-d, node and irregular masks",
        r["irqs"], r["cpus"], r["offline"]
    );
    println!(
        "heap bytes per irq: {} (Linux, modelled: {}; {}x less); allocation took {} s",
        r["bytes_per_irq"], r["linux_bytes_per_irq"], r["linux_ratio"], r["seconds"]
    );
    println!(
        "with a distinct random 32-CPU mask per irq: {} bytes per irq",
        r["random32_bytes_per_irq"]
    );
    println!(
        "fixed heap bytes per CPU: {} (Linux, modelled: {})",
        r["fixed_bytes_per_cpu"], r["linux_bytes_per_cpu"]
    );
}
