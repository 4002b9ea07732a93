//! The side-by-side benchmark: one guest workload, run in the on-demand mode and in the
//! baseline, on the same kind of host.
//!
//! The workload ([`vfio_grow`]) is what a guest NIC driver does on a passed-through function
//! with `vectors` MSI-X entries:
//!
//! 1. program every entry (address, data) while it is masked, then set MSI-X Enable;
//! 2. unmask the entries one by one, 0 to `vectors - 1`; each unmasked entry starts traffic;
//! 3. between two unmasks, the device raises every entry with traffic once (the already enabled
//!    queues fire continuously).
//!
//! Both modes see the same accesses. The report gives, per mode, the host vector operations
//! (allocations, frees, activations), the wall time of the whole workload, host vectors touched
//! per unmask, and the interrupts raised and lost; `speedup` is baseline seconds over on-demand
//! seconds, `host_speedup` the same over the host vector operations' time alone. At the end
//! every interrupt raised is accounted for (injected, pending, coalesced or lost), or the run
//! fails.

use crate::error::Result;
use crate::host::{HostMachine, HostNic, MachineConfig};
use crate::passthrough::{Mode, PassthroughConfig, PassthroughMsix};
use crate::Error;
use genmsi::Msg;
use genmsi_pci::{Bar, PciAddress};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// How the benchmark's host and device are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrowConfig {
    /// MSI-X entries of the function (1..=2048).
    pub vectors: u32,
    /// The host machine.
    pub machine: MachineConfig,
    /// While MSI-X is disabled, the device raises its traffic once per this many host vector
    /// operations (see [`crate::baseline`]).
    pub ops_per_round: u32,
}

impl GrowConfig {
    /// `vectors` entries on a 16-CPU host (3,264 vectors) behind VT-d interrupt remapping (as
    /// VFIO requires for safe assignment), a device round per 16 host operations.
    pub const fn new(vectors: u32) -> Self {
        GrowConfig {
            vectors,
            machine: MachineConfig::remapped(16),
            ops_per_round: 16,
        }
    }
}

/// One mode's figures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ModeReport {
    /// Host vector operations: allocations, frees, activations, deactivations.
    pub ops: u64,
    /// Wall time of the workload, in seconds.
    pub seconds: f64,
    /// Of that, the time spent in host vector operations (allocate, free, activate,
    /// deactivate, enable, disable, with the route installed inside an on-demand allocation),
    /// in seconds: the device traffic between them is left out. Route-table updates outside
    /// those operations (the baseline's rebuild after each re-enable) are left out too, which
    /// only favours the baseline.
    pub host_seconds: f64,
    /// Interrupts that never reached the guest.
    pub lost: u64,
    /// Host vectors touched per guest unmask, on average.
    pub touched_per_unmask: f64,
    /// Interrupts the device raised.
    pub raised: u64,
}

/// Both modes side by side.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GrowReport {
    /// MSI-X entries the guest unmasked.
    pub vectors: u32,
    /// Exactly the unmasked entry, at its index.
    pub on_demand: ModeReport,
    /// Disable, free all, re-enable with more.
    pub baseline: ModeReport,
    /// Baseline seconds over on-demand seconds.
    pub speedup: f64,
    /// Baseline host seconds over on-demand host seconds: the allocation strategies alone.
    pub host_speedup: f64,
}

/// The workload in both modes with [`GrowConfig::new`].
pub fn vfio_grow(vectors: u32) -> Result<GrowReport> {
    vfio_grow_with(GrowConfig::new(vectors))
}

/// The workload in both modes.
pub fn vfio_grow_with(config: GrowConfig) -> Result<GrowReport> {
    let on_demand = run(config, Mode::OnDemand)?;
    let baseline = run(config, Mode::Baseline)?;
    Ok(GrowReport {
        vectors: config.vectors,
        on_demand,
        baseline,
        speedup: baseline.seconds / on_demand.seconds.max(f64::MIN_POSITIVE),
        host_speedup: baseline.host_seconds / on_demand.host_seconds.max(f64::MIN_POSITIVE),
    })
}

/// The message the guest programs in entry `i`: its own vector on one of its CPUs.
fn guest_msg(i: u32) -> Msg {
    Msg::new(0xFEE0_0000 | u64::from(i % 8) << 12, 0x30 + i % 0xB0)
}

/// The workload in one mode.
pub fn run(config: GrowConfig, mode: Mode) -> Result<ModeReport> {
    let n = config.vectors;
    let machine = Arc::new(HostMachine::new(config.machine)?);
    let nic = HostNic::new(machine, PciAddress::new(0x3A, 0, 0), n)?;
    let table = nic.cap().table;
    let vmm_config = PassthroughConfig {
        budget: n,
        ops_per_round: config.ops_per_round,
        ..PassthroughConfig::new(mode)
    };
    let mut vmm = PassthroughMsix::new(nic, vmm_config)?;
    let entry = |i: u32| u64::from(table.offset) + u64::from(i) * 16;
    let bar: Bar = table.bar;
    for i in 0..n {
        let msg = guest_msg(i);
        vmm.mmio_write(bar, entry(i), &(msg.address as u32).to_le_bytes())?;
        vmm.mmio_write(
            bar,
            entry(i) + 4,
            &((msg.address >> 32) as u32).to_le_bytes(),
        )?;
        vmm.mmio_write(bar, entry(i) + 8, &msg.data.to_le_bytes())?;
    }
    let start = Instant::now();
    vmm.config_write(3, &[0x80])?;
    for i in 0..n {
        vmm.mmio_write(bar, entry(i) + 12, &0u32.to_le_bytes())?;
        vmm.add_traffic(i);
        vmm.device_round()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let counters = vmm.counters();
    if !counters.balanced(vmm.pending()) {
        return Err(Error::Unbalanced(counters));
    }
    let unmasks = vmm.unmask_stats();
    Ok(ModeReport {
        ops: vmm.host().ops(),
        seconds,
        host_seconds: vmm.host().host_time().as_secs_f64(),
        lost: counters.lost,
        touched_per_unmask: unmasks.touched as f64 / unmasks.unmasks.max(1) as f64,
        raised: counters.raised,
    })
}
