//! The vector matrix: which of each CPU's 256 vectors are in use, and where to put the next one.
//!
//! Every CPU has its own vector space (SDM Vol. 3A 11.8: 256 vectors, 0..=31 exceptions). The
//! matrix hands out the allocatable range `first..end` (by default 0x20..0xEC, below the system
//! vectors), minus vectors reserved on every CPU ([`VectorMatrix::reserve_system`]).
//!
//! Allocation picks, among the online CPUs of the requested mask, the one with the most
//! available vectors, the lowest-numbered on a tie: the Linux rule, so the balance is the same.
//! Linux finds that CPU by scanning every CPU of the mask (8,192 visits per allocation on a
//! big machine with a machine-wide mask). Here an index over the CPUs' available counts answers
//! the same question without a scan, for every mask shape: a max tree for ranges (a single CPU,
//! a node, the machine) and per-count bitmaps ANDed with the mask for irregular sets (see
//! `best_cpu.rs`). An allocation or free updates one CPU's entry. Listed masks (a few scattered
//! CPUs, one per node) are scanned, as Linux does, but over the list, not a bitmap of every
//! CPU.
//!
//! The matrix also does what the x86 vector code needs around allocation:
//! - **reservation mode**: [`VectorMatrix::reserve`] only counts a vector against the global
//!   available total; the real vector is assigned at activation by `alloc(.., reserved: true)`.
//!   A reservation is refused when the reservations already match the available vectors (Linux
//!   only warns), so reservations alone never overcommit. Plain and managed allocations and CPUs
//!   going offline can still take the vectors reservations counted on, as on Linux: activation
//!   then fails with a typed [`MatrixError::NoVectors`] and changes nothing;
//! - **managed reservations**: [`VectorMatrix::reserve_managed`] sets a vector aside on every
//!   CPU of a mask, offline ones included (x86 reserves on the whole affinity); only
//!   [`VectorMatrix::alloc_managed`] takes it and only [`VectorMatrix::remove_managed`] gives it
//!   back. The managed vector goes where Linux puts it, the last online CPU of the mask with
//!   the fewest managed vectors allocated, found from one packed count per CPU (a second index,
//!   see `best_cpu.rs`), among the CPUs with a reserved vector left: where Linux's pick has
//!   none Linux fails, here the next CPU by the same rule is taken. The counts stay exact on offline CPUs too: a CPU's available vectors are always its
//!   free ones. Linux adjusts `available` for online CPUs only and does not recount it when the
//!   CPU comes back, so there a reservation made or removed while a CPU was offline leaves that
//!   CPU's count one off (the reference, [`LinuxMatrix`](crate::reference::LinuxMatrix), a port
//!   of Linux's `matrix.c`, does the same, and `tests/balance.rs` follows the difference);
//! - **CPU offline/online**: an offline CPU is never chosen and its available vectors leave the
//!   global total.

use crate::apic::Vector;
use crate::best_cpu::{self, CpuIndex, ManagedIndex};
use alloc::vec::Vec;
use genmsi::CpuMask;

/// Errors of the matrix. Every one leaves the matrix unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatrixError {
    /// No online CPU of the mask has an available vector.
    NoVectors {
        /// The mask asked for.
        cpus: CpuMask,
    },
    /// Reservations would exceed the available vectors.
    ReservationsExhausted {
        /// Vectors available machine-wide.
        available: u32,
    },
    /// No managed vector reserved on any online CPU of the mask is free.
    NoManagedVector {
        /// The mask asked for.
        cpus: CpuMask,
    },
    /// A CPU number beyond the matrix.
    NoSuchCpu(u32),
    /// The vector is not allocated on that CPU (a double free).
    NotAllocated {
        /// The CPU.
        cpu: u32,
        /// The vector.
        vector: Vector,
    },
    /// A vector outside the allocatable range.
    NotAllocatable(Vector),
    /// An allocatable range that is not within the 256 vectors, or ends before it starts.
    BadConfig(MatrixConfig),
}

impl core::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MatrixError::NoVectors { cpus } => write!(f, "no vector available on CPUs {cpus}"),
            MatrixError::ReservationsExhausted { available } => {
                write!(f, "reservations exceed the {available} available vectors")
            }
            MatrixError::NoManagedVector { cpus } => {
                write!(f, "no free managed vector on CPUs {cpus}")
            }
            MatrixError::NoSuchCpu(cpu) => write!(f, "CPU {cpu} is beyond the matrix"),
            MatrixError::NotAllocated { cpu, vector } => {
                write!(f, "vector {:#x} is not allocated on CPU {cpu}", vector.0)
            }
            MatrixError::NotAllocatable(v) => {
                write!(f, "vector {:#x} is outside the allocatable range", v.0)
            }
            MatrixError::BadConfig(c) => write!(
                f,
                "allocatable range {:#x}..{:#x} is not within 0..0x100",
                c.first.0, c.end
            ),
        }
    }
}

impl core::error::Error for MatrixError {}

