//! MSI through `genmsi-pci`'s MSI store: the `edu` device's single message, allocated with
//! `pci_alloc_irq_vectors` under the vector domain, delivered and counted, then freed.

use crate::devices::edu::Edu;
use crate::pcidev::{self, PortConfig};
use crate::{check, counts, platform, time};
use genmsi::{AllocOpts, SlotId};
use genmsi_pci::{pci_alloc_irq_vectors, pci_free_irq_vectors, IrqTypes, IrqVectors, MsiStore};

/// Raises per check: each `edu` raise with MSI enabled sends exactly one message.
const RAISES: u32 = 2;

/// Runs the MSI checks on the platform `p`.
pub fn run(p: &platform::Platform) {
    let Some(edu) = Edu::find(0) else {
        check!("msi: an edu device", false);
        return;
    };
    let dev = pcidev::register(&p.sys, "edu", edu.pci);
    let vectors = pci_alloc_irq_vectors(
        &p.sys,
        &dev,
        p.parent(),
        1..=1,
        IrqTypes::MSI,
        &AllocOpts::default(),
        None,
    );
    let irq = match &vectors {
        Ok(IrqVectors::Msi(irqs)) if irqs.len() == 1 => irqs[0],
        other => {
            check!("msi: one MSI vector allocated", false, "{other:?}");
            return;
        }
    };
    let desc = p.sys.desc(dev.id, SlotId::Default, 0).expect("desc");
    let (control, programmed) = p
        .sys
        .with_store::<MsiStore<PortConfig>, _>(dev.id, SlotId::Default, |s| {
            (
                s.cap().read_control(s.config()),
                s.cap().read_msg(s.config()),
            )
        })
        .expect("the MSI store");
    let enabled = control.is_ok_and(|c| c.enabled());
    check!(
        "msi: pci_alloc_irq_vectors programs edu's MSI capability and enables it",
        enabled && programmed == Ok(desc.msg),
        "control {control:?}, registers {programmed:?}, composed {:?}",
        desc.msg
    );

    if p.remap.is_some() {
        let entry = crate::suites::vtd_msix::irte(p, irq);
        if let Some((index, e)) = entry {
            crate::println!(
                "msi: edu {} MSI: IRTE {index}, SVT={:?} SQ={} SID={:#06x}",
                pcidev::address(edu.pci),
                e.svt,
                e.sq,
                e.sid
            );
        }
        check!(
            "msi: under VT-d, edu's IRTE makes the source check of its place in the topology",
            entry.is_some_and(|(_, e)| e.present && pcidev::irte_checks(&e, edu.pci)),
            "source check {:?}, IRTE {entry:?}",
            pcidev::requester_check(edu.pci)
        );
    }
    let target = p.with_vector(|v| v.target(irq)).expect("active irq");
    let raw_before = counts::on(target.cpu, target.vector.0);
    // One raise at a time, each waited for: two identical edges that reach the target's IRR
    // before it services the first merge into one interrupt (SDM Vol. 3A 11.8.4), which
    // happens whenever the target is another CPU than the one raising.
    let mut got = true;
    for k in 1..=RAISES {
        edu.raise(0);
        got &= time::wait_until(time::LATE_MS, || {
            p.sys.table().count(irq) >= u64::from(k)
        });
    }
    time::delay(2);
    let raw = counts::on(target.cpu, target.vector.0) - raw_before;
    edu.ack();
    check!(
        "msi: edu's messages delivered on the vector domain's target and counted once each",
        got && p.sys.table().count(irq) == u64::from(RAISES) && raw == RAISES,
        "target {target:?}, counted {}, arrived {raw}",
        p.sys.table().count(irq)
    );

    let freed = pci_free_irq_vectors(&p.sys, &dev, &vectors.expect("checked"), None);
    let disabled = edu.pci.read16(msi_control(edu)) & 1 == 0;
    let unmapped = platform::unmapped();
    edu.raise(0);
    time::delay(5);
    edu.ack();
    let silent = counts::on(target.cpu, target.vector.0) - raw_before == RAISES
        && platform::unmapped() == unmapped;
    check!(
        "msi: freed vectors disable MSI and the device no longer delivers",
        freed.is_ok() && disabled && silent,
        "free {freed:?}, disabled {disabled}, silent {silent}"
    );
    let _ = p.sys.remove_device(dev.id);
}

/// The MSI Message Control register of `edu`.
fn msi_control(edu: Edu) -> u16 {
    edu.pci
        .find_capability(crate::pci::CAP_MSI)
        .expect("edu has MSI")
        + 2
}
