//! Byte-array functions laid out like real devices: the capability walk, what the MSI and
//! MSI-X stores write (checked byte by byte against the PCI Express Base Specification,
//! 7.7.1 and 7.7.2), the fallback from MSI-X to MSI to INTx, and malformed lists.

mod common;

use common::*;
use genmsi::soft::SOFT_ROOT_BASE;
use genmsi::{AllocOpts, Msg, MsgStore};
use genmsi_pci::cap::{self, CapError, CapId, Capability, ExtCapId, ExtCapability};
use genmsi_pci::msi::MsiCap;
use genmsi_pci::msix::MsixCap;
use genmsi_pci::*;

const NIC: PciAddress = PciAddress::new(0x3A, 0x00, 0);

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// The 16 bytes of an MSI-X entry: address, upper address, data, vector control.
fn entry_bytes(address: u64, data: u32, control: u32) -> Vec<u8> {
    [
        le32(address as u32),
        le32((address >> 32) as u32),
        le32(data),
        le32(control),
    ]
    .concat()
}

#[test]
fn nic_capability_walk() {
    let cfg = ByteConfig::new(nic_config());
    let caps: Vec<_> = cap::capabilities(&cfg).collect();
    let at = |id, offset| Ok(Capability { id, offset });
    assert_eq!(
        caps,
        [
            at(CapId::PowerManagement, 0x40),
            at(CapId::Msi, 0x50),
            at(CapId::MsiX, 0x70),
            at(CapId::PciExpress, 0xA0),
        ]
    );
    let ext: Vec<_> = cap::extended_capabilities(&cfg).collect();
    assert_eq!(
        ext,
        [
            Ok(ExtCapability {
                id: ExtCapId::AdvancedErrorReporting,
                version: 2,
                offset: 0x100
            }),
            Ok(ExtCapability {
                id: ExtCapId::DeviceSerialNumber,
                version: 1,
                offset: 0x150
            }),
        ]
    );
    assert_eq!(cap::find(&cfg, CapId::MsiX), Ok(Some(0x70)));
    assert_eq!(cap::find_extended(&cfg, ExtCapId::Pasid), Ok(None));
    let msix = MsixCap::read(&cfg, &nic_bars(), 0x70).unwrap();
    assert_eq!(msix.table_size, 64);
    assert_eq!((msix.table.bar, msix.table.offset), (Bar::new(3), 0));
    assert_eq!((msix.pba.bar, msix.pba.offset), (Bar::new(5), 0x800));
    assert_eq!((msix.table_len(), msix.pba_len()), (1024, 8));
}

