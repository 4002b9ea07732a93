//! Guest MSI-X sequences on `genmsi-vmm`: arbitrary trapped configuration and BAR accesses
//! (any offset, any length), device raises, syncs, clock ticks and shrinks against a
//! passed-through NIC on a remapped host. Invariants: no panic; every access is served or
//! refused with a typed error; the host holds exactly one irq per backed guest entry and no
//! more than the table has entries (nothing leaked).

use arbitrary::{Arbitrary, Unstructured};
use genmsi_pci::PciAddress;
use genmsi_vmm::{HostMachine, HostNic, MachineConfig, Mode, PassthroughConfig, PassthroughMsix};
use std::sync::Arc;

/// Entries of the passed-through NIC's table.
const VECTORS: u32 = 16;

#[derive(Arbitrary, Debug)]
enum GuestOp {
    ConfigRead { offset: u8, len: u8 },
    ConfigWrite { offset: u8, bytes: Vec<u8> },
    MmioRead { offset: u16, len: u8 },
    MmioWrite { offset: u16, bytes: Vec<u8> },
    Raise(u8),
    Round,
    Sync,
    Tick(u8),
    Shrink,
}

/// The harness (see the module docs).
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let baseline = bool::arbitrary(&mut u).unwrap_or(false);
    let shrink_after = Option::<u8>::arbitrary(&mut u).unwrap_or(None);
    let config = PassthroughConfig {
        shrink_after: shrink_after.map(u64::from),
        ..PassthroughConfig::new(if baseline {
            Mode::Baseline
        } else {
            Mode::OnDemand
        })
    };
    let machine = Arc::new(
        HostMachine::new(MachineConfig::remapped(4)).expect("a 4-CPU remapped host builds"),
    );
    let nic = HostNic::new(machine.clone(), PciAddress::new(0x3A, 0, 0), VECTORS)
        .expect("a 16-entry NIC builds");
    let bar = nic.cap().table.bar;
    let mut vmm = PassthroughMsix::new(nic, config).expect("the VMM takes the NIC");
    let ops: Vec<GuestOp> = u.arbitrary_take_rest_iter().map_or(Vec::new(), |it| {
        it.take(64).filter_map(Result::ok).collect()
    });
    for op in ops {
        match op {
            GuestOp::ConfigRead { offset, len } => {
                let mut buf = vec![0; usize::from(len % 9)];
                let _ = vmm.config_read(u64::from(offset), &mut buf);
            }
            GuestOp::ConfigWrite { offset, mut bytes } => {
                bytes.truncate(8);
                let _ = vmm.config_write(u64::from(offset), &bytes);
            }
            GuestOp::MmioRead { offset, len } => {
                let mut buf = vec![0; usize::from(len % 9)];
                let _ = vmm.mmio_read(bar, u64::from(offset % 0x3000), &mut buf);
            }
            GuestOp::MmioWrite { offset, mut bytes } => {
                bytes.truncate(8);
                let _ = vmm.mmio_write(bar, u64::from(offset % 0x3000), &bytes);
            }
            GuestOp::Raise(i) => {
                let _ = vmm.device_raise(u32::from(i) % (VECTORS + 2));
            }
            GuestOp::Round => {
                let _ = vmm.device_round();
            }
            GuestOp::Sync => {
                let _ = vmm.sync();
            }
            GuestOp::Tick(t) => vmm.advance_clock(u64::from(t)),
            GuestOp::Shrink => {
                let _ = vmm.shrink();
            }
        }
        let backed = (0..VECTORS).filter(|&i| vmm.backing(i).is_some()).count() as u32;
        let held = machine.sys().stats().irqs_allocated;
        assert_eq!(held, backed, "host irqs held vs guest entries backed");
        assert!(held <= VECTORS);
    }
}
