//! The VT-d interrupt-remapping domain, and the remapping unit's side of the same formats.
//!
//! [`IrDomain`] sits between a device domain and the [`VectorDomain`](crate::VectorDomain):
//!
//! 1. `alloc` takes handles in the remap table: one per irq, or one aligned power-of-two block
//!    for multi-message MSI (the device adds its index to the subhandle).
//! 2. `activate` reads its parent's compatibility message (vector, destination, trigger),
//!    writes a present IRTE with the device's requester id as source check (or its bus range,
//!    SVT = 10, when the device sits behind a PCIe-to-PCI bridge), invalidates the
//!    interrupt entry cache for that index, and composes the remappable-format message.
//! 3. `set_affinity` rewrites the IRTE in place from the parent's new message and invalidates:
//!    the device's message does not change, so a device never sees a torn update.
//! 4. `deactivate` clears the present bit (and invalidates); `free` holds the handles in
//!    quarantine: a write the device posted before the free may still reach the unit, and
//!    must find the entry not present (fault 0x22) rather than a new owner's entry.
//! 5. [`Domain::advance_grace`] (the embedder's `IrqSystem::advance_grace`, see
//!    [`genmsi::grace`]) gives the held handles back once the platform's posted-write bound
//!    has passed since their free: no write to them is in the fabric any more.
//!
//! The table memory and the invalidation queue are traits ([`IrteTable`], [`Invalidate`]) so
//! the same domain runs over a simulated IOMMU and over real VT-d registers.
//!
//! [`IrUnit`] is the hardware side: it decodes a message write with its requester id, reads
//! the IRTE through its entry cache, checks it and yields the interrupt or a [`FaultReason`].

use crate::apic::{DeliveryMode, DestMode, Trigger, Vector};
use crate::irte::{FaultReason, InvDescriptor, Irte};
use crate::msi::{MsiFormat, RemappableMsi};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};
use genmsi::range::RangeAllocator;
use genmsi::{
    AllocRequest, BusRange, Composed, CpuMask, Domain, Error, GraceClock, Irq, Msg, Quarantine,
    Result,
};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

/// The remap table's memory, as the remapping domain writes it.
pub trait IrteTable: Send {
    /// Number of entries (the table size programmed in IRTA).
    fn len(&self) -> u32;
    /// True when the table has no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes entry `index`. An implementation must make the hardware see either the old or the
    /// new entry (a 128-bit atomic store, or: high quadword first when the entry becomes
    /// present, low quadword first when it stops being present). [`IrDomain`] writes only
    /// indices below [`IrteTable::len`]; an implementation must ignore any other index rather
    /// than panic (it is not an entry of the table).
    fn write(&mut self, index: u32, entry: [u64; 2]);
    /// Reads entry `index`.
    fn read(&self, index: u32) -> [u64; 2];
}

/// Executes invalidation requests (a queued-invalidation ring and a wait descriptor on real
/// hardware). Returns when the invalidation has completed.
pub trait Invalidate: Send {
    /// Invalidates the interrupt entry cache as `desc` says.
    fn invalidate(&mut self, desc: InvDescriptor) -> core::result::Result<(), &'static str>;
}

/// A remap table in shared memory (an `Arc` of atomics): the domain writes it, a simulated
/// remapping unit reads it without any lock.
#[derive(Clone, Debug)]
pub struct SharedIrteTable(Arc<[AtomicU64]>);

/// The most entries an interrupt remapping table can have: 2^(S+1) for the largest size
/// field S = 15 of the IRTA register (VT-d 11.4.6.2), the reach of a 16-bit handle.
pub const MAX_IRTES: u32 = 1 << 16;

