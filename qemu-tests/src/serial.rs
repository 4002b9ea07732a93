//! The log: COM1 (16550 UART at 0x3f8), shared by every CPU behind a spin lock, and the
//! `[PASS]` / `[FAIL]` check lines the runner reads.

use crate::port::{inb, outb};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Mutex;

const COM1: u16 = 0x3f8;
/// Line status register: transmitter holding register empty.
const LSR_THRE: u8 = 1 << 5;

struct Com1;

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            while inb(COM1 + 5) & LSR_THRE == 0 {
                crate::port::pause();
            }
            outb(COM1, b);
        }
        Ok(())
    }
}

static LOG: Mutex<Com1> = Mutex::new(Com1);
static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
static SKIPPED: AtomicU32 = AtomicU32::new(0);

/// Programs COM1 for 115200 8N1 with interrupts off.
pub fn init() {
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xc7);
    outb(COM1 + 4, 0x03);
}

/// Writes formatted text to the log (used by `println!`).
pub fn print(args: fmt::Arguments<'_>) {
    crate::port::cli_guard(|| {
        let _ = LOG.lock().write_fmt(args);
    });
}

/// Records one check: a `[PASS] name` or `[FAIL] name: detail` line.
pub fn check(name: &str, ok: bool, detail: fmt::Arguments<'_>) -> bool {
    if ok {
        PASSED.fetch_add(1, Ordering::Relaxed);
        crate::println!("[PASS] {name}");
    } else {
        FAILED.fetch_add(1, Ordering::Relaxed);
        crate::println!("[FAIL] {name}: {detail}");
    }
    ok
}

/// Records a check that cannot be decided on this QEMU: a `[SKIP] name: reason` line, which
/// the runner reports separately and does not count as passed.
pub fn skip(name: &str, reason: fmt::Arguments<'_>) {
    SKIPPED.fetch_add(1, Ordering::Relaxed);
    crate::println!("[SKIP] {name}: {reason}");
}

/// Checks recorded so far: (passed, failed, skipped).
pub fn totals() -> (u32, u32, u32) {
    (
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
        SKIPPED.load(Ordering::Relaxed),
    )
}

/// Prints a line to the serial log.
#[macro_export]
macro_rules! println {
    () => { $crate::serial::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Records a check: `check!(name, condition)` or `check!(name, condition, "detail {}", x)`.
#[macro_export]
macro_rules! check {
    ($name:expr, $ok:expr) => { $crate::serial::check($name, $ok, format_args!("")) };
    ($name:expr, $ok:expr, $($arg:tt)*) => { $crate::serial::check($name, $ok, format_args!($($arg)*)) };
}
