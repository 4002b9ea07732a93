//! The on-demand rules of a passed-through function, one test each, on the real x86 host
//! (vector domain behind VT-d remapping) with the NIC's MSI-X driven through genmsi-pci.

mod common;

use common::*;
use genmsi::Msg;
use genmsi_pci::Bar;
use genmsi_vmm::{AccessError, Error, Injection, MachineConfig, Mode, PassthroughConfig, Region};

#[test]
fn unmasking_entry_i_allocates_exactly_host_index_i_and_touches_no_other_entry() {
    let mut g = Guest::on_demand();
    g.control(true, false).unwrap();
    g.unmask(0).unwrap();
    g.unmask(1).unwrap();
    assert_eq!(g.host_indices(), [0, 1]);
    let before = g.host_table();
    let ops = g.vmm.host().ops();

    g.unmask(7).unwrap();
    assert_eq!(g.vmm.host().ops(), ops + 1, "one host operation");
    assert_eq!(g.host_indices(), [0, 1, 7]);
    let after = g.host_table();
    for i in (0..VECTORS as usize).filter(|&i| i != 7) {
        assert_eq!(
            after[16 * i..16 * i + 16],
            before[16 * i..16 * i + 16],
            "entry {i}"
        );
    }
    // The host function stays enabled with Function Mask clear: the others keep delivering.
    assert!(g.vmm.host().msix_enabled());
    for i in [0, 1, 7] {
        assert_eq!(g.vmm.device_raise(i).unwrap(), Some(Injection::Injected));
        assert_eq!(*g.vmm.injected().last().unwrap(), (i, guest_msg(i)));
    }
    let stats = g.vmm.unmask_stats();
    assert_eq!((stats.unmasks, stats.touched, stats.max_touched), (3, 3, 1));
}

#[test]
fn enabling_msix_with_entries_unmasked_backs_exactly_those() {
    let mut g = Guest::on_demand();
    g.unmask(3).unwrap();
    g.unmask(5).unwrap();
    assert_eq!(
        g.vmm.host().allocated(),
        0,
        "nothing while the guest has MSI-X disabled"
    );
    assert!(!g.vmm.host().msix_enabled());
    g.control(true, false).unwrap();
    // Vector 0 keeps the host function enabled, reserved and masked; 3 and 5 are live.
    assert_eq!(g.host_indices(), [0, 3, 5]);
    assert_eq!(g.vmm.backing(0).map(|b| b.1), Some(false));
    assert_eq!(g.vmm.device_raise(5).unwrap(), Some(Injection::Injected));
    // Guest entry 0 is masked: the host latched its interrupt in the PBA, the guest sees it.
    assert_eq!(g.vmm.device_raise(0).unwrap(), None);
    assert_eq!(g.pba(), 1);
    g.unmask(0).unwrap();
    assert_eq!(
        g.vmm.backing(0).map(|b| b.1),
        Some(true),
        "activated, not reallocated"
    );
    assert_eq!(g.pba(), 0);
    assert_eq!(g.vmm.counters().injected, 2);
    assert!(g.balanced());
}

#[test]
fn clearing_function_mask_backs_the_unmasked_entries_and_sends_what_latched() {
    let mut g = Guest::on_demand();
    g.control(true, true).unwrap();
    g.unmask(2).unwrap();
    assert_eq!(
        g.host_indices(),
        [0],
        "Function Mask: entry 2 is not live yet"
    );
    assert_eq!(g.vmm.device_raise(2).unwrap(), None);
    assert_eq!(
        g.pba(),
        1 << 2,
        "the host's pending bit shows in the guest's PBA"
    );
    g.control(true, false).unwrap();
    assert_eq!(g.host_indices(), [0, 2]);
    assert_eq!(g.pba(), 0);
    assert_eq!(g.vmm.injected(), [(2, guest_msg(2))]);
    assert_eq!(g.vmm.counters().lost, 0);
}

