//! Property tests: random configuration spaces never make the capability walk (or the
//! capability readers behind it) hang or panic, and messages round-trip through the stores'
//! registers.

use genmsi::{Msg, MsgStore};
use genmsi_pci::cap::{self, CapError};
use genmsi_pci::ims::{ImsEntry, ImsTable};
use genmsi_pci::msi::MsiCap;
use genmsi_pci::msix::MsixCap;
use genmsi_pci::*;
use proptest::prelude::*;

/// Random bytes, biased so that the capability list is usually "present" and pointers often
/// land on capability-looking bytes.
fn config_bytes(len: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), len),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(mut bytes, list, head)| {
            if list && bytes.len() > 0x34 {
                bytes[0x06] |= 0x10;
                bytes[0x34] = head | 0x40;
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_config_space_never_hangs_or_panics(
        bytes in prop_oneof![config_bytes(256), config_bytes(4096), (0usize..300).prop_flat_map(config_bytes)],
        bar_len in 0usize..0x4000,
    ) {
        let cfg = ByteConfig::new(bytes);
        // Each walk visits a dword at most once: at most 64 (or 1,024) steps, then the end or
        // one error.
        let conventional: Vec<_> = cap::capabilities(&cfg).collect();
        prop_assert!(conventional.len() <= 64 + 1);
        prop_assert!(conventional.iter().rev().skip(1).all(Result::is_ok));
        let extended: Vec<_> = cap::extended_capabilities(&cfg).collect();
        prop_assert!(extended.len() <= 1024 + 1);
        prop_assert!(extended.iter().rev().skip(1).all(Result::is_ok));
        for c in conventional.into_iter().flatten() {
            let _ = MsiCap::read(&cfg, c.offset);
            let bars = ByteBars::new().with_bar(Bar::new(0), bar_len).with_bar(Bar::new(3), bar_len);
            if let Ok(msix) = MsixCap::read(&cfg, &bars, c.offset) {
                let mut bars = bars;
                let _ = msix.raise(&cfg, &mut bars, msix.table_size - 1);
            }
        }
    }

    #[test]
    fn any_offset_is_an_error_or_a_capability(offset in any::<u16>(), bytes in config_bytes(256)) {
        let cfg = ByteConfig::new(bytes);
        match MsiCap::read(&cfg, offset) {
            Ok(cap) => prop_assert!(u32::from(cap.offset) + u32::from(cap.features.size()) <= 256),
            Err(MsiError::Cap(CapError::Truncated { .. }) | MsiError::NotMsi { .. }
                | MsiError::ReservedMultipleMessage { .. } | MsiError::Config(_)) => {}
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    /// A single-vector message written through the MSI store is what the registers hold and
    /// what the function sends.
    #[test]
    fn msi_message_round_trip(address in any::<u64>(), data in any::<u16>(), addr64 in any::<bool>()) {
        let mut bytes = vec![0u8; 256];
        bytes[0x06] = 0x10;
        bytes[0x34] = 0x50;
        bytes[0x50] = 0x05;
        bytes[0x52] = if addr64 { 0x80 } else { 0 };
        let mut store = MsiStore::new(ByteConfig::new(bytes), 0x50).unwrap();
        store.prepare(0, None).unwrap();
        store.enable().unwrap();
        let msg = Msg::new(address & !3, u32::from(data));
        let fits = addr64 || msg.address >> 32 == 0;
        prop_assert_eq!(store.write_msg(0, &msg).is_ok(), fits);
        if fits {
            let cap = *store.cap();
            prop_assert_eq!(cap.read_msg(store.config()), Ok(msg));
            prop_assert_eq!(cap.raise(store.config_mut(), 0), Ok(Signal::Sent(msg)));
        }
    }

    /// MSI-X: what write_msg stores is what the entry decodes to; entries nearby keep their
    /// bytes.
    #[test]
    fn msix_entry_round_trip(address in any::<u64>(), data in any::<u32>(), index in 0u32..16) {
        let mut bytes = vec![0u8; 256];
        bytes[0x06] = 0x10;
        bytes[0x34] = 0x40;
        bytes[0x40..0x4C].copy_from_slice(&[0x11, 0, 0x0F, 0, 0x00, 0, 0, 0, 0x00, 0x01, 0, 0]);
        let bars = ByteBars::new().with_bar(Bar::new(0), 0x200);
        let mut store = MsixStore::new(ByteConfig::new(bytes), bars, 0x40).unwrap();
        store.prepare(index, None).unwrap();
        store.enable().unwrap();
        let before = store.bars().bytes(Bar::new(0)).unwrap().to_vec();
        let msg = Msg::new(address & !3, data);
        store.write_msg(index, &msg).unwrap();
        let entry = store.cap().read_entry(store.bars(), index).unwrap();
        prop_assert_eq!(entry.msg, msg);
        prop_assert!(entry.masked());
        let after = store.bars().bytes(Bar::new(0)).unwrap();
        let own = 16 * index as usize..16 * index as usize + 12;
        for (i, (a, b)) in before.iter().zip(after).enumerate() {
            prop_assert!(own.contains(&i) || a == b, "byte {} changed", i);
        }
    }

    /// IMS table: prepare with a PASID and write a message; the entry decodes to both.
    #[test]
    fn ims_entry_round_trip(address in any::<u64>(), data in any::<u32>(), pasid in 0u64..(1 << 20), index in 0u32..8) {
        let table = ImsTable { bar: Bar::new(2), offset: 0x40, entries: 8 };
        let bars = ByteBars::new().with_bar(Bar::new(2), 0x100);
        let mut store = ImsTableStore::new(bars, table).unwrap();
        store.prepare(index, Some(pasid)).unwrap();
        let msg = Msg::new(address & !3, data);
        store.write_msg(index, &msg).unwrap();
        let e = table.read_entry(store.bars(), index).unwrap();
        prop_assert_eq!(e, ImsEntry { msg, ..ImsEntry::cleared(Some(pasid as u32)) });
        prop_assert_eq!(ImsEntry::from_dwords(e.to_dwords()), e);
    }
}
