//! VT-d interrupt remapping under the MSI-X store: the e1000e's vectors through
//! `genmsi-x86`'s IR domain. The MSI-X checks of [`msix`] run first (remapped delivery), then:
//! the IRTEs carry the function's requester id, an affinity change rewrites only the IRTE, a
//! non-present IRTE blocks, and a requester id that fails the IRTE's source check blocks.
//! Every IRTE write is followed by a completed invalidation that covers its entry.

use crate::pci::{self, PciFunction};
use crate::pcidev::{self, Function};
use crate::suites::msix::{self, Nic, Store};
use crate::{check, counts, platform, time, Args};
use alloc::format;
use alloc::vec::Vec;
use genmsi::{AllocOpts, CpuMask, Irq, SlotId};
use genmsi_pci::{pci_alloc_irq_vectors, pci_free_irq_vectors, IrqTypes, IrqVectors, PciAddress};
use genmsi_x86::irte::Svt;
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::{FaultReason, Irte, IrteTable};

/// The requester id the e1000e is registered under for the source-id check: the first
/// location on bus 0 where enumeration found no function, so no real device can send from it.
fn unused_address() -> Option<PciAddress> {
    (0..32)
        .map(|d| PciFunction::new(0, d, 0))
        .find(|&f| !pci::present(f))
        .map(|f| PciAddress::new(f.bus, f.device, f.function))
}

/// The IRTE of `irq`, decoded, with its index.
pub fn irte(p: &platform::Platform, irq: Irq) -> Option<(u32, Irte)> {
    p.with_remap(|d| {
        let index = d.entry_of(irq)?;
        Irte::parse(d.table().read(index), crate::lapic::x2apic())
            .ok()
            .map(|e| (index, e))
    })
    .flatten()
}

/// The IRTE index the MSI-X entry `index` names, if it holds a remappable message.
fn entry_handle(p: &platform::Platform, dev: &Function, index: u32) -> Option<u32> {
    let (_, entries) = msix::table(p, dev);
    match MsiFormat::parse(&entries.get(index as usize)?.msg) {
        Ok(MsiFormat::Remappable(r)) => Some(r.index()),
        _ => None,
    }
}

/// Faults the unit recorded since the last call.
pub fn faults(p: &platform::Platform) -> Vec<crate::devices::vtd::Fault> {
    p.with_remap(|d| d.invalidator().vtd.take_faults())
        .unwrap_or_default()
}

/// Runs the MSI-X checks under remapping on the platform `p`.
pub fn run(p: &platform::Platform, args: &Args) {
    let mark = platform::remap_mark();
    let Some(nic) = msix::run(p, " under VT-d") else {
        return;
    };
    let irq0 = nic.vectors.irqs()[0];
    // What the enumerated topology asks (the device's own id, a bridge's alias or a bus
    // range), not what the kernel registered it as.
    let at = nic.device.pci;
    let rid = pcidev::requester_check(at);
    let live = [(0, irq0), (msix::DYNAMIC_INDEX, nic.dynamic)];
    let sourced = live.iter().all(|&(i, irq)| {
        irte(p, irq).is_some_and(|(index, e)| {
            e.present && pcidev::irte_checks(&e, at) && Some(index) == entry_handle(p, &nic.dev, i)
        })
    });
    if let Some((index, e)) = irte(p, irq0) {
        crate::println!(
            "vtd: e1000e {:02x}:{:02x}.{} MSI-X 0: IRTE {index}, SVT={:?} SQ={} SID={:#06x}",
            at.bus,
            at.device,
            at.function,
            e.svt,
            e.sq,
            e.sid
        );
    }
    let audit = platform::audit_since(p, mark);
    let written = live
        .iter()
        .all(|&(_, irq)| irte(p, irq).is_some_and(|(index, _)| audit.written.contains(&index)));
    check!(
        "vtd: MSI-X entries name present IRTEs that check the e1000e's requester id from the enumerated topology, each write invalidated",
        sourced && written && audit.ok(),
        "source check {rid:?}, IRTEs {:?}, IRTE writes {audit:?}",
        live.iter().map(|&(_, irq)| irte(p, irq)).collect::<Vec<_>>()
    );

    if p.sys.online_cpus().weight() > 1 {
        affinity(p, &nic);
    }
    non_present(p, &nic, args);
    let device = nic.device;
    msix::release(p, nic, " under VT-d");
    source_id(p, device, args);
}

/// An affinity change rewrites the IRTE in place: the MSI-X entry does not change.
fn affinity(p: &platform::Platform, nic: &Nic) {
    let irq0 = nic.vectors.irqs()[0];
    let (_, before) = msix::table(p, &nic.dev);
    let mark = platform::remap_mark();
    let moved = p.sys.set_affinity(irq0, &CpuMask::from_cpus([1]));
    let audit = platform::audit_since(p, mark);
    let (_, after) = msix::table(p, &nic.dev);
    let target = p.with_vector(|v| v.target(irq0));
    let fired = msix::fire(p, &nic.device, 0, irq0);
    check!(
        "vtd: an MSI-X affinity change rewrites the IRTE (invalidated), not the table entry, and delivers on the new CPU",
        moved.is_ok()
            && before[0] == after[0]
            && target.is_some_and(|t| t.cpu == 1)
            && irte(p, irq0).is_some_and(|(index, e)| e.dest == crate::smp::apic_id(1) && audit.wrote_and_covered(index))
            && fired.ok(),
        "move {moved:?}, entry {:?} -> {:?}, target {target:?}, fired {fired:?}, IRTE writes {audit:?}",
        before[0],
        after[0]
    );
}

