//! The real guest on KVM: genmsi-vmm's MSI-X emulation and KVM backend under a guest of the
//! project's own. Every test skips, saying so, only when `/dev/kvm` cannot be opened.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use genmsi_kvm::guest::{vector_of, Command};
use genmsi_kvm::harness::{FunctionConfig, Harness, HarnessConfig};
use genmsi_pci::Bar;
use genmsi_vmm::kvm::Fire;
use genmsi_vmm::{Error, MsiBackend, Strategy};
use std::time::Duration;

mod common;
use common::expect_count;

fn boot(functions: Vec<FunctionConfig>) -> Option<Harness> {
    common::kvm_or_skip()?;
    let h = Harness::boot(&HarnessConfig {
        functions,
        grow: false,
    })
    .expect("boot");
    // The guest has enabled MSI-X once it has reported its entries and serves commands.
    h.command(Command::ReadPending, 0, 0).expect("guest up");
    Some(h)
}

fn on_demand(entries: u32, budget: u32) -> FunctionConfig {
    FunctionConfig {
        entries,
        budget,
        strategy: Strategy::OnDemand,
    }
}

#[test]
fn an_unmasked_entry_gets_exactly_one_route_and_delivers() {
    let Some(h) = boot(vec![on_demand(64, 64)]) else {
        return;
    };
    assert!(h.function(0).virt().emul().control().enabled());
    assert_eq!(
        h.routes().lock().unwrap().len(),
        0,
        "nothing before an unmask"
    );
    h.command(Command::Unmask, 5, 0).unwrap();
    assert_eq!(h.routes().lock().unwrap().len(), 1);
    assert_eq!(h.function(0).virt().budget().in_use, 1);
    assert_eq!(h.triggers(0).fire(5), Fire::Sent);
    expect_count(&h, vector_of(5), 1);
    assert!(h.function(0).errors().is_empty());
    h.stop().unwrap();
}

#[test]
fn mask_fire_unmask_delivers_the_pending_interrupt_exactly_once() {
    let Some(h) = boot(vec![on_demand(64, 64)]) else {
        return;
    };
    let v = vector_of(9);
    h.command(Command::Unmask, 9, 0).unwrap();
    assert_eq!(h.triggers(0).fire(9), Fire::Sent);
    expect_count(&h, v, 1);
    h.command(Command::Mask, 9, 0).unwrap();
    assert_eq!(h.command(Command::ReadPending, 9, 0).unwrap(), 0);
    // Three raises while masked: held in the eventfd, one pending bit (PCIe 6.1.4.5).
    for _ in 0..3 {
        assert_eq!(h.triggers(0).fire(9), Fire::Sent);
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.count(v), 1, "nothing delivered while masked");
    assert_eq!(
        h.command(Command::ReadPending, 9, 0).unwrap(),
        1,
        "the guest sees its PBA bit"
    );
    assert_eq!(
        h.routes().lock().unwrap().len(),
        1,
        "masking keeps the route"
    );
    h.command(Command::Unmask, 9, 0).unwrap();
    expect_count(&h, v, 2);
    assert_eq!(h.command(Command::ReadPending, 9, 0).unwrap(), 0);
    // Mask and unmask again with nothing raised: nothing is delivered a second time.
    h.command(Command::Mask, 9, 0).unwrap();
    h.command(Command::Unmask, 9, 0).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        h.count(v),
        2,
        "the pending interrupt was delivered exactly once"
    );
    assert_eq!(h.triggers(0).fire(9), Fire::Sent);
    expect_count(&h, v, 3);
    h.stop().unwrap();
}

#[test]
fn a_message_change_while_live_moves_the_route_and_the_others_keep_delivering() {
    let Some(h) = boot(vec![on_demand(64, 64)]) else {
        return;
    };
    for i in [7, 8] {
        h.command(Command::Unmask, i, 0).unwrap();
    }
    let (old, new) = (vector_of(7), 0xE0);
    assert_ne!(old, new);
    h.triggers(0).fire(7);
    expect_count(&h, old, 1);
    let calls = h.routes().lock().unwrap().stats().calls;
    // The guest rewrites entry 7's data while it is live.
    h.command(Command::SetData, 7, new).unwrap();
    assert_eq!(h.function(0).virt().emul().msg(7).data, new);
    assert!(h.function(0).virt().emul().is_live(7));
    assert_eq!(
        h.routes().lock().unwrap().len(),
        2,
        "the same route, rewritten"
    );
    assert_eq!(h.routes().lock().unwrap().stats().calls, calls + 1);
    h.triggers(0).fire(7);
    h.triggers(0).fire(8);
    expect_count(&h, new, 1);
    expect_count(&h, old, 1);
    expect_count(&h, vector_of(8), 1);
    h.stop().unwrap();
}

#[test]
fn shrink_frees_the_routes_of_masked_entries_and_a_later_unmask_loses_nothing() {
    let Some(h) = boot(vec![on_demand(64, 64)]) else {
        return;
    };
    for i in 0..8 {
        h.command(Command::Unmask, i, 0).unwrap();
    }
    assert_eq!(h.routes().lock().unwrap().len(), 8);
    for i in 0..4 {
        h.command(Command::Mask, i, 0).unwrap();
    }
    // Entry 3 holds an interrupt: shrink keeps it.
    h.triggers(0).fire(3);
    assert_eq!(h.function(0).virt_mut().shrink().unwrap(), 3);
    assert_eq!(h.routes().lock().unwrap().len(), 5);
    assert_eq!(h.function(0).virt().budget().in_use, 5);
    assert!(!h.function(0).virt().backend().is_backed(0));
    // A released entry latches in the device; the guest's PBA read shows it.
    assert_eq!(h.triggers(0).fire(0), Fire::Latched);
    assert_eq!(h.command(Command::ReadPending, 0, 0).unwrap(), 1);
    for i in [0, 3] {
        h.command(Command::Unmask, i, 0).unwrap();
        expect_count(&h, vector_of(i), 1);
    }
    assert_eq!(h.routes().lock().unwrap().len(), 6);
    // The live entries delivered throughout.
    for i in 4..8 {
        h.triggers(0).fire(i);
        expect_count(&h, vector_of(i), 1);
    }
    let backend = {
        let f = h.function(0);
        f.virt().budget()
    };
    assert_eq!(backend.max_in_use, 8);
    h.stop().unwrap();
}

