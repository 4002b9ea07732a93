//! Property tests: random guest access sequences.
//!
//! 1. Against a reference model of the PCI MSI-X rules (PCIe Base 7.7.2), written
//!    independently of the emulation: bytes with a writable mask per byte, no dwords, no
//!    effects. Every read, every refusal, every liveness and every reported effect must agree.
//! 2. Against the on-demand invariants of the VMM: every live guest entry is backed by exactly
//!    the host vector of its index, active and unmasked on the host, routed to the guest's
//!    current message; the counters add up; nothing is lost while the guest has MSI-X enabled.

use genmsi::SlotId;
use genmsi_pci::msix::Region as BarRegion;
use genmsi_pci::{Bar, PciAddress};
use genmsi_vmm::{
    Effect, HostMachine, HostNic, Injection, MachineConfig, Mode, MsixEmulation, MsixLayout,
    PassthroughConfig, PassthroughMsix,
};
use proptest::prelude::*;
use std::sync::Arc;

const BAR: Bar = Bar::new(2);
const TABLE_AT: u64 = 0x1000;
const PBA_AT: u64 = 0x3000;

/// The reference model: the capability and the table as bytes, the PBA as bits.
#[derive(Clone, Debug)]
struct Model {
    n: u32,
    cap: [u8; 12],
    table: Vec<u8>,
    pending: Vec<bool>,
}

/// Bytes software may change: Message Control byte 3 bits 7:6 (Enable, Function Mask).
const CAP_WRITABLE: [u8; 12] = [0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Per entry: address bits 1:0 are zero, Vector Control has only bit 0.
const ENTRY_WRITABLE: [u8; 16] = [
    0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0, 0, 0,
];

impl Model {
    fn new(n: u32) -> Self {
        let mut cap = [0u8; 12];
        cap[0] = 0x11;
        cap[1] = 0x50;
        cap[2..4].copy_from_slice(&((n - 1) as u16).to_le_bytes());
        cap[4..8].copy_from_slice(&((TABLE_AT as u32) | 2).to_le_bytes());
        cap[8..12].copy_from_slice(&((PBA_AT as u32) | 2).to_le_bytes());
        let mut table = vec![0u8; n as usize * 16];
        for e in table.chunks_mut(16) {
            e[12] = 1;
        }
        Model {
            n,
            cap,
            table,
            pending: vec![false; n as usize],
        }
    }

    fn pba_len(&self) -> u64 {
        u64::from(self.n).div_ceil(64) * 8
    }

    fn live(&self, i: u32) -> bool {
        self.cap[3] & 0x80 != 0
            && self.cap[3] & 0x40 == 0
            && self.table[i as usize * 16 + 12] & 1 == 0
    }

    fn ok(offset: u64, len: usize, sizes: &[usize], region: u64) -> bool {
        sizes.contains(&len) && offset % len as u64 == 0 && offset + len as u64 <= region
    }

    fn cap_read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        Self::ok(offset, len, &[1, 2, 4], 12)
            .then(|| self.cap[offset as usize..offset as usize + len].to_vec())
    }

    fn cap_write(&mut self, offset: u64, data: &[u8]) -> bool {
        if !Self::ok(offset, data.len(), &[1, 2, 4], 12) {
            return false;
        }
        for (k, &b) in data.iter().enumerate() {
            let at = offset as usize + k;
            let w = CAP_WRITABLE[at];
            self.cap[at] = (self.cap[at] & !w) | (b & w);
        }
        true
    }

    fn table_read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        Self::ok(offset, len, &[4, 8], self.table.len() as u64)
            .then(|| self.table[offset as usize..offset as usize + len].to_vec())
    }

    fn table_write(&mut self, offset: u64, data: &[u8]) -> bool {
        if !Self::ok(offset, data.len(), &[4, 8], self.table.len() as u64) {
            return false;
        }
        for (k, &b) in data.iter().enumerate() {
            let at = offset as usize + k;
            let w = ENTRY_WRITABLE[at % 16];
            self.table[at] = (self.table[at] & !w) | (b & w);
        }
        true
    }

    fn pba_read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        if !Self::ok(offset, len, &[4, 8], self.pba_len()) {
            return None;
        }
        let bit = |i: u64| self.pending.get(i as usize).copied().unwrap_or(false);
        Some(
            (0..len as u64)
                .map(|byte| {
                    (0..8)
                        .filter(|b| bit((offset + byte) * 8 + b))
                        .fold(0u8, |acc, b| acc | 1 << b)
                })
                .collect(),
        )
    }

    fn entry(&self, i: u32) -> [u8; 12] {
        self.table[i as usize * 16..i as usize * 16 + 12]
            .try_into()
            .unwrap()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Cap {
        offset: u64,
        len: usize,
        write: bool,
        value: u64,
    },
    Table {
        offset: u64,
        len: usize,
        write: bool,
        value: u64,
    },
    Pba {
        offset: u64,
        len: usize,
        write: bool,
        value: u64,
    },
    SetPending(u32),
    TakePending(u32),
}

