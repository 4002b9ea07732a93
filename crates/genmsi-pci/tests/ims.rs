//! IMS: per-device domains in the secondary slot over device-defined stores, next to MSI-X in
//! the default slot. After every step the store's memory is compared, byte for byte, with
//! what the descriptors say it must hold.

mod common;

use common::*;
use genmsi::{AllocOpts, Error, Msg, MsiDesc, SlotId};
use genmsi_pci::ims::{ImsEntry, ImsTable, QueueContexts};
use genmsi_pci::*;

const S: SlotId = SlotId::Secondary;
const BAR0: Bar = Bar::new(0);
const TABLE_AT: usize = 0x8000;
const ENTRIES: u32 = 2048;

/// A small deterministic generator for the order of frees.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The table bytes the descriptors require: a live entry holds its message, unmasked unless
/// its user masked it, tagged with its cookie as PASID; every other entry is zero and masked.
fn expected_table(descs: &[MsiDesc]) -> Vec<u8> {
    let mut entries = vec![ImsEntry::cleared(None); ENTRIES as usize];
    for d in descs {
        let e = ImsEntry::cleared(d.cookie.map(|c| c as u32));
        entries[d.index as usize] = ImsEntry {
            msg: d.msg,
            ..e.with_masked(d.masked || !d.active)
        };
    }
    entries
        .iter()
        .flat_map(|e| e.to_dwords())
        .flat_map(u32::to_le_bytes)
        .collect()
}

fn check_table(m: &Machine, dev: genmsi::DeviceId, bars: &Bars) {
    let descs = m.sys.descs(dev, S).unwrap();
    let memory = bars.bytes(BAR0, TABLE_AT..TABLE_AT + 16 * ENTRIES as usize);
    assert!(
        memory == expected_table(&descs),
        "table differs from the descriptors"
    );
}

#[test]
fn ims_table_2048_entries_allocated_half_freed_in_random_order_reallocated() {
    let m = Machine::new();
    let (config, bars) = device_memory(nic_config(), nic_bars());
    let dev = pci_add_device(
        &m.sys,
        "accel",
        PciAddress::new(0x6A, 1, 0),
        config,
        bars.clone(),
    );
    let opts = AllocOpts::default();
    // MSI-X in the default slot keeps delivering throughout.
    let got = pci_alloc_irq_vectors(&m.sys, &dev, m.remap, 2..=2, IrqTypes::MSIX, &opts, None);
    let IrqVectors::Msix(msix_irqs) = got.unwrap() else {
        panic!("MSI-X")
    };

    let table = ImsTable {
        bar: BAR0,
        offset: TABLE_AT as u64,
        entries: ENTRIES,
    };
    let store = ImsTableStore::new(bars.clone(), table).unwrap();
    pci_create_ims_domain(&m.sys, &dev, Box::new(store), m.remap).unwrap();
    check_table(&m, dev.id, &bars);

    for i in 0..ENTRIES {
        let (index, _) =
            pci_ims_alloc_irq(&m.sys, &dev, Some(0x100 + u64::from(i)), &opts).unwrap();
        assert_eq!(index, i);
        check_table(&m, dev.id, &bars);
    }
    // Entry 0 by hand: the remap entry after MSI-X's two, PASID 0x100, unmasked:
    // address 0xE000_0020, data 0, control 0x0010_0008 (PASID << 12 | PASID Enable).
    assert_eq!(
        bars.bytes(BAR0, TABLE_AT..TABLE_AT + 16),
        [0x20, 0x00, 0x00, 0xE0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0x10, 0x00]
    );
    assert_eq!(
        pci_ims_alloc_irq(&m.sys, &dev, None, &opts),
        Err(PciError::Core(Error::StoreFull { limit: ENTRIES }))
    );

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut order: Vec<u32> = (0..ENTRIES).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let mut freed = order[..ENTRIES as usize / 2].to_vec();
    for &index in &freed {
        pci_ims_free_irq(&m.sys, &dev, index).unwrap();
        check_table(&m, dev.id, &bars);
    }
    freed.sort_unstable();
    for (n, &expect) in freed.iter().enumerate() {
        let cookie = Some(0x8_0000 + n as u64);
        let (index, irq) = pci_ims_alloc_irq(&m.sys, &dev, cookie, &opts).unwrap();
        assert_eq!(index, expect, "the lowest free index");
        assert_eq!(m.sys.irq_info(irq).unwrap().desc.cookie, cookie);
        check_table(&m, dev.id, &bars);
    }

    // The device raises a few entries; a masked one latches Pending and is replayed.
    let mut b = bars.clone();
    for index in [0, 777, 2047] {
        let Signal::Sent(msg) = table.raise(&mut b, index).unwrap() else {
            panic!("entry {index} is live")
        };
        let desc = m.sys.desc(dev.id, S, index).unwrap();
        assert_eq!(m.route(&msg), Some(desc.irq));
    }
    let irq = m.sys.desc(dev.id, S, 5).unwrap().irq;
    m.sys.mask(irq).unwrap();
    check_table(&m, dev.id, &bars);
    assert_eq!(table.raise(&mut b, 5).unwrap(), Signal::Pending);
    assert!(table.read_entry(&bars, 5).unwrap().pending());
    m.sys.unmask(irq).unwrap();
    let msg = table.replay(&mut b, 5).unwrap().unwrap();
    assert_eq!(m.route(&msg), Some(irq));
    assert_eq!(m.sys.table().count(irq), 1);

    // Shrink and grow.
    assert_eq!(m.sys.shrink_to(dev.id, S, 1000).unwrap(), 1048);
    check_table(&m, dev.id, &bars);
    assert_eq!(m.sys.grow_to(dev.id, S, 1500, &opts).unwrap().len(), 500);
    check_table(&m, dev.id, &bars);

    // MSI-X was never disturbed.
    let msix = genmsi_pci::msix::MsixCap::read(&dev.config, &bars, 0x70).unwrap();
    for (i, &irq) in msix_irqs.iter().enumerate() {
        let Signal::Sent(msg) = msix.raise(&dev.config, &mut b, i as u32).unwrap() else {
            panic!("MSI-X vector {i} is live")
        };
        assert_eq!(m.route(&msg), Some(irq));
    }
    // A PASID beyond 20 bits is refused and changes nothing.
    let too_wide = pci_ims_alloc_irq(&m.sys, &dev, Some(1 << 20), &opts);
    assert!(matches!(too_wide, Err(PciError::Core(Error::Store { .. }))));
    check_table(&m, dev.id, &bars);
}