impl SharedIrteTable {
    /// A table of `entries` zeroed entries, clamped at [`MAX_IRTES`].
    pub fn new(entries: u32) -> Self {
        SharedIrteTable(
            (0..entries.min(MAX_IRTES) as usize * 2)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }

    /// Writes entry `index` (see [`IrteTable::write`]), or refuses an index past the table
    /// with the table's length, leaving every entry as it was.
    pub fn try_write(
        &mut self,
        index: u32,
        entry: [u64; 2],
    ) -> core::result::Result<(), IrteIndexOutOfRange> {
        let at = (index as usize).saturating_mul(2);
        let (Some(lo), Some(hi)) = (self.0.get(at), self.0.get(at.saturating_add(1))) else {
            return Err(IrteIndexOutOfRange {
                index,
                len: self.len(),
            });
        };
        if entry[0] & 1 != 0 {
            hi.store(entry[1], Ordering::Release);
            lo.store(entry[0], Ordering::Release);
        } else {
            lo.store(entry[0], Ordering::Release);
            hi.store(entry[1], Ordering::Release);
        }
        Ok(())
    }
}

/// An IRTE index past the end of the remapping table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrteIndexOutOfRange {
    /// The index asked for.
    pub index: u32,
    /// The number of entries of the table.
    pub len: u32,
}

impl core::fmt::Display for IrteIndexOutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "IRTE index {} past a table of {} entries",
            self.index, self.len
        )
    }
}

impl IrteTable for SharedIrteTable {
    fn len(&self) -> u32 {
        (self.0.len() / 2) as u32
    }

    /// Ignores an index past the table (see [`SharedIrteTable::try_write`] for the error).
    fn write(&mut self, index: u32, entry: [u64; 2]) {
        let _ = self.try_write(index, entry);
    }

    fn read(&self, index: u32) -> [u64; 2] {
        let i = (index as usize).saturating_mul(2);
        match (self.0.get(i), self.0.get(i.saturating_add(1))) {
            (Some(lo), Some(hi)) => [lo.load(Ordering::Acquire), hi.load(Ordering::Acquire)],
            _ => [0, 0],
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct IrData {
    /// The IRTE index.
    index: u32,
    /// The handle and subhandle the device's message carries.
    handle: u16,
    subhandle: u16,
    /// First entry and size of the block this irq's handles came in.
    block: (u32, u32),
    /// The source check: the requester id, or the bus range when the device's writes may
    /// carry any id on it (behind a PCIe-to-PCI bridge).
    sid: Option<u16>,
    buses: Option<BusRange>,
    level: bool,
    active: bool,
}

/// The VT-d interrupt-remapping domain (see the module docs).
pub struct IrDomain<T: IrteTable, I: Invalidate> {
    table: T,
    inval: I,
    handles: RangeAllocator,
    x2apic: bool,
    irqs: BTreeMap<Irq, IrData>,
    /// Live irqs per block (block start -> count), so padding entries go back with the last one.
    blocks: BTreeMap<u32, u32>,
    /// Blocks of entries freed, not present, held until their grace has passed (first, count).
    held: Quarantine<(u32, u32)>,
    invalidations: u64,
}

impl<T: IrteTable, I: Invalidate> core::fmt::Debug for IrDomain<T, I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IrDomain")
            .field("entries", &self.table.len())
            .field("free", &self.handles.free_count())
            .field("held", &self.held.iter().map(|(b, _)| b.1).sum::<u32>())
            .field("x2apic", &self.x2apic)
            .field("invalidations", &self.invalidations)
            .finish()
    }
}

impl<T: IrteTable + 'static, I: Invalidate + 'static> IrDomain<T, I> {
    /// A domain over `table`; `x2apic` selects the extended-interrupt-mode destination format.
    pub fn new(table: T, inval: I, x2apic: bool) -> Self {
        let handles = RangeAllocator::new(table.len().min(1 << 16));
        IrDomain {
            table,
            inval,
            handles,
            x2apic,
            irqs: BTreeMap::new(),
            blocks: BTreeMap::new(),
            held: Quarantine::new(),
            invalidations: 0,
        }
    }

    /// Entries still free.
    pub fn free_entries(&self) -> u32 {
        self.handles.free_count()
    }

