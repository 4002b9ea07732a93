//! The delivery side of the irq descriptors: what runs in interrupt context.
//!
//! An irq number indexes a two-level table: a fixed array of chunk slots, each filled once
//! (on the configuration path, when the first irq of the chunk is allocated) and never freed.
//! The delivery path therefore reads a chunk with one acquire load ([`spin::Once::get`]), finds
//! the irq's slot, and works on atomics only: it takes no lock, allocates nothing, and never
//! waits for the configuration path. Configuration publishes a slot's handler before it sets
//! the `ACTIVE` flag with release ordering.
//!
//! ## Irq numbers are reused: generations
//!
//! An interrupt finds its irq in two steps: the CPU's vector table names an irq number, then the
//! delivery announces itself on that number's slot. A delivery delayed between the two steps
//! could otherwise count for, and call the handler of, the *next* owner of the number (numbers
//! are reused lowest-free first). Linux closes this window with RCU-freed descriptors. Here each
//! slot carries a generation, bumped every time its number is released: the vector table maps a
//! vector to an [`IrqRef`] (number and generation), and [`IrqTable::deliver_ref`] refuses a
//! reference whose generation is no longer the slot's ([`Delivery::Stale`]). The release bumps
//! the generation and then waits for the deliveries already announced, so a delivery either
//! announced itself in time to be waited for, or sees the new generation: no lock, no wait on
//! the delivery path.
//!
//! Statistics that depend on the CPU count live per CPU ([`IrqTable::cpu_count`], each CPU's
//! counter on its own cache line), not per irq, so a slot is one cache line on any machine.
//! Slots are cache-line aligned too: irqs handled on different CPUs never share a line.
//!
//! Exact per-(irq, CPU) counts, as `/proc/interrupts` shows them, come without a counter per
//! possible CPU: an irq targets one CPU at a time (two while a move completes), so a slot has
//! two *cells*, each a CPU label and a count in one atomic word. A delivery adds to the cell of
//! its CPU, or claims an empty one, with a compare-and-swap. When an irq moves, the
//! configuration path folds the cells of the CPUs it left into a sparse map (one entry per CPU
//! the irq ever ran on), swapping each cell to empty: a delivery racing with the fold fails its
//! compare-and-swap and claims a cell afresh, so nothing is lost or counted twice. Only a
//! delivery on a third CPU while both cells are held (a second move before the first one's old
//! vector drained) finds no cell: it is counted for the irq and its CPU's total but left
//! unattributed ([`IrqTable::unattributed`]), so the columns still add up.

use crate::sync::{spin_wait, AtomicU32, AtomicU64, Ordering};
use crate::Irq;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use spin::{Mutex, Once};

/// Irqs per chunk of the table.
const CHUNK: u32 = 256;

/// Slot flag: the irq is activated (its message is live); deliveries are handled.
const ACTIVE: u32 = 1 << 0;
/// Slot flag: masked in software (the store has no per-vector mask); deliveries latch `PENDING`.
const SOFT_MASKED: u32 = 1 << 1;
/// Slot flag: an interrupt arrived while `SOFT_MASKED`; replayed on unmask.
const PENDING: u32 = 1 << 2;
/// The slot's generation sits above the flags, so that one load reads both.
const GENERATION_SHIFT: u32 = 3;
/// Generations wrap after `2^29` releases of one irq number: a delivery would have to stay
/// delayed across that many free/allocate cycles of its number to be mistaken.
const GENERATION_MASK: u32 = u32::MAX >> GENERATION_SHIFT;

fn generation_of(flags: u32) -> u32 {
    flags >> GENERATION_SHIFT
}

/// One allocation of an irq number, as the delivery path names it: the number and the
/// generation it had when it was allocated (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IrqRef {
    /// The irq number.
    pub irq: Irq,
    /// Its generation (29 bits) at allocation.
    pub generation: u32,
}

impl IrqRef {
    /// A generation no allocation ever has (generations are 29 bits).
    pub const FREED_GENERATION: u32 = u32::MAX;