const QUEUES: QueueContexts = QueueContexts {
    bar: BAR0,
    base: 0x1000,
    stride: 64,
    queues: 32,
    interrupt: 0x20,
};

/// The interrupt block of `queue`: (message, control).
fn block(bars: &Bars, queue: u32) -> (Msg, u32) {
    let q = QUEUES.read(bars, queue).unwrap();
    (q.msg, q.control)
}

#[test]
fn queue_store_keeps_messages_in_queue_contexts() {
    let m = Machine::new();
    let (config, bars) = device_memory(nic_config(), nic_bars());
    // The queues' own state (ring addresses, head, tail): a pattern the store must not touch.
    let contexts = QUEUES.base as usize..(QUEUES.base + 32 * QUEUES.stride) as usize;
    bars.mem.lock().unwrap().bytes_mut(BAR0).unwrap()[contexts.clone()].fill(0xA5);
    let dev = pci_add_device(
        &m.sys,
        "nvme",
        PciAddress::new(5, 0, 0),
        config,
        bars.clone(),
    );
    let store = QueueStore::new(bars.clone(), QUEUES).unwrap();
    pci_create_ims_domain(&m.sys, &dev, Box::new(store), m.remap).unwrap();
    let opts = AllocOpts::default();

    let mut got = Vec::new();
    for queue in [5u64, 17, 3] {
        got.push(pci_ims_alloc_irq(&m.sys, &dev, Some(queue), &opts).unwrap());
    }
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 2]);
    for (&(index, irq), queue) in got.iter().zip([5, 17, 3]) {
        let desc = m.sys.desc(dev.id, S, index).unwrap();
        assert_eq!(desc.irq, irq);
        // Interrupt Enable (bit 0) set, the message in place.
        assert_eq!(block(&bars, queue), (desc.msg, 1));
        let mut b = bars.clone();
        let Signal::Sent(msg) = QUEUES.raise(&mut b, queue).unwrap() else {
            panic!("queue {queue} signals")
        };
        assert_eq!(m.route(&msg), Some(irq));
    }
    assert_eq!(block(&bars, 6), (Msg::ZERO, 0));

    // Refusals: the queue is taken, no queue id, no such queue. Nothing changes.
    let before = bars.bytes(BAR0, contexts.clone());
    let refused = [Some(17), None, Some(99)];
    let reasons: Vec<_> = refused
        .iter()
        .map(|&cookie| {
            assert!(pci_ims_alloc_irq(&m.sys, &dev, cookie, &opts).is_err());
            m.sys
                .with_store::<QueueStore<Bars>, _>(dev.id, S, |s| s.last_error())
                .unwrap()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            Some(ImsError::QueueBusy {
                queue: 17,
                index: 1
            }),
            Some(ImsError::NoQueue { index: 3 }),
            Some(ImsError::QueueOutOfRange {
                queue: 99,
                queues: 32
            }),
        ]
    );
    assert_eq!(bars.bytes(BAR0, contexts.clone()), before);

    // Free queue 17's interrupt, bind queue 9 at the freed index, shrink to one.
    pci_ims_free_irq(&m.sys, &dev, 1).unwrap();
    assert_eq!(block(&bars, 17), (Msg::ZERO, 0));
    let (index, _) = pci_ims_alloc_irq(&m.sys, &dev, Some(9), &opts).unwrap();
    assert_eq!(index, 1);
    assert_eq!(block(&bars, 9).1, 1);
    assert_eq!(m.sys.shrink_to(dev.id, S, 1).unwrap(), 2);
    for queue in [9, 3, 17] {
        assert_eq!(block(&bars, queue), (Msg::ZERO, 0));
    }
    assert_eq!(block(&bars, 5).1, 1, "index 0 stays");

    // Outside the interrupt blocks every byte of every context is as the queues left it.
    let bytes = bars.bytes(BAR0, contexts);
    for (i, &b) in bytes.iter().enumerate() {
        let in_block = (0x20..0x30).contains(&(i % 64));
        assert!(in_block || b == 0xA5, "context byte {i:#x} was written");
    }
}
