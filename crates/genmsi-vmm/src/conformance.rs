//! The conformance suite of the [`MsiBackend`] seam: one body of cases, run for every backend
//! (the in-process model, KVM, VFIO...) and every [`Strategy`], so that a model cannot pass
//! where the real thing would fail.
//!
//! 1. A backend comes with a [`Rig`]: what the seam does not give, the device side (raise
//!    entry `i`) and the guest side (count arrivals per message).
//! 2. Each [`Case`] builds a fresh [`VirtMsix`] over a fresh backend, drives it with the
//!    guest's own accesses (capability writes, DWORD and QWORD table writes, PBA reads), raises
//!    entries, and after every step compares the arrivals with what PCIe says, message by
//!    message, exactly: a missing arrival is a loss, an extra one a double delivery, one on
//!    any other message a misdelivery.
//! 3. What the cases hold (PCIe Base 6.1.4.5, 7.7.2): a raise on a masked entry, on an entry
//!    that has no host resources yet, or while Function Mask is set, latches its pending bit
//!    (the guest sees it in the PBA) and is sent exactly once at the unmask or the Function
//!    Mask clear; QWORD and DWORD table writes land the same; a raise while MSI-X is disabled
//!    is dropped, and what was latched before survives the disable; shrink and release of
//!    host resources lose nothing latched.
//! 4. At the end of each case the function is unplugged: it must hold nothing.
//!
//! [`run`] runs every case × strategy and returns the [`Row`]s; [`Table`] prints them.

use crate::backend::MsiBackend;
use crate::error::Result;
use crate::msix_emul::MsixLayout;
use crate::virt::{Strategy, VirtMsix};
use genmsi::Msg;
use genmsi_pci::msix::Region as BarRegion;
use genmsi_pci::Bar;
use std::collections::BTreeMap;
use std::fmt;

/// Arrivals at the guest per message, keyed `(address, data)`; [`NOWHERE`] counts what
/// reached no guest message.
pub type Arrivals = BTreeMap<(u64, u32), u64>;

/// The key of arrivals that reached no guest message (blocked or unrouted on the host).
pub const NOWHERE: (u64, u32) = (u64::MAX, u32::MAX);

/// Entries of the function every case uses.
pub const ENTRIES: u32 = 8;

/// Messages a case may program: two per entry (the second for message changes).
pub const MESSAGES: u32 = 2 * ENTRIES;

/// The table BAR and offset, and the PBA's offset in the same BAR, of the suite's function.
const BAR: Bar = Bar::new(0);
const PBA_AT: u64 = 0x800;
/// Message Control's upper byte (PCIe 7.7.2.2): MSI-X Enable, Function Mask.
const CONTROL: u64 = 3;
const ENABLE: u8 = 0x80;
const FUNCTION_MASK: u8 = 0x40;

/// What the suite needs of a backend beyond the seam (see the module docs).
pub trait Rig {
    /// The backend under test.
    type Backend: MsiBackend;

    /// The backend's name in the table.
    fn name(&self) -> String;

    /// A fresh backend for a function of `entries` entries (no more than [`ENTRIES`]) that
    /// may hold a host resource for each.
    fn backend(&mut self, entries: u32) -> Result<Self::Backend>;

    /// The device raises entry `index` (once).
    fn raise(&mut self, backend: &mut Self::Backend, index: u32) -> Result<()>;

    /// Every arrival at the guest since `backend` was made, per message. A rig whose
    /// delivery is asynchronous first waits until at least `expected` has arrived (or its
    /// timeout passes), then long enough for stragglers to show.
    fn arrivals(&mut self, backend: &mut Self::Backend, expected: &Arrivals) -> Result<Arrivals>;

    /// Message `slot` (`0..MESSAGES`), each distinct and deliverable to the guest's CPU;
    /// by default a fixed-mode message to APIC 0, vector 0x40 + `slot`.
    fn message(&self, slot: u32) -> Msg {
        Msg::new(0xFEE0_0000, 0x40 + slot)
    }
}