    /// A reference to an allocation of `irq` that was freed: delivered, it is always
    /// [`Delivery::Stale`]. What a vector table hands out for a vector held in quarantine
    /// (see [`grace`](crate::grace)).
    pub const fn freed(irq: Irq) -> Self {
        IrqRef {
            irq,
            generation: Self::FREED_GENERATION,
        }
    }
}

/// Something that runs when an interrupt is handled.
pub trait IrqHandler: Send + Sync {
    /// Handles one interrupt of `irq` on `cpu`; `data` is the value given to
    /// [`IrqSystem::set_handler`](crate::IrqSystem::set_handler).
    fn handle(&self, irq: Irq, cpu: u32, data: u32);
}

impl<F: Fn(Irq, u32, u32) + Send + Sync> IrqHandler for F {
    fn handle(&self, irq: Irq, cpu: u32, data: u32) {
        self(irq, cpu, data)
    }
}

/// A registered handler (see [`IrqSystem::register_handler`](crate::IrqSystem::register_handler)).
/// Id 0 is the built-in handler that only counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(pub u32);

/// What happened to one delivered interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Counted and passed to the irq's handler.
    Handled,
    /// The irq is masked in software: latched as pending, replayed on unmask.
    Latched,
    /// No active irq has this number (counted as spurious).
    Spurious,
    /// The irq reference names an earlier allocation of the number, freed since: the
    /// interrupt was meant for an irq that no longer exists (counted as spurious, never
    /// delivered to the number's next owner).
    Stale,
}

/// A count cell's CPU label: CPU + 1 in the bits from here up (0: the cell is empty).
const LABEL_SHIFT: u32 = 47;
/// A count cell's count: the bits below the label.
const CELL_COUNT: u64 = (1 << LABEL_SHIFT) - 1;

/// The label of `cpu` in a count cell (CPU numbers below `MAX_CPUS` fit in the 17 bits).
fn cell_label(cpu: u32) -> Option<u64> {
    (cpu < crate::MAX_CPUS).then(|| u64::from(cpu) + 1)
}

/// One CPU's statistics, alone on its cache line so CPUs never write the same line.
#[repr(align(64))]
struct PerCpu {
    handled: AtomicU64,
}

#[repr(align(64))]
struct Slot {
    /// Flags in the low bits, the generation above them (`GENERATION_SHIFT`).
    flags: AtomicU32,
    /// Deliveries running on this slot right now: configuration waits for zero before it
    /// reuses the slot (see [`IrqTable::synchronize`]).
    inflight: AtomicU32,
    /// Handler id in the high half, handler data in the low half, so both change at once.
    handler: AtomicU64,
    count: AtomicU64,
    /// Per-(irq, CPU) counts of the CPUs the irq runs on now (see the module docs).
    cells: [AtomicU64; 2],
    /// Deliveries that found no cell (a third CPU during overlapping moves).
    unattributed: AtomicU64,
}

impl Slot {
    fn new() -> Self {
        Slot {
            flags: AtomicU32::new(0),
            inflight: AtomicU32::new(0),
            handler: AtomicU64::new(0),
            count: AtomicU64::new(0),
            cells: [AtomicU64::new(0), AtomicU64::new(0)],
            unattributed: AtomicU64::new(0),
        }
    }
}

/// The lock-free half of the irq descriptor table (see the module docs).
pub struct IrqTable {
    chunks: Box<[Once<Box<[Slot]>>]>,
    handlers: Box<[Once<Box<dyn IrqHandler>>]>,
    cpu_counts: Box<[PerCpu]>,
    spurious: AtomicU64,
    /// Of the spurious interrupts, those that named a freed allocation.
    stale: AtomicU64,
    /// Per-(irq, CPU) counts folded out of the cells (configuration side only).
    folded: Mutex<BTreeMap<(u32, u32), u64>>,
}

impl core::fmt::Debug for IrqTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IrqTable")
            .field("capacity", &self.capacity())
            .field("chunks_in_use", &self.chunks_in_use())
            .field("spurious", &self.spurious())
            .finish()
    }
}

