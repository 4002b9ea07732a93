//! Memory per irq does not grow with the CPU count, and 100,000 irqs stay cheap.
//!
//! A counting global allocator measures the heap bytes an allocation of many irqs adds, on a
//! 64-CPU and on an 8,192-CPU system.

use genmsi::soft::{MemStore, SoftRoot};
use genmsi::{AllocOpts, CpuMask, DeviceMeta, IrqSystem, SlotId, StoreCaps, SystemConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap bytes per irq for `irqs` irqs on `cpus` CPUs, each irq with a one-CPU or a whole-node
/// affinity (the common cases).
fn bytes_per_irq(cpus: u32, irqs: u32) -> f64 {
    let sys: IrqSystem = IrqSystem::new(SystemConfig::new(cpus, irqs + 1024));
    let root = sys
        .add_domain(Box::new(SoftRoot::new(cpus, u32::MAX)), None)
        .unwrap();
    let dev = sys.add_device("big", DeviceMeta::default());
    let store = MemStore::new(StoreCaps::dynamic(irqs));
    sys.create_device_domain(dev, SlotId::Secondary, Box::new(store), root)
        .unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    let node = CpuMask::range(cpus / 2, cpus / 2 + 63);
    for i in 0..irqs {
        let affinity = if i % 2 == 0 {
            CpuMask::single(i % cpus)
        } else {
            node.clone()
        };
        let opts = AllocOpts {
            affinity: Some(affinity),
            ..AllocOpts::default()
        };
        sys.alloc_at(dev, SlotId::Secondary, i, &opts).unwrap();
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(sys.stats().irqs_active, irqs);
    (after - before) as f64 / f64::from(irqs)
}

#[test]
fn per_irq_memory_is_independent_of_the_cpu_count() {
    // The tests of this file run one at a time (the allocator counter is global).
    let small = bytes_per_irq(64, 20_000);
    let big = bytes_per_irq(8192, 20_000);
    println!("bytes per irq: {small:.1} on 64 CPUs, {big:.1} on 8,192 CPUs");
    assert!((big - small).abs() < 8.0, "{small} vs {big}");
    // Linux keeps a per-CPU counter per irq: 8 bytes x 8,192 CPUs = 64 KiB per irq.
    assert!(big < 512.0, "{big} bytes per irq");
    let huge = bytes_per_irq(8192, 100_000);
    println!("bytes per irq with 100,000 irqs: {huge:.1}");
    assert!(huge < 512.0);
}
