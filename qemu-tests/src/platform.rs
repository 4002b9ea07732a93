//! The genmsi irq system on this machine, built from the project's crates unchanged:
//!
//! 1. [`init`] creates an [`IrqSystem`] for the online CPUs with `genmsi-x86`'s
//!    [`VectorDomain`] at the root (and, with [`init_remapped`], the VT-d [`IrDomain`] above
//!    it), reserving the vectors the kernel keeps for itself.
//! 2. Every other vector from 0x20 up runs [`dispatch`]: the vector domain's lock-free
//!    [`VectorTable`] turns (CPU, vector) into an irq, [`IrqSystem::handle`] counts it and runs
//!    its handler (which quiets a level-triggered device), and only then is EOI sent.
//! 3. Raw arrivals are counted per (CPU, vector) as well ([`crate::counts`]), so a check can
//!    compare what the hardware delivered with what genmsi counted.

use crate::devices::vtd::{RemapTable, Vtd};
use crate::{counts, cpu, lapic, smp};
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use genmsi::{DomainId, IrqSystem, SystemConfig};
use genmsi_x86::{
    InvDescriptor, Invalidate, IrDomain, IrteTable, Vector, VectorDomain, VectorTable,
};

/// Irq numbers available.
const MAX_IRQS: u32 = 1024;

/// The remapping domain of this kernel: the in-memory table and VT-d queued invalidation.
pub type Remap = IrDomain<RemapTable, QueuedInvalidation>;

/// The irq system and the domains the checks allocate from.
#[derive(Debug)]
pub struct Platform {
    /// The irq system.
    pub sys: IrqSystem,
    /// The vector domain (root).
    pub vector: DomainId,
    /// The VT-d remapping domain, when the machine has one and it was asked for.
    pub remap: Option<DomainId>,
    table: Arc<VectorTable>,
}

static PLATFORM: spin::Once<Platform> = spin::Once::new();
static UNMAPPED: AtomicU64 = AtomicU64::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

impl Platform {
    /// The parent domain device domains should use: remapping when present.
    pub fn parent(&self) -> DomainId {
        self.remap.unwrap_or(self.vector)
    }

    /// Runs `f` on the vector domain.
    pub fn with_vector<T>(&self, f: impl FnOnce(&mut VectorDomain) -> T) -> T {
        self.sys
            .with_domain::<VectorDomain, T>(self.vector, f)
            .expect("the vector domain is registered")
    }

    /// Runs `f` on the remapping domain.
    pub fn with_remap<T>(&self, f: impl FnOnce(&mut Remap) -> T) -> Option<T> {
        self.sys.with_domain::<Remap, T>(self.remap?, f).ok()
    }
}

/// Builds the platform without interrupt remapping.
pub fn init() -> &'static Platform {
    build(None)
}

/// Builds the platform with the VT-d remapping domain over `vtd` and a table of `entries`.
pub fn init_remapped(mut vtd: Vtd, entries: u32) -> Option<&'static Platform> {
    let table = RemapTable::new(entries);
    // Extended interrupt mode whenever the local APICs run in x2APIC mode: their ids may not
    // fit the xAPIC destination field. A unit without it cannot remap for such a machine.
    let eim = lapic::x2apic();
    if (eim && !vtd.eim_supported())
        || !vtd.enable_queued_invalidation()
        || !vtd.enable_interrupt_remapping(&table, eim)
    {
        return None;
    }
    Some(build(Some((table, QueuedInvalidation::new(vtd)))))
}

fn build(remap: Option<(RemapTable, QueuedInvalidation)>) -> &'static Platform {
    PLATFORM.call_once(|| {
        let nr_cpus = smp::online();
        let sys: IrqSystem = IrqSystem::new(SystemConfig::new(nr_cpus, MAX_IRQS));
        let ids = smp::apic_ids()[..nr_cpus as usize].iter();
        let mut vd = VectorDomain::with_apic_ids(ids.map(|&id| genmsi_x86::ApicId(id)).collect());
        // Refused only when the vector is outside the allocatable range, which is as good.
        let _ = vd
            .matrix_mut()
            .reserve_system(Vector(lapic::SPURIOUS_VECTOR));
        let table = vd.table();
        let vector = sys
            .add_domain(Box::new(vd), None)
            .expect("a root domain can always be added");
        let remap = remap.map(|(t, inval)| {
            sys.add_domain(
                Box::new(IrDomain::new(t, inval, lapic::x2apic())),
                Some(vector),
            )
            .expect("the vector domain exists")
        });
        for v in 0x20..=0xfe_u8 {
            cpu::set_vector_handler(v, dispatch);
        }
        Platform {
            sys,
            vector,
            remap,
            table,
        }
    })
}

