//! `genmsi plan`: how many more passed-through functions fit on a host, found by running
//! them on the simulated host with the real library, not by a formula.
//!
//! 1. The host (read by `genmsi host`, live or captured, or a saved `genmsi host --json`)
//!    becomes a `genmsi_vmm::HostMachine`: its CPUs, interrupt remapping when the host uses
//!    it, its offline CPUs taken offline, and on every CPU exactly the vectors the host has
//!    available left free (the rest held by placeholder irqs pinned to that CPU).
//! 2. Functions of V MSI-X entries are added one by one, each a host function
//!    (`HostNic`, MSI-X through `genmsi-pci`) passed to a guest through `VirtMsix` over the
//!    in-process backend (`ModelBackend`) with the chosen strategy. The guest programs every
//!    entry, unmasks the given fraction of them and enables MSI-X: eager backs every entry at
//!    enable, on demand exactly the unmasked ones (plus the vector that keeps the host
//!    function's MSI-X enabled).
//! 3. Host vectors run out when a function's backing is refused (the refusal is typed and
//!    leaves nothing behind); the function is then removed and the run stops.
//! 4. A VM's KVM routing table holds `KVM_MAX_IRQ_ROUTES` (4,096) entries, of which the
//!    in-kernel irqchip's legacy routes take 40 (24 IO-APIC, 16 PIC pins): the routes the
//!    functions hold (one per backed entry) are summed in the order they were added, and the
//!    function whose routes no longer fit is named.

use crate::host::HostReport;
use genmsi::{AllocOpts, CpuMask, DeviceMeta, SlotId, StoreCaps};
use genmsi_pci::{msix::Region, Bar, PciAddress};
use genmsi_vmm::{
    HostMachine, HostNic, MachineConfig, ModelBackend, MsiBackend, MsixLayout, Strategy, VirtMsix,
};
use genmsi_x86::VectorDomain;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;

/// KVM's routing table size (`KVM_MAX_IRQ_ROUTES`).
pub const KVM_MAX_IRQ_ROUTES: u32 = 4096;
/// Routes the in-kernel irqchip sets up before any device (24 IO-APIC + 16 PIC pins).
pub const IRQCHIP_ROUTES: u32 = 40;
/// Functions tried at most (a host that never runs out stops here).
pub const MAX_FUNCTIONS: u32 = 4096;

/// What the plan asks.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PlanConfig {
    /// MSI-X entries per function (1..=2048).
    pub vectors: u32,
    /// Fraction of the entries a guest unmasks (0..=1).
    pub unmask: f64,
    /// Functions to try at most.
    pub functions: u32,
}

/// One strategy's answer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PlanResult {
    /// The strategy.
    pub strategy: String,
    /// Entries each guest unmasks.
    pub unmasked_per_function: u32,
    /// Host vectors (and routes) one function holds, as the run measured them.
    pub host_vectors_per_function: Vec<u32>,
    /// Functions added before host vectors ran out (all tried, if they never did).
    pub fit_host_vectors: u32,
    /// Host vectors ran out (false: every function tried fitted).
    pub host_vectors_exhausted: bool,
    /// The refusal that ended the run.
    pub refusal: Option<String>,
    /// Functions one VM holds before its routing table is full.
    pub fit_one_vm_routes: u32,
    /// Routes one VM's functions hold at that point, of the table's free routes.
    pub routes_at_limit: u32,
    /// Vectors no irq is assigned to, per online CPU, at the end: the least (reservations
    /// of entries not activated are machine-wide, counted in `reserved_end`).
    pub margin_min: u32,
    /// The CPUs with the least free vectors.
    pub margin_cpus: Vec<u32>,
    /// Free vectors on the whole machine at the end, less the reservations of entries
    /// allocated but not activated (reservation mode: an eager entry the guest keeps masked
    /// holds a reservation, not yet a vector on a CPU).
    pub free_vectors_end: u64,
    /// Those reservations.
    pub reserved_end: u64,
}

