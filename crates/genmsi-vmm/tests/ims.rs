//! IMS for a mediated device: guest queues backed by host IMS entries in queue contexts.

use genmsi::{Msg, SlotId};
use genmsi_pci::{Bar, PciAddress};
use genmsi_vmm::{Error, HostAccelerator, HostMachine, Injection, MachineConfig, MediatedDevice};
use std::sync::Arc;

const VBAR: Bar = Bar::new(0);

/// Host queues 16..32 of a 64-queue accelerator, as a 16-vector virtual function with MSI-X
/// enabled and every vector programmed and unmasked.
fn mdev() -> MediatedDevice {
    let machine = Arc::new(HostMachine::new(MachineConfig::remapped(4)).unwrap());
    let accel = HostAccelerator::new(machine, PciAddress::new(0x6A, 1, 0), 64).unwrap();
    let mut m = MediatedDevice::new(accel, 16..32, true).unwrap();
    for v in 0..16u64 {
        m.mmio_write(VBAR, v * 16, &0xFEE0_1000u64.to_le_bytes())
            .unwrap();
        m.mmio_write(VBAR, v * 16 + 8, &(0x60 + v as u32).to_le_bytes())
            .unwrap();
        m.mmio_write(VBAR, v * 16 + 12, &[0; 4]).unwrap();
    }
    m.config_write(3, &[0x80]).unwrap();
    m
}

fn host_ims(m: &MediatedDevice) -> Vec<(u32, Option<u64>)> {
    m.host_machine()
        .sys()
        .descs(m.host().pci().id, SlotId::Secondary)
        .unwrap()
        .iter()
        .map(|d| (d.index, d.cookie))
        .collect()
}

#[test]
fn guest_queues_take_any_free_ims_entry_with_the_queue_as_cookie_and_come_and_go() {
    let mut m = mdev();
    for q in [0, 1, 2] {
        m.create_queue(q).unwrap();
    }
    assert_eq!(host_ims(&m), [(0, Some(16)), (1, Some(17)), (2, Some(18))]);
    m.destroy_queue(1).unwrap();
    m.create_queue(5).unwrap();
    let b = m.backend().queue(5).unwrap();
    assert_eq!(
        (b.index, b.host_queue),
        (1, 21),
        "the lowest free entry, host queue 21"
    );
    assert_eq!(host_ims(&m), [(0, Some(16)), (1, Some(21)), (2, Some(18))]);
    // Every queue delivers its guest vector's message.
    for q in [0, 2, 5] {
        assert_eq!(m.complete(q).unwrap(), Some(Injection::Injected));
        let msg = Msg::new(0xFEE0_1000, 0x60 + q);
        assert_eq!(*m.injected().last().unwrap(), (q, msg));
    }
    // A destroyed queue has no interrupt: its completion is dropped.
    assert_eq!(m.complete(1).unwrap(), None);
    assert_eq!(m.counters().lost, 1);
    assert_eq!(m.host().ops(), 5);
    assert_eq!(m.virt().budget().in_use, 3);
    assert_eq!(m.virt().budget().max_in_use, 3);
}

#[test]
fn grow_and_shrink_while_the_other_queues_keep_delivering() {
    let mut m = mdev();
    m.create_queue(0).unwrap();
    m.create_queue(15).unwrap();
    for round in 0..14u32 {
        m.create_queue(1 + round).unwrap();
        assert_eq!(m.complete(0).unwrap(), Some(Injection::Injected));
        assert_eq!(m.complete(15).unwrap(), Some(Injection::Injected));
        if round % 2 == 1 {
            m.destroy_queue(round).unwrap();
        }
    }
    assert_eq!(m.queues().count(), 16 - 7);
    // 2 + 14 created, 6 destroyed before the last create.
    assert_eq!(m.virt().budget().max_in_use, 10);
    let c = m.counters();
    assert_eq!((c.raised, c.injected, c.lost), (28, 28, 0));
}