impl From<MatrixError> for genmsi::Error {
    fn from(e: MatrixError) -> Self {
        match e {
            MatrixError::NoVectors { cpus } | MatrixError::NoManagedVector { cpus } => {
                genmsi::Error::NoVectors { cpus }
            }
            MatrixError::ReservationsExhausted { .. } => genmsi::Error::NoVectors {
                cpus: CpuMask::empty(),
            },
            MatrixError::NoSuchCpu(_) => genmsi::Error::EmptyAffinity,
            MatrixError::NotAllocated { .. }
            | MatrixError::NotAllocatable(_)
            | MatrixError::BadConfig(_) => genmsi::Error::Domain {
                domain: "vector",
                reason: "vector bookkeeping mismatch",
            },
        }
    }
}

/// A 256-bit set of vectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VectorSet([u64; 4]);

impl VectorSet {
    pub(crate) fn contains(&self, v: u8) -> bool {
        self.0[usize::from(v / 64)] & (1 << (v % 64)) != 0
    }
    pub(crate) fn insert(&mut self, v: u8) {
        self.0[usize::from(v / 64)] |= 1 << (v % 64);
    }
    pub(crate) fn remove(&mut self, v: u8) {
        self.0[usize::from(v / 64)] &= !(1 << (v % 64));
    }
    fn union(&self, o: &VectorSet) -> VectorSet {
        VectorSet(core::array::from_fn(|i| self.0[i] | o.0[i]))
    }
    /// The lowest member of `self` not in `o`, from whole words.
    fn first_not_in(&self, o: &VectorSet) -> Option<u8> {
        (0..4).find_map(|i| {
            let w = self.0[i] & !o.0[i];
            (w != 0).then(|| (i as u32 * 64 + w.trailing_zeros()) as u8)
        })
    }
    /// The lowest non-member. Without a loop: where the first free vector lies differs from
    /// CPU to CPU, and a loop over the words mispredicts its exit on most allocations.
    fn first_clear(&self) -> Option<u8> {
        Self::first_clear_of(self, &VectorSet::default())
    }

    /// The lowest vector in neither `a` nor `b`, from word loads of each: an allocation
    /// reads the set the last free on the same CPU has just written a word of, and a wider
    /// load than that write would wait for the write to reach the cache (no store forwarding).
    fn first_clear_of(a: &VectorSet, b: &VectorSet) -> Option<u8> {
        let used = |i: usize| a.0[i] | b.0[i];
        let lo = !(u128::from(used(0)) | u128::from(used(1)) << 64);
        let hi = !(u128::from(used(2)) | u128::from(used(3)) << 64);
        let v = if lo != 0 {
            lo.trailing_zeros()
        } else {
            128 + hi.trailing_zeros()
        };
        u8::try_from(v).ok()
    }

    /// Every vector outside `first..end`.
    fn outside(first: u8, end: u16) -> VectorSet {
        let mut s = VectorSet::default();
        for v in (0..u16::from(first)).chain(end..0x100) {
            s.insert(v as u8);
        }
        s
    }
}

/// The vectors of one CPU: one cache line, so that an allocation on a CPU not touched lately
/// (the whole-machine and irregular workloads move from CPU to CPU) costs one miss. The
/// managed reservations, which most CPUs never have, live in [`Vectors::managed`]. `repr(C)`
/// keeps `available` and `allocated` apart: an allocation changes both, and were they
/// adjacent it would update them as one 8-byte word right after a free wrote them as two
/// 4-byte ones, a load the store buffer cannot forward.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct CpuVectors {
    /// Vectors handed out (managed or not).
    pub(crate) alloc: VectorSet,
    /// Vectors available for ordinary allocation.
    pub(crate) available: u32,
    /// Managed vectors set aside (the members of the CPU's [`Vectors::managed`] set).
    pub(crate) managed_reserved: u32,
    /// Ordinary vectors allocated.
    pub(crate) allocated: u32,
    /// Managed vectors allocated.
    pub(crate) managed_allocated: u32,
    pub(crate) online: bool,
}

/// Sizes of the allocatable range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixConfig {
    /// First allocatable vector.
    pub first: Vector,
    /// One past the last allocatable vector (0x100 for all).
    pub end: u16,
}

impl MatrixConfig {
    fn check(&self) -> Result<(), MatrixError> {
        if self.end > 0x100 || u16::from(self.first.0) > self.end {
            return Err(MatrixError::BadConfig(*self));
        }
        Ok(())
    }
}

impl Default for MatrixConfig {
    /// 0x20..0xEC: above the exceptions, below the system vectors (local timer 0xEC, IPIs,
    /// error and spurious at the top), as on Linux.
    fn default() -> Self {
        MatrixConfig {
            first: Vector::FIRST_EXTERNAL,
            end: 0xEC,
        }
    }
}

/// The CPUs' records, one cache line each, with one unused line after every 64 CPUs: CPUs 64
/// apart (one per node, a common mask) would otherwise sit 4 KiB apart, all in one set of the
/// level-1 cache, and a scan of them would miss on every CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PerCpu {
    lines: Vec<CpuVectors>,
    nr: usize,
}

impl PerCpu {
    /// CPUs between two unused lines.
    const RUN: usize = 64;