    /// Entries freed but held (not present) until their grace has passed.
    pub fn held_entries(&self) -> u32 {
        self.held.iter().map(|(b, _)| b.1).sum()
    }

    /// The blocks of entries held (first entry, count), with the time their grace started
    /// (`None`: the grace clock has not advanced since).
    pub fn held_blocks(&self) -> Vec<((u32, u32), Option<u64>)> {
        self.held.iter().map(|(&b, since)| (b, since)).collect()
    }

    fn release_held(&mut self) -> u32 {
        let mut n = 0;
        for (first, count) in self.held.release_expired() {
            self.handles
                .release(first, count)
                .expect("held entries were allocated");
            n += count;
        }
        n
    }

    /// Invalidations issued so far.
    pub fn invalidations(&self) -> u64 {
        self.invalidations
    }

    /// The IRTE index of an irq.
    pub fn entry_of(&self, irq: Irq) -> Option<u32> {
        self.irqs.get(&irq).map(|d| d.index)
    }

    /// The table memory.
    pub fn table(&self) -> &T {
        &self.table
    }

    /// The invalidation sink.
    pub fn invalidator(&mut self) -> &mut I {
        &mut self.inval
    }

    /// Writes entry `index` and invalidates the entry cache for it. If the invalidation fails,
    /// the previous entry is written back (and invalidated again), so an error leaves the
    /// table as it was.
    fn write(&mut self, index: u32, raw: [u64; 2]) -> Result<()> {
        let previous = self.table.read(index);
        self.table.write(index, raw);
        self.invalidations += 1;
        let desc = InvDescriptor::IecIndex {
            index: index as u16,
            mask: 0,
        };
        if let Err(reason) = self.inval.invalidate(desc) {
            self.table.write(index, previous);
            let _ = self.inval.invalidate(desc);
            return Err(Error::Domain {
                domain: "vt-d",
                reason,
            });
        }
        Ok(())
    }

    /// The remappable message for an irq. Level-triggered sources (IO-APIC pins) get SHV clear
    /// and the entry's vector in data bits 7:0, which the hardware ignores without SHV: the
    /// IO-APIC copies it into its entry's vector field, which it matches against the vector of
    /// an end-of-interrupt to clear Remote IRR.
    fn msg(d: &IrData, vector: Vector) -> Msg {
        let mut m = RemappableMsi {
            handle: d.handle,
            subhandle: (!d.level).then_some(d.subhandle),
        }
        .emit();
        if d.level {
            m.data = u32::from(vector.0);
        }
        m
    }

    fn program(&mut self, irq: Irq, parent: Option<&Composed>) -> Result<Composed> {
        let d = *self.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
        let p = parent.ok_or(Error::Domain {
            domain: "vt-d",
            reason: "remapping needs a parent domain",
        })?;
        let Ok(MsiFormat::Compat(c)) = MsiFormat::parse(&p.msg) else {
            return Err(Error::Domain {
                domain: "vt-d",
                reason: "parent message is not in compatibility format",
            });
        };
        let mut e = Irte::new(
            c.vector,
            c.dest,
            Trigger::from_bit(d.level || c.trigger.is_level()),
            d.sid,
        );
        if let Some(b) = d.buses {
            e = e.verify_buses(b.first, b.last);
        }
        e.delivery = c.delivery;
        e.dest_mode = c.dest_mode;
        e.redirection_hint = c.redirection_hint;
        let raw = e.emit(self.x2apic).map_err(|_| Error::Domain {
            domain: "vt-d",
            reason: "destination APIC id needs x2APIC (extended interrupt) mode",
        })?;
        self.write(d.index, raw)?;
        self.irqs.get_mut(&irq).expect("checked").active = true;
        Ok(Composed::new(Self::msg(&d, c.vector), p.effective_cpu))
    }
}

impl<T: IrteTable + 'static, I: Invalidate + 'static> Domain for IrDomain<T, I> {
    fn name(&self) -> &'static str {
        "vt-d"
    }

