//! The walks through a hierarchy: activation, deactivation, moves, each undoing what it did
//! when a level fails.

use crate::device::DeviceDomain;
use crate::domain::Composed;
use crate::system::{locate, Config, DomainNode};
use crate::table::IrqTable;
use crate::{CpuMask, Domain, DomainId, Error, Irq, Msg, MsgStore, MsiDesc, Result, StoreCaps};
use alloc::vec::Vec;

/// The chain of domains from a device domain's parent down to the root.
pub(crate) fn chain_of(domains: &[Option<DomainNode>], parent: DomainId) -> Vec<DomainId> {
    let mut chain = Vec::new();
    let mut next = Some(parent);
    while let Some(id) = next {
        chain.push(id);
        next = domains[id.0 as usize].as_ref().and_then(|n| n.parent);
    }
    chain
}

pub(crate) fn node(domains: &mut [Option<DomainNode>], id: DomainId) -> &mut dyn Domain {
    domains[id.0 as usize]
        .as_mut()
        .expect("chained domains stay registered while they have users")
        .domain
        .as_mut()
}

/// Activates `irq` through `chain` (root last in `chain`, first to run) and writes the message
/// into the store. On error nothing stays activated.
pub(crate) fn activate_irq(
    domains: &mut [Option<DomainNode>],
    chain: &[DomainId],
    dd: &mut DeviceDomain,
    table: &IrqTable,
    irq: Irq,
    index: u32,
) -> Result<Option<u32>> {
    let mut composed: Option<Composed> = None;
    let mut effective = None;
    for (done, &id) in chain.iter().rev().enumerate() {
        match node(domains, id).activate(irq, composed.as_ref()) {
            Ok(c) => {
                effective = effective.or(c.effective_cpu);
                composed = Some(c);
            }
            Err(e) => {
                for &id in chain[chain.len() - done..].iter() {
                    node(domains, id).deactivate(irq);
                }
                return Err(e);
            }
        }
    }
    let msg = composed.expect("a chain has at least one domain").msg;
    let caps = dd.store.caps();
    let desc = dd.descs.get_mut(&index).expect("descriptor exists");
    // Live on the delivery side before the device can send the message: an interrupt raised
    // right after the write (or the unmask) must find the irq active, not count as spurious.
    table.set_soft_masked(irq, !caps.per_vector_mask && desc.masked);
    table.set_active(irq, true);
    // A slot is masked while inactive; it is unmasked only after its message is complete.
    if let Err(e) = dd.store.write_msg(index, &msg).and_then(|()| {
        if caps.per_vector_mask && !desc.masked {
            dd.store.unmask(index)
        } else {
            Ok(())
        }
    }) {
        table.set_active(irq, false);
        table.synchronize(irq);
        for &id in chain {
            node(domains, id).deactivate(irq);
        }
        return Err(e);
    }
    desc.msg = msg;
    desc.active = true;
    Ok(effective)
}

/// Quiesces the store slot and deactivates `irq` top down.
pub(crate) fn deactivate_irq(
    domains: &mut [Option<DomainNode>],
    chain: &[DomainId],
    dd: &mut DeviceDomain,
    table: &IrqTable,
    irq: Irq,
    index: u32,
) {
    let caps = dd.store.caps();
    // Hardware refusing to mask or clear a slot we are tearing down cannot be undone here;
    // the slot's irq is marked inactive below, so anything it still raises counts as spurious.
    if caps.per_vector_mask {
        let _ = dd.store.mask(index);
    }
    let _ = dd.store.write_msg(index, &Msg::ZERO);
    table.set_active(irq, false);
    // Interrupts already being handled finish before the levels below let go of their
    // resources (a vector, a remap entry) that another irq may take next.
    table.synchronize(irq);
    for &id in chain {
        node(domains, id).deactivate(irq);
    }
    if let Some(desc) = dd.descs.get_mut(&index) {
        desc.active = false;
        desc.msg = Msg::ZERO;
    }
}

/// Writes a new message into a live slot: masked if the store needs it, through the interim
/// message first when the root asks for a two-step move.
pub(crate) fn rewrite_live(
    store: &mut dyn MsgStore,
    caps: StoreCaps,
    desc: &MsiDesc,
    composed: &Composed,
) -> Result<()> {
    let guard = caps.write_masked && caps.per_vector_mask && !desc.masked;
    if guard {
        store.mask(desc.index)?;
    }
    let written = composed
        .interim
        .map_or(Ok(()), |m| store.write_msg(desc.index, &m))
        .and_then(|()| store.write_msg(desc.index, &composed.msg));
    if guard {
        store.unmask(desc.index)?;
    }
    written
}

/// Moves an active irq to `target` through its chain; on failure of a level above the root,
/// the levels below are moved back, so the irq stays where it was.
pub(crate) fn move_irq(cfg: &mut Config, irq: Irq, target: &CpuMask) -> Result<()> {
    let (d, dd) = locate(&cfg.irqs, &mut cfg.devices, irq)?;
    let desc = dd
        .descs
        .get(&d.index)
        .expect("allocated irq has a descriptor")
        .clone();
    if !desc.active {
        return Err(Error::NotActive(irq));
    }
    let chain = chain_of(&cfg.domains, dd.parent);
    let walk = |domains: &mut [Option<DomainNode>], mask: &CpuMask| -> Result<Composed> {
        let mut composed: Option<Composed> = None;
        let mut effective = None;
        for (done, &id) in chain.iter().rev().enumerate() {
            match node(domains, id).set_affinity(irq, mask, composed.as_ref()) {
                Ok(c) => {
                    effective = effective.or(c.effective_cpu);
                    composed = Some(c);
                }
                Err(e) if done == 0 => return Err(e),
                Err(e) => {
                    // Move the levels below back to where the irq was.
                    let old = d
                        .effective_cpu
                        .map_or(desc.affinity.clone(), CpuMask::single);
                    let mut back: Option<Composed> = None;
                    for &id in chain[chain.len() - done..].iter().rev() {
                        back = node(domains, id)
                            .set_affinity(irq, &old, back.as_ref())
                            .ok();
                    }
                    return Err(e);
                }
            }
        }
        let mut c = composed.expect("a chain has at least one domain");
        c.effective_cpu = effective;
        Ok(c)
    };
    let composed = walk(&mut cfg.domains, target)?;
    let caps = dd.store.caps();
    if composed.msg != desc.msg {
        if let Err(e) = rewrite_live(dd.store.as_mut(), caps, &desc, &composed) {
            // The store may hold the old, the interim or a half-written message: move the
            // levels back (a root returns to the very target it had) and write the message
            // they compose again, so that store, descriptor and domains agree.
            let old = d
                .effective_cpu
                .map_or(desc.affinity.clone(), CpuMask::single);
            if let Ok(back) = walk(&mut cfg.domains, &old) {
                let restored = Composed::new(back.msg, back.effective_cpu);
                if rewrite_live(dd.store.as_mut(), caps, &desc, &restored).is_ok() {
                    let desc = dd.descs.get_mut(&d.index).expect("exists");
                    desc.msg = back.msg;
                    cfg.irqs.get_mut(&irq).expect("exists").effective_cpu = back.effective_cpu;
                }
            }
            return Err(e);
        }
        dd.descs.get_mut(&d.index).expect("exists").msg = composed.msg;
    }
    cfg.irqs.get_mut(&irq).expect("exists").effective_cpu = composed.effective_cpu;
    Ok(())
}
