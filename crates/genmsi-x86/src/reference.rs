//! The Linux vector-matrix algorithm, for comparison: the same per-CPU bookkeeping as
//! [`VectorMatrix`](crate::VectorMatrix), but the CPU is chosen by scanning every CPU of the mask
//! for the largest available count (`matrix_find_best_cpu` in Linux `kernel/irq/matrix.c`).
//!
//! Benchmarks and balance tests run both side by side on the same workload.

use crate::apic::Vector;
use crate::matrix::{check_vectors, spread, Counts, MatrixConfig, MatrixError, Vectors};
use genmsi::CpuMask;

/// The reference allocator (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxMatrix {
    v: Vectors,
    /// Reservations made while the reservations already matched the available vectors
    /// (Linux's "Interrupt reservation exceeds available resources" warning).
    warnings: u32,
}

impl LinuxMatrix {
    /// `nr_cpus` CPUs, all online, default allocatable range.
    pub fn new(nr_cpus: u32) -> Self {
        LinuxMatrix {
            v: Vectors::new(nr_cpus, MatrixConfig::default()),
            warnings: 0,
        }
    }

    /// The scan: the first online CPU of `mask` with the strictly largest available count.
    pub fn best_cpu(&self, mask: &CpuMask) -> Option<u32> {
        let mut best = None;
        let mut max = 0;
        for cpu in mask.iter() {
            let Some(c) = self.v.cpus.get(cpu as usize) else {
                break;
            };
            if c.online && c.available > max {
                max = c.available;
                best = Some(cpu);
            }
        }
        best
    }

    /// Allocates on the CPU [`LinuxMatrix::best_cpu`] picks (`irq_matrix_alloc`): fails when
    /// that CPU's bitmaps have no free vector, which its count can claim after a managed change
    /// while it was offline (see [`LinuxMatrix::reserve_managed`]).
    pub fn alloc(&mut self, mask: &CpuMask, reserved: bool) -> Result<(u32, Vector), MatrixError> {
        let none = || MatrixError::NoVectors { cpus: mask.clone() };
        let cpu = self.best_cpu(mask).ok_or_else(none)?;
        let v = self.v.first_free(cpu as usize).ok_or_else(none)?;
        Ok((cpu, self.v.take_vector(cpu, v, reserved)))
    }

    /// Returns a vector.
    pub fn free(&mut self, cpu: u32, vector: Vector, managed: bool) -> Result<(), MatrixError> {
        self.v.release(cpu, vector, managed)
    }

    /// Takes `cpu` offline: it is no longer chosen.
    pub fn offline(&mut self, cpu: u32) -> Result<(), MatrixError> {
        self.v.set_online(cpu, false).map(|_| ())
    }

    /// Brings `cpu` back online.
    pub fn online(&mut self, cpu: u32) -> Result<(), MatrixError> {
        self.v.set_online(cpu, true).map(|_| ())
    }

    /// Vectors of `cpu` available for ordinary allocation.
    pub fn available(&self, cpu: u32) -> u32 {
        self.v.cpus.get(cpu as usize).map_or(0, |c| c.available)
    }

    /// The spread of available vectors over the online CPUs of `mask`.
    pub fn spread(&self, mask: &CpuMask) -> u32 {
        spread(mask.iter().filter_map(|c| {
            let cpu = self.v.cpus.get(c as usize)?;
            cpu.online.then_some(cpu.available)
        }))
    }

    /// Counts a vector for a later `alloc(.., reserved: true)`. Linux's `irq_matrix_reserve`
    /// never fails: past the available vectors it only warns (counted in
    /// [`LinuxMatrix::warnings`]).
    pub fn reserve(&mut self) {
        if self.v.global_reserved >= self.v.global_available {
            self.warnings += 1;
        }
        self.v.global_reserved += 1;
    }

    /// Drops a reservation (`irq_matrix_remove_reserved`).
    pub fn remove_reserved(&mut self) {
        self.v.global_reserved = self.v.global_reserved.saturating_sub(1);
    }

    /// Reservation warnings so far.
    pub fn warnings(&self) -> u32 {
        self.warnings
    }

    /// Outstanding reservations.
    pub fn global_reserved(&self) -> u32 {
        self.v.global_reserved
    }

    /// Vectors available on online CPUs, machine-wide.
    pub fn global_available(&self) -> u32 {
        self.v.global_available
    }

    /// Sets one vector aside on every CPU of `mask`, offline ones included, all or nothing
    /// (`irq_matrix_reserve_managed`, which x86 calls with the whole affinity mask). As in
    /// Linux, only an online CPU's `available` count (and the global one) drops; an offline
    /// CPU's is left, and not recounted when the CPU comes back online, so it then claims one
    /// vector more than its bitmaps have free.
    pub fn reserve_managed(&mut self, mask: &CpuMask) -> Result<(), MatrixError> {
        self.v.reserve_managed(mask, Counts::Linux).map(|_| ())
    }

    /// Gives back one unallocated managed vector on every CPU of `mask`
    /// (`irq_matrix_remove_managed`); as for [`LinuxMatrix::reserve_managed`], the count of an
    /// offline CPU does not follow, so it then claims one vector fewer.
    pub fn remove_managed(&mut self, mask: &CpuMask) {
        self.v.remove_managed(mask, Counts::Linux);
    }

    /// `irq_matrix_alloc_managed`: the last online CPU of `mask` with the fewest managed
    /// vectors allocated, by the counts alone; fails when that CPU has no reserved vector left.
    pub fn alloc_managed(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError> {
        self.v.take_managed(self.v.managed_pick(mask, false), mask)
    }

    /// Takes `vector` out of allocation on every CPU.
    pub fn reserve_system(&mut self, vector: Vector) -> Result<(), MatrixError> {
        self.v.reserve_system(vector)
    }

    /// Managed vectors (reserved, allocated) on `cpu`.
    pub fn managed(&self, cpu: u32) -> (u32, u32) {
        self.v
            .cpus
            .get(cpu as usize)
            .map_or((0, 0), |c| (c.managed_reserved, c.managed_allocated))
    }

    /// Checks the counts against the bitmaps (reservations may exceed what is available).
    pub fn check(&self) -> Result<(), &'static str> {
        check_vectors(&self.v, Counts::Linux)
    }
}
