//! The x86 stack the benchmarks run on: an irq system over the vector domain behind VT-d
//! interrupt remapping, with devices on in-memory message stores.

use genmsi::soft::MemStore;
use genmsi::{DeviceId, DeviceMeta, DomainId, IrqSystem, SlotId, StoreCaps, SystemConfig};
use genmsi_x86::{InvDescriptor, Invalidate, IrDomain, SharedIrteTable, VectorDomain, VectorTable};
use std::sync::Arc;

/// Invalidations go nowhere: the benchmarks' remapping units are created after configuration
/// and read the table afresh, so they hold no stale entry to drop.
#[derive(Debug)]
struct FreshUnits;

impl Invalidate for FreshUnits {
    fn invalidate(&mut self, _desc: InvDescriptor) -> Result<(), &'static str> {
        Ok(())
    }
}

/// An irq system over `vector domain <- VT-d remapping domain`.
pub struct Stack {
    /// The irq system.
    pub sys: IrqSystem,
    /// The vector table (per CPU, vector -> irq), for delivery.
    pub vectors: Arc<VectorTable>,
    /// The remapping table the domain writes, for delivery.
    pub irtes: SharedIrteTable,
    /// The remapping domain, where device domains stack.
    pub parent: DomainId,
}

impl Stack {
    /// `cpus` CPUs, room for `irqs` irqs and as many remapping entries (rounded up to what a
    /// remapping table holds).
    pub fn new(cpus: u32, irqs: u32) -> anyhow::Result<Self> {
        let sys = IrqSystem::new(SystemConfig::new(cpus, irqs + 1024));
        let vd = VectorDomain::new(cpus);
        let vectors = vd.table();
        let root = sys.add_domain(Box::new(vd), None)?;
        let irtes = SharedIrteTable::new(irqs.next_power_of_two().clamp(256, 65_536));
        let ir = IrDomain::new(irtes.clone(), FreshUnits, false);
        let parent = sys.add_domain(Box::new(ir), Some(root))?;
        Ok(Stack {
            sys,
            vectors,
            irtes,
            parent,
        })
    }

    /// A device with requester id `rid` and a message store of `entries` entries.
    pub fn device(&self, name: &str, rid: u16, entries: u32) -> anyhow::Result<DeviceId> {
        let dev = self.sys.add_device(
            name,
            DeviceMeta {
                requester_id: Some(rid),
            },
        );
        let store = MemStore::new(StoreCaps::dynamic(entries));
        self.sys
            .create_device_domain(dev, SlotId::Default, Box::new(store), self.parent)?;
        Ok(dev)
    }
}
