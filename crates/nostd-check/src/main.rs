//! A `#![no_std]` binary that depends on every no_std crate of the workspace. `cargo check -p
//! nostd-check` fails with E0152 (duplicate lang item) if any of them pulls in `std`.

#![no_std]
#![no_main]

use core::alloc::{GlobalAlloc, Layout};

struct NoAlloc;

// SAFETY: never hands out memory; a null return is the documented allocation failure.
unsafe impl GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static ALLOC: NoAlloc = NoAlloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// Names one item of each crate so that they are linked in.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let _ = core::hint::black_box(genmsi::Msg::ZERO);
    let _ = core::hint::black_box(genmsi_pci::PciAddress::new(0, 0, 0));
    let _ = core::hint::black_box(genmsi_x86::Vector::FIRST_EXTERNAL);
    loop {
        core::hint::spin_loop();
    }
}
