//! Linux's vector matrix (`kernel/irq/matrix.c`), ported for comparison: the baseline the
//! benchmarks and the balance tests run [`VectorMatrix`](crate::VectorMatrix) against.
//!
//! It keeps Linux's data and walks them as Linux does, so that its cost is Linux's:
//! 1. Per CPU a [`CpuMap`] laid out like `struct cpumap`: four counts (`available`,
//!    `allocated`, `managed`, `managed_allocated`), the `initialized` and `online` flags, and
//!    two 256-bit maps (`alloc_map`, `managed_map`): 88 bytes, one after the other. (Linux keeps
//!    each CPU's record in that CPU's per-CPU area, a page or more apart; packed here, which only
//!    makes the baseline cheaper to walk.)
//! 2. A mask is a [`Cpumask`]: a bitmap of `nr_cpu_ids` bits, whatever CPUs it names, walked CPU
//!    by CPU with `for_each_cpu` (a `find_next_bit` from the CPU after the last one).
//! 3. `irq_matrix_alloc` checks the mask is not empty, picks the online CPU with the strictly
//!    largest `available` count, the first one on a tie (`matrix_find_best_cpu`), and takes the
//!    lowest vector clear in `managed_map | system_map | alloc_map` (`matrix_alloc_area`).
//! 4. Managed vectors: `irq_matrix_reserve_managed` sets a vector aside in `managed_map` on every
//!    CPU of the mask (all or nothing); `irq_matrix_alloc_managed` picks the *last* online CPU with the fewest
//!    `managed_allocated` (`matrix_find_best_cpu_managed`, one count compared per CPU) and takes
//!    the lowest bit of `managed_map & !alloc_map` there, failing when there is none;
//!    `irq_matrix_remove_managed` gives back the lowest such bit.
//! 5. Offline CPUs: a CPU going offline takes its `available` count out of the global one and is
//!    never picked; managed reservations and removals change an offline CPU's bitmaps and
//!    `managed` count but not its `available` count, which is not recounted when it comes back
//!    (`irq_matrix_online` recounts only a CPU that was never initialized). Frees on an offline
//!    CPU do not lower `total_allocated` (`irq_matrix_free`).
//!
//! Differences on purpose, each for the matrix's interface (named so the tests can follow them):
//! - [`LinuxMatrix::reserve`] counts a reservation past the available vectors with a warning
//!   (Linux's `pr_warn`), where [`VectorMatrix::reserve`](crate::VectorMatrix::reserve) refuses.
//! - A managed reservation that fails gives back exactly the vectors it set aside, as the
//!   matrix does. Linux's cleanup calls `irq_matrix_remove_managed` on the CPUs done, which
//!   gives back each one's *lowest* spare reservation: an older one when that is lower, so the
//!   same counts but another vector set aside (and other vector numbers afterwards).
//! - [`LinuxMatrix::reserve_system`] takes a vector out of every CPU at any time, failing where a
//!   CPU uses it, as the matrix does; Linux assigns system vectors at boot only
//!   (`irq_matrix_assign_system`, a `BUG_ON` otherwise).
//! - Masks given as [`CpuMask`] are converted to a [`Cpumask`] first (CPUs at or beyond
//!   `nr_cpu_ids` dropped, as a Linux cpumask cannot name them); benchmarks convert outside the
//!   timed code, as Linux's callers hand it a ready bitmap. The x86 vector code's
//!   `cpumask_and(.., cpu_online_mask)` before each allocation is not charged to the baseline.

use crate::apic::Vector;
use crate::matrix::{spread, MatrixConfig, MatrixError};
use alloc::vec;
use alloc::vec::Vec;
use genmsi::CpuMask;

/// Vectors per CPU (`IRQ_MATRIX_BITS` on x86: `NR_VECTORS`).
const MATRIX_BITS: usize = 256;
/// Words of a vector bitmap (`IRQ_MATRIX_SIZE`).
const MATRIX_SIZE: usize = MATRIX_BITS / 64;

/// A 256-bit vector bitmap, as Linux's `unsigned long[IRQ_MATRIX_SIZE]`.
type VectorMap = [u64; MATRIX_SIZE];

/// A CPU mask as Linux keeps it: a bitmap of `nr_cpu_ids` bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpumask {
    bits: Vec<u64>,
    nr: usize,
}

