//! Software parts for tests and the simulator: a root domain, a translating middle domain and
//! an in-memory store, all with failure injection.
//!
//! They follow the rules real domains follow (all-or-nothing allocation, exact release), so
//! the core's walks and rollbacks can be checked without any platform.

use crate::domain::{AllocRequest, Composed};
use crate::range::RangeAllocator;
use crate::{CpuMask, Domain, Error, Irq, Msg, MsgStore, Result, StoreCaps};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// Base of the addresses [`SoftRoot`] composes: `SOFT_ROOT_BASE | cpu << 12`, data = irq.
pub const SOFT_ROOT_BASE: u64 = 0xF000_0000;
/// Base of the addresses [`SoftRemap`] composes: `SOFT_REMAP_BASE | entry << 4`.
pub const SOFT_REMAP_BASE: u64 = 0xE000_0000;

/// The most entries a [`SoftRemap`] table, and the most slots a [`MemStore`], can have: 1 Mi
/// (these parts hold every entry in memory up front).
pub const MAX_SOFT_ENTRIES: u32 = 1 << 20;

/// Which calls of a software domain fail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Fail the n-th `alloc` call from now (1 = the next one).
    pub alloc_in: Option<u32>,
    /// Fail the n-th `activate` call from now.
    pub activate_in: Option<u32>,
    /// Fail the n-th `set_affinity` call from now.
    pub affinity_in: Option<u32>,
}

fn trip(countdown: &mut Option<u32>, domain: &'static str, reason: &'static str) -> Result<()> {
    match countdown {
        Some(1) => {
            *countdown = None;
            Err(Error::Domain { domain, reason })
        }
        Some(n) => {
            *n -= 1;
            Ok(())
        }
        None => Ok(()),
    }
}

/// A root domain with a fixed budget of "vectors" per CPU: it targets the least-loaded CPU of
/// the affinity and composes `address = SOFT_ROOT_BASE | cpu << 12`, `data = irq`.
#[derive(Debug)]
pub struct SoftRoot {
    per_cpu: u32,
    used: Vec<u32>,
    /// irq -> (CPU it is reserved on, active)
    irqs: BTreeMap<Irq, (u32, bool)>,
    online: CpuMask,
    /// Failure injection.
    pub faults: Faults,
}

impl SoftRoot {
    /// `nr_cpus` CPUs (clamped at [`MAX_CPUS`](crate::MAX_CPUS), the reach of the CPU field
    /// of its messages) with `per_cpu` vectors each.
    pub fn new(nr_cpus: u32, per_cpu: u32) -> Self {
        let nr_cpus = nr_cpus.min(crate::MAX_CPUS);
        SoftRoot {
            per_cpu,
            used: alloc::vec![0; nr_cpus as usize],
            irqs: BTreeMap::new(),
            online: CpuMask::first_n(nr_cpus),
            faults: Faults::default(),
        }
    }

    /// Vectors in use per CPU.
    pub fn used(&self) -> &[u32] {
        &self.used
    }

    /// Irqs holding a reservation.
    pub fn irqs(&self) -> impl Iterator<Item = (Irq, u32, bool)> + '_ {
        self.irqs.iter().map(|(&i, &(c, a))| (i, c, a))
    }

    /// Decodes a message this root composed into (irq, CPU).
    pub fn decode(msg: &Msg) -> Option<(Irq, u32)> {
        (msg.address & !0xFFF_F000 == SOFT_ROOT_BASE)
            .then_some((Irq(msg.data), ((msg.address >> 12) & 0xFFFF) as u32))
    }

    fn pick(&self, mask: &CpuMask, extra: &[u32]) -> Option<u32> {
        mask.and(&self.online)
            .iter()
            .filter(|&c| (c as usize) < self.used.len())
            .map(|c| (self.used[c as usize] + extra[c as usize], c))
            .filter(|&(u, _)| u < self.per_cpu)
            .min()
            .map(|(_, c)| c)
    }

    fn compose(irq: Irq, cpu: u32) -> Composed {
        Composed::new(
            Msg::new(SOFT_ROOT_BASE | u64::from(cpu) << 12, irq.0),
            Some(cpu),
        )
    }
}