/// One case of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// A raise on a masked entry latches; the unmask sends it once, a second unmask nothing.
    MaskedLatch,
    /// A raise on an enabled entry that was never live (no host resources yet) latches and
    /// is sent once at its first unmask.
    UnbackedLatch,
    /// Raises while Function Mask is set latch; its clear sends each once.
    FunctionMask,
    /// DWORD and QWORD table writes program, unmask and re-aim entries alike.
    AccessWidths,
    /// Raises while MSI-X is disabled are dropped; what was latched before survives.
    DisableEnable,
    /// Shrink releases idle entries only; latched raises survive.
    Shrink,
    /// Releasing every entry's host resources loses nothing latched; live entries latch
    /// until backed again.
    Release,
}

impl Case {
    /// Every case, in table order.
    pub const ALL: [Case; 7] = [
        Case::MaskedLatch,
        Case::UnbackedLatch,
        Case::FunctionMask,
        Case::AccessWidths,
        Case::DisableEnable,
        Case::Shrink,
        Case::Release,
    ];

    /// The case's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Case::MaskedLatch => "masked_latch",
            Case::UnbackedLatch => "unbacked_latch",
            Case::FunctionMask => "function_mask",
            Case::AccessWidths => "qword_dword",
            Case::DisableEnable => "disable_enable",
            Case::Shrink => "shrink",
            Case::Release => "release",
        }
    }

    /// Why the case does not apply to `strategy`, if it does not: with
    /// [`Strategy::Queues`] an entry has host resources exactly while its queue exists, so
    /// an entry without them has no source to raise, and releasing them is destroying the
    /// queue (its interrupt goes with it).
    pub fn not_for(self, strategy: Strategy) -> Option<&'static str> {
        match (self, strategy) {
            (Case::UnbackedLatch | Case::Release, Strategy::Queues) => {
                Some("an entry without a queue has no source")
            }
            _ => None,
        }
    }
}

/// Every strategy, in table order.
pub const STRATEGIES: [Strategy; 4] = [
    Strategy::OnDemand,
    Strategy::Eager,
    Strategy::Baseline,
    Strategy::Queues,
];

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::OnDemand => "on_demand",
        Strategy::Eager => "eager",
        Strategy::Baseline => "baseline",
        Strategy::Queues => "queues",
    }
}

/// Why a case failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The arrivals differ from what the case expects (every message with a count, both).
    Arrivals {
        /// Expected, per message.
        expected: Vec<((u64, u32), u64)>,
        /// Seen, per message.
        seen: Vec<((u64, u32), u64)>,
    },
    /// The guest's PBA bit of `index` is not what the case expects.
    Pending {
        /// The entry.
        index: u32,
        /// The bit expected.
        expected: bool,
    },
    /// The backend, the emulation or the rig refused a step.
    Refused(crate::Error),
    /// The guest's PBA could not be read.
    Access(crate::AccessError),
    /// After unplug the backend still holds resources.
    Leak {
        /// Held.
        in_use: u32,
    },
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Self {
        Failure::Refused(e)
    }
}