impl Cpumask {
    /// The CPUs of `mask` below `nr_cpu_ids`.
    pub fn new(mask: &CpuMask, nr_cpu_ids: u32) -> Self {
        let nr = nr_cpu_ids as usize;
        let mut bits = vec![0u64; nr.div_ceil(64)];
        for cpu in mask.iter().map(|c| c as usize).take_while(|&c| c < nr) {
            bits[cpu / 64] |= 1 << (cpu % 64);
        }
        Cpumask { bits, nr }
    }

    /// `cpumask_empty`: a pass over the words up to the first set one.
    fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// `for_each_cpu`: the CPUs of the mask, each found by `find_next_bit` from the one after
    /// the last.
    fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        let mut next = 0;
        core::iter::from_fn(move || {
            let cpu = find_next_bit(&self.bits, self.nr, next);
            next = cpu + 1;
            (cpu < self.nr).then_some(cpu)
        })
    }
}

/// Linux's `find_next_bit`: the first set bit at or after `start`, or `nbits`.
#[inline]
fn find_next_bit(map: &[u64], nbits: usize, start: usize) -> usize {
    if start >= nbits {
        return nbits;
    }
    let mut i = start / 64;
    let mut word = map[i] & (!0u64 << (start % 64));
    while word == 0 {
        i += 1;
        if i * 64 >= nbits {
            return nbits;
        }
        word = map[i];
    }
    (i * 64 + word.trailing_zeros() as usize).min(nbits)
}

/// Linux's `find_next_zero_bit` over a vector bitmap: word by word, as `find_next_bit` over the
/// inverted words.
fn find_next_zero_bit(map: &VectorMap, nbits: usize, start: usize) -> usize {
    if start >= nbits {
        return nbits;
    }
    let mut i = start / 64;
    let mut word = !map[i] & (!0u64 << (start % 64));
    while word == 0 {
        i += 1;
        if i * 64 >= nbits {
            return nbits;
        }
        word = !map[i];
    }
    (i * 64 + word.trailing_zeros() as usize).min(nbits)
}

/// `find_first_bit` over a vector bitmap.
fn find_first_bit(map: &VectorMap, nbits: usize) -> usize {
    find_next_bit(map, nbits, 0)
}

fn test_bit(map: &VectorMap, bit: usize) -> bool {
    map[bit / 64] & (1 << (bit % 64)) != 0
}

fn set_bit(map: &mut VectorMap, bit: usize) {
    map[bit / 64] |= 1 << (bit % 64);
}

fn clear_bit(map: &mut VectorMap, bit: usize) {
    map[bit / 64] &= !(1 << (bit % 64));
}

fn weight(map: &VectorMap) -> u32 {
    map.iter().map(|w| w.count_ones()).sum()
}

/// One CPU's record, laid out like Linux's `struct cpumap` (88 bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CpuMap {
    available: u32,
    allocated: u32,
    managed: u32,
    managed_allocated: u32,
    initialized: bool,
    online: bool,
    alloc_map: VectorMap,
    managed_map: VectorMap,
}

/// Linux's `scratch_map`: working space, not state (equal whatever it holds).
#[derive(Clone, Debug)]
struct Scratch(VectorMap);

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Scratch {}

/// The reference allocator (see the module docs): Linux's `struct irq_matrix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxMatrix {
    alloc_start: usize,
    alloc_end: usize,
    alloc_size: u32,
    global_available: u32,
    global_reserved: u32,
    systembits_inalloc: u32,
    total_allocated: u32,
    online_maps: u32,
    maps: Vec<CpuMap>,
    system_map: VectorMap,
    scratch_map: Scratch,
    /// Reservations made while the reservations already matched the available vectors
    /// (Linux's "Interrupt reservation exceeds available resources" warning).
    warnings: u32,
}

impl LinuxMatrix {
    /// `nr_cpus` CPUs brought online one by one (`irq_matrix_online`), default allocatable range.
    pub fn new(nr_cpus: u32) -> Self {
        let cfg = MatrixConfig::default();
        let (start, end) = (usize::from(cfg.first.0), usize::from(cfg.end));
        let mut m = LinuxMatrix {
            alloc_start: start,
            alloc_end: end,
            alloc_size: (end - start) as u32,
            global_available: 0,
            global_reserved: 0,
            systembits_inalloc: 0,
            total_allocated: 0,
            online_maps: 0,
            maps: vec![CpuMap::default(); nr_cpus as usize],
            system_map: [0; MATRIX_SIZE],
            scratch_map: Scratch([0; MATRIX_SIZE]),
            warnings: 0,
        };
        for cpu in 0..nr_cpus {
            m.matrix_online(cpu as usize);
        }
        m
    }