impl Domain for SoftRoot {
    fn name(&self) -> &'static str {
        "soft-root"
    }

    fn alloc(&mut self, req: &AllocRequest<'_>) -> Result<()> {
        trip(
            &mut self.faults.alloc_in,
            "soft-root",
            "injected alloc failure",
        )?;
        let mut extra = alloc::vec![0u32; self.used.len()];
        let mut picks = Vec::with_capacity(req.irqs.len());
        for r in req.irqs {
            let cpu = self.pick(&r.affinity, &extra).ok_or(Error::NoVectors {
                cpus: r.affinity.clone(),
            })?;
            extra[cpu as usize] += 1;
            picks.push((r.irq, cpu));
        }
        for (irq, cpu) in picks {
            self.used[cpu as usize] += 1;
            self.irqs.insert(irq, (cpu, false));
        }
        Ok(())
    }

    fn free(&mut self, irqs: &[Irq]) {
        for irq in irqs {
            if let Some((cpu, _)) = self.irqs.remove(irq) {
                self.used[cpu as usize] -= 1;
            }
        }
    }

    fn activate(&mut self, irq: Irq, _parent: Option<&Composed>) -> Result<Composed> {
        trip(
            &mut self.faults.activate_in,
            "soft-root",
            "injected activate failure",
        )?;
        let e = self.irqs.get_mut(&irq).ok_or(Error::UnknownIrq(irq))?;
        e.1 = true;
        Ok(Self::compose(irq, e.0))
    }

    fn deactivate(&mut self, irq: Irq) {
        if let Some(e) = self.irqs.get_mut(&irq) {
            e.1 = false;
        }
    }

    fn set_affinity(&mut self, irq: Irq, mask: &CpuMask, _: Option<&Composed>) -> Result<Composed> {
        trip(
            &mut self.faults.affinity_in,
            "soft-root",
            "injected affinity failure",
        )?;
        let &(old, _) = self.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
        let cpu = if mask.contains(old) && self.online.contains(old) {
            old
        } else {
            let none = alloc::vec![0u32; self.used.len()];
            self.pick(mask, &none)
                .ok_or(Error::NoVectors { cpus: mask.clone() })?
        };
        self.used[old as usize] -= 1;
        self.used[cpu as usize] += 1;
        self.irqs.insert(irq, (cpu, true));
        Ok(Self::compose(irq, cpu))
    }

    fn compose_msg(&self, irq: Irq, _: Option<&Composed>) -> Option<Composed> {
        let &(cpu, active) = self.irqs.get(&irq)?;
        active.then(|| Self::compose(irq, cpu))
    }

    fn cpu_offline(&mut self, cpu: u32) {
        self.online = self.online.without(cpu);
    }

    fn cpu_online(&mut self, cpu: u32) {
        self.online = self.online.with(cpu);
    }
}

/// A translating middle level (shaped like interrupt remapping): it owns a table of entries,
/// composes `SOFT_REMAP_BASE | entry << 4` for its child, and keeps its parent's message in the
/// entry. The table is shared ([`SoftRemap::table`]) so delivery can translate lock-free.
///
/// With [`SoftRemap::with_subhandles`], the irqs of a block allocation (multi-message MSI) get
/// the messages such a device needs: one address naming the block's first entry and the
/// offset in the block as data (`entry = address entry + data`), like VT-d's subhandles.
#[derive(Debug)]
pub struct SoftRemap {
    entries: RangeAllocator,
    /// irq -> (its entry, its offset in a block composed with subhandles)
    irqs: BTreeMap<Irq, (u32, u32)>,
    subhandles: bool,
    table: Arc<[AtomicU64]>,
    /// Failure injection.
    pub faults: Faults,
}

/// An entry of [`SoftRemap::table`]: present bit 63, the parent message's CPU in bits 47:32 and
/// its data (the irq) in bits 31:0.
pub const SOFT_REMAP_PRESENT: u64 = 1 << 63;

impl SoftRemap {
    /// A table of `entries` entries, clamped at [`MAX_SOFT_ENTRIES`].
    pub fn new(entries: u32) -> Self {
        let entries = entries.min(MAX_SOFT_ENTRIES);
        SoftRemap {
            entries: RangeAllocator::new(entries),
            irqs: BTreeMap::new(),
            subhandles: false,
            table: (0..entries).map(|_| AtomicU64::new(0)).collect(),
            faults: Faults::default(),
        }
    }

    /// Composes block allocations with subhandles: every irq of the block gets the block's
    /// address, and its offset in the block as data.
    pub fn with_subhandles(mut self) -> Self {
        self.subhandles = true;
        self
    }

