//! The checks, grouped into suites; each QEMU configuration of the runner runs one suite.

mod boot;
mod devices;
mod hpet;
mod ioapic;
mod msi;
mod msix;
mod offline;
mod smp;
mod smp_msix;
mod vtd;
mod vtd_msix;
mod vtd_pair;

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
        "vtd-bridge" => {
            vtd::run(args);
            if let Some(p) = crate::platform::get().filter(|p| p.remap.is_some()) {
                msi::run(p);
            }
        }
        "vtd-pair" => {
            if let Some(p) = remapped() {
                vtd_pair::run(p, args);
            }
        }
        "offline" => offline::run(crate::platform::init()),
        "offline-vtd" => {
            if let Some(p) = remapped() {
                offline::run(p);
            }
        }
        "smp-vtd" => {
            if let Some(p) = remapped() {
                smp_msix::run(p);
            }
        }
        "smp-offline-vtd" => {
            if let Some(p) = remapped() {
                smp_msix::run(p);
                offline::run(p);
                let ids = crate::acpi::apic_ids().unwrap_or_default();
                let (passed, failed, _) = crate::serial::totals();
                crate::println!(
                    "x2apic summary: {} CPUs, APIC ids {:?} ({} above 255), x2APIC {}, remapped destinations in IRTE bits 63:32; {passed} checks passed, {failed} failed",
                    ids.len(),
                    ids,
                    ids.iter().filter(|&&id| id > 255).count(),
                    crate::lapic::x2apic()
                );
            }
        }
        "smp" => {
            smp::run();
            smp_msix::run(crate::platform::init());
        }
        other => {
            crate::check!("suite known", false, "no suite named {other:?}");
        }
    }
}

/// The platform under VT-d remapping (a failed check when the unit is missing or refuses).
fn remapped() -> Option<&'static crate::platform::Platform> {
    let p =
        crate::devices::vtd::Vtd::probe().and_then(|vtd| crate::platform::init_remapped(vtd, 256));
    crate::check!(
        "vtd: remapping unit found, queued invalidation and interrupt remapping enabled",
        p.is_some()
    );
    p
}
