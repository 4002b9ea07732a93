//! The vector domain: the root of every x86 hierarchy. It gives each irq a vector on a CPU,
//! composes the compatibility-format message for it, and moves it without losing interrupts.
//!
//! ## Moving an irq
//!
//! 1. `set_affinity` allocates the new (CPU, vector) first and maps it in the [`VectorTable`];
//!    the old target stays mapped, so an interrupt already on its way there is still delivered.
//! 2. The core writes the new message (or the remapping domain rewrites its entry).
//!    A device that is not behind remapping and cannot mask a vector may latch address and data
//!    non-atomically; for it the move goes in two steps: first the new vector on the *old* CPU
//!    (an interim target allocated on both CPUs, so a torn message still lands on this irq),
//!    then the new CPU.
//! 3. The move is complete after the first interrupt arrives on the new target (the delivery
//!    path marks it) or after [`VectorDomain::complete_move`]. [`VectorDomain::cleanup`] then
//!    releases the old targets whose vectors are not pending in their CPU's IRR; a pending one
//!    is left for its CPU to deliver, or retriggered on the new target if its CPU went offline.
//!
//! ## Freeing an irq: the vector waits for its grace
//!
//! A freed or deactivated irq's vector is not handed out again at once: a write the device
//! posted before it was masked may still be in the fabric, or sit in the CPU's IRR, and would
//! be handled as the interrupt of whoever got the vector next (the matrix hands out the lowest
//! free vector, so that is the very next allocation on the CPU). The flow
//! (see [`genmsi::grace`] for the whole system's part):
//!
//! 1. `deactivate` (and `free`, for an irq still holding targets) leaves each target allocated
//!    in the matrix and puts a *freed marker* in its [`VectorTable`] entry: a write that still
//!    arrives looks up [`IrqRef::freed`] and is counted as [`Delivery::Stale`](genmsi::Delivery::Stale),
//!    never handled by anyone.
//! 2. [`Domain::advance_grace`] (the embedder's [`genmsi::IrqSystem::advance_grace`]) stamps
//!    the held targets; once the platform's posted-write bound has passed since, every write
//!    to them has landed in an IRR.
//! 3. The cleanup ([`VectorDomain::cleanup`], [`VectorDomain::cleanup_on_cpu`]) gives a held
//!    target back to the matrix once its grace has passed and its vector is pending in neither
//!    the IRR nor the ISR of its CPU (an offline CPU holds nothing: it was reset). A
//!    [`VectorDomain::set_pending_probe`] lets the domain ask by itself, at an advance or when
//!    an allocation finds no vector.
//! 4. An irq activated again before that takes back a target it holds itself: a late write is
//!    its own interrupt there.

use crate::apic::{ApicId, Trigger, Vector};
use crate::matrix::{MatrixError, VectorMatrix};
use crate::msi::CompatMsi;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};
use genmsi::{
    AllocRequest, Composed, CpuMask, Domain, Error, GraceClock, Irq, IrqRef, Quarantine, Result,
};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

/// Entry flag: an interrupt arrived through this entry since it was mapped.
const SEEN: u64 = 1 << 31;
/// Entry flag: the vector is held for a freed allocation of the irq (a freed marker).
const FREED: u64 = 1 << 63;
/// Entry bits 30:0 hold the irq number plus one (0: unmapped), bits 60:32 its generation.
const IRQ_BITS: u64 = SEEN - 1;
/// The generation's bits, once shifted down.
const GENERATION_BITS: u64 = (1 << 29) - 1;

fn decode(e: u64) -> Option<IrqRef> {
    let irq = Irq(((e & IRQ_BITS) as u32).checked_sub(1)?);
    Some(match e & FREED {
        0 => IrqRef {
            irq,
            generation: ((e >> 32) & GENERATION_BITS) as u32,
        },
        _ => IrqRef::freed(irq),
    })
}

