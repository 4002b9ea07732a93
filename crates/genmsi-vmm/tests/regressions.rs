//! Regression tests for bugs found in review: each failed before its fix.

use genmsi_pci::{Bar, PciAddress};
use genmsi_vmm::*;
use std::sync::Arc;

fn vmm(shrink: Option<u64>) -> PassthroughMsix {
    let machine = Arc::new(HostMachine::new(MachineConfig::remapped(4)).unwrap());
    let nic = HostNic::new(machine, PciAddress::new(0x3A, 0, 0), 8).unwrap();
    let config = PassthroughConfig {
        shrink_after: shrink,
        record: true,
        ..PassthroughConfig::new(Mode::OnDemand)
    };
    PassthroughMsix::new(nic, config).unwrap()
}

/// Programs every entry's address and data; returns the table BAR and the entry offsets.
fn program(v: &mut PassthroughMsix) -> (Bar, impl Fn(u32) -> u64) {
    let table = v.host().cap().table;
    let at = move |i: u32| u64::from(table.offset) + u64::from(i) * 16;
    for i in 0..8 {
        v.mmio_write(table.bar, at(i), &0xFEE0_1000u32.to_le_bytes())
            .unwrap();
        v.mmio_write(table.bar, at(i) + 8, &(0x40 + i).to_le_bytes())
            .unwrap();
    }
    (table.bar, at)
}

fn guest_pba(v: &PassthroughMsix) -> u64 {
    let p = v.host().cap().pba;
    let mut d = [0u8; 8];
    v.mmio_read(p.bar, u64::from(p.offset), &mut d).unwrap();
    u64::from_le_bytes(d)
}

/// One pending bit visible to the guest is one interrupt, even when both the emulated PBA and
/// the host's PBA hold it (the host vector was freed by shrink in between).
#[test]
fn one_visible_pending_bit_injects_once() {
    let mut v = vmm(Some(1));
    let (bar, at) = program(&mut v);
    v.config_write(3, &[0x80]).unwrap();
    v.mmio_write(bar, at(3) + 12, &[0; 4]).unwrap();
    v.mmio_write(bar, at(3) + 12, &[1, 0, 0, 0]).unwrap();
    v.device_raise(3).unwrap();
    v.advance_clock(5);
    assert_eq!(v.shrink().unwrap(), 1);
    v.device_raise(3).unwrap();
    assert_eq!(guest_pba(&v), 1 << 3, "one bit");
    let before = v.counters().injected;
    v.mmio_write(bar, at(3) + 12, &[0; 4]).unwrap();
    assert_eq!(v.counters().injected - before, 1);
    assert!(v.counters().balanced(v.pending()), "{:?}", v.counters());
}

/// After MSI-X is disabled and enabled again with entry 0 live, what the function latched for
/// entry 0 is delivered, like for every other entry.
#[test]
fn entry_zero_latched_before_a_re_enable_is_delivered() {
    let mut v = vmm(None);
    let (bar, at) = program(&mut v);
    v.config_write(3, &[0x80]).unwrap();
    v.device_raise(0).unwrap();
    assert_eq!(guest_pba(&v), 1);
    v.config_write(3, &[0x00]).unwrap();
    v.mmio_write(bar, at(0) + 12, &[0; 4]).unwrap();
    let before = v.counters().injected;
    v.config_write(3, &[0x80]).unwrap();
    assert_eq!(v.counters().injected - before, 1, "{:?}", v.counters());
    assert_eq!(v.pending(), 0);
    assert!(v.counters().balanced(v.pending()));
}