impl IrqTable {
    pub(crate) fn new(max_irqs: u32, nr_cpus: u32, max_handlers: u32) -> Self {
        let chunks = max_irqs.div_ceil(CHUNK);
        IrqTable {
            chunks: (0..chunks).map(|_| Once::new()).collect(),
            handlers: (0..max_handlers.max(1)).map(|_| Once::new()).collect(),
            cpu_counts: (0..nr_cpus)
                .map(|_| PerCpu {
                    handled: AtomicU64::new(0),
                })
                .collect(),
            spurious: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            folded: Mutex::new(BTreeMap::new()),
        }
    }

    /// Number of irq numbers the table can hold.
    pub fn capacity(&self) -> u32 {
        self.chunks.len() as u32 * CHUNK
    }

    /// Chunks allocated so far (memory grows with the highest irqs used, in steps of 256).
    pub fn chunks_in_use(&self) -> usize {
        self.chunks.iter().filter(|c| c.is_completed()).count()
    }

    fn slot(&self, irq: Irq) -> Option<&Slot> {
        let chunk = self.chunks.get((irq.0 / CHUNK) as usize)?.get()?;
        chunk.get((irq.0 % CHUNK) as usize)
    }

    /// Makes sure the slots of `first..first + count` exist (configuration path).
    pub(crate) fn populate(&self, first: Irq, count: u32) {
        let (lo, hi) = (first.0 / CHUNK, (first.0 + count.max(1) - 1) / CHUNK);
        for c in lo..=hi {
            if let Some(once) = self.chunks.get(c as usize) {
                once.call_once(|| (0..CHUNK).map(|_| Slot::new()).collect());
            }
        }
    }

    /// Delivers one interrupt of the irq allocation `r` on `cpu` (the delivery path:
    /// lock-free, no allocation). Use this whenever the irq was found through a table that
    /// the configuration path changes (a CPU's vector table): a reference to a freed
    /// allocation is refused as [`Delivery::Stale`] even when its number was reused.
    pub fn deliver_ref(&self, r: IrqRef, cpu: u32) -> Delivery {
        self.deliver_checked(r.irq, Some(r.generation), cpu)
    }

    /// Delivers one interrupt of `irq` on `cpu`, whatever allocation of the number is live.
    /// Only for a caller that knows the number cannot be freed and reused while it delivers
    /// (it holds the number itself); an irq looked up in a vector table goes through
    /// [`IrqTable::deliver_ref`].
    pub fn deliver(&self, irq: Irq, cpu: u32) -> Delivery {
        self.deliver_checked(irq, None, cpu)
    }

    fn deliver_checked(&self, irq: Irq, generation: Option<u32>, cpu: u32) -> Delivery {
        let Some(slot) = self.slot(irq) else {
            self.spurious.fetch_add(1, Ordering::Relaxed);
            if generation == Some(IrqRef::FREED_GENERATION) {
                self.stale.fetch_add(1, Ordering::Relaxed);
                return Delivery::Stale;
            }
            return Delivery::Spurious;
        };
        // Announce the delivery before looking at the flags; configuration clears ACTIVE (and
        // bumps the generation) before it waits for `inflight` to drain, so one of the two
        // always sees the other.
        slot.inflight.fetch_add(1, Ordering::SeqCst);
        let outcome = self.deliver_in(slot, irq, generation, cpu);
        slot.inflight.fetch_sub(1, Ordering::Release);
        outcome
    }

    fn deliver_in(&self, slot: &Slot, irq: Irq, generation: Option<u32>, cpu: u32) -> Delivery {
        // Read through a read-modify-write, which reads the latest value in the flags'
        // modification order: with the announcement above and the same on the configuration
        // side (`synchronize`), that is what makes "one of the two sees the other" hold under
        // any memory model, loom's included (loom treats SeqCst loads as acquire loads). The
        // slot's cache line was just written by the announcement, so it costs little.
        let mut flags = slot.flags.fetch_or(0, Ordering::SeqCst);
        loop {
            if generation.is_some_and(|g| g != generation_of(flags)) {
                self.spurious.fetch_add(1, Ordering::Relaxed);
                self.stale.fetch_add(1, Ordering::Relaxed);
                return Delivery::Stale;
            }
            if flags & ACTIVE == 0 {
                self.spurious.fetch_add(1, Ordering::Relaxed);
                return Delivery::Spurious;
            }
            if flags & SOFT_MASKED == 0 {
                break;
            }
            // Latch only while still masked: an unmask between the load and the latch would
            // otherwise miss the pending bit and leave the interrupt latched on an unmasked irq.
            match slot.flags.compare_exchange_weak(
                flags,
                flags | PENDING,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Delivery::Latched,
                Err(now) => flags = now,
            }
        }
        slot.count.fetch_add(1, Ordering::Relaxed);
        count_on(slot, cpu);
        if let Some(c) = self.cpu_counts.get(cpu as usize) {
            c.handled.fetch_add(1, Ordering::Relaxed);
        }
        let handler = slot.handler.load(Ordering::Acquire);
        let (id, data) = ((handler >> 32) as usize, handler as u32);
        if let Some(h) = self.handlers.get(id).and_then(Once::get) {
            h.handle(irq, cpu, data);
        }
        Delivery::Handled
    }