#[test]
fn a_masked_guest_vector_pends_and_delivers_on_unmask_with_its_new_message() {
    let mut m = mdev();
    m.create_queue(3).unwrap();
    m.mmio_write(VBAR, 3 * 16 + 12, &[1, 0, 0, 0]).unwrap();
    assert_eq!(m.complete(3).unwrap(), Some(Injection::Latched));
    assert_eq!(m.complete(3).unwrap(), Some(Injection::Coalesced));
    let mut pba = [0u8; 8];
    m.mmio_read(VBAR, 0x1000, &mut pba).unwrap();
    assert_eq!(u64::from_le_bytes(pba), 1 << 3);
    m.mmio_write(VBAR, 3 * 16 + 8, &0x77u32.to_le_bytes())
        .unwrap();
    m.mmio_write(VBAR, 3 * 16 + 12, &[0; 4]).unwrap();
    assert_eq!(m.injected(), [(3, Msg::new(0xFEE0_1000, 0x77))]);
    m.mmio_read(VBAR, 0x1000, &mut pba).unwrap();
    assert_eq!(u64::from_le_bytes(pba), 0, "sent once, pending bit clear");
    // The route follows the new data too.
    assert_eq!(m.complete(3).unwrap(), Some(Injection::Injected));
    assert_eq!(m.injected()[1], (3, Msg::new(0xFEE0_1000, 0x77)));
}

#[test]
fn queue_errors_are_typed() {
    let mut m = mdev();
    m.create_queue(4).unwrap();
    assert_eq!(
        m.create_queue(4),
        Err(Error::Queue {
            queue: 4,
            exists: true
        })
    );
    assert_eq!(
        m.destroy_queue(9),
        Err(Error::Queue {
            queue: 9,
            exists: false
        })
    );
    assert!(matches!(
        m.create_queue(16),
        Err(Error::Budget {
            index: 16,
            budget: 16,
            in_use: 1
        })
    ));
}

#[test]
fn a_queue_created_while_its_vector_is_masked_holds_until_the_guest_unmasks() {
    let mut m = mdev();
    m.mmio_write(VBAR, 6 * 16 + 12, &[1, 0, 0, 0]).unwrap();
    m.create_queue(6).unwrap();
    assert_eq!(m.complete(6).unwrap(), Some(Injection::Latched));
    assert!(m.injected().is_empty());
    m.mmio_write(VBAR, 6 * 16 + 12, &[0; 4]).unwrap();
    assert_eq!(m.injected(), [(6, Msg::new(0xFEE0_1000, 0x66))]);
    // Unmasking a vector whose queue does not exist backs nothing.
    m.mmio_write(VBAR, 7 * 16 + 12, &[1, 0, 0, 0]).unwrap();
    m.mmio_write(VBAR, 7 * 16 + 12, &[0; 4]).unwrap();
    assert_eq!(m.queues().collect::<Vec<_>>(), [6]);
    assert!(m.counters().balanced(m.pending()));
}

#[test]
fn a_guest_disable_keeps_the_queues_and_their_interrupts_are_lost_only_meanwhile() {
    let mut m = mdev();
    m.create_queue(2).unwrap();
    m.config_write(3, &[0x00]).unwrap();
    assert_eq!(m.complete(2).unwrap(), None);
    assert_eq!(m.counters().lost, 1);
    assert_eq!(m.queues().count(), 1, "the queue outlives MSI-X Enable");
    m.config_write(3, &[0x80]).unwrap();
    assert_eq!(m.complete(2).unwrap(), Some(Injection::Injected));
    // A queue destroyed with an interrupt pending: counted lost with it, nothing leaks.
    m.mmio_write(VBAR, 2 * 16 + 12, &[1, 0, 0, 0]).unwrap();
    assert_eq!(m.complete(2).unwrap(), Some(Injection::Latched));
    m.destroy_queue(2).unwrap();
    assert_eq!(host_ims(&m), []);
    let c = m.counters();
    assert_eq!((c.raised, c.injected, c.lost), (3, 1, 2));
    assert!(c.balanced(m.pending()));
}
