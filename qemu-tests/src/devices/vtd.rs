//! An Intel VT-d remapping unit (QEMU's `intel-iommu` at 0xFED90000; VT-d specification 3.x,
//! chapter 11): queued invalidation, the interrupt remapping table, and fault recording.
//!
//! 1. [`Vtd::enable_queued_invalidation`] points IQA at a 4 KiB queue (256 descriptors of
//!    128 bits) and sets GCMD.QIE.
//! 2. [`Vtd::enable_interrupt_remapping`] points IRTA at the remapping table, latches it with
//!    GCMD.SIRTP, invalidates the whole interrupt entry cache, then sets GCMD.IRE. CFI stays
//!    clear: compatibility-format interrupts are to be blocked.
//! 3. [`Vtd::submit`] queues invalidation descriptors and a wait descriptor, and waits for the
//!    wait's status write.

use crate::mmio::MmioRegion;
use alloc::alloc::{alloc_zeroed, Layout};
use core::sync::atomic::{AtomicU32, Ordering};

/// The remapping unit's MMIO base on q35.
pub const BASE: u64 = 0xfed9_0000;

const REG_CAP: u64 = 0x08;
const REG_ECAP: u64 = 0x10;
const REG_GCMD: u64 = 0x18;
const REG_GSTS: u64 = 0x1c;
const REG_FSTS: u64 = 0x34;
const REG_FECTL: u64 = 0x38;
const REG_IQT: u64 = 0x88;
const REG_IQA: u64 = 0x90;
const REG_IRTA: u64 = 0xb8;

/// IRTA bit 11: extended interrupt mode enable (11.4.12).
const IRTA_EIME: u64 = 1 << 11;
/// ECAP bit 4: extended interrupt mode supported.
const ECAP_EIM: u64 = 1 << 4;
/// ECAP bit 1: queued invalidation. Bit 3: interrupt remapping.
const ECAP_QI: u64 = 1 << 1;
const ECAP_IR: u64 = 1 << 3;
/// GCMD/GSTS bits (11.4.4, 11.4.5).
const GCMD_QIE: u32 = 1 << 26;
const GCMD_IRE: u32 = 1 << 25;
const GCMD_SIRTP: u32 = 1 << 24;
/// FECTL bit 31: fault event interrupt masked.
const FECTL_IM: u32 = 1 << 31;
/// FSTS bit 1: primary pending fault.
const FSTS_PPF: u32 = 1 << 1;
/// FSTS bit 0: primary fault overflow. Bit 4: invalidation queue error.
const FSTS_PFO: u32 = 1 << 0;
const FSTS_IQE: u32 = 1 << 4;

/// Descriptor types (6.5.2).
const DESC_IEC: u64 = 0x4;
const DESC_WAIT: u64 = 0x5;
/// Invalidation wait: status write.
const WAIT_SW: u64 = 1 << 5;

/// Descriptors in the invalidation queue (one 4 KiB page).
const QUEUE_ENTRIES: u64 = 256;

/// One recorded fault (11.4.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The requester id of the faulting request.
    pub source_id: u16,
    /// The fault reason (0x22: IRTE not present; 0x26: source id check failed).
    pub reason: u8,
    /// For interrupt requests, the interrupt index.
    pub index: u16,
}

/// An interrupt remapping table of `entries` 128-bit entries in memory.
#[derive(Debug)]
pub struct RemapTable {
    base: *mut u64,
    entries: u32,
    /// Every write made through genmsi's `IrteTable`, as (log sequence, index), in order.
    pub writes: alloc::vec::Vec<(u64, u32)>,
}

// SAFETY: the table is leaked memory only reached through this handle's methods, which the
// kernel calls under the irq system's configuration lock.
unsafe impl Send for RemapTable {}

impl RemapTable {
    /// A zeroed table of `entries` entries (a power of two, 2..=65536), 4 KiB aligned.
    pub fn new(entries: u32) -> Self {
        assert!(entries.is_power_of_two() && (2..=65536).contains(&entries));
        let layout = Layout::from_size_align(entries as usize * 16, 4096).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc_zeroed(layout) } as *mut u64;
        assert!(!base.is_null(), "out of memory for the remapping table");
        RemapTable {
            base,
            entries,
            writes: alloc::vec::Vec::new(),
        }
    }

    /// Physical address (identity mapped).
    pub fn phys(&self) -> u64 {
        self.base as u64
    }

    /// Number of entries.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Reads entry `index` as [low, high] quadwords.
    pub fn load(&self, index: u32) -> [u64; 2] {
        assert!(index < self.entries);
        // SAFETY: `index` is inside the table, which this handle owns.
        unsafe {
            let p = self.base.add(2 * index as usize);
            [p.read_volatile(), p.add(1).read_volatile()]
        }
    }

    /// Writes entry `index` so that the unit, which reads the two quadwords separately, only
    /// ever sees the old or the new entry: an entry that becomes present gets its high half
    /// (source check) first and its low half (present bit) last; one that stops being present
    /// loses its present bit first.
    pub fn store(&self, index: u32, entry: [u64; 2]) {
        assert!(index < self.entries);
        // SAFETY: as for `load`; volatile so the unit sees each store, in program order.
        unsafe {
            let p = self.base.add(2 * index as usize);
            if entry[0] & 1 != 0 {
                p.write_volatile(p.read_volatile() & !1);
                p.add(1).write_volatile(entry[1]);
                p.write_volatile(entry[0]);
            } else {
                p.write_volatile(entry[0]);
                p.add(1).write_volatile(entry[1]);
            }
        }
    }
}