fn len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(1usize),
        Just(2),
        Just(3),
        Just(4),
        Just(4),
        Just(8),
        Just(8)
    ]
}

fn op(n: u32) -> impl Strategy<Value = Op> {
    let table = u64::from(n) * 16 + 24;
    let pba = u64::from(n).div_ceil(64) * 8 + 16;
    prop_oneof![
        3 => (0u64..14, len(), any::<bool>(), any::<u64>())
            .prop_map(|(offset, len, write, value)| Op::Cap { offset, len, write, value }),
        6 => (0..table, len(), any::<bool>(), any::<u64>())
            .prop_map(|(offset, len, write, value)| Op::Table { offset, len, write, value }),
        2 => (0..pba, len(), any::<bool>(), any::<u64>())
            .prop_map(|(offset, len, write, value)| Op::Pba { offset, len, write, value }),
        1 => (0..n + 2).prop_map(Op::SetPending),
        1 => (0..n + 2).prop_map(Op::TakePending),
    ]
}

fn case() -> impl Strategy<Value = (u32, Vec<Op>)> {
    (1u32..=130).prop_flat_map(|n| (Just(n), proptest::collection::vec(op(n), 1..80)))
}

fn emulation(n: u32) -> MsixEmulation {
    let table = BarRegion::parse(TABLE_AT as u32 | 2).unwrap();
    let pba = BarRegion::parse(PBA_AT as u32 | 2).unwrap();
    MsixEmulation::new(MsixLayout::new(n, table, pba, 0x50).unwrap())
}

/// Reads through the emulation: the data on success, `None` (and all ones) on refusal.
fn read(
    f: impl FnOnce(&mut [u8]) -> Result<(), genmsi_vmm::AccessError>,
    len: usize,
) -> Option<Vec<u8>> {
    let mut data = vec![0u8; len];
    match f(&mut data) {
        Ok(()) => Some(data),
        Err(_) => {
            assert!(
                data.iter().all(|&b| b == 0xFF),
                "a refused read returns all ones"
            );
            None
        }
    }
}