    fn alloc(&mut self, req: &AllocRequest<'_>) -> Result<()> {
        let n = req.irqs.len() as u32;
        let (count, align) = match req.block {
            true => (n.next_power_of_two(), n.next_power_of_two()),
            false => (n, 1),
        };
        if count > 1 << 15 {
            return Err(Error::NoRemapEntries { requested: count });
        }
        let first = self
            .handles
            .alloc(count, align)
            .ok_or(Error::NoRemapEntries { requested: count })?;
        if req.block {
            self.blocks.insert(first, n);
        }
        for (i, r) in req.irqs.iter().enumerate() {
            let index = first + i as u32;
            // Only a multi-message block shares its entries (and its padding) until its last
            // irq goes; any other irq's entry is its own and goes back when the irq is freed.
            let (handle, subhandle, block) = match req.block {
                true => (first as u16, i as u16, (first, count)),
                false => {
                    self.blocks.insert(index, 1);
                    (index as u16, 0, (index, 1))
                }
            };
            self.irqs.insert(
                r.irq,
                IrData {
                    index,
                    handle,
                    subhandle,
                    block,
                    sid: req.meta.requester_id,
                    buses: req.meta.requester_buses,
                    level: r.level,
                    active: false,
                },
            );
        }
        Ok(())
    }

    fn free(&mut self, irqs: &[Irq]) {
        for irq in irqs {
            let Some(d) = self.irqs.remove(irq) else {
                continue;
            };
            if d.active || self.table.read(d.index)[0] & 1 != 0 {
                // Deactivation normally cleared it; never leave a present entry behind.
                let _ = self.write(d.index, Irte::NOT_PRESENT);
            }
            let (first, count) = d.block;
            let live = self.blocks.get_mut(&first).expect("block is tracked");
            *live -= 1;
            if *live == 0 {
                self.blocks.remove(&first);
                self.held.hold((first, count));
            }
        }
    }

    fn activate(&mut self, irq: Irq, parent: Option<&Composed>) -> Result<Composed> {
        self.program(irq, parent)
    }

    fn deactivate(&mut self, irq: Irq) {
        if let Some(d) = self.irqs.get_mut(&irq) {
            d.active = false;
            let index = d.index;
            // A failed invalidation cannot be undone here; the entry is not present either way.
            let _ = self.write(index, Irte::NOT_PRESENT);
        }
    }

    fn set_affinity(
        &mut self,
        irq: Irq,
        _: &CpuMask,
        parent: Option<&Composed>,
    ) -> Result<Composed> {
        self.program(irq, parent)
    }

    fn compose_msg(&self, irq: Irq, parent: Option<&Composed>) -> Option<Composed> {
        let d = self.irqs.get(&irq)?;
        let raw = self.table.read(d.index);
        let vector = Irte::parse(raw, self.x2apic).ok()?.vector;
        d.active
            .then(|| Composed::new(Self::msg(d, vector), parent.and_then(|p| p.effective_cpu)))
    }

    /// Stamps the held entries and gives back those whose grace has passed: every write to
    /// them has reached the unit (and faulted) by then.
    fn advance_grace(&mut self, clock: GraceClock) -> u32 {
        self.held.advance(clock);
        self.release_held()
    }

    fn reclaim(&mut self) -> u32 {
        self.release_held()
    }

    fn held(&self) -> u32 {
        self.held_entries()
    }
}

/// An interrupt as the remapping unit hands it to the CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remapped {
    /// The IRTE index used (None for a compatibility-format pass-through).
    pub index: Option<u32>,
    /// Vector.
    pub vector: Vector,
    /// Destination APIC id.
    pub dest: u32,
    /// Destination mode.
    pub dest_mode: DestMode,
    /// Delivery mode.
    pub delivery: DeliveryMode,
    /// Trigger mode.
    pub trigger: Trigger,
}

