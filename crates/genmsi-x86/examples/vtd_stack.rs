//! The x86 interrupt stack a kernel builds: device domain -> VT-d interrupt remapping ->
//! CPU vectors.
//!
//! The embedder supplies the remapping table's memory (here [`SharedIrteTable`]; in a kernel,
//! the pages it points IRTA at) and the invalidation path ([`Invalidate`]: queued
//! invalidation descriptors to the unit). [`IrUnit`] plays the remapping hardware: it reads
//! the IRTEs the domain wrote and checks the requester id of every write.
//!
//! 1. Build the stack and register a device with its requester id.
//! 2. Allocate two vectors: each gets an IRTE; the device holds remappable-format messages.
//! 3. The device's write is translated by the unit to (CPU, vector) and delivered to its irq.
//! 4. The same message sent by another requester is blocked (source-id check, fault 0x26).
//!
//! Run: `cargo run -p genmsi-x86 --example vtd_stack`

use genmsi::soft::MemStore;
use genmsi::{AllocOpts, DeviceMeta, IrqSystem, SlotId, StoreCaps, SystemConfig};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::{InvDescriptor, Invalidate, IrDomain, IrUnit, SharedIrteTable, VectorDomain};
use std::sync::{Arc, Mutex};

/// The invalidation path: descriptors go to the unit (a kernel writes them to the
/// invalidation queue and waits for the wait descriptor).
struct ToUnit(Arc<Mutex<IrUnit>>);

impl Invalidate for ToUnit {
    fn invalidate(&mut self, desc: InvDescriptor) -> Result<(), &'static str> {
        self.0.lock().unwrap().invalidate(desc);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Eight CPUs, a 256-entry remapping table, compatibility-format writes blocked.
    let sys: IrqSystem = IrqSystem::new(SystemConfig::new(8, 4096));
    let vectors = VectorDomain::new(8);
    let vector_table = vectors.table();
    let root = sys.add_domain(Box::new(vectors), None)?;
    let irt = SharedIrteTable::new(256);
    let unit = Arc::new(Mutex::new(IrUnit::new(false, false)));
    let ir = IrDomain::new(irt.clone(), ToUnit(unit.clone()), false);
    let ir = sys.add_domain(Box::new(ir), Some(root))?;

    // The NIC at 03:00.0 (requester id 0x0300).
    let nic_rid = 0x0300;
    let nic = sys.add_device("nic", DeviceMeta::requester(nic_rid));
    sys.create_device_domain(
        nic,
        SlotId::Default,
        Box::new(MemStore::new(StoreCaps::dynamic(16))),
        ir,
    )?;

    // 2. Two vectors.
    let irqs = sys.alloc_range(nic, SlotId::Default, 0, 2, &AllocOpts::default())?;
    for (index, &irq) in irqs.iter().enumerate() {
        let msg = sys.compose_msg(irq)?;
        let Ok(MsiFormat::Remappable(r)) = MsiFormat::parse(&msg) else {
            return Err("a remappable-format message".into());
        };
        println!(
            "index {index}: irq {}, message {:#x}/{:#x} = IRTE handle {}",
            irq.0, msg.address, msg.data, r.handle
        );
    }

    // 3. The NIC raises index 1: the unit looks up the IRTE, checks the requester id and
    //    sends the vector to the CPU the IRTE names.
    let msg = sys.compose_msg(irqs[1])?;
    let to = unit
        .lock()
        .unwrap()
        .translate(&msg, nic_rid, &irt)
        .map_err(|f| format!("{f:?}"))?;
    let irq = vector_table
        .lookup(to.dest, to.vector)
        .ok_or("the vector is mapped")?;
    assert_eq!(irq, irqs[1]);
    sys.handle(irq, to.dest);
    println!(
        "NIC's write -> CPU {} vector {:#x} -> irq {}, handled {}",
        to.dest,
        to.vector.0,
        irq.0,
        sys.table().count(irq)
    );

    // 4. Another function (04:00.0) replays the NIC's message: blocked, never delivered.
    let spoof = unit.lock().unwrap().translate(&msg, 0x0400, &irt);
    println!("the same write from 04:00.0: {spoof:?}");
    assert!(spoof.is_err(), "a foreign requester id is refused");
    Ok(())
}