    /// The message this level composes for an irq bound to `entry` at `sub` in its block.
    fn compose(entry: u32, sub: u32) -> Msg {
        Msg::new(SOFT_REMAP_BASE | u64::from(entry - sub) << 4, sub)
    }

    /// The entry table, for lock-free translation.
    pub fn table(&self) -> Arc<[AtomicU64]> {
        self.table.clone()
    }

    /// Free entries.
    pub fn free_entries(&self) -> u32 {
        self.entries.free_count()
    }

    /// Translates a message this level composed into its parent's (None: blocked).
    pub fn translate(table: &[AtomicU64], msg: &Msg) -> Option<Msg> {
        if msg.address & !0xF_FFF0 != SOFT_REMAP_BASE {
            return None;
        }
        let entry = ((msg.address >> 4) & 0xFFFF).checked_add(u64::from(msg.data))?;
        let e = table
            .get(usize::try_from(entry).ok()?)?
            .load(Ordering::Acquire);
        (e & SOFT_REMAP_PRESENT != 0)
            .then(|| Msg::new(SOFT_ROOT_BASE | ((e >> 32) & 0xFFFF) << 12, e as u32))
    }
}

impl Domain for SoftRemap {
    fn name(&self) -> &'static str {
        "soft-remap"
    }

    fn alloc(&mut self, req: &AllocRequest<'_>) -> Result<()> {
        trip(
            &mut self.faults.alloc_in,
            "soft-remap",
            "injected alloc failure",
        )?;
        let n = req.irqs.len() as u32;
        let (count, align) = if req.block {
            (n.next_power_of_two(), n.next_power_of_two())
        } else {
            (n, 1)
        };
        let first = self
            .entries
            .alloc(count, align)
            .ok_or(Error::NoRemapEntries { requested: count })?;
        for (i, r) in req.irqs.iter().enumerate() {
            let sub = if req.block && self.subhandles {
                i as u32
            } else {
                0
            };
            self.irqs.insert(r.irq, (first + i as u32, sub));
        }
        Ok(())
    }

    fn free(&mut self, irqs: &[Irq]) {
        for irq in irqs {
            if let Some((e, _)) = self.irqs.remove(irq) {
                self.table[e as usize].store(0, Ordering::Release);
                self.entries.release(e, 1).expect("entry was allocated");
            }
        }
    }

    fn activate(&mut self, irq: Irq, parent: Option<&Composed>) -> Result<Composed> {
        trip(
            &mut self.faults.activate_in,
            "soft-remap",
            "injected activate failure",
        )?;
        let &(entry, sub) = self.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
        let p = parent.ok_or(Error::Domain {
            domain: "soft-remap",
            reason: "needs a parent",
        })?;
        let (_, cpu) = SoftRoot::decode(&p.msg).ok_or(Error::Domain {
            domain: "soft-remap",
            reason: "parent message is not a soft-root message",
        })?;
        let e = SOFT_REMAP_PRESENT | u64::from(cpu) << 32 | u64::from(p.msg.data);
        self.table[entry as usize].store(e, Ordering::Release);
        Ok(Composed::new(Self::compose(entry, sub), p.effective_cpu))
    }

    fn deactivate(&mut self, irq: Irq) {
        if let Some(&(e, _)) = self.irqs.get(&irq) {
            self.table[e as usize].store(0, Ordering::Release);
        }
    }

    fn set_affinity(
        &mut self,
        irq: Irq,
        _: &CpuMask,
        parent: Option<&Composed>,
    ) -> Result<Composed> {
        trip(
            &mut self.faults.affinity_in,
            "soft-remap",
            "injected affinity failure",
        )?;
        self.activate(irq, parent)
    }

    fn compose_msg(&self, irq: Irq, parent: Option<&Composed>) -> Option<Composed> {
        let &(entry, sub) = self.irqs.get(&irq)?;
        let present = self.table[entry as usize].load(Ordering::Acquire) & SOFT_REMAP_PRESENT != 0;
        present.then(|| {
            Composed::new(
                Self::compose(entry, sub),
                parent.and_then(|p| p.effective_cpu),
            )
        })
    }
}

/// One slot of a [`MemStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemSlot {
    /// The stored message.
    pub msg: Msg,
    /// Masked (slots start masked, like MSI-X entries after reset).
    pub masked: bool,
    /// The cookie bound by `prepare`.
    pub cookie: Option<u64>,
    /// An interrupt was raised while masked.
    pub pending: bool,
}