    fn new(nr: usize, cpu: CpuVectors) -> Self {
        PerCpu {
            lines: alloc::vec![cpu; Self::slot(nr)],
            nr,
        }
    }

    #[inline(always)]
    fn slot(cpu: usize) -> usize {
        cpu + cpu / Self::RUN
    }

    pub(crate) fn len(&self) -> usize {
        self.nr
    }

    #[inline]
    pub(crate) fn get(&self, cpu: usize) -> Option<&CpuVectors> {
        (cpu < self.nr).then(|| &self.lines[Self::slot(cpu)])
    }

    pub(crate) fn first(&self) -> Option<&CpuVectors> {
        self.get(0)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &CpuVectors> {
        (0..self.nr).map(|c| &self.lines[Self::slot(c)])
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut CpuVectors> {
        // The unused line is the last of every `RUN + 1`.
        self.lines
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % (Self::RUN + 1) != Self::RUN)
            .map(|(_, c)| c)
    }
}

impl core::ops::Index<usize> for PerCpu {
    type Output = CpuVectors;
    #[inline]
    fn index(&self, cpu: usize) -> &CpuVectors {
        // Callers check `cpu` (`check_cpu`, `get`); a release build leaves the check to them.
        debug_assert!(cpu < self.nr, "CPU {cpu} beyond the matrix");
        &self.lines[Self::slot(cpu)]
    }
}

impl core::ops::IndexMut<usize> for PerCpu {
    #[inline]
    fn index_mut(&mut self, cpu: usize) -> &mut CpuVectors {
        debug_assert!(cpu < self.nr, "CPU {cpu} beyond the matrix");
        &mut self.lines[Self::slot(cpu)]
    }
}

/// The per-CPU vector bookkeeping of [`VectorMatrix`]: every count exact, offline CPUs
/// included ([`check_vectors`] verifies them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Vectors {
    pub(crate) cfg: MatrixConfig,
    pub(crate) cpus: PerCpu,
    /// Per CPU, the vectors set aside for managed irqs.
    pub(crate) managed: Vec<VectorSet>,
    pub(crate) system: VectorSet,
    /// Never handed out: the system vectors and everything outside the allocatable range.
    blocked: VectorSet,
    pub(crate) global_available: u32,
    pub(crate) global_reserved: u32,
    pub(crate) total_allocated: u32,
}

impl Vectors {
    pub(crate) fn new(nr_cpus: u32, cfg: MatrixConfig) -> Self {
        let per_cpu = u32::from(cfg.end.saturating_sub(u16::from(cfg.first.0)));
        let cpu = CpuVectors {
            online: true,
            available: per_cpu,
            ..CpuVectors::default()
        };
        Vectors {
            cfg,
            cpus: PerCpu::new(nr_cpus as usize, cpu),
            managed: alloc::vec![VectorSet::default(); nr_cpus as usize],
            system: VectorSet::default(),
            blocked: VectorSet::outside(cfg.first.0, cfg.end),
            global_available: per_cpu * nr_cpus,
            global_reserved: 0,
            total_allocated: 0,
        }
    }

    fn used(&self, cpu: usize) -> VectorSet {
        let c = &self.cpus[cpu];
        c.alloc.union(&self.blocked).union(&self.managed[cpu])
    }

    /// The lowest vector free on `cpu`.
    pub(crate) fn first_free(&self, cpu: usize) -> Option<u8> {
        let c = &self.cpus[cpu];
        if c.managed_reserved == 0 {
            // Most CPUs have no managed reservation: their set is not read.
            VectorSet::first_clear_of(&c.alloc, &self.blocked)
        } else {
            self.used(cpu).first_clear()
        }
    }

    /// Takes the lowest free vector on `cpu` (which has one: `available > 0`).
    pub(crate) fn take(&mut self, cpu: u32, reserved: bool) -> Vector {
        let v = self
            .first_free(cpu as usize)
            .expect("available > 0 means a free vector");
        self.take_vector(cpu, v, reserved)
    }

    /// The lowest vector free on both CPUs.
    pub(crate) fn common_free(&self, a: u32, b: u32) -> Option<u8> {
        self.used(a as usize)
            .union(&self.used(b as usize))
            .first_clear()
    }

    /// Takes vector `v` on `cpu` (free there: the caller checked).
    pub(crate) fn take_vector(&mut self, cpu: u32, v: u8, reserved: bool) -> Vector {
        let c = &mut self.cpus[cpu as usize];
        c.alloc.insert(v);
        c.allocated += 1;
        c.available -= 1;
        if c.online {
            self.global_available = self.global_available.wrapping_sub(1);
        }
        self.total_allocated += 1;
        if reserved {
            self.global_reserved = self.global_reserved.saturating_sub(1);
        }
        Vector(v)
    }

    pub(crate) fn check_cpu(&self, cpu: u32) -> Result<(), MatrixError> {
        if (cpu as usize) < self.cpus.len() {
            Ok(())
        } else {
            Err(MatrixError::NoSuchCpu(cpu))
        }
    }