/// Per CPU, vector -> irq allocation: what the CPU's interrupt entry consults (Linux's
/// `vector_irq`). Lock-free: the configuration path stores, the delivery path loads. An entry
/// names the irq *and its generation*, so that a lookup delayed past a free and a reuse of the
/// number is refused by [`genmsi::IrqSystem::handle_ref`] instead of reaching the new owner.
pub struct VectorTable {
    entries: alloc::boxed::Box<[AtomicU64]>,
}

impl core::fmt::Debug for VectorTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (mut used, mut held) = (0, 0);
        for e in self.entries.iter().map(|e| e.load(Ordering::Relaxed)) {
            match (e & IRQ_BITS != 0, e & FREED != 0) {
                (true, false) => used += 1,
                (true, true) => held += 1,
                _ => {}
            }
        }
        write!(
            f,
            "VectorTable({} CPUs, {used} vectors mapped, {held} held)",
            self.entries.len() / 256
        )
    }
}

impl VectorTable {
    fn new(nr_cpus: u32) -> Self {
        VectorTable {
            entries: (0..nr_cpus as usize * 256)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn slot(&self, cpu: u32, vector: Vector) -> Option<&AtomicU64> {
        self.entries.get(cpu as usize * 256 + usize::from(vector.0))
    }

    /// The irq allocation mapped at (cpu, vector), marking the entry as used (the delivery
    /// path). Deliver it with [`genmsi::IrqSystem::handle_ref`]. A vector held for a freed
    /// allocation answers [`IrqRef::freed`], which is delivered as
    /// [`Delivery::Stale`](genmsi::Delivery::Stale).
    pub fn lookup_ref(&self, cpu: u32, vector: Vector) -> Option<IrqRef> {
        let slot = self.slot(cpu, vector)?;
        let e = slot.load(Ordering::Acquire);
        let r = decode(e)?;
        if e & (SEEN | FREED) == 0 {
            slot.fetch_or(SEEN, Ordering::AcqRel);
        }
        Some(r)
    }

    /// The irq number mapped at (cpu, vector), marking the entry as used. The number alone
    /// may be freed and reused before the caller delivers it: the delivery path uses
    /// [`VectorTable::lookup_ref`].
    pub fn lookup(&self, cpu: u32, vector: Vector) -> Option<Irq> {
        self.lookup_ref(cpu, vector).map(|r| r.irq)
    }

    /// The irq mapped at (cpu, vector), without marking it (`None` for a held vector too).
    pub fn peek(&self, cpu: u32, vector: Vector) -> Option<Irq> {
        let e = self.slot(cpu, vector)?.load(Ordering::Acquire);
        (e & FREED == 0).then(|| decode(e)).flatten().map(|r| r.irq)
    }

    /// The irq whose freed allocation holds (cpu, vector) in quarantine, if any.
    pub fn held(&self, cpu: u32, vector: Vector) -> Option<Irq> {
        let e = self.slot(cpu, vector)?.load(Ordering::Acquire);
        (e & FREED != 0).then(|| decode(e)).flatten().map(|r| r.irq)
    }

    /// True when an interrupt arrived through (cpu, vector) since it was mapped: for a new
    /// target, the move to it is complete.
    pub fn seen(&self, cpu: u32, vector: Vector) -> bool {
        self.slot(cpu, vector)
            .is_some_and(|s| s.load(Ordering::Acquire) & (SEEN | FREED) == SEEN)
    }

    fn map(&self, cpu: u32, vector: Vector, r: IrqRef) {
        if let Some(s) = self.slot(cpu, vector) {
            let irq = u64::from(r.irq.0) + 1;
            s.store(
                (u64::from(r.generation) << 32) | (irq & IRQ_BITS),
                Ordering::Release,
            );
        }
    }

    /// Leaves a freed marker for `irq` at (cpu, vector).
    fn hold(&self, cpu: u32, vector: Vector, irq: Irq) {
        if let Some(s) = self.slot(cpu, vector) {
            s.store(
                FREED | ((u64::from(irq.0) + 1) & IRQ_BITS),
                Ordering::Release,
            );
        }
    }

    fn unmap(&self, cpu: u32, vector: Vector) {
        if let Some(s) = self.slot(cpu, vector) {
            s.store(0, Ordering::Release);
        }
    }
}

/// A (CPU, vector) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// The CPU.
    pub cpu: u32,
    /// The vector on it.
    pub vector: Vector,
    /// Allocated from the CPU's managed reservation.
    pub managed: bool,
}

#[derive(Clone, Debug)]
struct VectorData {
    /// The irq allocation the vector table maps for this irq.
    irq_ref: IrqRef,
    affinity: CpuMask,
    managed: bool,
    level: bool,
    /// The store is the direct child and cannot mask: moves go in two steps.
    two_step: bool,
    current: Option<Target>,
    /// Earlier targets still mapped, released by `cleanup`.
    old: Vec<Target>,
    /// The move was declared complete by `complete_move`.
    completed: bool,
    /// An ordinary irq holds a reservation of the matrix (allocated or deactivated, not active).
    reserved: bool,
}

/// A target of a freed or deactivated irq, held until its grace has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeldTarget {
    target: Target,
    /// The allocation that held it.
    owner: IrqRef,
    /// Its release also gives back the managed reservation of its CPU (the owner was freed).
    drop_managed: bool,
}