#[test]
fn nic_msix_enable_sequence_and_table_bytes() {
    let m = Machine::new();
    let (config, bars) = device_memory(nic_config(), nic_bars());
    let dev = pci_add_device(&m.sys, "nic", NIC, config.clone(), bars.clone());
    let opts = AllocOpts::default();
    let got = pci_alloc_irq_vectors(&m.sys, &dev, m.remap, 1..=4, IrqTypes::ALL, &opts, None);
    let IrqVectors::Msix(irqs) = got.unwrap() else {
        panic!("the NIC has MSI-X")
    };
    assert_eq!(irqs.len(), 4);
    assert_eq!(
        m.sys
            .desc(dev.id, genmsi::SlotId::Default, 0)
            .unwrap()
            .meta
            .requester_id,
        Some(0x3A00)
    );

    // The order of writes (6.1.4, 7.7.2.2): Enable with Function Mask in one write (0xC03F),
    // then the table masked, INTx disabled, entry 0 programmed, its Mask Bit cleared, and only
    // then Function Mask cleared (0x803F).
    let writes = config.take_writes();
    let control = |w: &common::Write| w.bar.is_none() && w.offset == 0x72;
    let controls: Vec<u32> = writes
        .iter()
        .filter(|w| control(w))
        .map(|w| w.value)
        .collect();
    assert_eq!(controls, [0xC03F, 0x803F]);
    let pos = |f: &dyn Fn(&common::Write) -> bool| writes.iter().position(f).unwrap();
    let enable = pos(&|w| control(w) && w.value == 0xC03F);
    let entry0_data = pos(&|w| w.bar == Some(Bar::new(3)) && w.offset == 8);
    let entry0_unmask = pos(&|w| w.bar == Some(Bar::new(3)) && w.offset == 12 && w.value == 0);
    let unmask_function = pos(&|w| control(w) && w.value == 0x803F);
    assert!(enable < entry0_data && entry0_data < entry0_unmask);
    assert!(entry0_unmask < unmask_function);

    // Configuration bytes: Message Control 0x803F at 0x72, Command bit 10 set (0x04 at 0x05).
    let cfg = config.bytes();
    assert_eq!(&cfg[0x72..0x74], &[0x3F, 0x80]);
    assert_eq!(cfg[0x05] & 0x04, 0x04);
    // Entries 0..4 hold remap entries 0..4 (0xE000_0000 | entry << 4), unmasked; entry 4 and
    // beyond are zero and masked.
    let table = bars.bytes(Bar::new(3), 0..1024);
    for i in 0..4u64 {
        let at = 16 * i as usize;
        assert_eq!(table[at..at + 16], entry_bytes(0xE000_0000 | i << 4, 0, 0));
    }
    for at in (64..1024).step_by(16) {
        assert_eq!(table[at..at + 16], entry_bytes(0, 0, 1));
    }

    // The device raises each vector: it reaches its irq.
    let msix = MsixCap::read(&config, &bars, 0x70).unwrap();
    let mut b = bars.clone();
    for (i, &irq) in irqs.iter().enumerate() {
        let Signal::Sent(msg) = msix.raise(&config, &mut b, i as u32).unwrap() else {
            panic!("vector {i} is live")
        };
        assert_eq!(m.route(&msg), Some(irq));
    }

    // Masked: the PBA bit latches (bit 1 of BAR5 0x800); unmasked: replayed, nothing lost.
    m.sys.mask(irqs[1]).unwrap();
    assert_eq!(bars.bytes(Bar::new(3), 28..32), [1, 0, 0, 0]);
    assert_eq!(msix.raise(&config, &mut b, 1).unwrap(), Signal::Pending);
    assert_eq!(
        bars.bytes(Bar::new(5), 0x800..0x808),
        [2, 0, 0, 0, 0, 0, 0, 0]
    );
    m.sys.unmask(irqs[1]).unwrap();
    let msg = msix.replay(&config, &mut b, 1).unwrap().unwrap();
    assert_eq!(m.route(&msg), Some(irqs[1]));
    assert_eq!(m.sys.table().count(irqs[1]), 2);
    assert_eq!(bars.bytes(Bar::new(5), 0x800..0x808), [0; 8]);

    // Freeing everything masks the table and clears MSI-X Enable and Interrupt Disable.
    pci_free_irq_vectors(&m.sys, &dev, &IrqVectors::Msix(irqs), None).unwrap();
    let cfg = config.bytes();
    assert_eq!(&cfg[0x72..0x74], &[0x3F, 0x00]);
    assert_eq!(cfg[0x05] & 0x04, 0);
    let table = bars.bytes(Bar::new(3), 0..1024);
    for at in (0..1024).step_by(16) {
        assert_eq!(table[at..at + 16], entry_bytes(0, 0, 1));
    }
}

/// The MSI-only controller at 00:1f.2, and its configuration space.
fn sata(m: &Machine) -> (PciDevice<Config, Bars>, Config) {
    let (config, bars) = device_memory(msi64_config(), ByteBars::new());
    let address = PciAddress::new(0, 0x1F, 2);
    (
        pci_add_device(&m.sys, "sata", address, config.clone(), bars),
        config,
    )
}