    /// Returns a vector; the caller updates its CPU index afterwards.
    pub(crate) fn release(
        &mut self,
        cpu: u32,
        v: Vector,
        managed: bool,
    ) -> Result<(), MatrixError> {
        self.check_cpu(cpu)?;
        if u16::from(v.0) >= self.cfg.end || v.0 < self.cfg.first.0 {
            return Err(MatrixError::NotAllocatable(v));
        }
        let online = self.cpus[cpu as usize].online;
        let c = &mut self.cpus[cpu as usize];
        // A CPU without managed reservations (most) has no managed vector: its set is not read.
        let is_managed = c.managed_reserved > 0 && self.managed[cpu as usize].contains(v.0);
        if !c.alloc.contains(v.0) || is_managed != managed {
            return Err(MatrixError::NotAllocated { cpu, vector: v });
        }
        c.alloc.remove(v.0);
        if managed {
            c.managed_allocated -= 1;
        } else {
            c.allocated -= 1;
            c.available = c.available.wrapping_add(1);
            if online {
                self.global_available = self.global_available.wrapping_add(1);
            }
        }
        self.total_allocated -= 1;
        Ok(())
    }

    pub(crate) fn reserve(&mut self) -> Result<(), MatrixError> {
        if self.global_reserved >= self.global_available {
            return Err(MatrixError::ReservationsExhausted {
                available: self.global_available,
            });
        }
        self.global_reserved += 1;
        Ok(())
    }

    /// Sets a vector aside on every CPU of `mask` (offline ones too), each where its bitmaps
    /// have a free vector; all or nothing: a failure gives back exactly the vectors it set
    /// aside. Returns the CPUs touched.
    pub(crate) fn reserve_managed(&mut self, mask: &CpuMask) -> Result<Vec<u32>, MatrixError> {
        let mut done: Vec<(u32, u8)> = Vec::new();
        for cpu in mask.iter() {
            let v = ((cpu as usize) < self.cpus.len())
                .then(|| self.first_free(cpu as usize))
                .flatten();
            let Some(v) = v else {
                for (cpu, v) in done {
                    self.unreserve(cpu, v);
                }
                return Err(MatrixError::NoVectors { cpus: mask.clone() });
            };
            self.managed[cpu as usize].insert(v);
            let c = &mut self.cpus[cpu as usize];
            c.managed_reserved += 1;
            c.available -= 1;
            if c.online {
                self.global_available -= 1;
            }
            done.push((cpu, v));
        }
        Ok(done.into_iter().map(|(cpu, _)| cpu).collect())
    }

    /// Gives back the lowest unallocated managed vector of `cpu`, if it has one.
    fn remove_spare(&mut self, cpu: u32) -> bool {
        let Some(v) = self.managed_spare(cpu) else {
            return false;
        };
        self.unreserve(cpu, v);
        true
    }

    /// Gives back the managed reservation of vector `v` on `cpu`.
    fn unreserve(&mut self, cpu: u32, v: u8) {
        self.managed[cpu as usize].remove(v);
        let c = &mut self.cpus[cpu as usize];
        c.managed_reserved -= 1;
        c.available += 1;
        if c.online {
            self.global_available += 1;
        }
    }

    /// Gives back one unallocated managed vector on every CPU of `mask`. Returns the CPUs touched.
    pub(crate) fn remove_managed(&mut self, mask: &CpuMask) -> Vec<u32> {
        let nr = self.cpus.len();
        mask.iter()
            .take_while(|&c| (c as usize) < nr)
            .filter(|&cpu| self.remove_spare(cpu))
            .collect()
    }

    /// The lowest reserved managed vector of `cpu` not allocated.
    fn managed_spare(&self, cpu: u32) -> Option<u8> {
        let c = self.cpus.get(cpu as usize)?;
        if c.managed_reserved == c.managed_allocated {
            return None;
        }
        self.managed[cpu as usize].first_not_in(&c.alloc)
    }

    /// Allocates the lowest spare managed vector of `cpu`, which has one (the pick of the
    /// managed index).
    pub(crate) fn take_managed(&mut self, cpu: u32) -> Option<Vector> {
        let v = self.managed_spare(cpu)?;
        let c = &mut self.cpus[cpu as usize];
        c.alloc.insert(v);
        c.managed_allocated += 1;
        self.total_allocated += 1;
        Some(Vector(v))
    }

    pub(crate) fn set_online(&mut self, cpu: u32, online: bool) -> Result<bool, MatrixError> {
        self.check_cpu(cpu)?;
        let c = &mut self.cpus[cpu as usize];
        if c.online == online {
            return Ok(false);
        }
        c.online = online;
        if online {
            self.global_available = self.global_available.wrapping_add(c.available);
        } else {
            self.global_available = self.global_available.wrapping_sub(c.available);
        }
        Ok(true)
    }