proptest! {
    #[test]
    fn guest_accesses_follow_the_pci_rules((n, ops) in case()) {
        let mut e = emulation(n);
        let mut m = Model::new(n);
        for op in ops {
            let live_before: Vec<bool> = (0..n).map(|i| m.live(i)).collect();
            match op {
                Op::Cap { offset, len, write: false, .. } => {
                    prop_assert_eq!(read(|d| e.config_read(offset, d), len), m.cap_read(offset, len));
                }
                Op::Cap { offset, len, write: true, value } => {
                    let data = &value.to_le_bytes()[..len.min(8)];
                    let before = u16::from_le_bytes([m.cap[2], m.cap[3]]);
                    let accepted = m.cap_write(offset, data);
                    let after = u16::from_le_bytes([m.cap[2], m.cap[3]]);
                    match e.config_write(offset, data) {
                        Ok(Effect::None) => prop_assert!(accepted && before == after),
                        Ok(Effect::Control { before: b, after: a }) => {
                            prop_assert!(accepted);
                            prop_assert_eq!((b.0, a.0), (before, after));
                            prop_assert_ne!(before, after);
                        }
                        Ok(other) => prop_assert!(false, "unexpected {:?}", other),
                        Err(_) => prop_assert!(!accepted),
                    }
                }
                Op::Table { offset, len, write: false, .. } => {
                    let got = read(|d| e.mmio_read(BAR, TABLE_AT + offset, d), len);
                    prop_assert_eq!(got, m.table_read(offset, len));
                }
                Op::Table { offset, len, write: true, value } => {
                    let data = &value.to_le_bytes()[..len.min(8)];
                    let index = (offset / 16) as u32;
                    let msg_before = (index < n).then(|| m.entry(index));
                    let accepted = m.table_write(offset, data);
                    match e.mmio_write(BAR, TABLE_AT + offset, data) {
                        Ok(Effect::Entry(c)) => {
                            prop_assert!(accepted);
                            prop_assert_eq!(c.index, index);
                            prop_assert_eq!(c.was_live, live_before[index as usize]);
                            prop_assert_eq!(c.is_live, m.live(index));
                            prop_assert_eq!(c.msg_changed, msg_before != Some(m.entry(index)));
                        }
                        Ok(other) => prop_assert!(false, "unexpected {:?}", other),
                        Err(_) => prop_assert!(!accepted),
                    }
                }
                Op::Pba { offset, len, write: false, .. } => {
                    let got = read(|d| e.mmio_read(BAR, PBA_AT + offset, d), len);
                    prop_assert_eq!(got, m.pba_read(offset, len));
                }
                Op::Pba { offset, len, write: true, value } => {
                    let data = &value.to_le_bytes()[..len.min(8)];
                    prop_assert!(e.mmio_write(BAR, PBA_AT + offset, data).is_err());
                }
                Op::SetPending(i) => {
                    let was = m.pending.get(i as usize).copied().unwrap_or(false);
                    if let Some(p) = m.pending.get_mut(i as usize) {
                        *p = true;
                    }
                    prop_assert_eq!(e.set_pending(i), was);
                }
                Op::TakePending(i) => {
                    let was = m.pending.get(i as usize).copied().unwrap_or(false);
                    if let Some(p) = m.pending.get_mut(i as usize) {
                        *p = false;
                    }
                    prop_assert_eq!(e.take_pending(i), was);
                }
            }
            for i in 0..n {
                prop_assert_eq!(e.is_live(i), m.live(i), "entry {}", i);
                prop_assert_eq!(e.pending(i), m.pending[i as usize]);
            }
        }
    }
}

/// A guest action on the passed-through function.
#[derive(Clone, Debug)]
enum GuestOp {
    Unmask(u32),
    Mask(u32),
    Data(u32, u32),
    Enable(bool),
    FunctionMask(bool),
    Raise(u32),
    Shrink(u64),
}

const VECTORS: u32 = 12;

fn guest_op() -> impl Strategy<Value = GuestOp> {
    prop_oneof![
        4 => (0..VECTORS).prop_map(GuestOp::Unmask),
        2 => (0..VECTORS).prop_map(GuestOp::Mask),
        2 => (0..VECTORS, 0x20u32..0xF0).prop_map(|(i, d)| GuestOp::Data(i, d)),
        1 => any::<bool>().prop_map(GuestOp::Enable),
        1 => any::<bool>().prop_map(GuestOp::FunctionMask),
        8 => (0..VECTORS).prop_map(GuestOp::Raise),
        1 => (0u64..4).prop_map(GuestOp::Shrink),
    ]
}

