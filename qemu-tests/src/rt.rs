//! The runtime the precompiled `core` of the host target expects from a C library: memory
//! functions, a personality symbol, the global allocator, and the panic handler.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Copies `n` bytes forward.
///
/// # Safety
/// The C contract: both ranges are valid for `n` bytes and do not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; `rep movsb` copies exactly `n` bytes upward.
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _, options(nostack, preserves_flags));
    }
    dst
}

/// Copies `n` bytes between possibly overlapping ranges.
///
/// # Safety
/// The C contract: both ranges are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: copying upward never overwrites a source byte before it is read here.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: the destination overlaps the end of the source: copy downward from the last
    // byte with the direction flag set, and clear it again as the ABI requires.
    unsafe {
        asm!("std", "rep movsb", "cld",
            inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _, inout("rcx") n => _,
            options(nostack));
    }
    dst
}

/// Fills `n` bytes with `c`.
///
/// # Safety
/// The C contract: the range is valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; `rep stosb` writes exactly `n` bytes.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8, options(nostack, preserves_flags));
    }
    dst
}

/// Compares `n` bytes.
///
/// # Safety
/// The C contract: both ranges are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n` and the caller guarantees both ranges.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Equality of `n` bytes (zero when equal).
///
/// # Safety
/// The C contract: both ranges are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// Never called: the kernel aborts on panic, but the precompiled `core` names the symbol.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Never called: the precompiled `alloc` has landing pads that name it, but nothing unwinds.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::port::qemu_exit(crate::EXIT_FAILURE)
}

/// Size of the kernel heap.
const HEAP_SIZE: usize = 16 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

/// A bump allocator over a static area: configuration allocates little and the kernel runs
/// for well under a second, so memory is never reused. Lock-free, so every CPU can allocate.
struct Bump {
    next: AtomicUsize,
}

static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

// SAFETY: `alloc` hands out disjoint, aligned ranges of the static area (the compare-exchange
// makes the reservation atomic across CPUs) and returns null when it is exhausted.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = core::ptr::addr_of_mut!(HEAP_AREA) as usize;
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + cur).next_multiple_of(layout.align()) - base;
            let end = start + layout.size();
            if end > HEAP_SIZE {
                return core::ptr::null_mut();
            }
            match self
                .next
                .compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (base + start) as *mut u8,
                Err(seen) => cur = seen,
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOCATOR: Bump = Bump {
    next: AtomicUsize::new(0),
};

/// Bytes of heap used so far.
pub fn heap_used() -> usize {
    ALLOCATOR.next.load(Ordering::Relaxed)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!(
        "[FAIL] kernel panic on cpu {}: {info}",
        crate::cpu::current_cpu()
    );
    crate::port::qemu_exit(crate::EXIT_FAILURE)
}
