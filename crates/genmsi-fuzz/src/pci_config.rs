//! Malformed configuration spaces and capability lists on `genmsi-pci`: the walks end, every
//! reader returns a capability or a typed error, and the MSI and MSI-X stores built on whatever
//! they accept take arbitrary calls without panicking.

use arbitrary::{Arbitrary, Unstructured};
use genmsi::{Msg, MsgStore};
use genmsi_pci::cap;
use genmsi_pci::msi::MsiCap;
use genmsi_pci::msix::MsixCap;
use genmsi_pci::{Bar, ByteBars, ByteConfig, MsiStore, MsixStore};

/// One call on a store built over the fuzzed configuration space.
#[derive(Arbitrary, Debug)]
enum StoreCall {
    Write { index: u32, address: u64, data: u32 },
    Mask(u32),
    Unmask(u32),
    Prepare(u32),
    Release(u32),
    Enable,
    Disable,
}

/// The harness (see the module docs).
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(extended) = bool::arbitrary(&mut u) else {
        return;
    };
    let size = if extended { 4096 } else { 256 };
    let mut bytes = vec![0u8; size];
    for b in bytes.iter_mut() {
        match u8::arbitrary(&mut u) {
            Ok(v) => *b = v,
            Err(_) => break,
        }
    }
    let bar_len = u.int_in_range(0usize..=0x4000).unwrap_or(0);
    let calls: Vec<StoreCall> = u.arbitrary_take_rest_iter().map_or(Vec::new(), |it| {
        it.take(32).filter_map(Result::ok).collect()
    });
    let cfg = ByteConfig::new(bytes.clone());
    // A walk visits each dword at most once, then ends or stops at one error.
    let conventional: Vec<_> = cap::capabilities(&cfg).collect();
    assert!(
        conventional.len() <= 64 + 1,
        "conventional walk did not end"
    );
    assert!(conventional.iter().rev().skip(1).all(Result::is_ok));
    let extended_caps: Vec<_> = cap::extended_capabilities(&cfg).collect();
    assert!(extended_caps.len() <= 1024 + 1, "extended walk did not end");
    for c in conventional.into_iter().flatten() {
        let bars = ByteBars::new()
            .with_bar(Bar::new(0), bar_len)
            .with_bar(Bar::new(2), bar_len);
        if let Ok(msi) = MsiCap::read(&cfg, c.offset) {
            assert!(u32::from(msi.offset) + u32::from(msi.features.size()) <= size as u32);
            if let Ok(store) = MsiStore::new(ByteConfig::new(bytes.clone()), c.offset) {
                drive(store, &calls);
            }
        }
        if let Ok(msix) = MsixCap::read(&cfg, &bars, c.offset) {
            let mut b = bars.clone();
            let _ = msix.raise(&cfg, &mut b, msix.table_size.wrapping_sub(1));
            if let Ok(store) = MsixStore::new(ByteConfig::new(bytes.clone()), bars, c.offset) {
                drive(store, &calls);
            }
        }
    }
}

fn drive(mut store: impl MsgStore, calls: &[StoreCall]) {
    let caps = store.caps();
    for call in calls {
        // Every call returns; indices past the store are refused, never a panic.
        let r = match *call {
            StoreCall::Write {
                index,
                address,
                data,
            } => store.write_msg(index, &Msg::new(address, data)),
            StoreCall::Mask(i) => store.mask(i),
            StoreCall::Unmask(i) => store.unmask(i),
            StoreCall::Prepare(i) => store.prepare(i, None),
            StoreCall::Release(i) => {
                store.release(i);
                Ok(())
            }
            StoreCall::Enable => store.enable(),
            StoreCall::Disable => {
                store.disable();
                Ok(())
            }
        };
        let index = match *call {
            StoreCall::Write { index, .. }
            | StoreCall::Mask(index)
            | StoreCall::Unmask(index)
            | StoreCall::Prepare(index) => Some(index),
            _ => None,
        };
        if index.is_some_and(|i| i >= caps.max_index) {
            assert!(r.is_err(), "index past the store accepted: {call:?}");
        }
        let _ = store.is_pending(index.unwrap_or(0));
        let _ = store.is_level(index.unwrap_or(0));
    }
}
