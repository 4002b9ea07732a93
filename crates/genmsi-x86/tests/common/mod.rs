//! A small x86 machine for the integration tests: the real domains, a remapping unit with an
//! entry cache, local APICs with an IRR, and devices with in-memory stores.

#![allow(dead_code)]

use genmsi::soft::MemStore;
use genmsi::{
    DeviceId, DeviceMeta, DomainId, Irq, IrqSystem, Msg, SlotId, StoreCaps, SystemConfig,
};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::{
    InvDescriptor, Invalidate, IrDomain, IrUnit, SharedIrteTable, Vector, VectorDomain, VectorTable,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Forwards invalidations to the shared remapping unit.
pub struct UnitInvalidate(pub Arc<Mutex<IrUnit>>);

impl Invalidate for UnitInvalidate {
    fn invalidate(&mut self, desc: InvDescriptor) -> Result<(), &'static str> {
        self.0.lock().unwrap().invalidate(desc);
        Ok(())
    }
}

pub type Ir = IrDomain<SharedIrteTable, UnitInvalidate>;

/// What happened to one message write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Latched in the IRR of (cpu, vector).
    Pending(u32, Vector),
    /// Blocked by the remapping unit.
    Blocked(genmsi_x86::FaultReason),
    /// Not an interrupt message, or the destination CPU is offline.
    Dropped,
}

pub struct X86 {
    pub sys: IrqSystem,
    pub vector: DomainId,
    pub ir: DomainId,
    pub vectors: Arc<VectorTable>,
    pub irt: SharedIrteTable,
    pub unit: Arc<Mutex<IrUnit>>,
    /// Per CPU, vectors pending in the IRR.
    pub irr: Vec<BTreeSet<u8>>,
    pub online: Vec<bool>,
    /// Interrupts handled, per irq.
    pub handled: BTreeMap<Irq, u64>,
    /// Interrupts that arrived on a vector mapped to nothing.
    pub stale: u64,
    /// Devices see their message store late (posted writes still in flight): the message a
    /// device sends comes from here, refreshed only by [`X86::refresh`].
    pub lagging: bool,
    pub views: BTreeMap<(DeviceId, u32), Msg>,
}

impl X86 {
    pub fn new(cpus: u32, irtes: u32) -> Self {
        let sys = IrqSystem::new(SystemConfig::new(cpus, 1 << 16));
        let vd = VectorDomain::new(cpus);
        let vectors = vd.table();
        let vector = sys.add_domain(Box::new(vd), None).unwrap();
        let irt = SharedIrteTable::new(irtes);
        let unit = Arc::new(Mutex::new(IrUnit::new(false, true)));
        let ir = IrDomain::new(irt.clone(), UnitInvalidate(unit.clone()), false);
        let ir = sys.add_domain(Box::new(ir), Some(vector)).unwrap();
        X86 {
            sys,
            vector,
            ir,
            vectors,
            irt,
            unit,
            irr: vec![BTreeSet::new(); cpus as usize],
            online: vec![true; cpus as usize],
            handled: BTreeMap::new(),
            stale: 0,
            lagging: false,
            views: BTreeMap::new(),
        }
    }

    pub fn device(&self, name: &str, rid: u16, caps: StoreCaps, parent: DomainId) -> DeviceId {
        self.device_with(name, DeviceMeta::requester(rid), caps, parent)
    }

    /// A device whose source check is `meta` (a requester id, or a bus range).
    pub fn device_with(
        &self,
        name: &str,
        meta: DeviceMeta,
        caps: StoreCaps,
        parent: DomainId,
    ) -> DeviceId {
        let dev = self.sys.add_device(name, meta);
        self.sys
            .create_device_domain(dev, SlotId::Default, Box::new(MemStore::new(caps)), parent)
            .unwrap();
        dev
    }

    pub fn store<T>(&self, dev: DeviceId, f: impl FnOnce(&mut MemStore) -> T) -> T {
        self.sys
            .with_store::<MemStore, T>(dev, SlotId::Default, f)
            .unwrap()
    }

    /// A message write arrives on the bus from `rid`.
    pub fn write(&mut self, msg: &Msg, rid: u16) -> Arrival {
        let (dest, vector) = match MsiFormat::parse(msg) {
            Ok(MsiFormat::Compat(c)) => (c.dest, c.vector),
            // Anything in the interrupt range with the format bit goes to the remapping unit.
            _ if msg.address & 0xFFF0_0010 == 0xFEE0_0010 => {
                match self.unit.lock().unwrap().translate(msg, rid, &self.irt) {
                    Ok(r) => (r.dest, r.vector),
                    Err(f) => return Arrival::Blocked(f),
                }
            }
            _ => return Arrival::Dropped,
        };
        if !self.online.get(dest as usize).copied().unwrap_or(false) {
            return Arrival::Dropped;
        }
        self.irr[dest as usize].insert(vector.0);
        Arrival::Pending(dest, vector)
    }

    /// Device `dev` raises store index `index`.
    pub fn raise(&mut self, dev: DeviceId, rid: u16, index: u32) -> Option<Arrival> {
        let current = self.store(dev, |s| s.raise(index))?;
        let msg = match self.lagging {
            true => *self.views.entry((dev, index)).or_insert(current),
            false => current,
        };
        Some(self.write(&msg, rid))
    }

    /// Every device catches up with its message store.
    pub fn refresh(&mut self) {
        self.views.clear();
    }

    /// CPU `cpu` services its IRR.
    pub fn service(&mut self, cpu: u32) {
        let pending = std::mem::take(&mut self.irr[cpu as usize]);
        for v in pending {
            match self.vectors.lookup_ref(cpu, Vector(v)) {
                Some(r) => {
                    assert_eq!(self.sys.handle_ref(r, cpu), genmsi::Delivery::Handled);
                    *self.handled.entry(r.irq).or_default() += 1;
                }
                None => self.stale += 1,
            }
        }
    }

    pub fn service_all(&mut self) {
        for cpu in 0..self.irr.len() as u32 {
            if self.online[cpu as usize] {
                self.service(cpu);
            }
        }
    }

    /// Runs the vector domain's cleanup against the IRRs; retriggers what it asks for.
    pub fn cleanup(&mut self) -> genmsi_x86::CleanupReport {
        let irr = self.irr.clone();
        let report = self
            .sys
            .with_domain::<VectorDomain, _>(self.vector, |v| {
                v.cleanup(&|cpu, vec| irr[cpu as usize].contains(&vec.0))
            })
            .unwrap();
        for &irq in &report.retrigger {
            let t = self
                .sys
                .with_domain::<VectorDomain, _>(self.vector, |v| v.target(irq))
                .unwrap()
                .unwrap();
            self.irr[t.cpu as usize].insert(t.vector.0);
        }
        report
    }

    pub fn with_vectors<T>(&self, f: impl FnOnce(&mut VectorDomain) -> T) -> T {
        self.sys
            .with_domain::<VectorDomain, T>(self.vector, f)
            .unwrap()
    }

    pub fn with_ir<T>(&self, f: impl FnOnce(&mut Ir) -> T) -> T {
        self.sys.with_domain::<Ir, T>(self.ir, f).unwrap()
    }
}

pub fn msix(n: u32) -> StoreCaps {
    StoreCaps {
        max_index: n,
        per_vector_mask: true,
        alloc_after_enable: true,
        write_masked: true,
        block_only: false,
        any_index: false,
    }
}

pub fn msi_unmaskable(n: u32) -> StoreCaps {
    StoreCaps {
        per_vector_mask: false,
        ..msix(n)
    }
}
