//! Dynamic MSI-X: single vectors allocated and freed after enable, while the other vectors
//! keep firing from another thread. Every write is recorded: only the entry concerned
//! changes, the control register is not touched, and every interrupt raised is delivered.

mod common;

use common::*;
use genmsi::{AllocOpts, Error, Irq, SlotId, Unsupported};
use genmsi_pci::msix::MsixCap;
use genmsi_pci::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const TABLE: Bar = Bar::new(3);
const ENTRY: usize = 16;

/// Checks one step: the recorded writes all fall in entry `index` of the table, and every
/// other entry's bytes are as before.
fn check_only_entry_changed(bars: &Bars, before: &[u8], index: usize) {
    let writes = bars.take_writes();
    assert!(!writes.is_empty());
    for w in &writes {
        assert_eq!(w.bar, Some(TABLE), "no config or PBA write: {w:?}");
        assert_eq!(
            w.offset as usize / ENTRY,
            index,
            "write outside entry {index}: {w:?}"
        );
    }
    let after = bars.bytes(TABLE, 0..64 * ENTRY);
    for i in (0..64).filter(|&i| i != index) {
        let r = i * ENTRY..(i + 1) * ENTRY;
        assert_eq!(after[r.clone()], before[r], "entry {i} changed");
    }
}

#[test]
fn allocate_9_free_2_allocate_2_while_0_1_3_keep_firing() {
    let m = Machine::new();
    let (config, bars) = device_memory(nic_config(), nic_bars());
    let dev = pci_add_device(
        &m.sys,
        "nic",
        PciAddress::new(0x3A, 0, 0),
        config.clone(),
        bars.clone(),
    );
    let opts = AllocOpts::default();
    let got = pci_alloc_irq_vectors(&m.sys, &dev, m.remap, 4..=4, IrqTypes::MSIX, &opts, None);
    let IrqVectors::Msix(irqs) = got.unwrap() else {
        panic!("MSI-X")
    };
    assert!(pci_msix_can_alloc_dyn(&m.sys, &dev));
    let msix = MsixCap::read(&config, &bars, 0x70).unwrap();
    let firing = [0u32, 1, 3];
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    bars.take_writes();

    let raised = std::thread::scope(|s| {
        let device = s.spawn(|| {
            let mut raised = [0u64; 4];
            let mut b = bars.clone();
            while !stop.load(Ordering::Acquire) {
                for &i in &firing {
                    let Signal::Sent(msg) = msix.raise(&config, &mut b, i).unwrap() else {
                        panic!("vector {i} was masked or disabled")
                    };
                    assert_eq!(m.route(&msg), Some(irqs[i as usize]), "vector {i}");
                    raised[i as usize] += 1;
                }
                rounds.fetch_add(1, Ordering::Release);
            }
            raised
        });
        // Each step waits until the device has fired some more, so that it runs in between.
        let settle = || {
            let from = rounds.load(Ordering::Acquire);
            while rounds.load(Ordering::Acquire) < from + 50 {
                std::thread::yield_now();
            }
        };
        let mut b = bars.clone();
        let mut step = |f: &dyn Fn() -> Option<Irq>, index: usize| {
            settle();
            let before = bars.bytes(TABLE, 0..64 * ENTRY);
            let irq = f();
            check_only_entry_changed(&bars, &before, index);
            let entry = msix.read_entry(&bars, index as u32).unwrap();
            match irq {
                Some(irq) => {
                    assert!(!entry.masked());
                    let desc = m.sys.irq_info(irq).unwrap().desc;
                    assert_eq!(entry.msg, desc.msg);
                    let Signal::Sent(msg) = msix.raise(&config, &mut b, index as u32).unwrap()
                    else {
                        panic!("new vector {index} is live")
                    };
                    assert_eq!(m.route(&msg), Some(irq));
                }
                None => {
                    assert!(entry.masked());
                    assert_eq!(entry.msg, genmsi::Msg::ZERO);
                }
            }
            settle();
        };

        step(
            &|| {
                Some(
                    pci_msix_alloc_irq_at(&m.sys, &dev, Some(9), &opts)
                        .unwrap()
                        .1,
                )
            },
            9,
        );
        step(
            &|| {
                pci_msix_free_irq(&m.sys, &dev, 2).unwrap();
                None
            },
            2,
        );
        assert_eq!(m.sys.handle(irqs[2], 0), genmsi::Delivery::Spurious);
        step(
            &|| {
                Some(
                    pci_msix_alloc_irq_at(&m.sys, &dev, Some(2), &opts)
                        .unwrap()
                        .1,
                )
            },
            2,
        );
        stop.store(true, Ordering::Release);
        device.join().unwrap()
    });

    // Nothing lost: every raise of 0, 1 and 3 was handled by its irq.
    for &i in &firing {
        assert!(raised[i as usize] >= 150);
        assert_eq!(m.sys.table().count(irqs[i as usize]), raised[i as usize]);
    }
    // MSI-X stayed enabled, Function Mask clear, PBA empty.
    assert_eq!(&config.bytes()[0x72..0x74], &[0x3F, 0x80]);
    assert_eq!(bars.bytes(Bar::new(5), 0x800..0x808), [0; 8]);
    let indices: Vec<u32> = m
        .sys
        .descs(dev.id, SlotId::Default)
        .unwrap()
        .iter()
        .map(|d| d.index)
        .collect();
    assert_eq!(indices, [0, 1, 2, 3, 9]);
    // Any free index: the lowest, 4.
    assert_eq!(
        pci_msix_alloc_irq_at(&m.sys, &dev, None, &opts).unwrap().0,
        4
    );
}

#[test]
fn a_function_without_dynamic_msix_says_so_and_refuses() {
    let m = Machine::new();
    let (config, bars) = device_memory(nic_config(), nic_bars());
    let dev = pci_add_device(
        &m.sys,
        "nic",
        PciAddress::new(1, 0, 0),
        config.clone(),
        bars.clone(),
    );
    let store = MsixStore::new(config, bars, 0x70)
        .unwrap()
        .without_dynamic();
    m.sys
        .create_device_domain(dev.id, SlotId::Default, Box::new(store), m.remap)
        .unwrap();
    let opts = AllocOpts::default();
    m.sys
        .alloc_range(dev.id, SlotId::Default, 0, 4, &opts)
        .unwrap();
    assert!(!pci_msix_can_alloc_dyn(&m.sys, &dev));
    assert_eq!(
        pci_msix_alloc_irq_at(&m.sys, &dev, Some(9), &opts),
        Err(PciError::Core(Error::NotSupported(
            Unsupported::AllocAfterEnable
        )))
    );

    // A function on MSI has no MSI-X to grow.
    let (config, bars) = device_memory(msi64_config(), ByteBars::new());
    let sata = pci_add_device(&m.sys, "sata", PciAddress::new(2, 0, 0), config, bars);
    pci_alloc_irq_vectors(&m.sys, &sata, m.remap, 1..=1, IrqTypes::ALL, &opts, None).unwrap();
    assert!(!pci_msix_can_alloc_dyn(&m.sys, &sata));
    assert_eq!(
        pci_msix_alloc_irq_at(&m.sys, &sata, Some(1), &opts),
        Err(PciError::NotMsix { device: sata.id })
    );
}
