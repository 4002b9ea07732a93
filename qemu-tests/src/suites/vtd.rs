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
    let inval = |p: &platform::Platform| {
        p.with_remap(|d| (d.invalidations(), d.invalidator().completed))
            .expect("remapping domain")
    };

    // Every IRTE write is followed by a completed invalidation.
    let (writes0, done0) = inval(p);
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
    let (writes1, done1) = inval(p);
    let entry = p.with_remap(|d| d.entry_of(irq)).flatten();
    let irte = entry.map(|e| p.with_remap(|d| genmsi_x86::IrteTable::read(d.table(), e)));
    let rte = IoApic::new().read_rte(pin.gsi);
    let handle = ((rte >> 49) & 0x7fff) | (((rte >> 11) & 1) << 15);
    check!(
        "vtd: activation writes a present IRTE, invalidates it, and the RTE names its handle",
        writes1 > writes0
            && done1 - done0 == writes1 - writes0
            && irte.flatten().is_some_and(|e| e[0] & 1 != 0)
            && entry == Some(handle as u32),
        "IRTE writes {writes0}->{writes1}, invalidations {done0}->{done1}, entry {entry:?}, RTE {rte:#018x}"
    );

    // Affinity: the IRTE is rewritten in place; the device's entry does not change.
    if p.sys.online_cpus().weight() > 1 {
        let before = ioapic::handled();
        p.sys
            .set_affinity(irq, &CpuMask::from_cpus([1]))
            .expect("move to CPU 1");
        let (writes2, done2) = inval(p);
        let rte2 = IoApic::new().read_rte(pin.gsi);
        let target = p.with_vector(|v| v.target(irq)).expect("target");
        let raw = counts::on(1, target.vector.0);
        pin.edu.raise(0);
        let got = time::wait_until(100, || ioapic::handled() == before + 1);
        check!(
            "vtd: an affinity change rewrites the IRTE (invalidated), not the RTE, and delivers on the new CPU",
            got && rte2 == rte
                && target.cpu == 1
                && counts::on(1, target.vector.0) == raw + 1
                && writes2 > writes1
                && done2 - done1 == writes2 - writes1,
            "RTE {rte:#x}->{rte2:#x}, target {target:?}, writes {writes1}->{writes2}, invalidations {done1}->{done2}"
        );
    }

    // A non-present IRTE blocks: deactivate (IRTE cleared and invalidated), then put the old
    // remappable RTE back by hand so the IO-APIC still sends the stale handle.
    let _ = p.with_remap(|d| d.invalidator().vtd.take_faults());
    p.sys.deactivate(irq).expect("deactivate");
    let (writes3, done3) = inval(p);
    let cleared = irte_present(p, entry) == Some(false);
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
    // QEMU records remapping faults from 8.0 on (7.2 only prints them).
    let fault_ok = !args.qemu_at_least(8, 0)
        || faults
            .iter()
            .any(|f| f.reason == FAULT_IRTE_NOT_PRESENT && Some(u32::from(f.index)) == entry);
    check!(
        "vtd: a non-present IRTE blocks the interrupt (and the fault is recorded)",
        cleared && blocked && fault_ok && done3 - done0 == writes3 - writes0,
        "cleared {cleared} blocked {blocked} faults {faults:?}"
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