    /// Waits until no delivery of `irq` is running (the configuration path, after the irq was
    /// marked inactive): then nothing can still count for it or call its handler, and its slot
    /// may be reused. Like Linux's `synchronize_irq`, it must not be called from the irq's own
    /// handler.
    pub(crate) fn synchronize(&self, irq: Irq) {
        if let Some(s) = self.slot(irq) {
            // A read-modify-write for the same reason as the delivery side's flags read.
            while s.inflight.fetch_add(0, Ordering::SeqCst) != 0 {
                spin_wait();
            }
        }
    }

    /// Interrupts handled for `irq` since it was allocated.
    pub fn count(&self, irq: Irq) -> u64 {
        self.slot(irq)
            .map_or(0, |s| s.count.load(Ordering::Relaxed))
    }

    /// Interrupts handled on `cpu`, all irqs together.
    pub fn cpu_count(&self, cpu: u32) -> u64 {
        self.cpu_counts
            .get(cpu as usize)
            .map_or(0, |c| c.handled.load(Ordering::Relaxed))
    }

    /// Interrupts handled for `irq` per CPU, lowest CPU first, CPUs with none left out: the
    /// row of `/proc/interrupts`. With [`IrqTable::unattributed`] they add up to
    /// [`IrqTable::count`].
    pub fn irq_cpu_counts(&self, irq: Irq) -> Vec<(u32, u64)> {
        let Some(slot) = self.slot(irq) else {
            return Vec::new();
        };
        // The lock keeps a fold from moving a count between the cells and the map under us.
        let folded = self.folded.lock();
        let mut counts: BTreeMap<u32, u64> = folded
            .range((irq.0, 0)..=(irq.0, u32::MAX))
            .map(|(&(_, cpu), &n)| (cpu, n))
            .collect();
        for cell in &slot.cells {
            let v = cell.load(Ordering::Relaxed);
            if v >> LABEL_SHIFT != 0 {
                *counts.entry((v >> LABEL_SHIFT) as u32 - 1).or_default() += v & CELL_COUNT;
            }
        }
        counts.into_iter().filter(|&(_, n)| n > 0).collect()
    }

    /// Deliveries of `irq` counted but not attributed to a CPU (see the module docs).
    pub fn unattributed(&self, irq: Irq) -> u64 {
        self.slot(irq)
            .map_or(0, |s| s.unattributed.load(Ordering::Relaxed))
    }

    /// Moves the per-CPU counts of `irq` out of its cells, except the cell of `keep` (the CPU it
    /// targets now), into the sparse map: the configuration path, when the irq moved.
    pub(crate) fn fold_counts(&self, irq: Irq, keep: Option<u32>) {
        let Some(slot) = self.slot(irq) else {
            return;
        };
        let keep = keep.and_then(cell_label);
        let mut folded = self.folded.lock();
        for cell in &slot.cells {
            let v = cell.load(Ordering::Relaxed);
            let label = v >> LABEL_SHIFT;
            if label == 0 || Some(label) == keep {
                continue;
            }
            // A delivery racing with us fails its compare-and-swap and takes a cell afresh.
            let v = cell.swap(0, Ordering::Relaxed);
            if v >> LABEL_SHIFT != 0 {
                *folded
                    .entry((irq.0, (v >> LABEL_SHIFT) as u32 - 1))
                    .or_default() += v & CELL_COUNT;
            }
        }
    }

