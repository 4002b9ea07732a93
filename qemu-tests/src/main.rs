//! A bare-metal x86-64 kernel that drives QEMU's q35 device models through the genmsi crates,
//! unchanged, and reports each check as a `[PASS]` / `[FAIL]` line on COM1.
//!
//! QEMU boots it through the PVH entry (`boot.rs`); the runner (`scripts/qemu`) passes the
//! suite to run, the QEMU version and the accelerator on the command line, for example
//! `-append "suite=pci qemu=10.0.2 cpus=1 accel=tcg"`, and reads the exit status of
//! `isa-debug-exit`.

#![no_std]
#![no_main]

extern crate alloc;

mod acpi;
mod boot;
mod counts;
mod cpu;
mod devices;
mod lapic;
mod mmio;
mod pci;
mod pcidev;
mod platform;
mod port;
mod rt;
mod serial;
mod smp;
mod suites;
mod time;

/// `isa-debug-exit` code for "every check passed" (QEMU exit status 33).
pub const EXIT_SUCCESS: u8 = 0x10;
/// `isa-debug-exit` code for "a check failed" (QEMU exit status 35).
pub const EXIT_FAILURE: u8 = 0x11;

/// `hvm_start_info.magic` (Xen's `arch-x86/hvm/start_info.h`).
const PVH_MAGIC: u32 = 0x336e_c578;

/// What the runner asked for.
#[derive(Clone, Debug, Default)]
pub struct Args {
    /// The suite to run.
    pub suite: alloc::string::String,
    /// QEMU's version as (major, minor), when the runner passed it.
    pub qemu: Option<(u32, u32)>,
    /// CPUs to bring online.
    pub cpus: u32,
    /// The accelerator QEMU runs the kernel under (`tcg` or `kvm`), when the runner passed it;
    /// expectations that differ between the two are keyed on it.
    pub accel: alloc::string::String,
}

impl Args {
    fn parse(cmdline: &str) -> Args {
        let mut args = Args {
            cpus: 1,
            ..Args::default()
        };
        for word in cmdline.split_ascii_whitespace() {
            match word.split_once('=') {
                Some(("suite", v)) => args.suite = v.into(),
                Some(("cpus", v)) => args.cpus = v.parse().unwrap_or(1),
                Some(("accel", v)) => args.accel = v.into(),
                Some(("qemu", v)) => {
                    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
                    if let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) {
                        args.qemu = Some((major, minor));
                    }
                }
                _ => println!("ignoring argument {word:?}"),
            }
        }
        args
    }

    /// True when the runner reported QEMU `major.minor` or later.
    pub fn qemu_at_least(&self, major: u32, minor: u32) -> bool {
        self.qemu.is_some_and(|v| v >= (major, minor))
    }

    /// Records a check whose proof needs QEMU `major.minor` or later: `ok` is what every QEMU
    /// can show, `proof` what only the newer one can. An unknown version fails; an older one
    /// fails when `ok` is false and otherwise prints `[SKIP]` (not counted as passed).
    pub fn check_from(
        &self,
        (major, minor): (u32, u32),
        name: &str,
        ok: bool,
        proof: bool,
        detail: core::fmt::Arguments<'_>,
    ) {
        match self.qemu {
            None => {
                check!(
                    name,
                    false,
                    "QEMU version unknown, so the proof cannot be checked ({detail})"
                );
            }
            Some(v) if v < (major, minor) && ok => serial::skip(
                name,
                format_args!(
                    "QEMU {}.{} cannot show the proof (needs {major}.{minor}); {detail}",
                    v.0, v.1
                ),
            ),
            Some(_) => {
                check!(name, ok && proof, "{detail}");
            }
        }
    }
}

/// Reads the command line out of the PVH start info.
fn cmdline(start_info: u32) -> alloc::string::String {
    let base = u64::from(start_info) as *const u32;
    // SAFETY: QEMU's PVH loader passes the physical address of an `hvm_start_info` in low RAM
    // (identity mapped); its magic is checked before any other field is trusted, and the
    // command line is a NUL-terminated string it placed in RAM.
    unsafe {
        if start_info == 0 || base.read_volatile() != PVH_MAGIC {
            return alloc::string::String::new();
        }
        let cmdline = (base as *const u64).add(3).read_volatile() as *const u8;
        if cmdline.is_null() {
            return alloc::string::String::new();
        }
        let mut len = 0;
        while len < 4096 && cmdline.add(len).read_volatile() != 0 {
            len += 1;
        }
        let bytes = core::slice::from_raw_parts(cmdline, len);
        alloc::string::String::from_utf8_lossy(bytes).into_owned()
    }
}

#[no_mangle]
extern "C" fn kernel_main(start_info: u32) -> ! {
    serial::init();
    let args = Args::parse(&cmdline(start_info));
    cpu::init(0);
    // x2APIC when an APIC id the firmware lists does not fit the xAPIC's 8 bits (0xFF is the
    // xAPIC broadcast): such a machine also needs VT-d extended interrupt mode for its MSIs.
    let ids = acpi::apic_ids().unwrap_or_default();
    if ids.iter().any(|&id| id >= 0xff) && lapic::x2apic_supported() {
        lapic::use_x2apic();
    }
    lapic::init(true);
    println!(
        "genmsi bare-metal kernel: suite {:?}, qemu {:?}, accel {:?}, cpus {}, APIC ids {ids:?}, x2APIC {}",
        args.suite,
        args.qemu,
        args.accel,
        args.cpus,
        lapic::x2apic()
    );
    if args.cpus > 1 {
        let online = smp::start_aps(args.cpus);
        check!(
            "smp: application processors started",
            online == args.cpus,
            "{online} of {} CPUs online",
            args.cpus
        );
    }
    port::sti();
    suites::run(&args);
    port::cli();
    let (passed, failed, skipped) = serial::totals();
    println!(
        "[DONE] suite {}: {} checks, {passed} passed, {failed} failed, {skipped} skipped, heap {} KiB, stray interrupts {}, unmapped {}, spurious {}",
        args.suite,
        passed + failed + skipped,
        rt::heap_used() / 1024,
        cpu::stray_count(),
        platform::unmapped(),
        platform::spurious()
    );
    let ok = failed == 0
        && passed > 0
        && cpu::stray_count() == 0
        && platform::unmapped() == 0
        && platform::spurious() == 0;
    port::qemu_exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE })
}