/// The faults a remapping unit recorded: the most recent ones in a ring of fixed capacity (as
/// the hardware's fault recording registers keep the last few), and exact counts of all of
/// them per reason. Bounded by construction: a device that faults forever (a late write to a
/// freed entry in a loop, a guest programming garbage) costs no memory beyond the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultLog {
    recent: alloc::collections::VecDeque<(Option<u32>, FaultReason)>,
    capacity: usize,
    /// Per reason, indexed by code - 0x20.
    counts: [u64; FaultLog::REASONS],
}

impl Default for FaultLog {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl FaultLog {
    /// Records kept by default.
    pub const DEFAULT_CAPACITY: usize = 256;
    /// Interrupt-remapping fault reasons (0x20..=0x26).
    const REASONS: usize = 7;

    /// A log keeping the last `capacity` records (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        FaultLog {
            recent: alloc::collections::VecDeque::with_capacity(capacity),
            capacity,
            counts: [0; Self::REASONS],
        }
    }

    fn slot(reason: FaultReason) -> usize {
        usize::from(reason.code() - FaultReason::RequestReserved.code())
    }

    /// Records one fault (the entry index when known): counted, and kept in the ring, whose
    /// oldest record goes when it is full.
    pub fn record(&mut self, index: Option<u32>, reason: FaultReason) {
        self.counts[Self::slot(reason)] += 1;
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back((index, reason));
    }

    /// The most recent records, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &(Option<u32>, FaultReason)> {
        self.recent.iter()
    }

    /// Faults of `reason` recorded since the log was made (or cleared).
    pub fn count(&self, reason: FaultReason) -> u64 {
        self.counts[Self::slot(reason)]
    }

    /// Every reason with a non-zero count, in code order.
    pub fn counts(&self) -> impl Iterator<Item = (FaultReason, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| {
                let code = FaultReason::RequestReserved.code() + i as u8;
                (
                    FaultReason::from_code(code).expect("a remapping fault code"),
                    n,
                )
            })
    }

    /// All faults recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Records the ring no longer holds (counted all the same).
    pub fn overwritten(&self) -> u64 {
        self.total() - self.recent.len() as u64
    }

    /// The ring's size.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every record and count.
    pub fn clear(&mut self) {
        self.recent.clear();
        self.counts = [0; Self::REASONS];
    }
}

/// The remapping unit's side (a hardware model for simulators and tests): entry cache,
/// translation, faults.
#[derive(Debug, Default)]
pub struct IrUnit {
    /// Cached entries, dropped by invalidation: a domain that forgets to invalidate is caught
    /// delivering through a stale entry.
    cache: BTreeMap<u32, [u64; 2]>,
    /// Extended interrupt mode (x2APIC destinations).
    pub x2apic: bool,
    /// Compatibility-format interrupts pass through (GSTS.CFIS set); blocked otherwise.
    pub allow_compat: bool,
    /// Faults recorded (index when known, reason): the last few, and counts of all.
    pub faults: FaultLog,
}

impl IrUnit {
    /// A unit with an empty cache.
    pub fn new(x2apic: bool, allow_compat: bool) -> Self {
        IrUnit {
            x2apic,
            allow_compat,
            ..IrUnit::default()
        }
    }

    /// Executes an invalidation descriptor.
    pub fn invalidate(&mut self, desc: InvDescriptor) {
        match desc.entries() {
            None => self.cache.clear(),
            // The covered entries only: a walk of the whole cache on every invalidation would
            // make freeing n irqs cost n^2 (the disable-and-re-enable baseline frees thousands).
            Some(entries) => {
                let stale: Vec<u32> = self.cache.range(entries).map(|(&i, _)| i).collect();
                for i in stale {
                    self.cache.remove(&i);
                }
            }
        }
    }

    /// Translates a message write from `requester`, reading entries from `table`.
    pub fn translate(
        &mut self,
        msg: &Msg,
        requester: u16,
        table: &dyn IrteTable,
    ) -> core::result::Result<Remapped, FaultReason> {
        let result = self.lookup(msg, requester, table);
        if let Err((index, reason)) = result {
            self.faults.record(index, reason);
        }
        result.map_err(|(_, r)| r)
    }