/// Deactivating index 0 clears its IRTE; the old remappable message, put back in the table by
/// hand, is then blocked and recorded as "IRTE not present".
fn non_present(p: &platform::Platform, nic: &Nic, args: &Args) {
    let irq0 = nic.vectors.irqs()[0];
    let (_, entries) = msix::table(p, &nic.dev);
    let stale = entries[0];
    let Some((index, _)) = irte(p, irq0) else {
        check!("vtd: MSI-X index 0 has an IRTE", false);
        return;
    };
    let target = p.with_vector(|v| v.target(irq0)).expect("active irq");
    let _ = faults(p);
    let mark = platform::remap_mark();
    p.sys.deactivate(irq0).expect("deactivate");
    let audit = platform::audit_since(p, mark);
    let cleared = p.with_remap(|d| d.table().read(index)[0] & 1 == 0) == Some(true);
    check!(
        "vtd: deactivating an MSI-X vector clears its IRTE and invalidates that entry",
        cleared && audit.wrote_and_covered(index),
        "IRTE {index} cleared {cleared}, IRTE writes {audit:?}"
    );
    let count = p.sys.table().count(irq0);
    let raw = counts::on(target.cpu, target.vector.0);
    let unmapped = platform::unmapped();
    write_entry(p, &nic.dev, 0, stale.to_dwords());
    nic.device.raise(0);
    time::delay(5);
    let blocked = p.sys.table().count(irq0) == count
        && counts::on(target.cpu, target.vector.0) == raw
        && platform::unmapped() == unmapped;
    let mut masked = stale.to_dwords();
    masked[3] |= 1;
    write_entry(p, &nic.dev, 0, masked);
    let recorded = faults(p);
    crate::println!("vtd: faults after the stale MSI-X message: {recorded:?}");
    // Nothing arriving only proves a block when the unit says the message reached it: QEMU
    // records remapping faults from 8.0 on (7.2 only prints them).
    let fault = recorded.iter().any(|f| {
        f.reason == FaultReason::NotPresent.code()
            && u32::from(f.index) == index
            && f.source_id == pcidev::carried_requester_id(nic.device.pci)
    });
    args.check_from(
        (8, 0),
        "vtd: a non-present IRTE blocks an MSI-X message and the fault is recorded",
        cleared && blocked,
        fault,
        format_args!("IRTE {index} cleared {cleared}, blocked {blocked}, faults {recorded:?}"),
    );
}

/// Writes MSI-X table entry `index` by hand, behind genmsi's back (the device side of a
/// stale message).
pub fn write_entry(p: &platform::Platform, dev: &Function, index: u32, dwords: [u32; 4]) {
    p.sys
        .with_store::<Store, _>(dev.id, SlotId::Default, |s| {
            let cap = *s.cap();
            let at = cap.entry_offset(index).expect("index in the table");
            let (_, bars) = s.parts_mut();
            for (i, dword) in dwords.iter().enumerate() {
                genmsi_pci::Mmio::write_u32(bars, cap.table.bar, at + 4 * i as u64, *dword)
                    .expect("table write");
            }
        })
        .expect("the MSI-X store");
}

/// The e1000e registered under a requester id that is not its own: the IRTE checks the wrong
/// source, so the unit blocks the e1000e's message and records a source-id fault.
fn source_id(p: &platform::Platform, device: crate::devices::e1000e::E1000e, args: &Args) {
    let Some(wrong) = unused_address() else {
        check!("vtd: a bus 0 location no device occupies", false);
        return;
    };
    let dev = pcidev::register_as(&p.sys, "e1000e (wrong requester id)", device.pci, wrong);
    let vectors = pci_alloc_irq_vectors(
        &p.sys,
        &dev,
        p.parent(),
        1..=1,
        IrqTypes::MSIX,
        &AllocOpts::default(),
        None,
    );
    let Ok(IrqVectors::Msix(irqs)) = &vectors else {
        check!(
            "vtd: e1000e MSI-X under a wrong requester id",
            false,
            "{vectors:?}"
        );
        return;
    };
    let irq = irqs[0];
    let entry = irte(p, irq);
    let target = p.with_vector(|v| v.target(irq)).expect("active irq");
    let raw = counts::on(target.cpu, target.vector.0);
    let unmapped = platform::unmapped();
    let _ = faults(p);
    device.raise(0);
    time::delay(5);
    let blocked = p.sys.table().count(irq) == 0
        && counts::on(target.cpu, target.vector.0) == raw
        && platform::unmapped() == unmapped;
    let recorded = faults(p);
    crate::println!("vtd: faults after the wrongly sourced MSI-X message: {recorded:?}");
    // The id the writes carry: the device's own, or its bridge's alias.
    let real = pcidev::carried_requester_id(device.pci);
    // As above: without a recorded fault, nothing arriving does not show the message was sent.
    let fault = recorded.iter().any(|f| {
        f.reason == FaultReason::SourceId.code()
            && f.source_id == real
            && entry.is_some_and(|(index, _)| u32::from(f.index) == index)
    });
    args.check_from(
        (8, 0),
        &format!(
            "vtd: an IRTE whose source id ({:#06x}) is not the sender's ({real:#06x}) blocks the message and the fault is recorded",
            wrong.requester_id()
        ),
        entry.is_some_and(|(_, e)| {
            e.present && e.sid == wrong.requester_id() && e.svt == Svt::RequesterId && e.sq == 0
        }) && blocked,
        fault,
        format_args!("IRTE {entry:?}, blocked {blocked}, faults {recorded:?}"),
    );
    pci_free_irq_vectors(&p.sys, &dev, &vectors.expect("matched"), None).expect("free");
    device.quiesce();
    p.sys.remove_device(dev.id).expect("no vectors left");
}
