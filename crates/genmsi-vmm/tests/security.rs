//! Security property of the passthrough path: whatever a guest writes into its MSI-X table, the
//! host programs its own message (a host-composed remappable message for the host vector it
//! allocated for that entry), so the guest cannot make the host deliver to a vector or CPU it
//! was not given; the guest's message only says where the interrupt is injected in the guest.

mod common;

use common::*;
use genmsi::{Msg, SlotId};
use genmsi_vmm::Injection;

#[test]
fn a_guest_cannot_choose_the_host_vector_or_cpu() {
    let mut g = Guest::on_demand();
    // Messages a hostile guest might try: host compatibility format naming CPU 3 and a host
    // vector, a remappable-format message naming IRTE handles 0 and 1, the top of the range.
    let hostile = [
        Msg::new(0xFEE0_3000, 0x31),
        Msg::new(0xFEE0_0010, 0),
        Msg::new(0xFEE0_0018 | 1 << 5, 0),
        Msg::new(0xFEEF_F00C, 0xFFFF_FFFF),
    ];
    for (i, msg) in hostile.iter().enumerate() {
        g.program(i as u32, *msg);
    }
    g.control(true, false).unwrap();
    for i in 0..hostile.len() as u32 {
        g.unmask(i).unwrap();
    }
    let machine = g.vmm.host().machine().clone();
    let sys = machine.sys();
    let descs = sys.descs(g.vmm.host().pci().id, SlotId::Default).unwrap();
    assert_eq!(descs.len(), hostile.len());
    let table = g.host_table();
    for d in &descs {
        let at = 16 * d.index as usize;
        let address = u64::from_le_bytes(table[at..at + 8].try_into().unwrap());
        let data = u32::from_le_bytes(table[at + 8..at + 12].try_into().unwrap());
        // The host entry holds the host's message for its own irq, never the guest's.
        assert_eq!(Msg::new(address, data), d.msg, "entry {}", d.index);
        assert_ne!(d.msg, hostile[d.index as usize]);
    }
    for i in 0..hostile.len() as u32 {
        let counts: Vec<u64> = descs.iter().map(|d| sys.table().count(d.irq)).collect();
        let (irq, active) = g.vmm.backing(i).unwrap();
        assert!(active);
        let cpu = sys.irq_info(irq).unwrap().effective_cpu;
        assert_eq!(g.vmm.device_raise(i).unwrap(), Some(Injection::Injected));
        // Exactly the host irq of entry i counted one interrupt, on the CPU the host chose.
        for (d, before) in descs.iter().zip(counts) {
            let want = before + u64::from(d.irq == irq);
            assert_eq!(sys.table().count(d.irq), want, "raise {i}, irq {:?}", d.irq);
        }
        assert_eq!(sys.irq_info(irq).unwrap().effective_cpu, cpu);
        // And the guest got the message it programmed.
        assert_eq!(*g.vmm.injected().last().unwrap(), (i, hostile[i as usize]));
    }
}