#[test]
fn budget_exhaustion_is_refused_for_that_device_only() {
    let functions = vec![on_demand(16, 4), on_demand(8, 8)];
    let Some(h) = boot(functions) else {
        return;
    };
    for i in 0..6 {
        h.command(Command::Unmask, i, 0).unwrap();
    }
    let errors = h.function(0).take_errors();
    assert_eq!(
        errors,
        [4, 5].map(|index| Error::Budget {
            index,
            budget: 4,
            in_use: 4
        })
    );
    assert_eq!(h.routes().lock().unwrap().len(), 4);
    // Entry 4 is live in the guest but has no route: its interrupt latches, nothing is lost.
    assert_eq!(h.triggers(0).fire(4), Fire::Latched);
    for i in 0..4 {
        h.triggers(0).fire(i);
        expect_count(&h, vector_of(i), 1);
    }
    // The other function still gets routes: its VMM programs entry 2 to vector 0xE1.
    {
        let mut f = h.function(1);
        let v = f.virt_mut();
        v.mmio_write(Bar::new(0), 2 * 16, &0xFEE0_0000u32.to_le_bytes())
            .unwrap();
        v.mmio_write(Bar::new(0), 2 * 16 + 8, &0xE1u32.to_le_bytes())
            .unwrap();
        v.config_write(3, &[0x80]).unwrap();
        v.mmio_write(Bar::new(0), 2 * 16 + 12, &0u32.to_le_bytes())
            .unwrap();
        assert_eq!(v.budget().in_use, 1);
    }
    h.triggers(1).fire(2);
    expect_count(&h, 0xE1, 1);
    // The guest masks entry 0; the VMM shrinks and retries: entry 4 gets the freed route and
    // its latched interrupt is delivered once; entry 5 is still refused.
    h.command(Command::Mask, 0, 0).unwrap();
    let mut f = h.function(0);
    assert_eq!(f.virt_mut().shrink().unwrap(), 1);
    assert_eq!(
        f.virt_mut().sync(),
        Err(Error::Budget {
            index: 5,
            budget: 4,
            in_use: 4
        })
    );
    assert!(f.virt().backend().is_backed(4));
    drop(f);
    expect_count(&h, vector_of(4), 1);
    h.stop().unwrap();
}

#[test]
fn entries_live_at_enable_get_their_routes_in_one_routing_call() {
    let Some(h) = boot(vec![on_demand(16, 16), on_demand(64, 64)]) else {
        return;
    };
    // The VMM of function 1 sees its driver unmask 8 entries, then set MSI-X Enable.
    let mut f = h.function(1);
    let v = f.virt_mut();
    for i in 0..8u64 {
        v.mmio_write(Bar::new(0), i * 16, &0xFEE0_0000u32.to_le_bytes())
            .unwrap();
        v.mmio_write(Bar::new(0), i * 16 + 8, &(0xD0 + i as u32).to_le_bytes())
            .unwrap();
        v.mmio_write(Bar::new(0), i * 16 + 12, &0u32.to_le_bytes())
            .unwrap();
    }
    let calls = h.routes().lock().unwrap().stats().calls;
    v.config_write(3, &[0x80]).unwrap();
    assert_eq!(h.routes().lock().unwrap().stats().calls, calls + 1);
    assert_eq!(v.budget().in_use, 8);
    drop(f);
    for i in 0..8 {
        h.triggers(1).fire(i);
        expect_count(&h, 0xD0 + i, 1);
    }
    // Unplugging the function frees every route; the guest's function keeps its own.
    h.command(Command::Unmask, 3, 0).unwrap();
    assert_eq!(h.routes().lock().unwrap().len(), 9);
    h.function(1).virt_mut().release().unwrap();
    assert_eq!(h.routes().lock().unwrap().len(), 1);
    assert_eq!(h.function(1).virt().budget().in_use, 0);
    h.triggers(0).fire(3);
    expect_count(&h, vector_of(3), 1);
    h.stop().unwrap();
}

/// The KVM half of `genmsi_vmm::vfio::VfioKvmMsix` (the VFIO half runs in a Linux guest,
/// scripts/vfio): vfio-pci's host vector signals the entry's eventfd through its own file
/// descriptor of it; that is what the guest receives, held while masked, once at unmask.
#[test]
fn a_signal_on_the_entry_eventfd_as_vfio_sends_it_reaches_the_guest() {
    let Some(h) = boot(vec![on_demand(64, 64)]) else {
        return;
    };
    let v = vector_of(5);
    h.command(Command::Unmask, 5, 0).unwrap();
    let signal = h
        .function(0)
        .virt()
        .backend()
        .eventfd(5)
        .expect("entry 5 is backed")
        .try_clone()
        .unwrap();
    signal.write(1).unwrap();
    expect_count(&h, v, 1);
    h.command(Command::Mask, 5, 0).unwrap();
    signal.write(1).unwrap();
    signal.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.count(v), 1, "nothing delivered while masked");
    h.command(Command::Unmask, 5, 0).unwrap();
    expect_count(&h, v, 2);
    h.stop().unwrap();
}
