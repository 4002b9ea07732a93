//! The rig of genmsi-vmm's conformance suite ([`genmsi_vmm::conformance`]) on real KVM: each
//! backend is a [`KvmMsix`] on the harness's VM, the device side writes its irqfds
//! ([`Triggers::fire`](genmsi_vmm::kvm::Triggers::fire)), and the arrivals are what the
//! project's guest counted per vector, through KVM's in-kernel local APIC.
//!
//! 1. [`KvmRig::boot`] starts the harness's guest (function 0 is the guest's own; the suite's
//!    functions are extra [`KvmMsix`] devices on the same VM and routing table).
//! 2. A message of the suite is a fixed-mode MSI to APIC 0 with its own vector: the guest's
//!    count of that vector, since the backend was made, is the message's arrivals.
//! 3. Delivery through an irqfd is asynchronous: [`Rig::arrivals`] waits until what the suite
//!    expects has arrived (at most [`ARRIVAL_WAIT`]), then [`STRAGGLER_WAIT`] more, so a late
//!    duplicate is seen.

use crate::guest::Command;
use crate::harness::{FunctionConfig, Harness, HarnessConfig, HarnessError};
use genmsi_vmm::conformance::{Arrivals, Rig};
use genmsi_vmm::kvm::KvmMsix;
use genmsi_vmm::{Result, Strategy};
use std::time::{Duration, Instant};

/// The longest the rig waits for the expected arrivals.
pub const ARRIVAL_WAIT: Duration = Duration::from_secs(5);
/// How long it waits after them for anything more.
pub const STRAGGLER_WAIT: Duration = Duration::from_millis(10);

/// The guest's counters are per vector: 256 of them.
const VECTORS: usize = 256;
/// The address of the suite's messages: APIC 0, fixed delivery (SDM 11.11.1).
const APIC0: u64 = 0xFEE0_0000;

/// The suite's rig on KVM (see the module docs).
#[derive(Debug)]
pub struct KvmRig {
    harness: Harness,
    /// The guest's counts when the current backend was made.
    base: [u64; VECTORS],
}

impl KvmRig {
    /// Boots the guest; [`HarnessError::NoKvm`] when `/dev/kvm` cannot be opened.
    pub fn boot() -> std::result::Result<Self, HarnessError> {
        let harness = Harness::boot(&HarnessConfig {
            functions: vec![FunctionConfig {
                entries: 1,
                budget: 1,
                strategy: Strategy::OnDemand,
            }],
            grow: false,
        })?;
        // The guest serves commands once it has set up its interrupt handlers.
        harness.command(Command::ReadPending, 0, 0)?;
        Ok(KvmRig {
            harness,
            base: [0; VECTORS],
        })
    }

    /// Stops the guest.
    pub fn stop(self) -> std::result::Result<(), HarnessError> {
        self.harness.stop()
    }

    fn seen(&self) -> [u64; VECTORS] {
        core::array::from_fn(|v| self.harness.count(v as u32) - self.base[v])
    }
}

impl Rig for KvmRig {
    type Backend = KvmMsix;

    fn name(&self) -> String {
        "kvm".into()
    }

    fn backend(&mut self, entries: u32) -> Result<KvmMsix> {
        let h = &self.harness;
        self.base = core::array::from_fn(|v| h.count(v as u32));
        KvmMsix::new(h.vm().clone(), h.routes().clone(), entries, entries)
    }

    fn raise(&mut self, backend: &mut KvmMsix, index: u32) -> Result<()> {
        backend.triggers().fire(index);
        Ok(())
    }

    fn arrivals(&mut self, _: &mut KvmMsix, expected: &Arrivals) -> Result<Arrivals> {
        let start = Instant::now();
        let reached = |seen: &[u64; VECTORS]| {
            expected
                .iter()
                .all(|(&(_, data), &n)| seen[(data & 0xFF) as usize] >= n)
        };
        while !reached(&self.seen()) && start.elapsed() < ARRIVAL_WAIT {
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(STRAGGLER_WAIT);
        Ok((0u32..)
            .zip(self.seen())
            .filter(|&(_, n)| n > 0)
            .map(|(v, n)| ((APIC0, v), n))
            .collect())
    }
}