    /// Interrupts that named no active irq.
    pub fn spurious(&self) -> u64 {
        self.spurious.load(Ordering::Relaxed)
    }

    /// Of [`IrqTable::spurious`], the interrupts that named a freed allocation
    /// ([`Delivery::Stale`]): late writes to a vector held in quarantine, or lookups delayed
    /// past a free.
    pub fn stale(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    pub(crate) fn register(&self, handler: Box<dyn IrqHandler>) -> Option<HandlerId> {
        let free = self
            .handlers
            .iter()
            .skip(1)
            .position(|h| !h.is_completed())?
            + 1;
        self.handlers[free].call_once(|| handler);
        Some(HandlerId(free as u32))
    }

    pub(crate) fn has_handler(&self, id: HandlerId) -> bool {
        id.0 == 0
            || self
                .handlers
                .get(id.0 as usize)
                .is_some_and(Once::is_completed)
    }

    pub(crate) fn set_handler(&self, irq: Irq, id: HandlerId, data: u32) {
        if let Some(s) = self.slot(irq) {
            s.handler
                .store((u64::from(id.0) << 32) | u64::from(data), Ordering::Release);
        }
    }

    pub(crate) fn set_active(&self, irq: Irq, active: bool) {
        if let Some(s) = self.slot(irq) {
            if active {
                s.flags.fetch_or(ACTIVE, Ordering::SeqCst);
            } else {
                s.flags.fetch_and(!ACTIVE, Ordering::SeqCst);
            }
        }
    }

    pub(crate) fn set_soft_masked(&self, irq: Irq, masked: bool) {
        self.update(irq, SOFT_MASKED, masked);
    }

    /// Clears and returns the pending latch.
    pub(crate) fn take_pending(&self, irq: Irq) -> bool {
        self.slot(irq)
            .is_some_and(|s| s.flags.fetch_and(!PENDING, Ordering::AcqRel) & PENDING != 0)
    }

    /// True when an interrupt is latched for the (software-masked) irq.
    pub fn is_pending(&self, irq: Irq) -> bool {
        self.slot(irq)
            .is_some_and(|s| s.flags.load(Ordering::Acquire) & PENDING != 0)
    }

    fn update(&self, irq: Irq, bit: u32, on: bool) {
        if let Some(s) = self.slot(irq) {
            if on {
                s.flags.fetch_or(bit, Ordering::Release);
            } else {
                s.flags.fetch_and(!bit, Ordering::Release);
            }
        }
    }

    /// The live allocation of `irq` (configuration path: the reference a vector table maps).
    pub fn irq_ref(&self, irq: Irq) -> IrqRef {
        let generation = self
            .slot(irq)
            .map_or(0, |s| generation_of(s.flags.load(Ordering::SeqCst)));
        IrqRef { irq, generation }
    }

    /// Resets a slot when its irq number is released: a new generation first, so that no
    /// reference to this allocation is delivered any more, then the wait for the deliveries
    /// already running ([`IrqTable::synchronize`]).
    pub(crate) fn reset(&self, irq: Irq) {
        if let Some(s) = self.slot(irq) {
            // Only the configuration path (under its lock) changes the generation. A
            // read-modify-write, not a load and a store: it is ordered after every delivery's
            // read-modify-write of the flags, so a delivery that read the old flags cannot be
            // placed after it (loom finds a plain store overtaken that way), and a racing latch
            // fails its compare-exchange and sees the new generation.
            let _ = s
                .flags
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                    Some(((generation_of(f) + 1) & GENERATION_MASK) << GENERATION_SHIFT)
                });
        }
        self.synchronize(irq);
        if let Some(s) = self.slot(irq) {
            s.handler.store(0, Ordering::Release);
            s.count.store(0, Ordering::Relaxed);
            for cell in &s.cells {
                cell.store(0, Ordering::Relaxed);
            }
            s.unattributed.store(0, Ordering::Relaxed);
        }
        self.folded.lock().retain(|&(i, _), _| i != irq.0);
    }

    /// Per-CPU handled counts, lowest CPU first.
    pub fn cpu_counts(&self) -> Vec<u64> {
        self.cpu_counts
            .iter()
            .map(|c| c.handled.load(Ordering::Relaxed))
            .collect()
    }
}

