//! Bounded by construction: what a guest feeds the VMM cannot grow host memory. Allocation is
//! measured with a counting allocator (live heap bytes of the whole process: this file holds
//! one test so that nothing else allocates meanwhile), not guessed from RSS. Skips, saying so,
//! only when `/dev/kvm` cannot be opened.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use genmsi_kvm::function::{Function, ERRORS_KEPT};
use genmsi_vmm::kvm::KvmMsix;
use genmsi_vmm::{AccessError, Error, Strategy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

mod common;

/// The system allocator, counting the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator with the caller's arguments unchanged;
// the counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with `layout`, as the caller promises.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BAR0: u64 = 0xE000_0000;
/// 64 entries: the table is 1 KiB, the PBA on the next page.
const PBA: u64 = BAR0 + 0x1000;

#[test]
fn ten_million_refused_guest_accesses_keep_memory_flat() {
    let Some((vm, routes)) = common::vm_or_skip() else {
        return;
    };
    let backend = KvmMsix::new(vm, routes, 64, 64).unwrap();
    let mut f = Function::new(BAR0, 64, backend, Strategy::OnDemand).unwrap();
    // The PBA is read only (PCIe 7.7.2.9): every write is refused and recorded.
    let write = 0u64.to_le_bytes();
    let warm_up = 2 * ERRORS_KEPT as u64;
    for _ in 0..warm_up {
        f.mmio_write(PBA, &write);
    }
    let before = LIVE.load(Ordering::Relaxed);
    const N: u64 = 10_000_000;
    for _ in 0..N {
        f.mmio_write(PBA, &write);
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(f.errors().total(), warm_up + N, "every refusal counted");
    assert_eq!(f.errors().len(), ERRORS_KEPT, "the newest kept");
    assert_eq!(f.errors().overwritten(), warm_up + N - ERRORS_KEPT as u64);
    assert_eq!(
        f.errors().iter().last(),
        Some(&Error::Access(AccessError::ReadOnly { offset: 0 }))
    );
    println!("heap growth over {N} refused guest writes: {grown} bytes");
    assert!(grown <= 0, "the heap grew by {grown} bytes");
}
