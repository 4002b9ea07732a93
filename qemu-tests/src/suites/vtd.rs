//! VT-d interrupt remapping (`-device intel-iommu,intremap=on`): `genmsi-x86`'s IR domain
//! under the IO-APIC store, over the real remapping table and queued invalidation.

use crate::devices::ioapic::IoApic;
use crate::devices::vtd::Vtd;
use crate::suites::{ioapic, vtd_msix};
use crate::{check, counts, platform, time, Args};
use genmsi::{AllocOpts, CpuMask, SlotId};

/// VT-d fault reason: the IRTE's present bit is clear (VT-d 7.1.3, table 30).
const FAULT_IRTE_NOT_PRESENT: u8 = 0x22;

/// Runs the VT-d checks.
pub fn run(args: &Args) {
    let Some(vtd) = Vtd::probe() else {
        check!("vtd: remapping unit with IR and QI present", false);
        return;
    };
    let p = platform::init_remapped(vtd, 256);
    check!(
        "vtd: queued invalidation and interrupt remapping enabled",
        p.is_some()
    );
    let Some(p) = p else { return };
    let Some(pin) = ioapic::run(p, " under VT-d") else {
        return;
    };
    // Every IRTE write is followed by a completed invalidation that covers its entry.
    let mark0 = platform::remap_mark();
    let opts = AllocOpts {
        activate: false,
        ..AllocOpts::default()
    };
    let irq = p
        .sys
        .alloc_at(pin.dev, SlotId::Default, pin.gsi, &opts)
        .expect("alloc pin");
    p.sys.set_handler(irq, pin.handler, 0).expect("handler");
    p.sys.activate(irq).expect("activate");
    let activated = platform::audit_since(p, mark0);
    let entry = p.with_remap(|d| d.entry_of(irq)).flatten();
    let irte = entry.map(|e| p.with_remap(|d| genmsi_x86::IrteTable::read(d.table(), e)));
    let rte = IoApic::new().read_rte(pin.gsi);
    let handle = ((rte >> 49) & 0x7fff) | (((rte >> 11) & 1) << 15);
    check!(
        "vtd: activation writes a present IRTE, invalidates that entry, and the RTE names its handle",
        entry.is_some_and(|e| activated.wrote_and_covered(e))
            && irte.flatten().is_some_and(|e| e[0] & 1 != 0)
            && entry == Some(handle as u32),
        "IRTE writes {activated:?}, entry {entry:?}, RTE {rte:#018x}"
    );

    // Affinity: the IRTE is rewritten in place; the device's entry does not change.
    if p.sys.online_cpus().weight() > 1 {
        let before = ioapic::handled();
        let mark1 = platform::remap_mark();
        p.sys
            .set_affinity(irq, &CpuMask::from_cpus([1]))
            .expect("move to CPU 1");
        let moved = platform::audit_since(p, mark1);
        let rte2 = IoApic::new().read_rte(pin.gsi);
        let target = p.with_vector(|v| v.target(irq)).expect("target");
        let raw = counts::on(1, target.vector.0);
        pin.edu.raise(0);
        let got = time::wait_until(time::LATE_MS, || ioapic::handled() == before + 1);
        check!(
            "vtd: an affinity change rewrites the IRTE (that entry invalidated), not the RTE, and delivers on the new CPU",
            got && rte2 == rte
                && target.cpu == 1
                && counts::on(1, target.vector.0) == raw + 1
                && entry.is_some_and(|e| moved.wrote_and_covered(e)),
            "RTE {rte:#x}->{rte2:#x}, target {target:?}, IRTE writes {moved:?}"
        );
    }

    // A non-present IRTE blocks: deactivate (IRTE cleared and invalidated), then put the old
    // remappable RTE back by hand so the IO-APIC still sends the stale handle.
    let _ = p.with_remap(|d| d.invalidator().vtd.take_faults());
    let mark3 = platform::remap_mark();
    p.sys.deactivate(irq).expect("deactivate");
    let deactivated = platform::audit_since(p, mark3);
    let cleared = irte_present(p, entry) == Some(false);
    check!(
        "vtd: deactivation clears the IRTE and invalidates that entry",
        cleared && entry.is_some_and(|e| deactivated.wrote_and_covered(e)),
        "cleared {cleared}, entry {entry:?}, IRTE writes {deactivated:?}"
    );
    let before = ioapic::handled();
    let unmapped = platform::unmapped();
    IoApic::new().write_rte(pin.gsi, rte & !(1 << 16));
    pin.edu.raise(0);
    time::delay(20);
    let blocked = ioapic::handled() == before && platform::unmapped() == unmapped;
    IoApic::new().write_rte(pin.gsi, 1 << 16);
    pin.edu.ack();
    let faults = p
        .with_remap(|d| d.invalidator().vtd.take_faults())
        .unwrap_or_default();
    // Nothing arriving only proves a block when the unit says the message reached it: QEMU
    // records remapping faults from 8.0 on (7.2 only prints them).
    let recorded = faults
        .iter()
        .any(|f| f.reason == FAULT_IRTE_NOT_PRESENT && Some(u32::from(f.index)) == entry);
    args.check_from(
        (8, 0),
        "vtd: a non-present IRTE blocks the interrupt and the fault is recorded",
        cleared && blocked,
        recorded,
        format_args!("cleared {cleared} blocked {blocked} faults {faults:?}"),
    );
    p.sys
        .free_index(pin.dev, SlotId::Default, pin.gsi)
        .expect("free");
    vtd_msix::run(p, args);
}

fn irte_present(p: &platform::Platform, entry: Option<u32>) -> Option<bool> {
    let e = entry?;
    p.with_remap(|d| genmsi_x86::IrteTable::read(d.table(), e)[0] & 1 != 0)
}