    /// `nr_cpu_ids`.
    pub fn nr_cpu_ids(&self) -> u32 {
        self.maps.len() as u32
    }

    /// `mask` as Linux would hand it over: a bitmap of `nr_cpu_ids` bits.
    pub fn cpumask(&self, mask: &CpuMask) -> Cpumask {
        Cpumask::new(mask, self.nr_cpu_ids())
    }

    /// `matrix_find_best_cpu`: the first online CPU of `mask` with the strictly largest
    /// available count.
    pub fn best_cpu(&self, mask: &Cpumask) -> Option<u32> {
        let (mut best, mut maxavl) = (None, 0);
        for cpu in mask.cpus() {
            let cm = &self.maps[cpu];
            if !cm.online || cm.available <= maxavl {
                continue;
            }
            best = Some(cpu as u32);
            maxavl = cm.available;
        }
        best
    }

    /// `matrix_find_best_cpu_managed`: the last online CPU of `mask` with the fewest managed
    /// vectors allocated.
    fn best_cpu_managed(&self, mask: &Cpumask) -> Option<usize> {
        let (mut best, mut allocated) = (None, u32::MAX);
        for cpu in mask.cpus() {
            let cm = &self.maps[cpu];
            if !cm.online || cm.managed_allocated > allocated {
                continue;
            }
            best = Some(cpu);
            allocated = cm.managed_allocated;
        }
        best
    }

    /// `matrix_alloc_area` for one vector: the lowest vector free on `cpu`, set in its
    /// `managed_map` (`managed`) or `alloc_map`.
    fn alloc_area(&mut self, cpu: usize, managed: bool) -> Option<usize> {
        let cm = &mut self.maps[cpu];
        for i in 0..MATRIX_SIZE {
            self.scratch_map.0[i] = cm.managed_map[i] | self.system_map[i] | cm.alloc_map[i];
        }
        let area = find_next_zero_bit(&self.scratch_map.0, self.alloc_end, self.alloc_start);
        if area >= self.alloc_end {
            return None;
        }
        set_bit(
            if managed {
                &mut cm.managed_map
            } else {
                &mut cm.alloc_map
            },
            area,
        );
        Some(area)
    }

    /// `irq_matrix_alloc` on a ready bitmap: fails when the picked CPU's bitmaps have no free
    /// vector, which its count can claim after a managed change while it was offline.
    pub fn alloc_in(
        &mut self,
        msk: &Cpumask,
        reserved: bool,
        mask: &CpuMask,
    ) -> Result<(u32, Vector), MatrixError> {
        let none = || MatrixError::NoVectors { cpus: mask.clone() };
        if msk.is_empty() {
            return Err(none());
        }
        let cpu = self.best_cpu(msk).ok_or_else(none)? as usize;
        let bit = self.alloc_area(cpu, false).ok_or_else(none)?;
        let cm = &mut self.maps[cpu];
        cm.allocated += 1;
        cm.available = cm.available.wrapping_sub(1);
        self.total_allocated += 1;
        self.global_available = self.global_available.wrapping_sub(1);
        if reserved {
            self.global_reserved = self.global_reserved.saturating_sub(1);
        }
        Ok((cpu as u32, Vector(bit as u8)))
    }

    /// [`LinuxMatrix::alloc_in`] on `mask` converted first.
    pub fn alloc(&mut self, mask: &CpuMask, reserved: bool) -> Result<(u32, Vector), MatrixError> {
        self.alloc_in(&self.cpumask(mask), reserved, mask)
    }