/// Asks whether `vector` is pending in the IRR or the ISR of `cpu` (see
/// [`VectorDomain::set_pending_probe`]).
pub type PendingProbe = alloc::boxed::Box<dyn Fn(u32, Vector) -> bool + Send>;

struct Probe(PendingProbe);

impl core::fmt::Debug for Probe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PendingProbe")
    }
}

/// What [`VectorDomain::cleanup`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Old targets released.
    pub released: Vec<(Irq, Target)>,
    /// Irqs whose old target had an interrupt pending on a CPU that is gone: the caller must
    /// deliver one interrupt of each on its current target.
    pub retrigger: Vec<Irq>,
    /// Moves still waiting (no interrupt on the new target yet, or a pending old vector).
    pub waiting: u32,
    /// Targets of freed or deactivated irqs given back to the matrix: their grace had passed
    /// and their vector was pending neither in the IRR nor in the ISR.
    pub reclaimed: Vec<(Irq, Target)>,
    /// Targets still held after this pass.
    pub held: u32,
}

/// The vector domain (see the module docs).
#[derive(Debug)]
pub struct VectorDomain {
    matrix: VectorMatrix,
    table: Arc<VectorTable>,
    apic_ids: Vec<ApicId>,
    max_apic_id: u32,
    irqs: BTreeMap<Irq, VectorData>,
    /// Targets of freed or deactivated irqs, in quarantine (see the module docs).
    held: Quarantine<HeldTarget>,
    probe: Option<Probe>,
}

impl VectorDomain {
    /// `nr_cpus` CPUs whose APIC ids equal their CPU numbers, clamped at
    /// [`MAX_CPUS`](genmsi::MAX_CPUS) (no mask can name more).
    pub fn new(nr_cpus: u32) -> Self {
        Self::with_apic_ids((0..nr_cpus.min(genmsi::MAX_CPUS)).map(ApicId).collect())
    }

    /// CPUs `0..apic_ids.len()` with the given APIC ids; ids past
    /// [`MAX_CPUS`](genmsi::MAX_CPUS) are dropped (no mask can name those CPUs).
    pub fn with_apic_ids(mut apic_ids: Vec<ApicId>) -> Self {
        apic_ids.truncate(genmsi::MAX_CPUS as usize);
        let n = apic_ids.len() as u32;
        VectorDomain {
            matrix: VectorMatrix::new(n),
            table: Arc::new(VectorTable::new(n)),
            max_apic_id: apic_ids.iter().map(|a| a.0).max().unwrap_or(0),
            apic_ids,
            irqs: BTreeMap::new(),
            held: Quarantine::new(),
            probe: None,
        }
    }