impl From<crate::AccessError> for Failure {
    fn from(e: crate::AccessError) -> Self {
        Failure::Access(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[((u64, u32), u64)]| -> String {
            v.iter()
                .map(|((a, d), n)| match (a, d) {
                    _ if (*a, *d) == NOWHERE => format!("nowhere:{n}"),
                    _ => format!("{a:#x}/{d:#x}:{n}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Failure::Arrivals { expected, seen } => {
                write!(f, "expected [{}], saw [{}]", list(expected), list(seen))
            }
            Failure::Pending { index, expected } => {
                write!(f, "PBA bit {index} is not {}", u8::from(*expected))
            }
            Failure::Refused(e) => write!(f, "refused: {e}"),
            Failure::Access(e) => write!(f, "PBA read: {e:?}"),
            Failure::Leak { in_use } => write!(f, "{in_use} still held after unplug"),
        }
    }
}

/// A case's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every step held.
    Pass,
    /// The case does not apply to the strategy (why).
    NotApplicable(&'static str),
    /// The step that failed and why.
    Fail {
        /// The step.
        step: &'static str,
        /// What went wrong.
        failure: Failure,
    },
}

/// One line of the table: backend × strategy × case.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The rig's name.
    pub backend: String,
    /// The strategy.
    pub strategy: Strategy,
    /// The case.
    pub case: Case,
    /// What happened.
    pub outcome: Outcome,
}

/// Rows printed as a table.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a>(pub &'a [Row]);

impl Table<'_> {
    /// Every row passed or did not apply.
    pub fn passed(&self) -> bool {
        self.0
            .iter()
            .all(|r| !matches!(r.outcome, Outcome::Fail { .. }))
    }
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:<10} {:<15} result",
            "backend", "strategy", "case"
        )?;
        for r in self.0 {
            let outcome = match &r.outcome {
                Outcome::Pass => "pass".to_string(),
                Outcome::NotApplicable(why) => format!("n/a ({why})"),
                Outcome::Fail { step, failure } => format!("FAIL at {step}: {failure}"),
            };
            writeln!(
                f,
                "{:<10} {:<10} {:<15} {outcome}",
                r.backend,
                strategy_name(r.strategy),
                r.case.name()
            )?;
        }
        Ok(())
    }
}

/// Runs every case for every strategy on `rig`'s backend.
pub fn run<R: Rig>(rig: &mut R) -> Vec<Row> {
    let mut rows = Vec::new();
    for strategy in STRATEGIES {
        for case in Case::ALL {
            rows.push(Row {
                backend: rig.name(),
                strategy,
                case,
                outcome: run_case(rig, strategy, case),
            });
        }
    }
    rows
}

/// Runs one case with one strategy on `rig`'s backend.
pub fn run_case<R: Rig>(rig: &mut R, strategy: Strategy, case: Case) -> Outcome {
    if let Some(why) = case.not_for(strategy) {
        return Outcome::NotApplicable(why);
    }
    let mut step = "set up";
    let result = Guest::new(rig, strategy).and_then(|mut g| {
        let r = g.case(case, &mut step);
        let unplugged = g.unplug();
        r.and_then(|()| {
            step = "unplug";
            unplugged
        })
    });
    match result {
        Ok(()) => Outcome::Pass,
        Err(failure) => Outcome::Fail { step, failure },
    }
}

type Step<T = ()> = std::result::Result<T, Failure>;

/// The guest driving one function, with what it expects to have arrived.
struct Guest<'r, R: Rig> {
    rig: &'r mut R,
    virt: Option<VirtMsix<R::Backend>>,
    expected: Arrivals,
    /// The message slot each entry has now.
    slots: [u32; ENTRIES as usize],
}

impl<'r, R: Rig> Guest<'r, R> {
    /// A function with every entry programmed (masked) with its own message; with
    /// [`Strategy::Queues`], every entry's queue exists.
    fn new(rig: &'r mut R, strategy: Strategy) -> Step<Self> {
        let table = BarRegion::parse(0).map_err(crate::Error::Msix)?;
        let pba = BarRegion::parse(PBA_AT as u32).map_err(crate::Error::Msix)?;
        let layout = MsixLayout::new(ENTRIES, table, pba, 0)?;
        let backend = rig.backend(ENTRIES)?;
        let mut g = Guest {
            virt: Some(VirtMsix::new(layout, backend, strategy)),
            rig,
            expected: Arrivals::new(),
            slots: core::array::from_fn(|i| i as u32),
        };
        for i in 0..ENTRIES {
            g.program_dword(i, i, true)?;
        }
        if strategy == Strategy::Queues {
            for i in 0..ENTRIES {
                g.virt().back_entry(i)?;
            }
        }
        Ok(g)
    }

