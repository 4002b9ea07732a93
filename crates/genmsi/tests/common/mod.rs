//! A small software machine shared by the integration tests: a root, a remap level, and
//! devices with in-memory stores.

#![allow(dead_code)]

use genmsi::soft::{MemStore, SoftRemap, SoftRoot};
use genmsi::{
    DeviceId, DeviceMeta, DomainId, Irq, IrqSystem, Msg, SlotId, StoreCaps, SystemConfig,
};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub const CPUS: u32 = 8;

pub struct Machine {
    pub sys: IrqSystem,
    pub root: DomainId,
    pub remap: DomainId,
    pub remap_table: Arc<[AtomicU64]>,
}

impl Machine {
    /// `per_cpu` root vectors per CPU, `entries` remap entries.
    pub fn new(per_cpu: u32, entries: u32) -> Self {
        let sys = IrqSystem::new(SystemConfig::new(CPUS, 4096));
        let root = sys
            .add_domain(Box::new(SoftRoot::new(CPUS, per_cpu)), None)
            .unwrap();
        let remap_domain = SoftRemap::new(entries);
        let remap_table = remap_domain.table();
        let remap = sys.add_domain(Box::new(remap_domain), Some(root)).unwrap();
        Machine {
            sys,
            root,
            remap,
            remap_table,
        }
    }

    pub fn device(&self, name: &str, caps: StoreCaps, parent: DomainId) -> DeviceId {
        let dev = self.sys.add_device(name, DeviceMeta::requester(0x10));
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

    /// The device raises `index`: follow the message through remap and root to an irq and
    /// deliver it. Returns the irq that was handled (None: masked, blocked or nowhere).
    pub fn raise(&self, dev: DeviceId, index: u32) -> Option<Irq> {
        let msg = self.store(dev, |s| s.raise(index))?;
        self.route(&msg)
    }

    pub fn route(&self, msg: &Msg) -> Option<Irq> {
        let msg = SoftRemap::translate(&self.remap_table, msg).unwrap_or(*msg);
        let (irq, cpu) = SoftRoot::decode(&msg)?;
        (self.sys.handle(irq, cpu) == genmsi::Delivery::Handled).then_some(irq)
    }

    /// Everything that must be unchanged after a refused request.
    pub fn snapshot(&self, devs: &[DeviceId]) -> String {
        let root = self
            .sys
            .with_domain::<SoftRoot, _>(self.root, |r| {
                format!("{:?} {:?}", r.used(), r.irqs().collect::<Vec<_>>())
            })
            .unwrap();
        let remap = self
            .sys
            .with_domain::<SoftRemap, _>(self.remap, |r| r.free_entries())
            .unwrap();
        let stores: Vec<String> = devs
            .iter()
            .map(|&d| self.store(d, |s| format!("{:?} enabled {}", s.slots(), s.enabled)))
            .collect();
        format!(
            "{}\n{:?}\nroot {root}\nremap free {remap}\n{stores:?}",
            self.sys.dump(),
            self.sys.stats()
        )
    }
}
