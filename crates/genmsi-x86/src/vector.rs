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

use crate::apic::{ApicId, Trigger, Vector};
use crate::matrix::{MatrixError, VectorMatrix};
use crate::msi::CompatMsi;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};
use genmsi::{AllocRequest, Composed, CpuMask, Domain, Error, Irq, IrqRef, Result};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

/// Entry flag: an interrupt arrived through this entry since it was mapped.
const SEEN: u64 = 1 << 31;
/// Entry bits 30:0 hold the irq number plus one (0: unmapped), bits 63:32 its generation.
const IRQ_BITS: u64 = SEEN - 1;

fn decode(e: u64) -> Option<IrqRef> {
    (e & IRQ_BITS != 0).then(|| IrqRef {
        irq: Irq((e & IRQ_BITS) as u32 - 1),
        generation: (e >> 32) as u32,
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
        let used = self
            .entries
            .iter()
            .filter(|e| e.load(Ordering::Relaxed) != 0)
            .count();
        write!(
            f,
            "VectorTable({} CPUs, {used} vectors mapped)",
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
    /// path). Deliver it with [`genmsi::IrqSystem::handle_ref`].
    pub fn lookup_ref(&self, cpu: u32, vector: Vector) -> Option<IrqRef> {
        let slot = self.slot(cpu, vector)?;
        let e = slot.load(Ordering::Acquire);
        let r = decode(e)?;
        if e & SEEN == 0 {
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

    /// The irq mapped at (cpu, vector), without marking it.
    pub fn peek(&self, cpu: u32, vector: Vector) -> Option<Irq> {
        decode(self.slot(cpu, vector)?.load(Ordering::Acquire)).map(|r| r.irq)
    }

    /// True when an interrupt arrived through (cpu, vector) since it was mapped: for a new
    /// target, the move to it is complete.
    pub fn seen(&self, cpu: u32, vector: Vector) -> bool {
        self.slot(cpu, vector)
            .is_some_and(|s| s.load(Ordering::Acquire) & SEEN != 0)
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
}

/// The vector domain (see the module docs).
#[derive(Debug)]
pub struct VectorDomain {
    matrix: VectorMatrix,
    table: Arc<VectorTable>,
    apic_ids: Vec<ApicId>,
    max_apic_id: u32,
    irqs: BTreeMap<Irq, VectorData>,
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
        }
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
                self.give_back(t);
            }
            match d.managed {
                true => self.matrix.remove_managed(&d.affinity),
                false => self.matrix.remove_reserved(),
            }
        }
    }

    fn activate(&mut self, irq: Irq, _parent: Option<&Composed>) -> Result<Composed> {
        let d = self.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?.clone();
        if let Some(t) = d.current {
            return self.compose(&d, t);
        }
        let mask = d.affinity.clone();
        let t = match self.take(&mask, d.managed, !d.managed) {
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
        self.irqs.get_mut(&irq).expect("checked").current = Some(t);
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
        let managed = d.managed;
        for t in targets {
            self.give_back(t);
        }
        if !managed {
            // Back to reservation mode; a vector was just returned, so this cannot fail.
            let _ = self.matrix.reserve();
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
}