#[test]
fn a_masked_entry_latches_its_pba_bit_and_delivers_on_unmask() {
    let mut g = Guest::on_demand();
    g.control(true, false).unwrap();
    g.unmask(3).unwrap();
    g.mask(3);
    let ops = g.vmm.host().ops();
    assert_eq!(g.vmm.device_raise(3).unwrap(), Some(Injection::Latched));
    assert_eq!(g.vmm.device_raise(3).unwrap(), Some(Injection::Coalesced));
    assert_eq!(g.pba(), 1 << 3);
    assert_eq!(g.vmm.counters().injected, 0);
    // A new message while masked: the pending interrupt goes out with it.
    g.program(3, Msg::new(0xFEE0_3000, 0x99));
    g.unmask(3).unwrap();
    assert_eq!(g.vmm.host().ops(), ops, "the host vector stayed");
    assert_eq!(g.vmm.injected(), [(3, Msg::new(0xFEE0_3000, 0x99))]);
    assert_eq!(g.pba(), 0);
    let c = g.vmm.counters();
    assert_eq!((c.raised, c.injected, c.coalesced, c.lost), (2, 1, 1, 0));
}

#[test]
fn address_and_data_changes_apply_without_losing_interrupts() {
    let mut g = Guest::on_demand();
    g.control(true, false).unwrap();
    g.unmask(4).unwrap();
    let host_before = g.host_table();
    let ops = g.vmm.host().ops();
    for k in 0..32u32 {
        // The guest rewrites data (and every 4th time the address) of the live entry.
        let at = g.entry(4);
        g.vmm
            .mmio_write(g.bar, at + 8, &(0x50 + k).to_le_bytes())
            .unwrap();
        if k % 4 == 0 {
            let address = 0xFEE0_0000u32 | (k % 8) << 12;
            g.vmm.mmio_write(g.bar, at, &address.to_le_bytes()).unwrap();
        }
        assert_eq!(g.vmm.device_raise(4).unwrap(), Some(Injection::Injected));
        assert_eq!(g.vmm.injected().last().unwrap().1, g.vmm.guest().msg(4));
    }
    assert_eq!(g.vmm.counters().injected, 32);
    assert_eq!(g.vmm.host().ops(), ops, "no host vector touched");
    assert_eq!(g.host_table(), host_before, "nor any host entry");
}

#[test]
fn shrink_frees_long_masked_vectors_and_they_come_back_without_loss() {
    let mut g = Guest::new(PassthroughConfig {
        shrink_after: Some(10),
        record: true,
        ..PassthroughConfig::new(Mode::OnDemand)
    });
    g.control(true, false).unwrap();
    for i in 0..5 {
        g.unmask(i).unwrap();
    }
    g.mask(2);
    g.mask(0);
    g.vmm.advance_clock(5);
    g.mask(3);
    g.vmm.advance_clock(5);
    // 0 and 2 masked for 10 ticks, 3 for 5.
    assert_eq!(g.vmm.shrink().unwrap(), 2);
    assert_eq!(
        g.host_indices(),
        [0, 1, 3, 4],
        "2 freed, 0 only deactivated"
    );
    assert_eq!(g.vmm.backing(0).map(|b| b.1), Some(false));
    assert!(g.vmm.host().msix_enabled());
    // Freed and deactivated entries are masked on the host: their interrupts latch there.
    assert_eq!(g.vmm.device_raise(2).unwrap(), None);
    assert_eq!(g.vmm.device_raise(0).unwrap(), None);
    assert_eq!(g.vmm.device_raise(1).unwrap(), Some(Injection::Injected));
    assert_eq!(g.pba(), 0b101);
    g.unmask(2).unwrap();
    g.unmask(0).unwrap();
    assert_eq!(g.host_indices(), [0, 1, 2, 3, 4]);
    assert_eq!(g.pba(), 0);
    let injected: Vec<u32> = g.vmm.injected().iter().map(|e| e.0).collect();
    assert_eq!(injected, [1, 2, 0]);
    assert_eq!(g.vmm.counters().lost, 0);
    assert!(g.balanced());
}