/// The host delivered by irq number (`lookup` + `handle`): an interrupt accepted by the CPU
/// side before its irq was freed, and handled after another device got the same number,
/// counted for that device. It is now handled through the allocation the vector mapped and
/// comes out stale (spurious), with the number's new owner untouched.
#[test]
fn an_interrupt_of_a_freed_irq_is_never_the_next_owners() {
    for irtes in [None, Some(256)] {
        let machine = Arc::new(HostMachine::new(MachineConfig { cpus: 4, irtes }).unwrap());
        let mut a = HostNic::new(machine.clone(), PciAddress::new(0x3A, 0, 0), 8).unwrap();
        let mut b = HostNic::new(machine.clone(), PciAddress::new(0x3B, 0, 0), 8).unwrap();
        let old = a.enable(2, true).unwrap()[1];
        b.enable(1, true).unwrap();
        let Raise::Sent(msg) = a.raise(1).unwrap() else {
            panic!("vector 1 of the first device is live")
        };
        let accepted = machine
            .accept(&msg, a.pci().address.requester_id())
            .expect("the write names an irq");
        assert_eq!(accepted.irq.irq, old);
        // Freed while the interrupt is between the vector table and the handler; the number
        // goes to the other device at once (lowest free first).
        a.free(1).unwrap();
        let new = b.alloc_at(1).unwrap();
        assert_eq!(new, old, "the number is reused: the window is real");
        assert_eq!(machine.handle(accepted), Arrival::Spurious, "{irtes:?}");
        assert_eq!(machine.sys().table().count(new), 0, "{irtes:?}");
        let Raise::Sent(msg) = b.raise(1).unwrap() else {
            panic!("vector 1 of the second device is live")
        };
        assert_eq!(b.deliver(&msg), Arrival::Handled(new));
        assert_eq!(machine.sys().table().count(new), 1);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// A host machine of any size: built, or refused with the core's typed error beyond
    /// MAX_CPUS (it aborted on allocation with 2^32 - 1 CPUs); an IRTE count past VT-d's
    /// largest table is clamped.
    #[test]
    fn a_host_machine_of_any_size_is_built_or_refused(
        cpus in proptest::prop_oneof![0u32..64, proptest::prelude::Just(u32::MAX), proptest::prelude::Just(genmsi::MAX_CPUS + 1)],
        irtes in proptest::option::of(proptest::prop_oneof![0u32..512, proptest::prelude::Just(u32::MAX)]),
    ) {
        match HostMachine::new(MachineConfig { cpus, irtes }) {
            Ok(m) => {
                proptest::prop_assert!((1..=genmsi::MAX_CPUS).contains(&cpus));
                proptest::prop_assert_eq!(m.sys().online_cpus().weight(), cpus);
            }
            Err(e) => {
                proptest::prop_assert!(cpus == 0 || cpus > genmsi::MAX_CPUS);
                proptest::prop_assert!(
                    matches!(e, Error::Host(genmsi::Error::InvalidConfig { .. })),
                    "{:?}",
                    e
                );
            }
        }
    }
}

/// `MediatedDevice::over(backend, u32::MAX)` panicked with a multiply overflow; its siblings
/// took any size. Every size is checked before arithmetic, with a typed error.
#[test]
fn constructors_check_sizes_before_arithmetic() {
    let machine = Arc::new(HostMachine::new(MachineConfig::remapped(4)).unwrap());
    let accel =
        |queues: u32| HostAccelerator::new(machine.clone(), PciAddress::new(0x6A, 1, 0), queues);
    for queues in [0, ims::MAX_QUEUES + 1, u32::MAX] {
        assert_eq!(accel(queues).err(), Some(Error::Layout { vectors: queues }));
    }
    let backend = || ImsBackend::new(accel(64).unwrap(), 0..64, false).unwrap();
    for vectors in [0, MsixLayout::MAX_VECTORS + 1, u32::MAX] {
        assert_eq!(
            MediatedDevice::over(backend(), vectors).err(),
            Some(Error::Layout { vectors })
        );
    }
    assert!(MediatedDevice::over(backend(), MsixLayout::MAX_VECTORS).is_ok());
    for vectors in [0, 2049, u32::MAX] {
        let nic = HostNic::new(machine.clone(), PciAddress::new(0x3A, 0, 0), vectors);
        assert_eq!(nic.err(), Some(Error::Layout { vectors }));
    }
}