    /// `irq_matrix_free`. Errors where Linux warns and returns.
    pub fn free(&mut self, cpu: u32, vector: Vector, managed: bool) -> Result<(), MatrixError> {
        let bit = usize::from(vector.0);
        if bit < self.alloc_start || bit >= self.alloc_end {
            return Err(MatrixError::NotAllocatable(vector));
        }
        let cm = self
            .maps
            .get_mut(cpu as usize)
            .ok_or(MatrixError::NoSuchCpu(cpu))?;
        // Linux trusts the caller's `managed`; the matrix refuses a mismatch: the same here, so
        // a wrong free shows in the tests rather than in the counts.
        if !test_bit(&cm.alloc_map, bit) || test_bit(&cm.managed_map, bit) != managed {
            return Err(MatrixError::NotAllocated { cpu, vector });
        }
        clear_bit(&mut cm.alloc_map, bit);
        cm.allocated -= 1;
        if managed {
            cm.managed_allocated -= 1;
        }
        if cm.online {
            self.total_allocated -= 1;
        }
        if !managed {
            cm.available = cm.available.wrapping_add(1);
            if cm.online {
                self.global_available = self.global_available.wrapping_add(1);
            }
        }
        Ok(())
    }

    /// `irq_matrix_online` for `cpu`: an initialized CPU comes back with its old count.
    fn matrix_online(&mut self, cpu: usize) {
        let cm = &mut self.maps[cpu];
        if !cm.initialized {
            cm.available = self.alloc_size - cm.managed - self.systembits_inalloc;
            cm.initialized = true;
        }
        self.global_available = self.global_available.wrapping_add(cm.available);
        cm.online = true;
        self.online_maps += 1;
    }

    /// Takes `cpu` offline (`irq_matrix_offline`): it is no longer chosen.
    pub fn offline(&mut self, cpu: u32) -> Result<(), MatrixError> {
        let cm = self
            .maps
            .get_mut(cpu as usize)
            .ok_or(MatrixError::NoSuchCpu(cpu))?;
        if cm.online {
            self.global_available = self.global_available.wrapping_sub(cm.available);
            cm.online = false;
            self.online_maps -= 1;
        }
        Ok(())
    }

    /// Brings `cpu` back online (`irq_matrix_online`).
    pub fn online(&mut self, cpu: u32) -> Result<(), MatrixError> {
        let cm = self
            .maps
            .get(cpu as usize)
            .ok_or(MatrixError::NoSuchCpu(cpu))?;
        if !cm.online {
            self.matrix_online(cpu as usize);
        }
        Ok(())
    }

    /// Vectors of `cpu` available for ordinary allocation, by its count.
    pub fn available(&self, cpu: u32) -> u32 {
        self.maps.get(cpu as usize).map_or(0, |c| c.available)
    }

    /// The spread of available vectors over the online CPUs of `mask`.
    pub fn spread(&self, mask: &CpuMask) -> u32 {
        spread(mask.iter().filter_map(|c| {
            let cm = self.maps.get(c as usize)?;
            cm.online.then_some(cm.available)
        }))
    }

    /// Counts a vector for a later `alloc(.., reserved: true)`. Linux's `irq_matrix_reserve`
    /// never fails: past the available vectors it only warns (counted in
    /// [`LinuxMatrix::warnings`]).
    pub fn reserve(&mut self) {
        if self.global_reserved >= self.global_available {
            self.warnings += 1;
        }
        self.global_reserved += 1;
    }

    /// Drops a reservation (`irq_matrix_remove_reserved`).
    pub fn remove_reserved(&mut self) {
        self.global_reserved = self.global_reserved.saturating_sub(1);
    }

    /// Reservation warnings so far.
    pub fn warnings(&self) -> u32 {
        self.warnings
    }

    /// Outstanding reservations.
    pub fn global_reserved(&self) -> u32 {
        self.global_reserved
    }

    /// Vectors available on online CPUs, machine-wide.
    pub fn global_available(&self) -> u32 {
        self.global_available
    }

    /// Vectors allocated, machine-wide, as Linux counts them (see the module docs).
    pub fn total_allocated(&self) -> u32 {
        self.total_allocated
    }

    /// `irq_matrix_reserve_managed` on a ready bitmap (see the module docs); `mask` names it in
    /// the error.
    pub fn reserve_managed_in(&mut self, msk: &Cpumask, mask: &CpuMask) -> Result<(), MatrixError> {
        let mut done = Vec::new();
        for cpu in msk.cpus() {
            let Some(bit) = self.alloc_area(cpu, true) else {
                // Undone exactly (see the module docs).
                for (cpu, bit) in done {
                    let cm: &mut CpuMap = &mut self.maps[cpu];
                    clear_bit(&mut cm.managed_map, bit);
                    cm.managed -= 1;
                    if cm.online {
                        cm.available = cm.available.wrapping_add(1);
                        self.global_available = self.global_available.wrapping_add(1);
                    }
                }
                return Err(MatrixError::NoVectors { cpus: mask.clone() });
            };
            done.push((cpu, bit));
            let cm = &mut self.maps[cpu];
            cm.managed += 1;
            if cm.online {
                cm.available = cm.available.wrapping_sub(1);
                self.global_available = self.global_available.wrapping_sub(1);
            }
        }
        Ok(())
    }