    /// Gives the domain a way to ask whether a vector is pending in the IRR or the ISR of a
    /// CPU, so that it can give back held vectors by itself: at each
    /// [`Domain::advance_grace`] and when an allocation finds no vector. Only for platforms
    /// where any CPU can read another's (x2APIC with a shared model, a simulator); in xAPIC
    /// mode each CPU runs [`VectorDomain::cleanup_on_cpu`] instead.
    pub fn set_pending_probe(&mut self, probe: Option<PendingProbe>) {
        self.probe = probe.map(Probe);
    }

    /// The targets held in quarantine: the irq that held each, and the time its grace
    /// started (`None`: the grace clock has not advanced since).
    pub fn held_targets(&self) -> Vec<(Irq, Target, Option<u64>)> {
        self.held
            .iter()
            .map(|(h, since)| (h.owner.irq, h.target, since))
            .collect()
    }

    /// The vector table, for the delivery path.
    pub fn table(&self) -> Arc<VectorTable> {
        self.table.clone()
    }

    /// The matrix (counts, balance).
    pub fn matrix(&self) -> &VectorMatrix {
        &self.matrix
    }

    /// The matrix, to reserve system vectors before any allocation.
    pub fn matrix_mut(&mut self) -> &mut VectorMatrix {
        &mut self.matrix
    }

    /// The APIC id of `cpu`.
    pub fn apic_id(&self, cpu: u32) -> Option<ApicId> {
        self.apic_ids.get(cpu as usize).copied()
    }

    /// The current target of an active irq.
    pub fn target(&self, irq: Irq) -> Option<Target> {
        self.irqs.get(&irq)?.current
    }

    /// Old targets of `irq` still mapped (a move in progress).
    pub fn old_targets(&self, irq: Irq) -> &[Target] {
        self.irqs.get(&irq).map_or(&[], |d| &d.old)
    }

    /// True when `irq` has old targets still mapped and no interrupt arrived on its new target
    /// yet (nor an explicit completion).
    pub fn move_pending(&self, irq: Irq) -> bool {
        self.irqs.get(&irq).is_some_and(|d| {
            !d.old.is_empty()
                && !d.completed
                && d.current.is_some_and(|t| !self.table.seen(t.cpu, t.vector))
        })
    }

    /// Irqs with a move in progress.
    pub fn moves_in_progress(&self) -> usize {
        self.irqs.values().filter(|d| !d.old.is_empty()).count()
    }

    fn compose(&self, d: &VectorData, t: Target) -> Result<Composed> {
        let dest = self.apic_ids[t.cpu as usize].0;
        let mut c = CompatMsi::fixed(dest, t.vector);
        if d.level {
            c.trigger = Trigger::Level;
            c.assert = true;
        }
        Ok(Composed::new(c.emit(), Some(t.cpu)))
    }

    fn take(&mut self, mask: &CpuMask, managed: bool, reserved: bool) -> Result<Target> {
        let (cpu, vector) = match managed {
            true => self.matrix.alloc_managed(mask)?,
            false => self.matrix.alloc(mask, reserved)?,
        };
        Ok(Target {
            cpu,
            vector,
            managed,
        })
    }

    fn give_back(&mut self, t: Target) {
        self.table.unmap(t.cpu, t.vector);
        self.matrix
            .free(t.cpu, t.vector, t.managed)
            .expect("a mapped target is allocated in the matrix");
    }

    /// Holds a target of `owner` in quarantine, behind a freed marker.
    fn hold(&mut self, t: Target, owner: IrqRef) {
        self.table.hold(t.cpu, t.vector, owner.irq);
        self.held.hold(HeldTarget {
            target: t,
            owner,
            drop_managed: false,
        });
    }

    /// Gives back the held targets whose grace has passed and whose vector `pending` says is
    /// neither in the IRR nor in the ISR (not asked for offline CPUs, nor, with `only`, for
    /// other online CPUs, which stay held).
    fn reclaim_held(
        &mut self,
        only: Option<u32>,
        pending: &dyn Fn(u32, Vector) -> bool,
    ) -> Vec<(Irq, Target)> {
        let matrix = &self.matrix;
        let ready = self.held.release_where(|h| {
            let (cpu, vector) = (h.target.cpu, h.target.vector);
            if !matrix.is_online(cpu) {
                // An offline CPU was reset: its IRR and ISR hold nothing any more.
                return true;
            }
            only.is_none_or(|c| c == cpu) && !pending(cpu, vector)
        });
        let mut out = Vec::with_capacity(ready.len());
        for h in ready {
            self.give_back(h.target);
            if h.drop_managed {
                self.matrix.remove_managed(&CpuMask::single(h.target.cpu));
            }
            out.push((h.owner.irq, h.target));
        }
        out
    }