    fn lookup(
        &mut self,
        msg: &Msg,
        requester: u16,
        table: &dyn IrteTable,
    ) -> core::result::Result<Remapped, (Option<u32>, FaultReason)> {
        let r = match MsiFormat::parse(msg) {
            Err(_) => return Err((None, FaultReason::RequestReserved)),
            Ok(MsiFormat::Compat(c)) if self.allow_compat => {
                return Ok(Remapped {
                    index: None,
                    vector: c.vector,
                    dest: c.dest,
                    dest_mode: c.dest_mode,
                    delivery: c.delivery,
                    trigger: c.trigger,
                })
            }
            Ok(MsiFormat::Compat(_)) => return Err((None, FaultReason::CompatBlocked)),
            Ok(MsiFormat::Remappable(r)) => r,
        };
        let index = r.index();
        if index >= table.len() {
            return Err((Some(index), FaultReason::IndexOutOfRange));
        }
        let raw = *self.cache.entry(index).or_insert_with(|| table.read(index));
        let e =
            Irte::parse(raw, self.x2apic).map_err(|_| (Some(index), FaultReason::EntryReserved))?;
        if !e.present {
            self.cache.remove(&index);
            return Err((Some(index), FaultReason::NotPresent));
        }
        if !e.source_ok(requester) {
            return Err((Some(index), FaultReason::SourceId));
        }
        Ok(Remapped {
            index: Some(index),
            vector: e.vector,
            dest: e.dest,
            dest_mode: e.dest_mode,
            delivery: e.delivery,
            trigger: e.trigger,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_selective_invalidation_drops_only_the_entries_it_covers() {
        let mut unit = IrUnit::default();
        for i in 0..16 {
            unit.cache.insert(i, [u64::from(i), 0]);
        }
        // 2^2 entries from 4: 4..=7 (VT-d 6.5.2.7, index mask).
        unit.invalidate(InvDescriptor::IecIndex { index: 4, mask: 2 });
        let left: Vec<u32> = unit.cache.keys().copied().collect();
        assert_eq!(left, [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15]);
        unit.invalidate(InvDescriptor::IecIndex { index: 15, mask: 0 });
        assert_eq!(unit.cache.len(), 11);
        // A mask no VT-d unit takes covers the rest of the table, without overflowing.
        unit.invalidate(InvDescriptor::IecIndex { index: 9, mask: 40 });
        let left: Vec<u32> = unit.cache.keys().copied().collect();
        assert_eq!(left, [0, 1, 2, 3, 8]);
        unit.invalidate(InvDescriptor::IecGlobal);
        assert!(unit.cache.is_empty());
    }

    #[test]
    fn the_fault_log_keeps_the_last_records_and_counts_every_fault() {
        let mut log = FaultLog::with_capacity(3);
        for i in 0..10 {
            log.record(Some(i), FaultReason::NotPresent);
        }
        log.record(None, FaultReason::SourceId);
        let recent: Vec<_> = log.recent().copied().collect();
        assert_eq!(
            recent,
            [
                (Some(8), FaultReason::NotPresent),
                (Some(9), FaultReason::NotPresent),
                (None, FaultReason::SourceId)
            ]
        );
        assert_eq!(log.count(FaultReason::NotPresent), 10);
        assert_eq!(log.count(FaultReason::SourceId), 1);
        assert_eq!(log.count(FaultReason::RequestReserved), 0);
        assert_eq!(
            log.counts().collect::<Vec<_>>(),
            [(FaultReason::NotPresent, 10), (FaultReason::SourceId, 1)]
        );
        assert_eq!((log.total(), log.overwritten()), (11, 8));
        log.clear();
        assert_eq!((log.total(), log.recent().count()), (0, 0));
    }
}
