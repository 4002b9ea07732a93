//! Memory-mapped registers of the identity-mapped first 4 GiB.

use core::ptr::{read_volatile, write_volatile};

/// A window of device registers at a physical address (identity mapped, so also virtual).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioRegion {
    base: u64,
    len: u64,
}

impl MmioRegion {
    /// The region `base..base + len`. Panics if it is not inside the identity map.
    pub fn new(base: u64, len: u64) -> Self {
        assert!(
            base.checked_add(len).is_some_and(|end| end <= 1 << 32),
            "MMIO region {base:#x}+{len:#x} is outside the identity-mapped 4 GiB"
        );
        MmioRegion { base, len }
    }

    /// The physical base address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    fn ptr<T>(&self, offset: u64) -> *mut T {
        assert!(
            offset.is_multiple_of(core::mem::size_of::<T>() as u64)
                && offset + core::mem::size_of::<T>() as u64 <= self.len,
            "MMIO access at {offset:#x} outside or misaligned in a region of {:#x}",
            self.len
        );
        (self.base + offset) as *mut T
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32(&self, offset: u64) -> u32 {
        // SAFETY: `ptr` checked the access is aligned and inside the region, which the
        // identity map covers and which holds device registers, not Rust objects.
        unsafe { read_volatile(self.ptr(offset)) }
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as for `read32`.
        unsafe { write_volatile(self.ptr(offset), value) }
    }

    /// Reads the 64-bit register at `offset`.
    pub fn read64(&self, offset: u64) -> u64 {
        // SAFETY: as for `read32`.
        unsafe { read_volatile(self.ptr(offset)) }
    }

    /// Writes the 64-bit register at `offset`.
    pub fn write64(&self, offset: u64, value: u64) {
        // SAFETY: as for `read32`.
        unsafe { write_volatile(self.ptr(offset), value) }
    }
}