    /// Takes `v` out of the allocatable range on every CPU (an IPI or other system vector).
    /// Fails if any CPU already uses it.
    pub(crate) fn reserve_system(&mut self, v: Vector) -> Result<(), MatrixError> {
        if u16::from(v.0) >= self.cfg.end || v.0 < self.cfg.first.0 {
            // Outside the allocatable range: never handed out anyway.
            return Ok(());
        }
        if self.system.contains(v.0) {
            return Ok(());
        }
        if let Some(cpu) = (0..self.cpus.len()).find(|&c| self.used(c).contains(v.0)) {
            return Err(MatrixError::NotAllocated {
                cpu: cpu as u32,
                vector: v,
            });
        }
        self.system.insert(v.0);
        self.blocked.insert(v.0);
        for c in self.cpus.iter_mut() {
            c.available = c.available.wrapping_sub(1);
            if c.online {
                self.global_available = self.global_available.wrapping_sub(1);
            }
        }
        Ok(())
    }
}

/// The balancing vector allocator (see the module docs).
#[derive(Clone, Debug)]
pub struct VectorMatrix {
    v: Vectors,
    index: CpuIndex,
    /// Built at the first managed reservation.
    managed_index: Option<ManagedIndex>,
}

impl PartialEq for VectorMatrix {
    /// The index is a function of the vectors.
    fn eq(&self, other: &Self) -> bool {
        self.v == other.v
    }
}

impl Eq for VectorMatrix {}

impl VectorMatrix {
    /// `nr_cpus` CPUs, all online, with the default allocatable range. A matrix holds at most
    /// [`MAX_CPUS`](genmsi::MAX_CPUS) CPUs (no mask can name more): `nr_cpus` is clamped there.
    pub fn new(nr_cpus: u32) -> Self {
        Self::build(nr_cpus, MatrixConfig::default())
    }

    /// `nr_cpus` CPUs (clamped at [`MAX_CPUS`](genmsi::MAX_CPUS)), all online, with the
    /// allocatable range of `cfg`, which must lie within the 256 vectors with `first <= end`.
    pub fn with_config(nr_cpus: u32, cfg: MatrixConfig) -> Result<Self, MatrixError> {
        cfg.check()?;
        Ok(Self::build(nr_cpus, cfg))
    }

    fn build(nr_cpus: u32, cfg: MatrixConfig) -> Self {
        let nr_cpus = nr_cpus.min(genmsi::MAX_CPUS);
        let v = Vectors::new(nr_cpus, cfg);
        let max_key = v.cpus.first().map_or(0, |c| c.available);
        VectorMatrix {
            index: CpuIndex::new(nr_cpus as usize, max_key),
            managed_index: None,
            v,
        }
    }

    /// The key the index keeps for `cpu`: its available vectors, -1 when offline.
    fn key(cpus: &PerCpu, cpu: u32) -> i32 {
        let c = &cpus[cpu as usize];
        if c.online {
            c.available as i32
        } else {
            -1
        }
    }

    fn update(&mut self, cpu: u32) {
        self.index.mark(cpu);
    }

    /// Brings the managed index up to date with the counts of `cpu`.
    fn update_managed(&mut self, cpu: u32) {
        if let Some(managed) = &mut self.managed_index {
            let c = &self.v.cpus[cpu as usize];
            let key = ManagedIndex::key(c.online, c.managed_reserved, c.managed_allocated);
            managed.set(cpu, key);
        }
    }

    /// The CPU an allocation over `mask` would use (`&mut`: it brings the index up to date).
    pub fn best_cpu(&mut self, mask: &CpuMask) -> Option<u32> {
        if let Some(cpu) = mask.as_single() {
            // One CPU: its own counts answer, as Linux's scan of one CPU does.
            let c = self.v.cpus.get(cpu as usize)?;
            return (c.online && c.available > 0).then_some(cpu);
        }
        if let Some(cpus) = mask.as_list() {
            // CPUs the mask lists (an SMT sibling pair, one CPU per node: at most
            // `CpuMask::LIST`): Linux's scan of them costs less than bringing the index up to
            // date would, and the list spares it the bitmap walk.
            let all = &self.v.cpus;
            return best_cpu::best_of_few(cpus, all.len(), |cpu| Self::key(all, cpu));
        }
        self.best_indexed(mask)
    }

    /// [`VectorMatrix::best_cpu`] for ranges and irregular masks: kept out of line so that
    /// the single-CPU path stays as small as Linux's.
    #[inline(never)]
    fn best_indexed(&mut self, mask: &CpuMask) -> Option<u32> {
        let cpus = &self.v.cpus;
        self.index.best(mask, |cpu| Self::key(cpus, cpu))
    }

    /// Allocates a vector on the online CPU of `mask` with the most available vectors.
    /// `reserved`: the vector was counted by [`VectorMatrix::reserve`] before.
    pub fn alloc(&mut self, mask: &CpuMask, reserved: bool) -> Result<(u32, Vector), MatrixError> {
        let cpu = self
            .best_cpu(mask)
            .ok_or_else(|| MatrixError::NoVectors { cpus: mask.clone() })?;
        let v = self.v.take(cpu, reserved);
        self.update(cpu);
        Ok((cpu, v))
    }

