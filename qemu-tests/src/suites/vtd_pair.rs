//! Every e1000e of the machine under VT-d remapping, wherever it sits (bus 0, behind a PCIe
//! root port or behind a PCIe-to-PCI bridge): each runs the MSI-X checks with the source check
//! its place in the enumerated topology asks for (its own requester id, or the bridge's bus
//! range), and a message either device sends to the other's IRTE is blocked by that check.
//!
//! 1. [`msix::run_on`] for each e1000e, then: its live IRTEs check its own enumerated
//!    requester id.
//! 2. Spoofing: device A's MSI-X entry 0 is overwritten, behind genmsi's back, with B's
//!    remappable message. A's raise names B's IRTE, whose check B's writes pass and A's do
//!    not: the unit blocks it and records fault 0x26 with the requester id A's writes carry
//!    and B's IRTE index; nothing reaches B's vector.
//! 3. A's entry is put back: both devices deliver again, each counted once. Then the same
//!    with A and B swapped.

use crate::devices::e1000e::E1000e;
use crate::suites::msix::{self, Nic};
use crate::suites::vtd_msix::{faults, irte, write_entry};
use crate::{check, counts, pcidev, platform, time, Args};
use alloc::format;
use alloc::vec::Vec;
use genmsi_x86::FaultReason;

/// Runs the checks over every e1000e on the remapped platform `p`.
pub fn run(p: &platform::Platform, args: &Args) {
    let devices = E1000e::all();
    let locations: Vec<u16> = devices.iter().map(|d| d.pci.requester_id()).collect();
    check!(
        "vtd-pair: two e1000e found by enumeration, at distinct locations",
        devices.len() == 2 && locations[0] != locations[1],
        "requester ids {locations:#06x?}"
    );
    let mut nics = Vec::new();
    for device in devices {
        let at = device.pci;
        let tag = format!(
            " under VT-d, e1000e {:02x}:{:02x}.{}",
            at.bus, at.device, at.function
        );
        let Some(nic) = msix::run_on(p, Some(device), &tag) else {
            return;
        };
        let rid = pcidev::requester_check(at);
        let live = [nic.vectors.irqs()[0], nic.dynamic];
        let entries: Vec<_> = live.iter().map(|&irq| irte(p, irq)).collect();
        check!(
            &format!("vtd-pair{tag}: its IRTEs are present and make the source check of its place in the topology"),
            entries
                .iter()
                .all(|e| e.is_some_and(|(_, e)| e.present && pcidev::irte_checks(&e, at))),
            "source check {rid:?}, IRTEs {entries:?}"
        );
        nics.push(nic);
    }
    if let [a, b] = nics.as_slice() {
        spoof(p, a, b, args);
        spoof(p, b, a, args);
    }
    for nic in nics {
        msix::release(p, nic, " under VT-d (pair)");
    }
}

/// A sends B's message: blocked with a source-id fault; afterwards both still deliver.
fn spoof(p: &platform::Platform, a: &Nic, b: &Nic, args: &Args) {
    let (a0, b0) = (a.vectors.irqs()[0], b.vectors.irqs()[0]);
    let (_, a_entries) = msix::table(p, &a.dev);
    let (_, b_entries) = msix::table(p, &b.dev);
    let own = a_entries[0];
    let Some((b_index, _)) = irte(p, b0) else {
        check!("vtd-pair: B's index 0 has an IRTE", false);
        return;
    };
    let target = p.with_vector(|v| v.target(b0)).expect("active irq");
    let (count, raw) = (
        p.sys.table().count(b0),
        counts::on(target.cpu, target.vector.0),
    );
    let (a_count, unmapped) = (p.sys.table().count(a0), platform::unmapped());
    let _ = faults(p);
    write_entry(p, &a.dev, 0, b_entries[0].to_dwords());
    a.device.raise(0);
    time::delay(5);
    let blocked = p.sys.table().count(b0) == count
        && counts::on(target.cpu, target.vector.0) == raw
        && p.sys.table().count(a0) == a_count
        && platform::unmapped() == unmapped;
    let recorded = faults(p);
    crate::println!("vtd-pair: faults after A sent B's message: {recorded:?}");
    // The ids the writes carry (a bridged device's are its bridge's alias).
    let (a_rid, b_rid) = (
        pcidev::carried_requester_id(a.device.pci),
        pcidev::carried_requester_id(b.device.pci),
    );
    let fault = recorded.iter().any(|f| {
        f.reason == FaultReason::SourceId.code()
            && f.source_id == a_rid
            && u32::from(f.index) == b_index
    });
    args.check_from(
        (8, 0),
        &format!(
            "vtd-pair: {a_rid:#06x} sending {b_rid:#06x}'s message (IRTE {b_index}) is blocked with fault 0x26"
        ),
        blocked,
        fault,
        format_args!("blocked {blocked}, faults {recorded:?}"),
    );
    // Mask, put A's own message back, unmask: the raise latched during the spoof (if any) is
    // dropped by quiescing first, so each fire below is one fresh raise.
    a.device.quiesce();
    write_entry(p, &a.dev, 0, own.to_dwords());
    let fired = [
        msix::fire(p, &a.device, 0, a0),
        msix::fire(p, &b.device, 0, b0),
    ];
    check!(
        &format!("vtd-pair: after {a_rid:#06x}'s blocked spoof both devices still deliver, each counted once"),
        fired.iter().all(msix::Fired::ok) && (a_entries[0] == msix::table(p, &a.dev).1[0]),
        "fired (A, B) {fired:?}"
    );
}
