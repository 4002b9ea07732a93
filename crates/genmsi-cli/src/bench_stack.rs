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

/// IRTEs one remapping unit holds (a 16-bit handle).
const UNIT_IRTES: u32 = 65_536;

/// An irq system over `vector domain <- VT-d remapping domain(s)`: one remapping unit per
/// 65,536 irqs, as a machine with several DRHDs has.
pub struct Stack {
    /// The irq system.
    pub sys: IrqSystem,
    /// The vector table (per CPU, vector -> irq), for delivery.
    pub vectors: Arc<VectorTable>,
    /// Per remapping unit: its domain, where device domains stack, and the table it writes.
    pub units: Vec<(DomainId, SharedIrteTable)>,
    /// Extended interrupt mode (x2APIC destinations): APIC ids above 255 need it.
    pub x2apic: bool,
}

impl Stack {
    /// `cpus` CPUs, room for `irqs` irqs and as many remapping entries.
    pub fn new(cpus: u32, irqs: u32) -> anyhow::Result<Self> {
        let sys = IrqSystem::new(SystemConfig::new(cpus, irqs + 1024));
        let vd = VectorDomain::new(cpus);
        let vectors = vd.table();
        let root = sys.add_domain(Box::new(vd), None)?;
        let x2apic = cpus > 256;
        let mut units = Vec::new();
        for u in 0..irqs.div_ceil(UNIT_IRTES).max(1) {
            let entries = irqs
                .saturating_sub(u * UNIT_IRTES)
                .clamp(256, UNIT_IRTES)
                .next_power_of_two();
            let irtes = SharedIrteTable::new(entries);
            let ir = IrDomain::new(irtes.clone(), FreshUnits, x2apic);
            units.push((sys.add_domain(Box::new(ir), Some(root))?, irtes));
        }
        Ok(Stack {
            sys,
            vectors,
            units,
            x2apic,
        })
    }

    /// A device with requester id `rid` and a message store of `entries` entries, behind
    /// remapping unit `unit`.
    pub fn device(
        &self,
        name: &str,
        rid: u16,
        entries: u32,
        unit: usize,
    ) -> anyhow::Result<DeviceId> {
        let parent = self
            .units
            .get(unit)
            .ok_or_else(|| anyhow::anyhow!("no remapping unit {unit}"))?
            .0;
        let dev = self.sys.add_device(name, DeviceMeta::requester(rid));
        let store = MemStore::new(StoreCaps::dynamic(entries));
        self.sys
            .create_device_domain(dev, SlotId::Default, Box::new(store), parent)?;
        Ok(dev)
    }
}