/// Adds one to the count cell of `cpu` in `slot`, claiming an empty cell if it has none
/// (the delivery path: compare-and-swap only).
fn count_on(slot: &Slot, cpu: u32) {
    let Some(label) = cell_label(cpu) else {
        slot.unattributed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    'retry: loop {
        for cell in &slot.cells {
            let v = cell.load(Ordering::Relaxed);
            if v >> LABEL_SHIFT == label {
                if v & CELL_COUNT == CELL_COUNT {
                    // 2^47 deliveries without a fold: saturated, the rest unattributed.
                    break 'retry;
                }
                if cell
                    .compare_exchange_weak(v, v + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                // Folded (or another delivery of this CPU added) meanwhile: look again.
                continue 'retry;
            }
        }
        for cell in &slot.cells {
            if cell
                .compare_exchange(
                    0,
                    (label << LABEL_SHIFT) | 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return;
            }
        }
        break;
    }
    slot.unattributed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(loom))]
    fn a_slot_costs_the_same_on_any_machine() {
        assert_eq!(core::mem::size_of::<Slot>(), 64);
        assert_eq!(core::mem::align_of::<Slot>(), 64);
        assert_eq!(core::mem::size_of::<PerCpu>(), 64);
        let small = IrqTable::new(100_000, 64, 4);
        let big = IrqTable::new(100_000, 8192, 4);
        small.populate(Irq(99_999), 1);
        big.populate(Irq(99_999), 1);
        assert_eq!(small.chunks_in_use(), 1);
        assert_eq!(big.chunks_in_use(), 1);
    }

    #[test]
    fn inactive_and_unknown_irqs_are_spurious() {
        let t = IrqTable::new(1024, 4, 2);
        assert_eq!(t.deliver(Irq(5), 0), Delivery::Spurious);
        t.populate(Irq(5), 1);
        assert_eq!(t.deliver(Irq(5), 0), Delivery::Spurious);
        assert_eq!(t.deliver(Irq(5_000_000), 0), Delivery::Spurious);
        assert_eq!(t.spurious(), 3);
        t.set_active(Irq(5), true);
        assert_eq!(t.deliver(Irq(5), 3), Delivery::Handled);
        assert_eq!((t.count(Irq(5)), t.cpu_count(3)), (1, 1));
        t.set_soft_masked(Irq(5), true);
        assert_eq!(t.deliver(Irq(5), 3), Delivery::Latched);
        assert!(t.take_pending(Irq(5)));
        assert!(!t.take_pending(Irq(5)));
    }
}

#[cfg(test)]
mod generation_tests {
    use super::*;

    #[test]
    fn a_reference_to_a_freed_allocation_is_stale_after_reuse() {
        let t = IrqTable::new(1024, 2, 2);
        t.populate(Irq(7), 1);
        t.set_active(Irq(7), true);
        let old = t.irq_ref(Irq(7));
        assert_eq!(t.deliver_ref(old, 0), Delivery::Handled);
        t.set_active(Irq(7), false);
        t.reset(Irq(7));
        // The number is reused and live again: the old reference must not reach it.
        t.set_active(Irq(7), true);
        let new = t.irq_ref(Irq(7));
        assert_ne!(old, new);
        assert_eq!(t.deliver_ref(old, 0), Delivery::Stale);
        assert_eq!(t.count(Irq(7)), 0);
        assert_eq!(t.deliver_ref(new, 1), Delivery::Handled);
        assert_eq!((t.count(Irq(7)), t.spurious()), (1, 1));
    }

    #[test]
    fn generations_wrap_within_their_bits() {
        let t = IrqTable::new(256, 1, 1);
        t.populate(Irq(0), 1);
        let s = t.slot(Irq(0)).unwrap();
        s.flags
            .store(GENERATION_MASK << GENERATION_SHIFT, Ordering::SeqCst);
        t.reset(Irq(0));
        assert_eq!(t.irq_ref(Irq(0)).generation, 0);
        t.set_active(Irq(0), true);
        assert_eq!(t.deliver_ref(t.irq_ref(Irq(0)), 0), Delivery::Handled);
    }
}