#[test]
fn the_host_vector_budget_is_enforced_with_a_typed_error() {
    let mut g = Guest::new(PassthroughConfig {
        budget: 3,
        shrink_after: Some(0),
        ..PassthroughConfig::new(Mode::OnDemand)
    });
    g.control(true, false).unwrap();
    g.unmask(1).unwrap();
    g.unmask(2).unwrap();
    assert_eq!(
        g.unmask(5),
        Err(Error::Budget {
            index: 5,
            budget: 3,
            in_use: 3
        })
    );
    // The guest's write happened; entry 5 is live but unbacked: its interrupts latch on the
    // host, none is lost.
    assert!(g.vmm.guest().is_live(5));
    assert_eq!(g.host_indices(), [0, 1, 2]);
    assert_eq!(g.vmm.device_raise(5).unwrap(), None);
    assert_eq!(g.pba(), 1 << 5);
    g.mask(2);
    assert_eq!(g.vmm.shrink().unwrap(), 1);
    g.vmm.sync().unwrap();
    assert_eq!(g.host_indices(), [0, 1, 5]);
    assert_eq!(g.vmm.counters().injected, 1);
    assert_eq!(g.vmm.counters().lost, 0);
    assert_eq!(
        Error::Budget {
            index: 5,
            budget: 3,
            in_use: 3
        }
        .to_string(),
        "entry 5 needs a host vector: budget 3 spent (3 in use)"
    );
}

#[test]
fn disabling_msix_frees_every_host_vector_and_enabling_again_works() {
    let mut g = Guest::on_demand();
    g.control(true, false).unwrap();
    for i in [0, 4, 9] {
        g.unmask(i).unwrap();
    }
    g.control(false, false).unwrap();
    assert_eq!(g.vmm.host().allocated(), 0);
    assert!(!g.vmm.host().msix_enabled());
    assert!(g.host_indices().is_empty());
    // The function may not send while disabled: what it raises is dropped.
    g.vmm.device_raise(4).unwrap();
    assert_eq!(g.vmm.counters().lost, 1);
    g.control(true, false).unwrap();
    assert_eq!(g.host_indices(), [0, 4, 9]);
    assert_eq!(g.vmm.device_raise(9).unwrap(), Some(Injection::Injected));
}

#[test]
fn trapped_access_errors_are_reported_and_change_nothing() {
    let mut g = Guest::on_demand();
    g.control(true, false).unwrap();
    let at = g.entry(2) + 12;
    assert_eq!(
        g.vmm.mmio_write(g.bar, at, &[0, 0]),
        Err(Error::Access(AccessError::BadSize {
            region: Region::Table,
            offset: 2 * 16 + 12,
            len: 2
        }))
    );
    assert!(!g.vmm.guest().is_live(2));
    assert_eq!(g.host_indices(), [0]);
    let pba = u64::from(g.vmm.host().cap().pba.offset);
    assert_eq!(
        g.vmm.mmio_write(g.bar, pba, &[0xFF; 8]),
        Err(Error::Access(AccessError::ReadOnly { offset: 0 }))
    );
    assert!(matches!(
        g.vmm.mmio_write(Bar::new(1), 0, &[0; 4]),
        Err(Error::Access(AccessError::Unclaimed { bar: 1, .. }))
    ));
    assert!(g.vmm.config_write(1, &[0; 2]).is_err());
    let mut control = [0u8; 2];
    g.vmm.config_read(2, &mut control).unwrap();
    assert_eq!(u16::from_le_bytes(control), 0x8000 | (VECTORS as u16 - 1));
}

#[test]
fn running_out_of_host_cpu_vectors_is_a_typed_error_that_changes_nothing() {
    // One CPU without remapping: 204 vectors (0x20..0xEC) for a 256-entry function.
    let machine = MachineConfig {
        cpus: 1,
        irtes: None,
    };
    for mode in [Mode::OnDemand, Mode::Baseline] {
        let mut g = Guest::on(machine, 256, PassthroughConfig::new(mode));
        g.control(true, false).unwrap();
        for i in 0..204 {
            g.unmask(i).unwrap();
        }
        let before = g.host_indices();
        let refused = g.unmask(204).unwrap_err();
        assert!(
            matches!(refused, Error::Host(genmsi::Error::NoVectors { .. })),
            "{mode:?}: {refused}"
        );
        // The baseline had disabled and freed everything: it re-enabled what the guest had.
        assert_eq!(g.host_indices(), before, "{mode:?}");
        for i in [0, 100, 203] {
            assert_eq!(g.vmm.device_raise(i).unwrap(), Some(Injection::Injected));
        }
    }
}