/// The platform, once built.
pub fn get() -> Option<&'static Platform> {
    PLATFORM.get()
}

/// The interrupt entry for every vector genmsi may hand out.
fn dispatch(vector: u8, cpu: u32) {
    counts::record(vector, cpu);
    let p = PLATFORM
        .get()
        .expect("handlers are installed after the platform");
    // The allocation, not just its number: an interrupt of a freed irq is stale even when
    // the number has a new owner.
    match p.table.lookup_ref(cpu, Vector(vector)) {
        Some(r) => {
            if matches!(
                p.sys.handle_ref(r, cpu),
                genmsi::Delivery::Spurious | genmsi::Delivery::Stale
            ) {
                SPURIOUS.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            UNMAPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    // After the handler: a level-triggered source was quieted by it, so the EOI that the
    // IO-APIC sees (clearing Remote IRR) does not make the line fire again.
    lapic::eoi();
}

/// Interrupts that arrived on a vector no irq was mapped to.
pub fn unmapped() -> u64 {
    UNMAPPED.load(Ordering::Relaxed)
}

/// Interrupts that named an irq genmsi did not consider active.
pub fn spurious() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}

impl IrteTable for RemapTable {
    fn len(&self) -> u32 {
        self.entries()
    }

    fn write(&mut self, index: u32, entry: [u64; 2]) {
        self.store(index, entry);
        self.writes
            .push((REMAP_SEQ.fetch_add(1, Ordering::Relaxed), index));
    }

    fn read(&self, index: u32) -> [u64; 2] {
        self.load(index)
    }
}

/// [`Invalidate`] over VT-d queued invalidation: each request is an interrupt entry cache
/// descriptor followed by a wait descriptor whose status write says it completed.
#[derive(Debug)]
pub struct QueuedInvalidation {
    /// The remapping unit (also read for its fault records).
    pub vtd: Vtd,
    /// Requests completed.
    pub completed: u64,
    /// The last request.
    pub last: Option<InvDescriptor>,
    /// Every completed request, as (log sequence, descriptor), in order.
    pub log: alloc::vec::Vec<(u64, InvDescriptor)>,
}

impl QueuedInvalidation {
    fn new(vtd: Vtd) -> Self {
        QueuedInvalidation {
            vtd,
            completed: 0,
            last: None,
            log: alloc::vec::Vec::new(),
        }
    }
}

impl Invalidate for QueuedInvalidation {
    fn invalidate(&mut self, desc: InvDescriptor) -> Result<(), &'static str> {
        if !self.vtd.submit(&[desc.encode()]) {
            return Err("invalidation wait did not complete");
        }
        self.completed += 1;
        self.last = Some(desc);
        self.log
            .push((REMAP_SEQ.fetch_add(1, Ordering::Relaxed), desc));
        Ok(())
    }
}

/// One sequence for IRTE writes and completed invalidations, so their order can be compared.
static REMAP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A point in the IRTE write / invalidation log; see [`audit_since`].
pub fn remap_mark() -> u64 {
    REMAP_SEQ.load(Ordering::Relaxed)
}

/// The IRTE writes made since a [`remap_mark`], and those of them no completed interrupt
/// entry cache invalidation covering that entry followed.
#[derive(Debug)]
pub struct InvalAudit {
    /// Indices written, in order.
    pub written: alloc::vec::Vec<u32>,
    /// Indices written with no covering invalidation completed after the write.
    pub uncovered: alloc::vec::Vec<u32>,
}

impl InvalAudit {
    /// True when `index` was written and every write was invalidated after it.
    pub fn wrote_and_covered(&self, index: u32) -> bool {
        self.written.contains(&index) && self.uncovered.is_empty()
    }

    /// True when something was written and every write was invalidated after it.
    pub fn ok(&self) -> bool {
        !self.written.is_empty() && self.uncovered.is_empty()
    }
}

/// Audits the IRTE writes made since `mark` against the completed invalidation descriptors.
pub fn audit_since(p: &Platform, mark: u64) -> InvalAudit {
    p.with_remap(|d| {
        let writes: alloc::vec::Vec<(u64, u32)> = d
            .table()
            .writes
            .iter()
            .copied()
            .filter(|&(seq, _)| seq >= mark)
            .collect();
        let log = &d.invalidator().log;
        let uncovered = writes
            .iter()
            .filter(|&&(seq, index)| !log.iter().any(|&(at, desc)| at > seq && desc.covers(index)))
            .map(|&(_, index)| index)
            .collect();
        InvalAudit {
            written: writes.iter().map(|&(_, index)| index).collect(),
            uncovered,
        }
    })
    .expect("remapping domain")
}
