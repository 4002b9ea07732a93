//! The checks, grouped into suites; each QEMU configuration of the runner runs one suite.

mod boot;
mod devices;
mod hpet;
mod ioapic;
mod msi;
mod msix;
mod smp;
mod smp_msix;
mod vtd;
mod vtd_msix;

use crate::Args;

/// Runs the suite named by `args`.
pub fn run(args: &Args) {
    match args.suite.as_str() {
        "boot" => boot::run(),
        "devices" => devices::run(),
        "legacy" => {
            let p = crate::platform::init();
            ioapic::run(p, "");
            hpet::run(p);
        }
        "pci" => {
            let p = crate::platform::init();
            msi::run(p);
            if let Some(nic) = msix::run(p, "") {
                msix::release(p, nic, "");
            }
        }
        "vtd" => vtd::run(args),
        "smp" => {
            smp::run();
            smp_msix::run(crate::platform::init());
        }
        other => {
            crate::check!("suite known", false, "no suite named {other:?}");
        }
    }
}