fn vmm() -> PassthroughMsix {
    let machine = Arc::new(HostMachine::new(MachineConfig::remapped(4)).unwrap());
    let nic = HostNic::new(machine, PciAddress::new(0x3A, 0, 0), VECTORS).unwrap();
    let config = PassthroughConfig {
        shrink_after: Some(2),
        record: true,
        ..PassthroughConfig::new(Mode::OnDemand)
    };
    PassthroughMsix::new(nic, config).unwrap()
}

/// Checks the on-demand invariants.
fn check(vmm: &PassthroughMsix) -> Result<(), TestCaseError> {
    let host = vmm.host();
    let sys = host.machine().sys();
    let descs = sys
        .descs(host.pci().id, SlotId::Default)
        .unwrap_or_default();
    prop_assert_eq!(descs.len() as u32, host.allocated());
    for i in 0..VECTORS {
        let backing = vmm.backing(i);
        let desc = descs.iter().find(|d| d.index == i);
        prop_assert_eq!(backing.map(|b| b.0), desc.map(|d| d.irq), "entry {}", i);
        if vmm.guest().is_live(i) {
            let (irq, active) = backing.expect("a live entry is backed");
            prop_assert!(active);
            let entry = host.cap().read_entry(&host.pci().bars, i).unwrap();
            prop_assert!(!entry.masked(), "host entry {} unmasked", i);
            let route = vmm.route(irq).expect("a live entry is routed");
            prop_assert_eq!((route.entry, route.msg), (i, vmm.guest().msg(i)));
        }
    }
    // Host MSI-X is enabled exactly while the guest's is.
    prop_assert_eq!(host.msix_enabled(), vmm.guest().control().enabled());
    prop_assert!(
        vmm.counters().balanced(vmm.pending()),
        "{:?}",
        vmm.counters()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn on_demand_backs_exactly_the_live_entries(ops in proptest::collection::vec(guest_op(), 1..60)) {
        let mut vmm = vmm();
        let table = vmm.host().cap().table;
        let at = |i: u32| u64::from(table.offset) + u64::from(i) * 16;
        for i in 0..VECTORS {
            vmm.mmio_write(table.bar, at(i), &0xFEE0_1000u32.to_le_bytes()).unwrap();
            vmm.mmio_write(table.bar, at(i) + 8, &(0x40 + i).to_le_bytes()).unwrap();
        }
        let mut dropped = 0;
        for op in ops {
            match op {
                GuestOp::Unmask(i) => vmm.mmio_write(table.bar, at(i) + 12, &[0; 4]).unwrap(),
                GuestOp::Mask(i) => vmm.mmio_write(table.bar, at(i) + 12, &[1, 0, 0, 0]).unwrap(),
                GuestOp::Data(i, d) => vmm.mmio_write(table.bar, at(i) + 8, &d.to_le_bytes()).unwrap(),
                GuestOp::Enable(on) => {
                    let c = vmm.guest().control().with_enabled(on);
                    vmm.config_write(2, &c.0.to_le_bytes()).unwrap();
                }
                GuestOp::FunctionMask(on) => {
                    let c = vmm.guest().control().with_function_mask(on);
                    vmm.config_write(3, &[(c.0 >> 8) as u8]).unwrap();
                }
                GuestOp::Raise(i) => {
                    let enabled = vmm.guest().control().enabled();
                    let live = vmm.guest().is_live(i);
                    let got = vmm.device_raise(i).unwrap();
                    dropped += u64::from(!enabled);
                    if live {
                        prop_assert_eq!(got, Some(Injection::Injected));
                        let last = *vmm.injected().last().unwrap();
                        prop_assert_eq!(last, (i, vmm.guest().msg(i)));
                    }
                }
                GuestOp::Shrink(ticks) => {
                    vmm.advance_clock(ticks);
                    vmm.shrink().unwrap();
                }
            }
            check(&vmm)?;
        }
        prop_assert_eq!(vmm.counters().lost, dropped, "lost only while the guest disabled MSI-X");
    }
}