    /// Allocates one vector number on the best online CPU of `mask` that is also free on
    /// `also_on`, and takes it on both: the interim target of a two-step move (the device may
    /// send the new vector to the old CPU for a moment, and it must land on nothing else there).
    pub fn alloc_pair(
        &mut self,
        mask: &CpuMask,
        also_on: u32,
    ) -> Result<(u32, Vector), MatrixError> {
        self.v.check_cpu(also_on)?;
        let none = || MatrixError::NoVectors { cpus: mask.clone() };
        let cpu = self.best_cpu(mask).ok_or_else(none)?;
        if cpu == also_on || self.v.cpus[also_on as usize].available == 0 {
            return Err(none());
        }
        let v = self.v.common_free(cpu, also_on).ok_or_else(none)?;
        self.v.take_vector(cpu, v, false);
        self.v.take_vector(also_on, v, false);
        self.update(cpu);
        self.update(also_on);
        Ok((cpu, Vector(v)))
    }

    /// Returns a vector (`managed`: it came from [`VectorMatrix::alloc_managed`]).
    pub fn free(&mut self, cpu: u32, vector: Vector, managed: bool) -> Result<(), MatrixError> {
        self.v.release(cpu, vector, managed)?;
        if managed {
            self.update_managed(cpu);
        } else {
            self.update(cpu);
        }
        Ok(())
    }

    /// Counts one vector for a later `alloc(.., reserved: true)`, without assigning it.
    pub fn reserve(&mut self) -> Result<(), MatrixError> {
        self.v.reserve()
    }

    /// Drops a reservation that will not be activated.
    pub fn remove_reserved(&mut self) {
        self.v.global_reserved = self.v.global_reserved.saturating_sub(1);
    }

    /// Sets one vector aside on every CPU of `mask` for a managed irq; all or nothing.
    pub fn reserve_managed(&mut self, mask: &CpuMask) -> Result<(), MatrixError> {
        let nr = self.v.cpus.len();
        self.managed_index
            .get_or_insert_with(|| ManagedIndex::new(nr));
        for cpu in self.v.reserve_managed(mask)? {
            self.update(cpu);
            self.update_managed(cpu);
        }
        Ok(())
    }

    /// Gives back the managed reservation of every CPU of `mask`.
    pub fn remove_managed(&mut self, mask: &CpuMask) {
        for cpu in self.v.remove_managed(mask) {
            self.update(cpu);
            self.update_managed(cpu);
        }
    }

    /// Allocates a reserved managed vector on the last online CPU of `mask` with the fewest
    /// managed vectors in use, among those with a reserved vector left (Linux's choice whenever
    /// Linux's choice has one).
    pub fn alloc_managed(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError> {
        let none = || MatrixError::NoManagedVector { cpus: mask.clone() };
        let managed = self.managed_index.as_mut().ok_or_else(none)?;
        let cpu = managed.best(mask).ok_or_else(none)?;
        let v = self.v.take_managed(cpu).ok_or_else(none)?;
        self.update_managed(cpu);
        Ok((cpu, v))
    }

    /// Takes `vector` away from allocation on every CPU (a no-op for vectors outside the
    /// allocatable range, which are never handed out).
    pub fn reserve_system(&mut self, vector: Vector) -> Result<(), MatrixError> {
        self.v.reserve_system(vector)?;
        for cpu in 0..self.v.cpus.len() as u32 {
            self.update(cpu);
        }
        Ok(())
    }

    /// Takes `cpu` offline: it is no longer chosen; its vectors stay as they are.
    pub fn offline(&mut self, cpu: u32) -> Result<(), MatrixError> {
        if self.v.set_online(cpu, false)? {
            self.update(cpu);
            self.update_managed(cpu);
        }
        Ok(())
    }

    /// Brings `cpu` back online.
    pub fn online(&mut self, cpu: u32) -> Result<(), MatrixError> {
        if self.v.set_online(cpu, true)? {
            self.update(cpu);
            self.update_managed(cpu);
        }
        Ok(())
    }

    /// Number of CPUs.
    pub fn nr_cpus(&self) -> u32 {
        self.v.cpus.len() as u32
    }

    /// Vectors of `cpu` available for ordinary allocation.
    pub fn available(&self, cpu: u32) -> u32 {
        self.v.cpus.get(cpu as usize).map_or(0, |c| c.available)
    }

    /// Ordinary vectors allocated on `cpu`.
    pub fn allocated(&self, cpu: u32) -> u32 {
        self.v.cpus.get(cpu as usize).map_or(0, |c| c.allocated)
    }

    /// Managed vectors (reserved, allocated) on `cpu`.
    pub fn managed(&self, cpu: u32) -> (u32, u32) {
        self.v
            .cpus
            .get(cpu as usize)
            .map_or((0, 0), |c| (c.managed_reserved, c.managed_allocated))
    }

    /// True when `vector` is allocated on `cpu`.
    pub fn is_allocated(&self, cpu: u32, vector: Vector) -> bool {
        self.v
            .cpus
            .get(cpu as usize)
            .is_some_and(|c| c.alloc.contains(vector.0))
    }

    /// True when `cpu` is online.
    pub fn is_online(&self, cpu: u32) -> bool {
        self.v.cpus.get(cpu as usize).is_some_and(|c| c.online)
    }

    /// Vectors available on online CPUs, machine-wide.
    pub fn global_available(&self) -> u32 {
        self.v.global_available
    }

    /// Outstanding reservations.
    pub fn global_reserved(&self) -> u32 {
        self.v.global_reserved
    }

    /// Vectors allocated, machine-wide (managed included).
    pub fn total_allocated(&self) -> u32 {
        self.v.total_allocated
    }

    /// The spread of available vectors over the online CPUs of `mask`: max - min.
    pub fn spread(&self, mask: &CpuMask) -> u32 {
        spread(mask.iter().filter_map(|c| {
            let cpu = self.v.cpus.get(c as usize)?;
            cpu.online.then_some(cpu.available)
        }))
    }

    /// Checks the internal invariants (counts against bitmaps, the tree against the counts).
    /// Costs O(CPUs); for tests and debugging dumps.
    pub fn check(&self) -> Result<(), &'static str> {
        check_vectors(&self.v)?;
        let cpus = &self.v.cpus;
        if let Some(managed) = &self.managed_index {
            managed.check(|c| {
                let c = &cpus[c as usize];
                ManagedIndex::key(c.online, c.managed_reserved, c.managed_allocated)
            })?;
        }
        self.index.check(|cpu| Self::key(cpus, cpu))
    }
}