/// An in-memory message store with configurable capabilities and failure injection.
#[derive(Debug)]
pub struct MemStore {
    caps: StoreCaps,
    slots: Vec<MemSlot>,
    /// The store is enabled.
    pub enabled: bool,
    /// Indices whose `write_msg` fails.
    pub fail_write: BTreeSet<u32>,
    /// Indices whose `prepare` fails.
    pub fail_prepare: BTreeSet<u32>,
    /// Writes that happened while the slot was unmasked although the store wants masked writes.
    pub unmasked_writes: u32,
    /// Record every `write_msg` in `write_log`.
    pub record_writes: bool,
    /// (index, message) of every write while `record_writes` is set.
    pub write_log: Vec<(u32, Msg)>,
}

impl MemStore {
    /// A store with `caps` (`max_index` clamped at [`MAX_SOFT_ENTRIES`]), every slot zero and
    /// masked.
    pub fn new(caps: StoreCaps) -> Self {
        let caps = StoreCaps {
            max_index: caps.max_index.min(MAX_SOFT_ENTRIES),
            ..caps
        };
        MemStore {
            caps,
            slots: alloc::vec![MemSlot { masked: true, ..MemSlot::default() }; caps.max_index as usize],
            enabled: false,
            fail_write: BTreeSet::new(),
            fail_prepare: BTreeSet::new(),
            unmasked_writes: 0,
            record_writes: false,
            write_log: Vec::new(),
        }
    }

    /// The slots' contents.
    pub fn slots(&self) -> &[MemSlot] {
        &self.slots
    }

    /// The device raises interrupt `index`: returns the message to write, or `None` when the
    /// slot is masked (it latches pending instead).
    pub fn raise(&mut self, index: u32) -> Option<Msg> {
        let s = self.slots.get_mut(index as usize)?;
        if s.masked && self.caps.per_vector_mask {
            s.pending = true;
            return None;
        }
        Some(s.msg)
    }

    fn slot(&mut self, index: u32) -> Result<&mut MemSlot> {
        self.slots.get_mut(index as usize).ok_or(Error::Store {
            index,
            reason: "no such slot",
        })
    }
}

impl MsgStore for MemStore {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn caps(&self) -> StoreCaps {
        self.caps
    }

    fn write_msg(&mut self, index: u32, msg: &Msg) -> Result<()> {
        if self.fail_write.contains(&index) {
            return Err(Error::Store {
                index,
                reason: "injected write failure",
            });
        }
        let watch = self.caps.write_masked;
        let s = self.slot(index)?;
        let unmasked = watch && !s.masked && *msg != Msg::ZERO;
        s.msg = *msg;
        self.unmasked_writes += u32::from(unmasked);
        if self.record_writes {
            self.write_log.push((index, *msg));
        }
        Ok(())
    }

    fn mask(&mut self, index: u32) -> Result<()> {
        self.slot(index)?.masked = true;
        Ok(())
    }

    /// Unmasking a slot with a pending interrupt keeps the pending bit for [`MemStore::take_pending`].
    fn unmask(&mut self, index: u32) -> Result<()> {
        self.slot(index)?.masked = false;
        Ok(())
    }

    fn prepare(&mut self, index: u32, cookie: Option<u64>) -> Result<()> {
        if self.fail_prepare.contains(&index) {
            return Err(Error::Store {
                index,
                reason: "injected prepare failure",
            });
        }
        self.slot(index)?.cookie = cookie;
        Ok(())
    }

    fn release(&mut self, index: u32) {
        if let Ok(s) = self.slot(index) {
            *s = MemSlot {
                masked: true,
                ..MemSlot::default()
            };
        }
    }

    fn enable(&mut self) -> Result<()> {
        self.enabled = true;
        Ok(())
    }

    fn disable(&mut self) {
        self.enabled = false;
    }

    fn is_pending(&self, index: u32) -> bool {
        self.slots.get(index as usize).is_some_and(|s| s.pending)
    }
}

impl MemStore {
    /// Clears and returns a slot's pending bit (the device sends it once unmasked).
    pub fn take_pending(&mut self, index: u32) -> bool {
        self.slots
            .get_mut(index as usize)
            .is_some_and(|s| core::mem::take(&mut s.pending))
    }
}
