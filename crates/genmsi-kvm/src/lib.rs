//! # genmsi-kvm: genmsi-vmm on real KVM
//!
//! A small VMM of the project's own that runs genmsi-vmm's MSI-X emulation and KVM backend
//! under a real guest:
//!
//! - [`guest`]: the guest program (64-bit, assembled into this crate, copied into guest RAM);
//! - [`harness`]: the VM (in-kernel irqchip, one vCPU), the exits it serves, the guest's
//!   counters and commands;
//! - [`function`]: the PCI function the guest drives (configuration space, BAR0 with the
//!   MSI-X table and PBA, all trapped to [`genmsi_vmm::VirtMsix`] over
//!   [`genmsi_vmm::kvm::KvmMsix`]);
//! - [`device`]: the device model that fires entries through their irqfds, paced;
//! - [`grow`]: the kvm-grow benchmark, three strategies on the same guest workload;
//! - [`conformance`]: genmsi-vmm's conformance suite on KVM (its rig).
//!
//! Linux on x86-64 only; elsewhere [`kvm_grow`] reports that KVM is not there.

#![deny(missing_docs, missing_debug_implementations)]

use serde::Serialize;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod conformance;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod device;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod function;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod grow;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod guest;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod harness;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod memory;

/// One strategy's figures in the kvm-grow benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StrategyReport {
    /// The most GSI routes the function held at once.
    pub routes_max: u32,
    /// Routes held at the end of the workload.
    pub routes_end: u32,
    /// The most entries the guest had unmasked (and enabled) at once.
    pub unmasked_max: u32,
    /// `KVM_SET_GSI_ROUTING` calls.
    pub routing_calls: u64,
    /// Time in them, seconds.
    pub routing_seconds: f64,
    /// Host time spent for the guest's unmasks (routes, irqfds, the baseline's re-enables),
    /// seconds.
    pub host_seconds: f64,
    /// Guest writes that unmasked entries.
    pub unmasks: u64,
    /// Host time per unmask, microseconds.
    pub host_us_per_unmask: f64,
    /// Interrupts the device raised.
    pub fired: u64,
    /// Interrupts the guest counted.
    pub counted: u64,
    /// `fired - counted`, counted by the guest: signed, an over-count (an arrival the device
    /// never sent, or one sent once and delivered twice) is negative.
    pub lost: i64,
    /// Raises the function refused while its MSI-X was disabled (the baseline's window).
    pub dropped_while_disabled: u64,
    /// Vectors with a fire never counted: the device fires no vector again while a fire on
    /// it is uncounted, so no two fires could merge in the local APIC.
    pub vectors_stalled: u64,
    /// Vectors still pending in the guest's local APIC (IRR) when it exited: delivered by KVM,
    /// not taken by the guest (part of `lost` if not 0).
    pub held_in_irr: u64,
    /// Arrivals on vectors the guest gave no entry (the spurious vector...): not in `counted`.
    pub other_arrivals: u64,
    /// PBA bits the guest found set on entries it had masked while they fired.
    pub pba_seen: u64,
    /// Guest writes the host could not follow.
    pub host_errors: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

/// `genmsi bench kvm-grow`'s report.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KvmGrowReport {
    /// MSI-X entries of the function.
    pub vectors: u32,
    /// True when it ran on KVM.
    pub kvm: bool,
    /// A route for exactly the entry the guest unmasks, at its first unmask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_demand: Option<StrategyReport>,
    /// A route per advertised entry at enable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eager: Option<StrategyReport>,
    /// Disable, release all, re-enable with more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<StrategyReport>,
}

/// A figure of a kvm-grow run that breaks what the strategy promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The strategy.
    pub strategy: &'static str,
    /// The figure.
    pub figure: &'static str,
    /// Its value.
    pub value: i64,
    /// What it must be.
    pub expected: i64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is {}, must be {}",
            self.strategy, self.figure, self.value, self.expected
        )
    }
}

impl StrategyReport {
    /// What this run of `strategy` breaks: every strategy must leave nothing in the guest's
    /// IRR, stall no vector, deliver nothing on another vector and follow every guest write;
    /// on demand and eager must lose nothing (`lost` 0: neither a loss nor an over-count);
    /// the baseline must lose exactly the fires of its disabled windows.
    pub fn violations(&self, strategy: &'static str) -> Vec<Violation> {
        let lost_expected = match strategy {
            "baseline" => self.dropped_while_disabled as i64,
            _ => 0,
        };
        let figures = [
            ("lost", self.lost, lost_expected),
            ("held_in_irr", self.held_in_irr as i64, 0),
            ("vectors_stalled", self.vectors_stalled as i64, 0),
            ("other_arrivals", self.other_arrivals as i64, 0),
            ("host_errors", self.host_errors as i64, 0),
        ];
        figures
            .into_iter()
            .filter(|&(_, value, expected)| value != expected)
            .map(|(figure, value, expected)| Violation {
                strategy,
                figure,
                value,
                expected,
            })
            .collect()
    }
}