/// The plan for both strategies.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The host.
    pub host: String,
    /// CPUs of the simulated host (online).
    pub cpus: u32,
    /// Online CPUs.
    pub online: u32,
    /// Interrupt remapping in the simulated host.
    pub remapping: bool,
    /// Vectors available on the host before any function, summed over its online CPUs.
    pub available_before: u64,
    /// What was asked.
    pub config: PlanConfig,
    /// Routes a VM has for devices.
    pub vm_routes: u32,
    /// Eager and on-demand.
    pub results: Vec<PlanResult>,
}

/// Runs the plan for both strategies.
pub fn plan(host: &HostReport, config: PlanConfig) -> anyhow::Result<Plan> {
    let cpus = host.cpus_possible.max(1);
    let mut results = Vec::new();
    for strategy in [Strategy::Eager, Strategy::OnDemand] {
        results.push(run(host, config, strategy)?);
    }
    Ok(Plan {
        host: host.source.clone(),
        cpus,
        online: host.online.len() as u32,
        remapping: host.remapping,
        available_before: host
            .vectors
            .iter()
            .filter(|v| v.online)
            .map(|v| u64::from(v.available))
            .sum(),
        config,
        vm_routes: KVM_MAX_IRQ_ROUTES - IRQCHIP_ROUTES,
        results,
    })
}

/// The host machine with the host's free vectors on every CPU.
fn machine(host: &HostReport) -> anyhow::Result<Arc<HostMachine>> {
    let cpus = host.cpus_possible.max(1);
    let config = if host.remapping {
        MachineConfig::remapped(cpus)
    } else {
        MachineConfig { cpus, irtes: None }
    };
    let m = Arc::new(HostMachine::new(config)?);
    let sys = m.sys();
    let holder = sys.add_device("host irqs", DeviceMeta::default());
    let slots = cpus.saturating_mul(genmsi_host_vectors_cap());
    sys.create_device_domain(
        holder,
        SlotId::Default,
        Box::new(genmsi::soft::MemStore::new(StoreCaps::dynamic(slots))),
        m.parent(),
    )?;
    let mut index = 0;
    for v in host.vectors.iter().filter(|v| v.online) {
        // Fill the CPU until exactly the host's available vectors are left.
        let opts = AllocOpts {
            affinity: Some(CpuMask::single(v.cpu)),
            ..AllocOpts::default()
        };
        loop {
            let free = free_on(&m, v.cpu);
            if free <= v.available {
                break;
            }
            sys.alloc_at(holder, SlotId::Default, index, &opts)?;
            index += 1;
        }
    }
    for cpu in 0..cpus {
        if !host.online.contains(&cpu) {
            sys.cpu_offline(cpu)?;
        }
    }
    Ok(m)
}

/// Placeholder slots per CPU: more than a CPU's vectors.
const fn genmsi_host_vectors_cap() -> u32 {
    256
}

fn free_on(m: &HostMachine, cpu: u32) -> u32 {
    m.sys()
        .with_domain(m.vector_domain(), |d: &mut VectorDomain| {
            d.matrix().available(cpu)
        })
        .unwrap_or(0)
}