    fn reclaim_with_probe(&mut self) -> u32 {
        let Some(probe) = self.probe.take() else {
            return 0;
        };
        let n = self.reclaim_held(None, &*probe.0).len() as u32;
        self.probe = Some(probe);
        n
    }

    /// Declares the move of `irq` complete (its new message or entry is known to be in effect),
    /// so that [`VectorDomain::cleanup`] may release the old targets.
    pub fn complete_move(&mut self, irq: Irq) {
        if let Some(d) = self.irqs.get_mut(&irq) {
            d.completed = true;
        }
    }

    /// Releases old targets of completed moves. `pending(cpu, vector)` tells whether the vector
    /// is pending in that CPU's IRR.
    pub fn cleanup(&mut self, pending: &dyn Fn(u32, Vector) -> bool) -> CleanupReport {
        self.cleanup_where(None, pending)
    }

    /// Like [`VectorDomain::cleanup`], for the old targets on `cpu` only: what a kernel runs on
    /// that CPU, since in xAPIC mode a CPU reads only its own IRR (`pending` is asked about
    /// `cpu` only). Old targets on CPUs that are offline are handled too.
    pub fn cleanup_on_cpu(&mut self, cpu: u32, pending: &dyn Fn(Vector) -> bool) -> CleanupReport {
        self.cleanup_where(Some(cpu), &|c, v| c == cpu && pending(v))
    }

    fn cleanup_where(
        &mut self,
        only: Option<u32>,
        pending: &dyn Fn(u32, Vector) -> bool,
    ) -> CleanupReport {
        let mut report = CleanupReport::default();
        let moving: Vec<Irq> = self
            .irqs
            .iter()
            .filter(|(_, d)| !d.old.is_empty())
            .map(|(&i, _)| i)
            .collect();
        for irq in moving {
            let d = &self.irqs[&irq];
            let done = d.completed
                || d.current.is_none()
                || d.current.is_some_and(|t| self.table.seen(t.cpu, t.vector));
            let old = core::mem::take(&mut self.irqs.get_mut(&irq).expect("listed").old);
            let mut keep = Vec::new();
            for t in old {
                let online = self.matrix.is_online(t.cpu);
                if online && only.is_some_and(|c| c != t.cpu) {
                    keep.push(t);
                    continue;
                }
                let pending = pending(t.cpu, t.vector);
                if !online {
                    // Its CPU is gone: whatever it had latched is sent again on the new target.
                    if pending {
                        report.retrigger.push(irq);
                    }
                } else if !done || pending {
                    keep.push(t);
                    continue;
                }
                self.give_back(t);
                report.released.push((irq, t));
            }
            let d = self.irqs.get_mut(&irq).expect("listed");
            if keep.is_empty() {
                d.completed = false;
            } else {
                report.waiting += 1;
            }
            d.old = keep;
        }
        report.reclaimed = self.reclaim_held(only, pending);
        report.held = self.held.len() as u32;
        report
    }
}