impl KvmGrowReport {
    /// What the run breaks, strategy by strategy (see [`StrategyReport::violations`]);
    /// empty for a run without KVM.
    pub fn violations(&self) -> Vec<Violation> {
        [
            ("on_demand", &self.on_demand),
            ("eager", &self.eager),
            ("baseline", &self.baseline),
        ]
        .into_iter()
        .filter_map(|(name, s)| s.as_ref().map(|s| s.violations(name)))
        .flatten()
        .collect()
    }

    /// The report of a machine without a usable KVM.
    pub fn without_kvm(vectors: u32) -> Self {
        KvmGrowReport {
            vectors,
            kvm: false,
            on_demand: None,
            eager: None,
            baseline: None,
        }
    }
}

/// Why kvm-grow did not run, when it did not.
#[derive(Debug)]
pub enum KvmGrowError {
    /// `/dev/kvm` cannot be opened: what failed and the error number; the report to print
    /// is [`KvmGrowReport::without_kvm`].
    NoKvm {
        /// What was missing.
        what: &'static str,
        /// The error number.
        errno: i32,
    },
    /// It ran and failed: the strategy (none: before any ran) and why.
    Failed(
        Option<&'static str>,
        Box<dyn std::error::Error + Send + Sync>,
    ),
}

/// Runs kvm-grow with `vectors` entries (1..=2048): the three strategies on KVM.
pub fn kvm_grow(vectors: u32) -> Result<KvmGrowReport, KvmGrowError> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        // Two eventfds per backed entry: thousands of them.
        if let Err(e) = harness::raise_file_limit() {
            return Err(KvmGrowError::Failed(None, Box::new(e)));
        }
        match harness::kvm_usable() {
            Err(harness::HarnessError::NoKvm { what, errno }) => {
                Err(KvmGrowError::NoKvm { what, errno })
            }
            Err(e) => Err(KvmGrowError::Failed(None, Box::new(e))),
            Ok(_) => grow::kvm_grow(vectors).map_err(|(strategy, e)| {
                let name = match strategy {
                    genmsi_vmm::Strategy::OnDemand => "on_demand",
                    genmsi_vmm::Strategy::Eager => "eager",
                    genmsi_vmm::Strategy::Baseline => "baseline",
                    genmsi_vmm::Strategy::Queues => "queues",
                };
                KvmGrowError::Failed(Some(name), Box::new(e))
            }),
        }
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = vectors;
        Err(KvmGrowError::NoKvm {
            what: "KVM on Linux x86-64",
            errno: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> StrategyReport {
        StrategyReport {
            fired: 100,
            counted: 100,
            ..StrategyReport::default()
        }
    }

    #[test]
    fn every_loss_and_every_over_count_is_a_violation() {
        let mut report = KvmGrowReport {
            vectors: 64,
            kvm: true,
            on_demand: Some(clean()),
            eager: Some(clean()),
            baseline: Some(StrategyReport {
                dropped_while_disabled: 3,
                lost: 3,
                counted: 97,
                ..clean()
            }),
        };
        assert_eq!(report.violations(), vec![]);
        // One fire lost on demand, one arrival more than fired in eager, and the baseline one
        // arrival over what its disabled windows explain.
        report.on_demand.as_mut().unwrap().lost = 1;
        report.eager.as_mut().unwrap().lost = -1;
        report.baseline.as_mut().unwrap().lost = 2;
        let v = report.violations();
        assert_eq!(
            v.iter()
                .map(|v| (v.strategy, v.value, v.expected))
                .collect::<Vec<_>>(),
            [("on_demand", 1, 0), ("eager", -1, 0), ("baseline", 2, 3)]
        );
        for field in 0..4 {
            let mut s = clean();
            match field {
                0 => s.held_in_irr = 1,
                1 => s.vectors_stalled = 1,
                2 => s.other_arrivals = 1,
                _ => s.host_errors = 1,
            }
            assert_eq!(s.violations("baseline").len(), 1, "{s:?}");
        }
    }
}
