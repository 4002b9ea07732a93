//! The remapping unit's fault log is bounded by construction: millions of faults keep memory
//! flat, and every one is counted exactly.
//!
//! A counting global allocator measures the heap bytes live after a thousand faults and after
//! three million; the two must be equal (the ring was full after the first thousand).

use genmsi::Msg;
use genmsi_x86::{FaultLog, FaultReason, IrUnit, SharedIrteTable};
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

#[test]
fn millions_of_faults_keep_memory_flat() {
    let table = SharedIrteTable::new(16);
    let mut unit = IrUnit::new(false, false);
    // Remappable format (SDM/VT-d 5.1.5.2: address bit 4 set), handle 3: a not-present entry;
    // handle 40 is past the 16-entry table; a compatibility-format write is blocked.
    let not_present = Msg::new(0xFEE0_0000 | (3 << 5) | (1 << 4), 0);
    let out_of_range = Msg::new(0xFEE0_0000 | (40 << 5) | (1 << 4), 0);
    let compat = Msg::new(0xFEE0_0000, 0x41);
    let writes = [
        (not_present, FaultReason::NotPresent),
        (out_of_range, FaultReason::IndexOutOfRange),
        (compat, FaultReason::CompatBlocked),
    ];
    let mut fault = |n: u64| {
        for i in 0..n {
            let (msg, want) = writes[(i % 3) as usize];
            assert_eq!(unit.translate(&msg, 0x100, &table), Err(want));
        }
    };
    fault(999);
    let early = LIVE.load(Ordering::Relaxed);
    fault(3_000_000);
    let late = LIVE.load(Ordering::Relaxed);
    assert_eq!(
        late, early,
        "heap bytes live after 1,000 faults and after 3,001,000"
    );
    let log = &unit.faults;
    assert_eq!(log.recent().count(), FaultLog::DEFAULT_CAPACITY);
    assert_eq!(log.total(), 3_000_999);
    for reason in [
        FaultReason::NotPresent,
        FaultReason::IndexOutOfRange,
        FaultReason::CompatBlocked,
    ] {
        assert_eq!(log.count(reason), 1_000_333, "{reason:?}");
    }
    assert_eq!(log.overwritten(), 3_000_999 - 256);
}