pub(crate) fn spread(values: impl Iterator<Item = u32>) -> u32 {
    let (lo, hi) = values.fold((u32::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
    hi.saturating_sub(lo)
}

/// Reservations may exceed what is available (see the module docs): not checked.
fn check_vectors(v: &Vectors) -> Result<(), &'static str> {
    let per_cpu = u32::from(v.cfg.end - u16::from(v.cfg.first.0));
    let system = (u16::from(v.cfg.first.0)..v.cfg.end)
        .filter(|&x| v.system.contains(x as u8))
        .count() as u32;
    let mut global = 0;
    let mut total = 0;
    for (c, managed) in v.cpus.iter().zip(&v.managed) {
        let count = |s: &VectorSet| (0..=255u8).filter(|&x| s.contains(x)).count() as u32;
        let managed_alloc = count(&VectorSet(core::array::from_fn(|i| {
            c.alloc.0[i] & managed.0[i]
        })));
        if count(managed) != c.managed_reserved || managed_alloc != c.managed_allocated {
            return Err("managed counts differ from the bitmaps");
        }
        if count(&c.alloc) != c.allocated + c.managed_allocated {
            return Err("allocated count differs from the bitmap");
        }
        let exact = c.available + c.allocated + c.managed_reserved + system == per_cpu;
        if !exact {
            return Err("available + allocated + managed + system != allocatable");
        }
        if c.online {
            global = u32::wrapping_add(global, c.available);
        }
        total += c.allocated + c.managed_allocated;
    }
    if global != v.global_available || total != v.total_allocated {
        return Err("global counts differ from the per-CPU counts");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_CPU: u32 = 0xEC - 0x20;

    #[test]
    fn first_clear_crosses_every_word_boundary() {
        let upto = |n: u16| {
            let mut s = VectorSet::default();
            (0..n).for_each(|v| s.insert(v as u8));
            s
        };
        assert_eq!(VectorSet::default().first_clear(), Some(0));
        for n in [1, 63, 64, 65, 127, 128, 129, 191, 192, 255] {
            assert_eq!(upto(n).first_clear(), Some(n as u8), "{n} set");
        }
        assert_eq!(upto(256).first_clear(), None);
        // A hole below a full word: the hole, not the first vector after the full word.
        let mut s = upto(200);
        s.remove(70);
        assert_eq!(s.first_clear(), Some(70));
        // The default range blocks 0..0x20 and 0xEC..0x100: 0x20 first, nothing past 0xEB.
        let outside = VectorSet::outside(0x20, 0xEC);
        assert_eq!(outside.first_clear(), Some(0x20));
        assert_eq!(outside.union(&upto(0xEC)).first_clear(), None);
        assert!(outside.contains(0x1F) && outside.contains(0xEC) && !outside.contains(0xEB));
    }

    #[test]
    fn fresh_matrix_counts() {
        let m = VectorMatrix::new(4);
        assert_eq!(m.available(0), PER_CPU);
        assert_eq!(m.global_available(), 4 * PER_CPU);
        m.check().unwrap();
    }

    #[test]
    fn picks_the_emptiest_cpu_leftmost_on_ties() {
        let mut m = VectorMatrix::new(4);
        let all = CpuMask::first_n(4);
        let got: Vec<u32> = (0..8).map(|_| m.alloc(&all, false).unwrap().0).collect();
        assert_eq!(got, [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(
            m.alloc(&CpuMask::single(2), false).unwrap(),
            (2, Vector(0x22))
        );
        assert_eq!(m.alloc(&CpuMask::from_cpus([1, 2, 3]), false).unwrap().0, 1);
        m.check().unwrap();
    }

    #[test]
    fn exhaustion_is_typed_and_changes_nothing() {
        let mut m = VectorMatrix::new(2);
        let mask = CpuMask::single(1);
        for _ in 0..PER_CPU {
            m.alloc(&mask, false).unwrap();
        }
        let before = m.clone();
        assert_eq!(
            m.alloc(&mask, false),
            Err(MatrixError::NoVectors { cpus: mask.clone() })
        );
        assert_eq!(m, before);
        assert_eq!(m.alloc(&CpuMask::first_n(2), false).unwrap().0, 0);
    }

    #[test]
    fn free_everything_returns_to_the_initial_counts() {
        let mut m = VectorMatrix::new(8);
        let initial = m.clone();
        let mut got = Vec::new();
        for i in 0..500u32 {
            got.push(m.alloc(&CpuMask::range(i % 3, 7), false).unwrap());
        }
        m.reserve_managed(&CpuMask::range(2, 5)).unwrap();
        let managed = m.alloc_managed(&CpuMask::range(2, 5)).unwrap();
        m.check().unwrap();
        m.free(managed.0, managed.1, true).unwrap();
        m.remove_managed(&CpuMask::range(2, 5));
        for (cpu, v) in got {
            m.free(cpu, v, false).unwrap();
        }
        assert_eq!(m, initial);
        assert_eq!(
            m.free(0, Vector(0x20), false),
            Err(MatrixError::NotAllocated {
                cpu: 0,
                vector: Vector(0x20)
            })
        );
        assert_eq!(
            m.free(0, Vector(0xF0), false),
            Err(MatrixError::NotAllocatable(Vector(0xF0)))
        );
    }

    #[test]
    fn reservations_never_overcommit() {
        let mut m = VectorMatrix::with_config(
            2,
            MatrixConfig {
                first: Vector(0x20),
                end: 0x24,
            },
        )
        .unwrap();
        for _ in 0..8 {
            m.reserve().unwrap();
        }
        assert_eq!(
            m.reserve(),
            Err(MatrixError::ReservationsExhausted { available: 8 })
        );
        // Every reservation can be activated.
        for _ in 0..8 {
            m.alloc(&CpuMask::first_n(2), true).unwrap();
        }
        assert_eq!(m.global_reserved(), 0);
        assert_eq!(m.global_available(), 0);
        m.check().unwrap();
    }

    #[test]
    fn managed_vectors_are_never_given_away() {
        let mut m = VectorMatrix::with_config(
            1,
            MatrixConfig {
                first: Vector(0x20),
                end: 0x24,
            },
        )
        .unwrap();
        let cpu0 = CpuMask::single(0);
        m.reserve_managed(&cpu0).unwrap();
        m.reserve_managed(&cpu0).unwrap();
        assert_eq!(m.available(0), 2);
        m.alloc(&cpu0, false).unwrap();
        m.alloc(&cpu0, false).unwrap();
        assert!(
            m.alloc(&cpu0, false).is_err(),
            "the managed two are not handed out"
        );
        let a = m.alloc_managed(&cpu0).unwrap();
        let b = m.alloc_managed(&cpu0).unwrap();
        assert_ne!(a, b);
        assert!(m.alloc_managed(&cpu0).is_err());
        assert_eq!(m.managed(0), (2, 2));
        assert_eq!(
            m.free(0, a.1, false),
            Err(MatrixError::NotAllocated {
                cpu: 0,
                vector: a.1
            })
        );
        m.free(0, a.1, true).unwrap();
        assert!(
            m.alloc(&cpu0, false).is_err(),
            "a freed managed vector stays reserved"
        );
        m.check().unwrap();
    }

    #[test]
    fn managed_reservation_is_all_or_nothing() {
        let mut m = VectorMatrix::with_config(
            3,
            MatrixConfig {
                first: Vector(0x20),
                end: 0x22,
            },
        )
        .unwrap();
        m.alloc(&CpuMask::single(2), false).unwrap();
        m.alloc(&CpuMask::single(2), false).unwrap();
        let before = m.clone();
        assert!(m.reserve_managed(&CpuMask::first_n(3)).is_err());
        assert_eq!(m, before);
    }

    #[test]
    fn offline_cpus_are_never_chosen() {
        let mut m = VectorMatrix::new(4);
        m.offline(0).unwrap();
        assert_eq!(m.global_available(), 3 * PER_CPU);
        for _ in 0..10 {
            assert_ne!(m.alloc(&CpuMask::first_n(4), false).unwrap().0, 0);
        }
        assert!(m.alloc(&CpuMask::single(0), false).is_err());
        m.online(0).unwrap();
        assert_eq!(m.alloc(&CpuMask::first_n(4), false).unwrap().0, 0);
        assert_eq!(m.offline(9), Err(MatrixError::NoSuchCpu(9)));
        m.check().unwrap();
    }

    #[test]
    fn system_vectors_are_skipped_everywhere() {
        let mut m = VectorMatrix::new(2);
        m.reserve_system(Vector(0x20)).unwrap();
        assert_eq!(
            m.alloc(&CpuMask::single(1), false).unwrap(),
            (1, Vector(0x21))
        );
        assert_eq!(m.available(0), PER_CPU - 1);
        assert!(m.reserve_system(Vector(0x21)).is_err(), "in use on CPU 1");
        assert_eq!(
            m.reserve_system(Vector(0xFF)),
            Ok(()),
            "outside the range: nothing to do"
        );
        m.check().unwrap();
    }
}