impl Domain for VectorDomain {
    fn name(&self) -> &'static str {
        "vector"
    }

    /// Reservation mode: ordinary irqs only count a vector now; managed irqs set one aside on
    /// every CPU of their affinity. The real vector comes at activation.
    fn alloc(&mut self, req: &AllocRequest<'_>) -> Result<()> {
        if req.block && req.direct && req.irqs.len() > 1 {
            // Multi-message MSI straight to the CPUs would need a block of vectors on one CPU
            // that moves as one; like Linux, only remapping provides it.
            return Err(Error::NotSupported(genmsi::Unsupported::BlockOnly));
        }
        if req.direct && self.max_apic_id > 0xFF {
            // Without remapping a message carries an 8-bit destination.
            let far = |c: u32| self.apic_ids.get(c as usize).is_none_or(|a| a.0 > 0xFF);
            if let Some(r) = req.irqs.iter().find(|r| r.affinity.iter().any(far)) {
                return Err(Error::NoVectors {
                    cpus: r.affinity.clone(),
                });
            }
        }
        let mut done: Vec<&genmsi::IrqRequest> = Vec::new();
        for r in req.irqs {
            let res = match r.managed {
                true => self.matrix.reserve_managed(&r.affinity),
                false => self.matrix.reserve(),
            };
            if let Err(e) = res {
                for r in done {
                    match r.managed {
                        true => self.matrix.remove_managed(&r.affinity),
                        false => self.matrix.remove_reserved(),
                    }
                }
                return Err(match e {
                    MatrixError::ReservationsExhausted { .. } => Error::NoVectors {
                        cpus: r.affinity.clone(),
                    },
                    e => e.into(),
                });
            }
            done.push(r);
        }
        for r in req.irqs {
            self.irqs.insert(
                r.irq,
                VectorData {
                    irq_ref: IrqRef {
                        irq: r.irq,
                        generation: r.generation,
                    },
                    affinity: r.affinity.clone(),
                    managed: r.managed,
                    level: r.level,
                    two_step: req.direct && !req.store.per_vector_mask,
                    current: None,
                    old: Vec::new(),
                    completed: false,
                    reserved: !r.managed,
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
            for t in d.current.into_iter().chain(d.old) {
                self.hold(t, d.irq_ref);
            }
            if !d.managed {
                if d.reserved {
                    self.matrix.remove_reserved();
                }
                continue;
            }
            // The managed reservation of a CPU whose vector is held goes back with that
            // vector; the other CPUs' go back now.
            let mut now = d.affinity.clone();
            for h in self.held.iter_mut() {
                let cpu = h.target.cpu;
                if h.owner == d.irq_ref && h.target.managed && now.contains(cpu) {
                    h.drop_managed = true;
                    now = now.without(cpu);
                }
            }
            self.matrix.remove_managed(&now);
        }
    }

    fn activate(&mut self, irq: Irq, _parent: Option<&Composed>) -> Result<Composed> {
        let d = self.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?.clone();
        if let Some(t) = d.current {
            return self.compose(&d, t);
        }
        let mask = d.affinity.clone();
        let matrix = &self.matrix;
        let own = self.held.take_back(|h| {
            h.owner == d.irq_ref
                && h.target.managed == d.managed
                && mask.contains(h.target.cpu)
                && matrix.is_online(h.target.cpu)
        });
        if let Some(h) = own {
            // Its own held vector: a write still arriving is this irq's interrupt.
            if d.reserved {
                self.matrix.remove_reserved();
            }
            let t = h.target;
            self.table.map(t.cpu, t.vector, d.irq_ref);
            let data = self.irqs.get_mut(&irq).expect("checked");
            data.current = Some(t);
            data.reserved = false;
            return self.compose(&d, t);
        }
        let t = match self.take(&mask, d.managed, d.reserved) {
            // An ordinary irq whose affinity CPUs all went offline while it was inactive takes
            // any online CPU, as Linux's `assign_irq_vector_any_locked` does. Where an online
            // CPU of the affinity is only full, the refusal stands: the caller's constraint is
            // kept and exhaustion fails for the requester only (Linux would spill over). A
            // managed irq stays on its CPUs, as on Linux.
            Err(e) if !d.managed && !mask.iter().any(|c| self.matrix.is_online(c)) => {
                let all = CpuMask::first_n(self.matrix.nr_cpus());
                self.take(&all, false, true).map_err(|_| e)?
            }
            r => r?,
        };
        self.table.map(t.cpu, t.vector, d.irq_ref);
        let data = self.irqs.get_mut(&irq).expect("checked");
        data.current = Some(t);
        data.reserved = false;
        self.compose(&d, t)
    }

    fn deactivate(&mut self, irq: Irq) {
        let Some(d) = self.irqs.get_mut(&irq) else {
            return;
        };
        let targets: Vec<Target> = d
            .current
            .take()
            .into_iter()
            .chain(d.old.drain(..))
            .collect();
        let (managed, owner) = (d.managed, d.irq_ref);
        for t in targets {
            self.hold(t, owner);
        }
        if !managed {
            // Back to reservation mode. The held vector still counts as allocated, so on a
            // full machine the reservation may be refused: activation then takes a vector
            // without one, as a plain allocation.
            let reserved = self.matrix.reserve().is_ok();
            self.irqs.get_mut(&irq).expect("checked").reserved = reserved;
        }
    }

    fn set_affinity(&mut self, irq: Irq, mask: &CpuMask, _: Option<&Composed>) -> Result<Composed> {
        let d = self.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?.clone();
        let cur = d.current.ok_or(Error::NotActive(irq))?;
        if mask.contains(cur.cpu) && self.matrix.is_online(cur.cpu) {
            return self.compose(&d, cur);
        }
        // Back to a target the irq still holds (a move undone before cleanup, or a rollback):
        // reuse it. Not for two-step stores, whose way back needs its own interim step.
        let back = d.old.iter().position(|t| {
            !d.two_step
                && t.managed == d.managed
                && mask.contains(t.cpu)
                && self.matrix.is_online(t.cpu)
        });
        if let Some(pos) = back {
            let data = self.irqs.get_mut(&irq).expect("checked");
            let t = data.old.remove(pos);
            // Mapped afresh: its "seen" mark dates from before and must not complete this move.
            self.table.map(t.cpu, t.vector, d.irq_ref);
            data.old.push(cur);
            data.current = Some(t);
            data.completed = false;
            if !d.managed {
                data.affinity = mask.clone();
            }
            return self.compose(&d, t);
        }
        let two_step = d.two_step && !d.managed && self.matrix.is_online(cur.cpu);
        let (new, interim) = if two_step {
            let (cpu, vector) = self.matrix.alloc_pair(mask, cur.cpu)?;
            let interim = Target {
                cpu: cur.cpu,
                vector,
                managed: false,
            };
            (
                Target {
                    cpu,
                    vector,
                    managed: false,
                },
                Some(interim),
            )
        } else {
            (self.take(mask, d.managed, false)?, None)
        };
        self.table.map(new.cpu, new.vector, d.irq_ref);
        if let Some(t) = interim {
            self.table.map(t.cpu, t.vector, d.irq_ref);
        }
        let data = self.irqs.get_mut(&irq).expect("checked");
        data.old.push(cur);
        data.old.extend(interim);
        data.current = Some(new);
        data.completed = false;
        if !d.managed {
            // Reactivation after a deactivate places the irq where it was last asked to be.
            data.affinity = mask.clone();
        }
        let mut composed = self.compose(&d, new)?;
        if let Some(t) = interim {
            composed.interim = Some(self.compose(&d, t)?.msg);
        }
        Ok(composed)
    }

    fn compose_msg(&self, irq: Irq, _: Option<&Composed>) -> Option<Composed> {
        let d = self.irqs.get(&irq)?;
        self.compose(d, d.current?).ok()
    }

    fn cpu_offline(&mut self, cpu: u32) {
        let _ = self.matrix.offline(cpu);
    }

    fn cpu_online(&mut self, cpu: u32) {
        let _ = self.matrix.online(cpu);
    }

    /// Stamps the held targets; with a [`VectorDomain::set_pending_probe`], gives back those
    /// whose grace has passed and whose vector is pending nowhere (otherwise the cleanup does).
    fn advance_grace(&mut self, clock: GraceClock) -> u32 {
        self.held.advance(clock);
        self.reclaim_with_probe()
    }

    fn reclaim(&mut self) -> u32 {
        self.reclaim_with_probe()
    }

    fn held(&self) -> u32 {
        self.held.len() as u32
    }
}