fn run(host: &HostReport, config: PlanConfig, strategy: Strategy) -> anyhow::Result<PlanResult> {
    let m = machine(host)?;
    let v = config.vectors;
    let unmasked = ((f64::from(v) * config.unmask).ceil() as u32).clamp(1, v);
    let mut r = PlanResult {
        strategy: match strategy {
            Strategy::Eager => "eager",
            _ => "on-demand",
        }
        .into(),
        unmasked_per_function: unmasked,
        ..PlanResult::default()
    };
    let vm_routes = KVM_MAX_IRQ_ROUTES - IRQCHIP_ROUTES;
    let mut routes = 0u32;
    let mut functions = Vec::new();
    for n in 0..config.functions.min(MAX_FUNCTIONS) {
        let address = PciAddress::new(0x40 + (n / 256) as u8, ((n / 8) % 32) as u8, (n % 8) as u8);
        let nic = HostNic::new(m.clone(), address, v)?;
        let layout = MsixLayout::new(v, Region::parse(0)?, Region::parse(0x8000)?, 0)?;
        let mut f = VirtMsix::new(layout, ModelBackend::new(nic, v + 1), strategy);
        match guest_brings_up(&mut f, v, unmasked) {
            Ok(()) => {
                let held = f.backend().budget().in_use;
                r.host_vectors_per_function.push(held);
                if routes + held <= vm_routes {
                    routes += held;
                    r.fit_one_vm_routes += 1;
                    r.routes_at_limit = routes;
                }
                functions.push(f);
                r.fit_host_vectors += 1;
            }
            Err(e) => {
                r.host_vectors_exhausted = true;
                r.refusal = Some(e.to_string());
                // The function that did not fit is unplugged: what it held goes back.
                f.unplug()?;
                break;
            }
        }
    }
    r.host_vectors_per_function.dedup();
    let free: Vec<(u32, u32)> = host.online.iter().map(|&c| (c, free_on(&m, c))).collect();
    r.margin_min = free.iter().map(|f| f.1).min().unwrap_or(0);
    r.margin_cpus = free
        .iter()
        .filter(|f| f.1 == r.margin_min)
        .map(|f| f.0)
        .collect();
    let (global, reserved) = m
        .sys()
        .with_domain(m.vector_domain(), |d: &mut VectorDomain| {
            (d.matrix().global_available(), d.matrix().global_reserved())
        })?;
    r.free_vectors_end = u64::from(global.saturating_sub(reserved));
    r.reserved_end = u64::from(reserved);
    drop(functions);
    Ok(r)
}

/// The guest driver's bring-up: program every entry, unmask the first `unmasked`, enable.
fn guest_brings_up(
    f: &mut VirtMsix<ModelBackend>,
    vectors: u32,
    unmasked: u32,
) -> genmsi_vmm::Result<()> {
    let bar = Bar::new(0);
    for i in 0..vectors {
        let at = u64::from(i) * 16;
        f.mmio_write(bar, at, &0xFEE0_0000u32.to_le_bytes())?;
        f.mmio_write(bar, at + 8, &(0x30 + i % 192).to_le_bytes())?;
        if i < unmasked {
            f.mmio_write(bar, at + 12, &0u32.to_le_bytes())?;
        }
    }
    f.config_write(3, &[0x80])?;
    f.sync()
}

impl Plan {
    /// The text report.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "plan for {}: {} CPUs ({} online), interrupt remapping {}, {} vectors available",
            self.host,
            self.cpus,
            self.online,
            if self.remapping { "on" } else { "off" },
            self.available_before
        );
        let _ = writeln!(
            o,
            "functions of {} MSI-X entries passed through, guests unmasking {:.3} of them; \
             a VM has {} routes for devices (KVM's {} less the irqchip's {})",
            self.config.vectors,
            self.config.unmask,
            self.vm_routes,
            KVM_MAX_IRQ_ROUTES,
            IRQCHIP_ROUTES
        );
        let _ = writeln!(
            o,
            "(simulated: the real genmsi crates on a host model with the host's CPUs and free \
             vectors, each function driven through genmsi-vmm's emulation)\n"
        );
        let _ = writeln!(
            o,
            "  strategy    host vectors/fn  fit (host vectors)  fit (one VM's routes)  free at end (reserved)  least unassigned/CPU"
        );
        for r in &self.results {
            let fit = if r.host_vectors_exhausted {
                format!("{}", r.fit_host_vectors)
            } else {
                format!(">= {} (all tried)", r.fit_host_vectors)
            };
            let _ = writeln!(
                o,
                "  {:<10}  {:>15}  {:>18}  {:>21}  {:>22}  {} on {} CPU(s)",
                r.strategy,
                r.host_vectors_per_function
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
                fit,
                r.fit_one_vm_routes,
                format!("{} ({})", r.free_vectors_end, r.reserved_end),
                r.margin_min,
                r.margin_cpus.len()
            );
        }
        for r in &self.results {
            if let Some(why) = &r.refusal {
                let _ = writeln!(
                    o,
                    "  {}: function {} refused: {why}",
                    r.strategy,
                    r.fit_host_vectors + 1
                );
            }
        }
        o
    }
}