    /// [`LinuxMatrix::reserve_managed_in`] on `mask` converted first.
    pub fn reserve_managed(&mut self, mask: &CpuMask) -> Result<(), MatrixError> {
        self.reserve_managed_in(&self.cpumask(mask), mask)
    }

    /// `irq_matrix_remove_managed` on a ready bitmap: gives back the lowest unallocated managed
    /// vector of every CPU of the mask that has one.
    pub fn remove_managed_in(&mut self, msk: &Cpumask) {
        for cpu in msk.cpus() {
            let cm = &mut self.maps[cpu];
            if cm.managed == 0 {
                continue;
            }
            for i in 0..MATRIX_SIZE {
                self.scratch_map.0[i] = cm.managed_map[i] & !cm.alloc_map[i];
            }
            let bit = find_first_bit(&self.scratch_map.0, self.alloc_end);
            if bit >= self.alloc_end {
                continue;
            }
            clear_bit(&mut cm.managed_map, bit);
            cm.managed -= 1;
            if cm.online {
                cm.available = cm.available.wrapping_add(1);
                self.global_available = self.global_available.wrapping_add(1);
            }
        }
    }

    /// [`LinuxMatrix::remove_managed_in`] on `mask` converted first.
    pub fn remove_managed(&mut self, mask: &CpuMask) {
        self.remove_managed_in(&self.cpumask(mask));
    }

    /// `irq_matrix_alloc_managed` on a ready bitmap: the last online CPU of the mask with the
    /// fewest managed vectors allocated, by the counts alone; fails when that CPU has no
    /// reserved vector left.
    pub fn alloc_managed_in(
        &mut self,
        msk: &Cpumask,
        mask: &CpuMask,
    ) -> Result<(u32, Vector), MatrixError> {
        let none = || MatrixError::NoManagedVector { cpus: mask.clone() };
        if msk.is_empty() {
            return Err(none());
        }
        let cpu = self.best_cpu_managed(msk).ok_or_else(none)?;
        let cm = &mut self.maps[cpu];
        for i in 0..MATRIX_SIZE {
            self.scratch_map.0[i] = cm.managed_map[i] & !cm.alloc_map[i];
        }
        let bit = find_first_bit(&self.scratch_map.0, self.alloc_end);
        if bit >= self.alloc_end {
            return Err(none());
        }
        set_bit(&mut cm.alloc_map, bit);
        cm.allocated += 1;
        cm.managed_allocated += 1;
        self.total_allocated += 1;
        Ok((cpu as u32, Vector(bit as u8)))
    }

    /// [`LinuxMatrix::alloc_managed_in`] on `mask` converted first.
    pub fn alloc_managed(&mut self, mask: &CpuMask) -> Result<(u32, Vector), MatrixError> {
        self.alloc_managed_in(&self.cpumask(mask), mask)
    }

    /// Takes `vector` out of allocation on every CPU (see the module docs); a no-op outside the
    /// allocatable range, and an error where a CPU has it allocated or reserved.
    pub fn reserve_system(&mut self, vector: Vector) -> Result<(), MatrixError> {
        let bit = usize::from(vector.0);
        if bit < self.alloc_start || bit >= self.alloc_end || test_bit(&self.system_map, bit) {
            return Ok(());
        }
        let used = |cm: &CpuMap| test_bit(&cm.alloc_map, bit) || test_bit(&cm.managed_map, bit);
        if let Some(cpu) = self.maps.iter().position(used) {
            return Err(MatrixError::NotAllocated {
                cpu: cpu as u32,
                vector,
            });
        }
        set_bit(&mut self.system_map, bit);
        self.systembits_inalloc += 1;
        for cm in &mut self.maps {
            cm.available = cm.available.wrapping_sub(1);
            if cm.online {
                self.global_available = self.global_available.wrapping_sub(1);
            }
        }
        Ok(())
    }

