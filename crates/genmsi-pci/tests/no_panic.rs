//! No public function of genmsi-pci panics on any argument: PCI addresses from any numbers,
//! and the `pci_*` entry points with any vector range, index and cookie, on a NIC with MSI-X
//! (malformed configuration spaces: `properties.rs` and the `pci_config` fuzz target). After
//! any sequence, freeing everything leaves no irq behind.

mod common;

use common::*;
use genmsi::{AllocOpts, SlotId};
use genmsi_pci::*;
use proptest::prelude::*;

/// Any u32, with the edges drawn often.
fn num() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), Just(0u32), Just(u32::MAX), 0u32..80]
}

#[derive(Clone, Debug)]
enum Call {
    Alloc(u32, u32, bool, bool),
    AllocAt(Option<u32>),
    FreeAt(u32),
    Free,
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (num(), num(), any::<bool>(), any::<bool>())
            .prop_map(|(a, b, c, d)| Call::Alloc(a, b, c, d)),
        proptest::option::of(num()).prop_map(Call::AllocAt),
        num().prop_map(Call::FreeAt),
        Just(Call::Free),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `new` keeps the field widths (5-bit device, 3-bit function); `try_new` refuses what
    /// does not fit; both round-trip through the requester id.
    #[test]
    fn pci_addresses_from_any_numbers(bus in any::<u8>(), device in any::<u8>(), function in any::<u8>()) {
        let a = PciAddress::new(bus, device, function);
        prop_assert_eq!((a.bus(), a.device(), a.function()), (bus, device & 0x1F, function & 7));
        prop_assert_eq!(PciAddress::from_requester_id(a.requester_id()), a);
        let fits = device < 32 && function < 8;
        prop_assert_eq!(PciAddress::try_new(bus, device, function).ok(), fits.then_some(a));
    }

    /// The `pci_*` calls with any arguments: typed results only, nothing leaked.
    #[test]
    fn pci_entry_points_take_any_argument(calls in proptest::collection::vec(call(), 1..24)) {
        let m = Machine::new();
        let (config, bars) = device_memory(nic_config(), nic_bars());
        let dev = pci_add_device(&m.sys, "nic", PciAddress::new(0x3A, 0, 0), config, bars);
        let opts = AllocOpts::default();
        let mut held: Option<IrqVectors> = None;
        for call in &calls {
            match *call {
                Call::Alloc(min, max, msix, msi) => {
                    let types = IrqTypes { msix, msi, ..IrqTypes::ALL };
                    if let Ok(v) = pci_alloc_irq_vectors(&m.sys, &dev, m.remap, min..=max, types, &opts, None) {
                        prop_assert!(held.is_none(), "a second set of vectors while the first is held");
                        held = Some(v);
                    }
                }
                Call::AllocAt(index) => {
                    let _ = pci_msix_can_alloc_dyn(&m.sys, &dev);
                    let _ = pci_msix_alloc_irq_at(&m.sys, &dev, index, &opts);
                }
                Call::FreeAt(index) => {
                    let _ = pci_msix_free_irq(&m.sys, &dev, index);
                    let _ = pci_ims_free_irq(&m.sys, &dev, index);
                    let _ = pci_ims_alloc_irq(&m.sys, &dev, Some(u64::from(index)), &opts);
                }
                Call::Free => {
                    if let Some(v) = held.take() {
                        pci_free_irq_vectors(&m.sys, &dev, &v, None).unwrap();
                    }
                }
            }
        }
        if let Some(v) = held.take() {
            let _ = pci_free_irq_vectors(&m.sys, &dev, &v, None);
        }
        let _ = m.sys.free_all(dev.id, SlotId::Default);
        prop_assert_eq!(m.sys.stats().irqs_allocated, 0);
    }
}