    fn virt(&mut self) -> &mut VirtMsix<R::Backend> {
        self.virt.as_mut().expect("unplugged only at the end")
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Step {
        Ok(self.virt().mmio_write(BAR, offset, data)?)
    }

    /// Entry `i` gets message `slot` and its Mask Bit, by four DWORD writes.
    fn program_dword(&mut self, i: u32, slot: u32, masked: bool) -> Step {
        let msg = self.rig.message(slot);
        let at = u64::from(i) * 16;
        self.write(at, &(msg.address as u32).to_le_bytes())?;
        self.write(at + 4, &((msg.address >> 32) as u32).to_le_bytes())?;
        self.write(at + 8, &msg.data.to_le_bytes())?;
        self.slots[i as usize] = slot;
        self.set_mask(i, masked)
    }

    /// Entry `i` gets message `slot` and its Mask Bit, by two QWORD writes (address; data
    /// and Vector Control together).
    fn program_qword(&mut self, i: u32, slot: u32, masked: bool) -> Step {
        let msg = self.rig.message(slot);
        let at = u64::from(i) * 16;
        self.write(at, &msg.address.to_le_bytes())?;
        let data_control = u64::from(msg.data) | (u64::from(masked) << 32);
        self.slots[i as usize] = slot;
        self.write(at + 8, &data_control.to_le_bytes())
    }

    fn set_mask(&mut self, i: u32, masked: bool) -> Step {
        self.write(u64::from(i) * 16 + 12, &u32::from(masked).to_le_bytes())
    }

    fn control(&mut self, bits: u8) -> Step {
        Ok(self.virt().config_write(CONTROL, &[bits])?)
    }

    fn raise(&mut self, i: u32) -> Step {
        let virt = self.virt.as_mut().expect("unplugged only at the end");
        Ok(self.rig.raise(virt.backend_mut(), i)?)
    }

    /// Entry `i`'s current message is expected to arrive `n` more times.
    fn expect(&mut self, i: u32, n: u64) {
        let msg = self.rig.message(self.slots[i as usize]);
        *self.expected.entry((msg.address, msg.data)).or_default() += n;
    }

    /// The arrivals are exactly what is expected.
    fn check(&mut self) -> Step {
        let virt = self.virt.as_mut().expect("unplugged only at the end");
        let seen = self.rig.arrivals(virt.backend_mut(), &self.expected)?;
        let nonzero = |a: &Arrivals| -> Vec<((u64, u32), u64)> {
            a.iter()
                .filter(|(_, &n)| n > 0)
                .map(|(&k, &n)| (k, n))
                .collect()
        };
        let (expected, seen) = (nonzero(&self.expected), nonzero(&seen));
        match expected == seen {
            true => Ok(()),
            false => Err(Failure::Arrivals { expected, seen }),
        }
    }

    /// The guest reads entry `i`'s PBA bit.
    fn check_pending(&mut self, i: u32, expected: bool) -> Step {
        let mut qword = [0u8; 8];
        let at = PBA_AT + u64::from(i / 64) * 8;
        self.virt().mmio_read(BAR, at, &mut qword)?;
        let bit = u64::from_le_bytes(qword) >> (i % 64) & 1 == 1;
        match bit == expected {
            true => Ok(()),
            false => Err(Failure::Pending { index: i, expected }),
        }
    }

    fn unplug(&mut self) -> Step {
        let Some(virt) = self.virt.take() else {
            return Ok(());
        };
        let backend = virt.unplug()?;
        match backend.budget().in_use {
            0 => Ok(()),
            in_use => Err(Failure::Leak { in_use }),
        }
    }

    fn case(&mut self, case: Case, step: &mut &'static str) -> Step {
        match case {
            Case::MaskedLatch => self.masked_latch(step),
            Case::UnbackedLatch => self.unbacked_latch(step),
            Case::FunctionMask => self.function_mask(step),
            Case::AccessWidths => self.access_widths(step),
            Case::DisableEnable => self.disable_enable(step),
            Case::Shrink => self.shrink(step),
            Case::Release => self.release(step),
        }
    }

    /// Raises `i` `times` while it cannot deliver: nothing arrives, its PBA bit is set.
    fn latch(&mut self, i: u32, times: u32) -> Step {
        for _ in 0..times {
            self.raise(i)?;
        }
        self.check()?;
        self.check_pending(i, true)
    }

    /// Clears `i`'s Mask Bit: what it latched arrives once, its PBA bit clears.
    fn unmask_latched(&mut self, i: u32) -> Step {
        self.set_mask(i, false)?;
        self.expect(i, 1);
        self.check()?;
        self.check_pending(i, false)
    }

    /// A raise on live entry `i` arrives once.
    fn live(&mut self, i: u32) -> Step {
        self.raise(i)?;
        self.expect(i, 1);
        self.check()
    }

    fn masked_latch(&mut self, step: &mut &'static str) -> Step {
        *step = "enable, unmask 0 and 3";
        self.control(ENABLE)?;
        self.set_mask(0, false)?;
        self.set_mask(3, false)?;
        self.live(3)?;
        self.live(0)?;
        *step = "mask 3, raise it 3 times";
        self.set_mask(3, true)?;
        self.latch(3, 3)?;
        *step = "unmask 3";
        self.unmask_latched(3)?;
        *step = "mask and unmask 3 again";
        self.set_mask(3, true)?;
        self.set_mask(3, false)?;
        self.check()?;
        *step = "mask 0 (vector 0), raise, unmask";
        self.set_mask(0, true)?;
        self.latch(0, 1)?;
        self.unmask_latched(0)?;
        *step = "raise 3 and 0 live";
        self.live(3)?;
        self.live(0)
    }

    fn unbacked_latch(&mut self, step: &mut &'static str) -> Step {
        *step = "enable, raise 5 (masked since enable) twice";
        self.control(ENABLE)?;
        self.latch(5, 2)?;
        *step = "unmask 5";
        self.unmask_latched(5)?;
        *step = "raise 0 (masked since enable), unmask 0";
        self.latch(0, 1)?;
        self.unmask_latched(0)?;
        *step = "raise 7 (masked since enable), unmask by a QWORD write";
        self.latch(7, 1)?;
        self.program_qword(7, 7, false)?;
        self.expect(7, 1);
        self.check()?;
        self.check_pending(7, false)?;
        *step = "raise 5, 0 and 7 live";
        self.live(5)?;
        self.live(0)?;
        self.live(7)
    }

    fn function_mask(&mut self, step: &mut &'static str) -> Step {
        *step = "enable with Function Mask, unmask 2 and 4";
        self.control(ENABLE | FUNCTION_MASK)?;
        self.set_mask(2, false)?;
        self.set_mask(4, false)?;
        *step = "raise 2 twice and 4 once under Function Mask";
        self.latch(2, 2)?;
        self.latch(4, 1)?;
        *step = "clear Function Mask";
        self.control(ENABLE)?;
        self.expect(2, 1);
        self.expect(4, 1);
        self.check()?;
        self.check_pending(2, false)?;
        self.check_pending(4, false)?;
        *step = "set Function Mask again, raise 2, clear it";
        self.control(ENABLE | FUNCTION_MASK)?;
        self.latch(2, 1)?;
        self.control(ENABLE)?;
        self.expect(2, 1);
        self.check()?;
        self.check_pending(2, false)?;
        *step = "raise 2 and 4 live";
        self.live(2)?;
        self.live(4)
    }

    fn access_widths(&mut self, step: &mut &'static str) -> Step {
        let second = |i: u32| ENTRIES + i;
        *step = "enable; program 1 by DWORDs, 6 by QWORDs, both unmasked";
        self.control(ENABLE)?;
        self.program_dword(1, second(1), false)?;
        self.program_qword(6, second(6), false)?;
        self.live(1)?;
        self.live(6)?;
        *step = "re-aim live 1 by DWORDs and live 6 by QWORDs";
        self.program_dword(1, 1, false)?;
        self.program_qword(6, 6, false)?;
        self.live(1)?;
        self.live(6)?;
        *step = "mask 1 by DWORD and 6 by QWORD, raise, re-aim while masked";
        self.set_mask(1, true)?;
        self.program_qword(6, 6, true)?;
        self.latch(1, 1)?;
        self.latch(6, 1)?;
        self.program_dword(1, second(1), true)?;
        self.program_qword(6, second(6), true)?;
        *step = "unmask 1 by DWORD and 6 by QWORD: the latched raise takes the new message";
        self.unmask_latched(1)?;
        self.program_qword(6, second(6), false)?;
        self.expect(6, 1);
        self.check()?;
        self.check_pending(6, false)
    }

    fn disable_enable(&mut self, step: &mut &'static str) -> Step {
        *step = "enable, unmask 2 and 3, mask 3, raise 3";
        self.control(ENABLE)?;
        self.set_mask(2, false)?;
        self.set_mask(3, false)?;
        self.live(2)?;
        self.set_mask(3, true)?;
        self.latch(3, 1)?;
        *step = "disable, raise 2 and 3 (dropped)";
        self.control(0)?;
        self.raise(2)?;
        self.raise(3)?;
        self.check()?;
        *step = "enable again: nothing arrives, 3 still pending";
        self.control(ENABLE)?;
        self.check()?;
        self.check_pending(2, false)?;
        self.check_pending(3, true)?;
        *step = "raise 2 live, unmask 3";
        self.live(2)?;
        self.unmask_latched(3)?;
        self.live(3)
    }

    fn shrink(&mut self, step: &mut &'static str) -> Step {
        *step = "enable, unmask 1, 2, 3, mask 1 and 2, raise 2";
        self.control(ENABLE)?;
        for i in 1..=3 {
            self.set_mask(i, false)?;
        }
        self.set_mask(1, true)?;
        self.set_mask(2, true)?;
        self.latch(2, 1)?;
        *step = "shrink, raise 1 (released or idle)";
        self.virt().shrink()?;
        self.latch(1, 1)?;
        self.check_pending(2, true)?;
        *step = "unmask 2 and 1";
        self.unmask_latched(2)?;
        self.unmask_latched(1)?;
        *step = "raise 1, 2, 3 live";
        self.live(1)?;
        self.live(2)?;
        self.live(3)
    }

    fn release(&mut self, step: &mut &'static str) -> Step {
        *step = "enable, unmask 1 and 4, mask 4, raise 4";
        self.control(ENABLE)?;
        self.set_mask(1, false)?;
        self.set_mask(4, false)?;
        self.live(1)?;
        self.set_mask(4, true)?;
        self.latch(4, 1)?;
        *step = "release every entry, raise live 1";
        self.virt().release()?;
        self.latch(1, 1)?;
        self.check_pending(4, true)?;
        *step = "back the live entries again (sync)";
        self.virt().sync()?;
        self.expect(1, 1);
        self.check()?;
        self.check_pending(1, false)?;
        *step = "unmask 4";
        self.unmask_latched(4)?;
        *step = "raise 1 and 4 live";
        self.live(1)?;
        self.live(4)
    }
}

/// The rig of the in-process model ([`ModelBackend`](crate::ModelBackend)): a fresh host
/// machine (4 CPUs, VT-d remapping) and NIC per backend; arrivals are the routes the model
/// delivered to, and what the host delivered to no route counts as [`NOWHERE`].
#[derive(Debug, Default)]
pub struct ModelRig {
    seen: Arrivals,
}

impl Rig for ModelRig {
    type Backend = crate::ModelBackend;

    fn name(&self) -> String {
        "model".into()
    }

    fn backend(&mut self, entries: u32) -> Result<Self::Backend> {
        use crate::host::{HostMachine, HostNic, MachineConfig};
        self.seen.clear();
        let machine = std::sync::Arc::new(HostMachine::new(MachineConfig::remapped(4))?);
        let nic = HostNic::new(machine, genmsi_pci::PciAddress::new(0x3A, 0, 0), entries)?;
        Ok(crate::ModelBackend::new(nic, entries))
    }

    fn raise(&mut self, backend: &mut Self::Backend, index: u32) -> Result<()> {
        backend.raise(index).map(|_| ())
    }

    fn arrivals(&mut self, backend: &mut Self::Backend, _: &Arrivals) -> Result<Arrivals> {
        for route in backend.take_arrivals() {
            *self
                .seen
                .entry((route.msg.address, route.msg.data))
                .or_default() += 1;
        }
        let mut seen = self.seen.clone();
        if backend.lost() > 0 {
            seen.insert(NOWHERE, backend.lost());
        }
        Ok(seen)
    }
}