    /// Managed vectors (reserved, allocated) on `cpu`.
    pub fn managed(&self, cpu: u32) -> (u32, u32) {
        self.maps
            .get(cpu as usize)
            .map_or((0, 0), |c| (c.managed, c.managed_allocated))
    }

    /// Checks the counts against the bitmaps, and the global count against the online CPUs'
    /// (reservations may exceed what is available; `available` may drift, see the module docs).
    pub fn check(&self) -> Result<(), &'static str> {
        let mut global = 0u32;
        for cm in &self.maps {
            let both: VectorMap = core::array::from_fn(|i| cm.alloc_map[i] & cm.managed_map[i]);
            if weight(&cm.alloc_map) != cm.allocated
                || weight(&cm.managed_map) != cm.managed
                || weight(&both) != cm.managed_allocated
            {
                return Err("counts differ from the bitmaps");
            }
            if cm.online {
                global = global.wrapping_add(cm.available);
            }
        }
        if global != self.global_available
            || self.online_maps != self.maps.iter().filter(|c| c.online).count() as u32
        {
            return Err("global counts differ from the per-CPU counts");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpumap_is_laid_out_like_linux() {
        // 4 counts, 2 bools, padding to 8, two 256-bit maps: 16 + 8 + 32 + 32.
        assert_eq!(core::mem::size_of::<CpuMap>(), 88);
    }

    #[test]
    fn for_each_cpu_walks_the_bitmap_below_nr_cpu_ids() {
        let m = Cpumask::new(&CpuMask::from_cpus([0, 63, 64, 129, 130, 200]), 130);
        assert_eq!(m.cpus().collect::<Vec<_>>(), [0, 63, 64, 129]);
        assert_eq!(m.bits.len(), 3);
        assert!(Cpumask::new(&CpuMask::single(130), 130).is_empty());
        assert_eq!(find_next_bit(&[0, 0, 1], 129, 0), 128);
        assert_eq!(find_next_bit(&[0, 0, 2], 129, 0), 129, "past nr_cpu_ids");
        let full = [!0, !0, !0 ^ 1 << 5, !0];
        assert_eq!(find_next_zero_bit(&full, 256, 3), 133);
        assert_eq!(find_next_zero_bit(&full, 133, 3), 133);
        assert_eq!(find_next_zero_bit(&[!0; 4], 236, 32), 236);
    }

    /// Worked from `irq_matrix_alloc_managed`: the last CPU with the fewest allocated, by
    /// the count alone, failing on a CPU whose reservations are all in use.
    #[test]
    fn managed_pick_is_the_last_cpu_with_the_fewest() {
        let mut m = LinuxMatrix::new(4);
        let all = CpuMask::first_n(4);
        m.reserve_managed(&all).unwrap();
        m.reserve_managed(&CpuMask::single(3)).unwrap();
        assert_eq!(m.managed(3), (2, 0));
        let got: Vec<u32> = (0..5).map(|_| m.alloc_managed(&all).unwrap().0).collect();
        assert_eq!(got, [3, 2, 1, 0, 3]);
        // CPUs 0-2 have one allocated, CPU 3 two: CPU 2 is the last with the fewest, and its one
        // reservation is in use.
        m.reserve_managed(&CpuMask::single(0)).unwrap();
        assert_eq!(m.managed(0), (2, 1));
        assert!(m.alloc_managed(&CpuMask::range(0, 3)).is_err());
        m.check().unwrap();
    }

    /// The difference on purpose in the cleanup (see the module docs): CPU 0 holds a spare
    /// reservation at 0x20 and takes 0x21 for the failing reservation; Linux's cleanup would give
    /// back 0x20, the reference gives back 0x21 and is as it was.
    #[test]
    fn a_failed_managed_reservation_is_undone_exactly() {
        let mut m = LinuxMatrix::new(2);
        m.reserve_managed(&CpuMask::single(0)).unwrap();
        for _ in 0..0xEC - 0x20 {
            m.alloc(&CpuMask::single(1), false).unwrap();
        }
        let before = m.clone();
        assert!(m.reserve_managed(&CpuMask::first_n(2)).is_err());
        assert_eq!(m, before);
        assert_eq!(m.maps[0].managed_map[0], 1 << 0x20);
    }
}