#[test]
fn msi_64bit_with_per_vector_masking_takes_a_block_of_4() {
    let m = Machine::new();
    let (dev, config) = sata(&m);
    let opts = AllocOpts::default();
    let got = pci_alloc_irq_vectors(&m.sys, &dev, m.remap, 1..=4, IrqTypes::ALL, &opts, None);
    let IrqVectors::Msi(irqs) = got.unwrap() else {
        panic!("the controller has only MSI")
    };
    assert_eq!(irqs.len(), 4);

    // 7.7.1 with the capability at 0x60, 64-bit with masking:
    // control 0x01A7 = 0x0186 | MME 010b (4 vectors, bits 6:4) | Enable.
    // address 0xE000_0000 (remap block at entry 0) at 0x64, upper 0 at 0x68, data 0 at 0x6C
    // (the function puts the index in bits 1:0), Mask Bits 0 at 0x70, Pending Bits 0 at 0x74.
    let cfg = config.bytes();
    assert_eq!(&cfg[0x62..0x64], &[0xA7, 0x01]);
    assert_eq!(
        &cfg[0x64..0x6E],
        &[0x00, 0x00, 0x00, 0xE0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(&cfg[0x70..0x78], &[0; 8]);
    assert_eq!(cfg[0x05] & 0x04, 0x04, "INTx disabled");
    // MSI Enable is written after address and data.
    let writes = config.take_writes();
    let pos = |off: u64| writes.iter().rposition(|w| w.offset == off).unwrap();
    assert!(pos(0x64) < pos(0x62) && pos(0x6C) < pos(0x62));

    let msi = MsiCap::read(&config, 0x60).unwrap();
    let mut c = config.clone();
    for (i, &irq) in irqs.iter().enumerate() {
        let Signal::Sent(msg) = msi.raise(&mut c, i as u32).unwrap() else {
            panic!("vector {i} is live")
        };
        assert_eq!(msg, Msg::new(0xE000_0000, i as u32));
        assert_eq!(m.route(&msg), Some(irq));
    }
    assert_eq!(msi.raise(&mut c, 4).unwrap(), Signal::Disabled);

    // Per-vector mask: bit 2 of Mask Bits; a raise latches bit 2 of Pending Bits.
    m.sys.mask(irqs[2]).unwrap();
    assert_eq!(&config.bytes()[0x70..0x74], &[0x04, 0, 0, 0]);
    assert_eq!(msi.raise(&mut c, 2).unwrap(), Signal::Pending);
    assert_eq!(&config.bytes()[0x74..0x78], &[0x04, 0, 0, 0]);
    m.sys.unmask(irqs[2]).unwrap();
    let msg = msi.replay(&mut c, 2).unwrap().unwrap();
    assert_eq!(m.route(&msg), Some(irqs[2]));
    assert_eq!(m.sys.table().count(irqs[2]), 2, "nothing lost");

    pci_free_irq_vectors(&m.sys, &dev, &IrqVectors::Msi(irqs), None).unwrap();
    let cfg = config.bytes();
    assert_eq!(&cfg[0x62..0x64], &[0x86, 0x01], "Enable and MME cleared");
    assert_eq!(cfg[0x05] & 0x04, 0);
}

#[test]
fn msi_block_needs_a_parent_that_composes_one_falls_back_to_fewer() {
    // Without remapping, each irq gets its own CPU address and its irq number as data: no
    // block of 4 fits MSI, and the convenience halves down to one vector.
    let m = Machine::new();
    let (dev, config) = sata(&m);
    let opts = AllocOpts::default();
    let got = pci_alloc_irq_vectors(&m.sys, &dev, m.root, 1..=4, IrqTypes::MSI, &opts, None);
    let IrqVectors::Msi(irqs) = got.unwrap() else {
        panic!("MSI")
    };
    assert_eq!(irqs.len(), 1);
    assert_eq!(config.bytes()[0x62], 0x87, "MME 000b, Enable");
    // With a minimum of 2 the refusal is the core's, carrying the store's reason.
    pci_free_irq_vectors(&m.sys, &dev, &IrqVectors::Msi(irqs), None).unwrap();
    // The freed number's grace ends (a zero bound), so the numbers start where they did.
    m.sys.advance_grace(0);
    let got = pci_alloc_irq_vectors(&m.sys, &dev, m.root, 2..=4, IrqTypes::MSI, &opts, None);
    assert!(
        matches!(
            got,
            Err(PciError::Core(genmsi::Error::Store { index: 1, .. }))
        ),
        "{got:?}"
    );
    assert_eq!(config.bytes()[0x62], 0x86, "left disabled");
}

#[test]
fn msi_32bit_single_message() {
    let m = Machine::new();
    let (config, bars) = device_memory(msi32_config(), ByteBars::new());
    let dev = pci_add_device(
        &m.sys,
        "rtl",
        PciAddress::new(2, 5, 0),
        config.clone(),
        bars,
    );
    let opts = AllocOpts {
        affinity: Some(genmsi::CpuMask::single(3)),
        ..AllocOpts::default()
    };
    let too_many = pci_alloc_irq_vectors(&m.sys, &dev, m.root, 2..=4, IrqTypes::ALL, &opts, None);
    assert_eq!(
        too_many,
        Err(PciError::TooFewVectors {
            available: 1,
            min: 2
        })
    );
    let got = pci_alloc_irq_vectors(&m.sys, &dev, m.root, 1..=4, IrqTypes::ALL, &opts, None);
    let IrqVectors::Msi(irqs) = got.unwrap() else {
        panic!("MSI")
    };
    // 7.7.1 with the capability at 0x48, 32-bit, no masking: control 0x0001 at 0x4A, address
    // at 0x4C (0xF000_0000 | CPU 3 << 12), data (the irq number) at 0x50, nothing beyond 0x52.
    let cfg = config.bytes();
    assert_eq!(&cfg[0x4A..0x4C], &[0x01, 0x00]);
    assert_eq!(&cfg[0x4C..0x50], &le32(SOFT_ROOT_BASE as u32 | 3 << 12));
    assert_eq!(&cfg[0x50..0x52], &(irqs[0].0 as u16).to_le_bytes());
    assert_eq!(&cfg[0x52..0x100], &[0u8; 0xAE][..]);
    let msi = MsiCap::read(&config, 0x48).unwrap();
    let Signal::Sent(msg) = msi.raise(&mut config.clone(), 0).unwrap() else {
        panic!("live")
    };
    assert_eq!(m.route(&msg), Some(irqs[0]));

    // Masking without Mask Bits is done in software by the core: latched and replayed.
    m.sys.mask(irqs[0]).unwrap();
    assert_eq!(m.route(&msg), None);
    assert!(m.sys.unmask(irqs[0]).unwrap().is_some());
    assert_eq!(m.sys.table().count(irqs[0]), 2);
}

#[test]
fn msi_store_refuses_what_its_registers_cannot_hold() {
    let mut store = MsiStore::new(ByteConfig::new(msi32_config()), 0x48).unwrap();
    store.prepare(0, None).unwrap();
    store.enable().unwrap();
    let wide = Msg::new(0x1_FEE0_0000, 0x41);
    assert!(store.write_msg(0, &wide).is_err());
    assert_eq!(
        store.last_error(),
        Some(MsiError::AddressTooWide {
            address: 0x1_FEE0_0000
        })
    );
    assert!(store.write_msg(0, &Msg::new(0xFEE0_0002, 0)).is_err());
    assert_eq!(
        store.last_error(),
        Some(MsiError::MisalignedAddress {
            address: 0xFEE0_0002
        })
    );
    assert!(store
        .write_msg(0, &Msg::new(0xFEE0_0000, 0x1_0000))
        .is_err());
    assert_eq!(
        store.last_error(),
        Some(MsiError::DataTooWide { data: 0x1_0000 })
    );
    assert!(store.mask(0).is_err());
    assert_eq!(store.last_error(), Some(MsiError::NoPerVectorMask));
    assert_eq!(
        &store.config().bytes()[0x4A..0x52],
        &[0u8; 8],
        "nothing written"
    );
}

#[test]
fn intx_fallback_through_a_router() {
    let m = Machine::new();
    // No capabilities (Status bit 4 clear), INTB#.
    let mut cfg = header(256, 0x1234, 0x0001, 0, 2);
    cfg[0x06] = 0;
    cfg[0x05] = 0x04; // Interrupt Disable left set by firmware.
    let (config, bars) = device_memory(cfg, ByteBars::new());
    let dev = pci_add_device(
        &m.sys,
        "old",
        PciAddress::new(0, 3, 0),
        config.clone(),
        bars,
    );
    let opts = AllocOpts::default();
    let none = pci_alloc_irq_vectors(&m.sys, &dev, m.root, 1..=1, IrqTypes::ALL, &opts, None);
    assert_eq!(none, Err(PciError::NoIntxRouter));
    let mut router = SoftIntx::new(&m.sys, m.root);
    let got = pci_alloc_irq_vectors(
        &m.sys,
        &dev,
        m.root,
        1..=8,
        IrqTypes::ALL,
        &opts,
        Some(&mut router),
    )
    .unwrap();
    let IrqVectors::Intx { irq, pin } = got else {
        panic!("INTx")
    };
    assert_eq!(pin, IntxPin::B);
    // INTB# of device 3 swizzles to INTA#: GSI 16.
    assert_eq!(router.users.get(&16), Some(&(irq, 1)));
    assert_eq!(config.bytes()[0x05] & 0x04, 0, "Interrupt Disable cleared");
    pci_free_irq_vectors(&m.sys, &dev, &got, Some(&mut router)).unwrap();
    assert!(router.users.is_empty());
    assert!(m.sys.irq_info(irq).is_none());
}

#[test]
fn malformed_capability_lists_end_in_typed_errors() {
    let walk = |cfg: Vec<u8>| cap::capabilities(&ByteConfig::new(cfg)).collect::<Vec<_>>();
    let pm = |offset| {
        Ok(Capability {
            id: CapId::PowerManagement,
            offset,
        })
    };

    // A loop: 0x40 -> 0x50 -> 0x40.
    let mut cfg = header(256, 1, 1, 0x40, 0);
    put(&mut cfg, 0x40, &[0x01, 0x50]);
    put(&mut cfg, 0x50, &[0x01, 0x40]);
    assert_eq!(
        walk(cfg),
        [
            pm(0x40),
            pm(0x50),
            Err(CapError::Loop { at: 0x50, to: 0x40 })
        ]
    );

    // A capability pointing at itself.
    let mut cfg = header(256, 1, 1, 0x40, 0);
    put(&mut cfg, 0x40, &[0x01, 0x40]);
    assert_eq!(
        walk(cfg),
        [pm(0x40), Err(CapError::Loop { at: 0x40, to: 0x40 })]
    );

    // Pointers into the header, from the head and from a capability.
    let cfg = header(256, 1, 1, 0x10, 0);
    assert_eq!(
        walk(cfg),
        [Err(CapError::IntoHeader { at: 0x34, to: 0x10 })]
    );
    let mut cfg = header(256, 1, 1, 0x40, 0);
    put(&mut cfg, 0x40, &[0x01, 0x24]);
    assert_eq!(
        walk(cfg),
        [pm(0x40), Err(CapError::IntoHeader { at: 0x40, to: 0x24 })]
    );

    // Reserved pointer bits 1:0 are masked off (7.5.1.1.11): 0x43 means 0x40.
    let mut cfg = header(256, 1, 1, 0x43, 0);
    put(&mut cfg, 0x40, &[0x01, 0x00]);
    assert_eq!(walk(cfg), [pm(0x40)]);

    // A truncated space: the pointer names 0x80 of a 128-byte space.
    let cfg = header(128, 1, 1, 0x80, 0);
    assert_eq!(
        walk(cfg),
        [Err(CapError::Truncated {
            offset: 0x80,
            needed: 2,
            size: 0x80
        })]
    );

    // Extended: 0x100 -> 0x180 -> 0x100 loops; a next offset of 0x0C0 points into the header.
    let ext = |cfg: Vec<u8>| {
        cap::extended_capabilities(&ByteConfig::new(cfg))
            .map(|c| c.map(|c| c.offset))
            .collect::<Vec<_>>()
    };
    let mut cfg = header(4096, 1, 1, 0, 0);
    put(&mut cfg, 0x100, &le32(0x180 << 20 | 1 << 16 | 0x0001));
    put(&mut cfg, 0x180, &le32(0x100 << 20 | 1 << 16 | 0x0003));
    assert_eq!(
        ext(cfg),
        [
            Ok(0x100),
            Ok(0x180),
            Err(CapError::Loop {
                at: 0x180,
                to: 0x100
            })
        ]
    );
    let mut cfg = header(4096, 1, 1, 0, 0);
    put(&mut cfg, 0x100, &le32(0x0C0 << 20 | 1 << 16 | 0x0001));
    assert_eq!(
        ext(cfg),
        [
            Ok(0x100),
            Err(CapError::IntoHeader {
                at: 0x100,
                to: 0xC0
            })
        ]
    );
    // All ones at 0x100 (no function answered): no extended capabilities.
    let mut cfg = header(4096, 1, 1, 0, 0);
    put(&mut cfg, 0x100, &[0xFF; 4]);
    assert_eq!(ext(cfg), []);

    // An MSI capability at 0xF0 claiming 64-bit and masking needs 0x18 bytes: past 0x100.
    let mut cfg = header(256, 1, 1, 0xF0, 0);
    put(&mut cfg, 0xF0, &[0x05, 0x00, 0x80, 0x01]);
    assert_eq!(
        MsiStore::new(ByteConfig::new(cfg.clone()), 0xF0).unwrap_err(),
        MsiError::Cap(CapError::Truncated {
            offset: 0xF0,
            needed: 0x18,
            size: 0x100
        })
    );

    // The conveniences report the walk's error.
    let m = Machine::new();
    let mut cfg = header(256, 1, 1, 0x40, 0);
    put(&mut cfg, 0x40, &[0x01, 0x40]);
    let (config, bars) = device_memory(cfg, ByteBars::new());
    let dev = pci_add_device(&m.sys, "bad", NIC, config, bars);
    let got = pci_alloc_irq_vectors(
        &m.sys,
        &dev,
        m.root,
        1..=1,
        IrqTypes::MSI,
        &AllocOpts::default(),
        None,
    );
    assert_eq!(
        got,
        Err(PciError::Cap(CapError::Loop { at: 0x40, to: 0x40 }))
    );
}

#[test]
fn malformed_msix_regions_are_refused() {
    let with = |table: u32, pba: u32| {
        let mut cfg = nic_config();
        put(&mut cfg, 0x74, &le32(table));
        put(&mut cfg, 0x78, &le32(pba));
        MsixCap::read(&ByteConfig::new(cfg), &nic_bars(), 0x70)
    };
    assert_eq!(with(0x7, 0x805), Err(MsixError::ReservedBir { bir: 7 }));
    // BAR1 is not implemented; a table at 0xC08 of BAR3 ends 8 bytes past its 4 KiB.
    assert_eq!(
        with(0x1, 0x805),
        Err(MsixError::RegionOutsideBar {
            bar: Bar::new(1),
            offset: 0,
            len: 1024
        })
    );
    assert_eq!(
        with(0xC0B, 0x805),
        Err(MsixError::RegionOutsideBar {
            bar: Bar::new(3),
            offset: 0xC08,
            len: 1024
        })
    );
    // The PBA inside the table.
    assert_eq!(
        with(0x3, 0x203),
        Err(MsixError::Overlap { bar: Bar::new(3) })
    );
    assert!(with(0x3, 0x403).is_ok(), "right after the table is fine");
    assert!(
        with(0xC03, 0x805).is_ok(),
        "a table ending exactly at the BAR's end fits"
    );
}

/// The same INTB# function behind a PCIe-to-PCI bridge at 00:09.0 (secondary bus 1), at
/// 01:03.0: the bridge rotates its pin by 3 to INTA# at slot 9, which the router sends to GSI
/// 16 + (9 + 0) % 4 = 17; the router is handed the root slot and its pin.
#[test]
fn intx_behind_a_bridge_is_swizzled_to_the_root_slot() {
    let m = Machine::new();
    let mut cfg = header(256, 0x1234, 0x0001, 0, 2);
    cfg[0x06] = 0;
    let (config, bars) = device_memory(cfg, ByteBars::new());
    let bridges = [Bridge {
        address: PciAddress::new(0, 9, 0),
        kind: BridgeKind::Express(PortType::PcieToPci),
        secondary: 1,
        subordinate: 1,
    }];
    let at = PciAddress::new(1, 3, 0);
    let dev = pci_add_device_at(&m.sys, "old", at, &bridges[..], config, bars).unwrap();
    assert_eq!(dev.intx.root, PciAddress::new(0, 9, 0));
    let mut router = SoftIntx::new(&m.sys, m.root);
    let opts = AllocOpts::default();
    let got = pci_alloc_irq_vectors(
        &m.sys,
        &dev,
        m.root,
        1..=1,
        IrqTypes::ALL,
        &opts,
        Some(&mut router),
    )
    .unwrap();
    let IrqVectors::Intx { irq, pin } = got else {
        panic!("INTx")
    };
    assert_eq!(pin, IntxPin::B, "the function's own pin");
    assert_eq!(router.users.get(&17), Some(&(irq, 1)));
    pci_free_irq_vectors(&m.sys, &dev, &got, Some(&mut router)).unwrap();
    assert!(router.users.is_empty());
    // A cycle of bridges registers nothing.
    let cycle = [
        Bridge {
            secondary: 1,
            address: PciAddress::new(2, 0, 0),
            ..bridges[0]
        },
        Bridge {
            secondary: 2,
            address: PciAddress::new(1, 0, 0),
            ..bridges[0]
        },
    ];
    let (config, bars) = device_memory(header(256, 0x1234, 0x0001, 0, 2), ByteBars::new());
    assert_eq!(
        pci_add_device_at(&m.sys, "lost", at, &cycle[..], config, bars).err(),
        Some(TopologyError::Loop { bus: 1 })
    );
}