/// The remapping unit.
#[derive(Debug)]
pub struct Vtd {
    regs: MmioRegion,
    queue: *mut u64,
    tail: u64,
    /// Persistent GCMD bits this driver has set (GSTS one-shot bits are never written back).
    gcmd: u32,
    status: &'static AtomicU32,
    waits: u32,
}

// SAFETY: the queue memory is leaked and reached only through `&mut self`.
unsafe impl Send for Vtd {}

impl Vtd {
    /// The unit at [`BASE`], if it is present and can remap interrupts with queued invalidation.
    pub fn probe() -> Option<Vtd> {
        let regs = MmioRegion::new(BASE, 0x1000);
        let version = regs.read32(0);
        let ecap = regs.read64(REG_ECAP);
        if version == 0 || version == !0 || ecap & (ECAP_QI | ECAP_IR) != ECAP_QI | ECAP_IR {
            return None;
        }
        let layout = Layout::from_size_align(4096, 4096).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let queue = unsafe { alloc_zeroed(layout) } as *mut u64;
        assert!(!queue.is_null(), "out of memory for the invalidation queue");
        let status = alloc::boxed::Box::leak(alloc::boxed::Box::new(AtomicU32::new(0)));
        Some(Vtd {
            regs,
            queue,
            tail: 0,
            gcmd: 0,
            status,
            waits: 0,
        })
    }

    /// True when the unit supports extended interrupt mode (x2APIC destinations).
    pub fn eim_supported(&self) -> bool {
        self.regs.read64(REG_ECAP) & ECAP_EIM != 0
    }

    fn command(&mut self, bit: u32, persistent: bool) -> bool {
        self.regs.write32(REG_GCMD, self.gcmd | bit);
        let ok = crate::time::wait_until(crate::time::LATE_MS, || {
            self.regs.read32(REG_GSTS) & bit != 0
        });
        if persistent {
            self.gcmd |= bit;
        }
        ok
    }

    /// Enables queued invalidation (fault events stay masked: faults are polled).
    pub fn enable_queued_invalidation(&mut self) -> bool {
        self.regs.write32(REG_FECTL, FECTL_IM);
        self.regs.write64(REG_IQT, 0);
        self.regs.write64(REG_IQA, self.queue as u64);
        self.command(GCMD_QIE, true)
    }

    /// Loads `table` and enables interrupt remapping; `eim` selects extended interrupt mode
    /// (IRTA.EIME: 32-bit x2APIC destinations in the IRTEs), otherwise xAPIC destinations.
    pub fn enable_interrupt_remapping(&mut self, table: &RemapTable, eim: bool) -> bool {
        let size = table.entries().trailing_zeros() - 1;
        let eime = if eim { IRTA_EIME } else { 0 };
        self.regs
            .write64(REG_IRTA, table.phys() | eime | u64::from(size));
        if !self.command(GCMD_SIRTP, false) {
            return false;
        }
        self.invalidate_all() && self.command(GCMD_IRE, true)
    }

    fn push(&mut self, low: u64, high: u64) {
        // SAFETY: `tail` is below the queue's 256 descriptors; the queue is leaked memory that
        // only this driver writes and the unit reads after IQT moves past the descriptor.
        unsafe {
            let p = self.queue.add(2 * self.tail as usize);
            p.write_volatile(low);
            p.add(1).write_volatile(high);
        }
        self.tail = (self.tail + 1) % QUEUE_ENTRIES;
    }

    /// Queues `descriptors` and an invalidation wait, then waits for the wait's status write.
    pub fn submit(&mut self, descriptors: &[[u64; 2]]) -> bool {
        self.waits = self.waits.wrapping_add(1).max(1);
        self.status.store(0, Ordering::SeqCst);
        for &[low, high] in descriptors {
            self.push(low, high);
        }
        let status_addr = self.status as *const AtomicU32 as u64;
        self.push(
            DESC_WAIT | WAIT_SW | (u64::from(self.waits) << 32),
            status_addr,
        );
        self.regs.write64(REG_IQT, self.tail << 4);
        let done = crate::time::wait_until(crate::time::LATE_MS, || {
            self.status.load(Ordering::SeqCst) == self.waits
        });
        done && self.regs.read32(REG_FSTS) & FSTS_IQE == 0
    }

    /// Invalidates the whole interrupt entry cache.
    pub fn invalidate_all(&mut self) -> bool {
        self.submit(&[[DESC_IEC, 0]])
    }

    /// Takes every recorded fault and clears the fault status.
    pub fn take_faults(&mut self) -> alloc::vec::Vec<Fault> {
        let cap = self.regs.read64(REG_CAP);
        let offset = ((cap >> 24) & 0x3ff) * 16;
        let count = ((cap >> 40) & 0xff) + 1;
        let mut faults = alloc::vec::Vec::new();
        for i in 0..count {
            let reg = offset + 16 * i;
            let low = self.regs.read64(reg);
            let high = self.regs.read64(reg + 8);
            if high & (1 << 63) != 0 {
                faults.push(Fault {
                    source_id: high as u16,
                    reason: (high >> 32) as u8,
                    index: (low >> 48) as u16,
                });
                // F is write-1-to-clear.
                self.regs.write64(reg + 8, 1 << 63);
            }
        }
        self.regs.write32(REG_FSTS, FSTS_PFO | FSTS_PPF);
        faults
    }
}
