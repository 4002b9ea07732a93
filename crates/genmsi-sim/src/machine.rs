//! The simulated hardware: local APICs, the interrupt bus, remapping units, the IO-APIC's
//! pins and the platform domains, all driven by the real genmsi crates.
//!
//! ## The local APIC, as late as the hardware
//!
//! Each local APIC has an IRR, an ISR and a trigger-mode register of 256 bits (SDM Vol. 3A
//! 11.8.4). An accepted interrupt sets its vector's IRR bit; a second write to a vector whose
//! IRR bit is still set merges with it (edge coalescing). The CPU takes the highest pending
//! vector whose priority class (vector >> 4) is above every vector in service, moves it from the
//! IRR to the ISR and runs its handler; the handler holds the vector in service for
//! [`ServiceModel::handler_steps`] steps before its end of interrupt (EOI), so vectors of its
//! class and below wait in the IRR meanwhile (higher classes nest). A CPU may also be running
//! with interrupts disabled ([`ServiceModel::irqs_off_chance`], up to
//! [`ServiceModel::irqs_off_steps`] steps), during which everything waits in its IRR. Time
//! advances with [`Machine::tick`]; the vector cleanup looks into the IRR and the ISR.
//!
//! Every write carries the [`Sender`] it was sent for, and each IRR bit keeps the senders of
//! the writes it holds, so that when the CPU finally runs a handler the accounting can tell
//! whether the irq that ran is the one the write was meant for.

use crate::mem::Shared;
use crate::run::Rng;
use genmsi::{DomainId, Irq, IrqRef, IrqSystem, Msg, SlotId, SystemConfig};
use genmsi_x86::ioapic::{IoApicModel, Rte};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::{
    FaultReason, InvDescriptor, Invalidate, IrDomain, IrUnit, SharedIrteTable, Trigger, Vector,
    VectorDomain, VectorTable,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Entries of each remapping unit's table.
pub const IRTE_ENTRIES: u32 = 65_536;

/// The remapping domain type the simulator uses.
pub type Ir = IrDomain<SharedIrteTable, UnitInvalidate>;

/// Invalidations go to the simulated unit's entry cache.
#[derive(Debug)]
pub struct UnitInvalidate(pub Shared<IrUnit>);

impl Invalidate for UnitInvalidate {
    fn invalidate(&mut self, desc: InvDescriptor) -> Result<(), &'static str> {
        self.0.lock().invalidate(desc);
        Ok(())
    }
}

/// How late the simulated CPUs service their interrupts (a scenario's `[machine]` keys of the
/// same names). All zero: every interrupt is handled the moment it arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServiceModel {
    /// Steps a handler keeps its vector in service before its EOI: vectors of its priority
    /// class and below wait in the IRR meanwhile.
    pub handler_steps: u64,
    /// Chance that an interrupt reaching an idle CPU finds it running with interrupts disabled.
    pub irqs_off_chance: f64,
    /// Longest such window, in steps (each is 1..=this long).
    pub irqs_off_steps: u64,
}

/// Who a message write was sent for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sender {
    /// An interrupt of this irq allocation (number and generation when the device raised it).
    Irq(IrqRef),
    /// A spurious write injected on purpose: nobody's interrupt.
    Spurious,
    /// A replay of this irq's message with another requester id, injected on purpose.
    Spoofed(IrqRef),
}

/// A local APIC: IRR, ISR and trigger-mode register, 256 bits each, and the senders of what
/// the IRR holds.
#[derive(Clone, Debug, Default)]
pub struct Lapic {
    /// Online (accepts interrupts).
    pub online: bool,
    irr: [u64; 4],
    isr: [u64; 4],
    tmr: [u64; 4],
    /// Per vector pending in the IRR, the distinct senders of the writes it holds.
    senders: BTreeMap<u8, Vec<Sender>>,
    /// Per vector in service, the step of its end of interrupt.
    eoi_at: BTreeMap<u8, u64>,
    /// Interrupts are disabled until this step.
    irqs_off_until: u64,
}

fn bit(set: &[u64; 4], v: u8) -> bool {
    set[usize::from(v / 64)] & 1 << (v % 64) != 0
}

fn put(set: &mut [u64; 4], v: u8, on: bool) {
    if on {
        set[usize::from(v / 64)] |= 1 << (v % 64);
    } else {
        set[usize::from(v / 64)] &= !(1 << (v % 64));
    }
}

fn top(s: &[u64; 4]) -> Option<u8> {
    (0..4)
        .rev()
        .find(|&w| s[w] != 0)
        .map(|w| (w * 64 + 63 - s[w].leading_zeros() as usize) as u8)
}

impl Lapic {
    fn up() -> Self {
        Lapic {
            online: true,
            ..Lapic::default()
        }
    }

    /// True when `vector` is pending in the IRR.
    pub fn pending(&self, vector: Vector) -> bool {
        bit(&self.irr, vector.0)
    }

    /// True when `vector` is in service (ISR set: its handler has not ended with an EOI).
    pub fn in_service(&self, vector: Vector) -> bool {
        bit(&self.isr, vector.0)
    }

    /// Interrupts waiting in the IRR (one per distinct sender of each pending vector).
    pub fn waiting(&self) -> usize {
        self.senders.values().map(Vec::len).sum()
    }

    fn idle(&self) -> bool {
        self.irr == [0; 4] && self.isr == [0; 4]
    }

    /// Accepts an interrupt for `sender`; false when it merged with one of the same sender
    /// already pending.
    fn accept(&mut self, vector: Vector, level: bool, sender: Sender) -> bool {
        put(&mut self.irr, vector.0, true);
        put(&mut self.tmr, vector.0, level);
        let list = self.senders.entry(vector.0).or_default();
        if list.contains(&sender) {
            return false;
        }
        list.push(sender);
        true
    }

    /// The highest-priority pending vector above every in-service one (SDM Vol. 3A 11.8.3.1:
    /// priority class = vector >> 4).
    fn next(&self) -> Option<Vector> {
        let v = top(&self.irr)?;
        match top(&self.isr) {
            Some(s) if s >> 4 >= v >> 4 => None,
            _ => Some(Vector(v)),
        }
    }
}

/// Where one message write ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Handled by the irq allocation `irq` on `cpu`.
    Handled {
        /// The irq allocation the vector was mapped to when the CPU ran its handler.
        irq: IrqRef,
        /// The CPU.
        cpu: u32,
    },
    /// Merged with an interrupt of the same sender already pending on that CPU.
    Merged,
    /// Blocked by a remapping unit.
    Blocked(FaultReason),
    /// Landed on a vector no irq owns (or a disabled one).
    Stale {
        /// The CPU.
        cpu: u32,
        /// The vector.
        vector: Vector,
    },
    /// Left in the IRR of a CPU that went offline, and not retriggered: no handler ran.
    Dropped {
        /// The CPU.
        cpu: u32,
        /// The vector.
        vector: Vector,
    },
    /// The destination CPU is offline or does not exist.
    NoCpu(u32),
    /// Not an interrupt message (an ordinary memory write).
    NotInterrupt,
    /// Accepted into the IRR of `cpu`, not serviced yet (interrupts disabled there, or a vector
    /// of the same or a higher class in service): it arrives later, among
    /// [`Machine::take_late`].
    Pending {
        /// The CPU.
        cpu: u32,
        /// The vector.
        vector: Vector,
    },
}

/// What one pass of the vector cleanup did, as the local APICs saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Old vectors given back.
    pub released: usize,
    /// Interrupts pending in the IRR of a CPU gone offline, sent again on the new target.
    pub retriggered: usize,
    /// Old vectors kept because their CPU still had them in its IRR or ISR.
    pub held: usize,
}

/// The simulated machine (see the module docs).
#[derive(Debug)]
pub struct Machine {
    /// The irq system (the library under test).
    pub sys: IrqSystem,
    /// The vector domain.
    pub vector: DomainId,
    /// The remapping domains, one per unit (empty without remapping).
    pub ir: Vec<DomainId>,
    tables: Vec<SharedIrteTable>,
    units: Vec<Shared<IrUnit>>,
    vectors: Arc<VectorTable>,
    /// Local APICs.
    pub lapics: Vec<Lapic>,
    /// The IO-APIC's registers.
    pub ioapic: Shared<IoApicModel>,
    /// IO-APIC pins whose line is asserted.
    pub lines: BTreeMap<u32, bool>,
    /// Arrivals that answer no write of the moment, with the sender each was sent for:
    /// vectors serviced late, level lines firing again at end of interrupt, retriggers by
    /// cleanup. The event loop takes them ([`Machine::take_late`]) and accounts each one.
    late: Vec<(Sender, Arrival)>,
    /// The IO-APIC's device id in the irq system, once registered.
    pub ioapic_device: Option<genmsi::DeviceId>,
    /// The remapping unit the IO-APIC sits behind.
    pub ioapic_unit: usize,
    /// How late the CPUs service interrupts.
    service: ServiceModel,
    /// Draws the interrupts-disabled windows.
    rng: Rng,
    /// The current step.
    now: u64,
    /// CPUs with something in their IRR or ISR.
    busy: BTreeSet<u32>,
    /// Per CPU, IRR | ISR, readable from outside the machine (the vector domain's probe).
    held: Arc<[[AtomicU64; 4]]>,
    /// The current step, for the irq system's grace clock.
    clock: Arc<AtomicU64>,
    /// Resources given back after their grace (irq numbers, remapping entries, vectors).
    pub released_after_grace: u64,
}

impl Machine {
    /// A machine of `cpus` CPUs, with `iommus` remapping units when `remapping`; its CPUs
    /// service interrupts at once until [`Machine::set_service`].
    pub fn new(cpus: u32, remapping: bool, iommus: u32, max_irqs: u32) -> Self {
        let sys = IrqSystem::new(SystemConfig::new(cpus, max_irqs));
        let vd = VectorDomain::new(cpus);
        let vectors = vd.table();
        let vector = sys.add_domain(Box::new(vd), None).expect("root domain");
        let (mut ir, mut tables, mut units) = (Vec::new(), Vec::new(), Vec::new());
        if remapping {
            for _ in 0..iommus {
                let table = SharedIrteTable::new(IRTE_ENTRIES);
                let unit = Shared::new(IrUnit::new(cpus > 255, false));
                let domain = IrDomain::new(table.clone(), UnitInvalidate(unit.clone()), cpus > 255);
                ir.push(
                    sys.add_domain(Box::new(domain), Some(vector))
                        .expect("IR domain"),
                );
                tables.push(table);
                units.push(unit);
            }
        }
        Machine {
            sys,
            vector,
            ir,
            tables,
            units,
            vectors,
            lapics: vec![Lapic::up(); cpus as usize],
            ioapic: Shared::new(IoApicModel::new(24)),
            lines: BTreeMap::new(),
            late: Vec::new(),
            ioapic_device: None,
            ioapic_unit: 0,
            service: ServiceModel::default(),
            rng: Rng::new(0),
            now: 0,
            busy: BTreeSet::new(),
            held: (0..cpus).map(|_| Default::default()).collect(),
            clock: Arc::new(AtomicU64::new(0)),
            released_after_grace: 0,
        }
    }

    /// Freed resources wait for their grace ([`genmsi::grace`]): `write_latency` steps, the
    /// bound on posted-write latency, on a clock that is the simulation's step, and for a
    /// vector, a look into its CPU's IRR and ISR (the cleanup's, or the probe the vector domain
    /// may use by itself when an allocation finds no vector).
    pub fn set_grace(&mut self, write_latency: u64) {
        self.sys.set_write_latency(write_latency);
        let clock = self.clock.clone();
        self.sys
            .set_grace_clock(Some(Box::new(move || clock.load(Ordering::Relaxed))));
        let probe = self.held_probe();
        self.with_vectors(|v| v.set_pending_probe(Some(Box::new(probe))));
    }

    /// Publishes `cpu`'s IRR | ISR for [`Machine::held_probe`].
    fn mirror(&self, cpu: u32) {
        let l = &self.lapics[cpu as usize];
        for (w, word) in self.held[cpu as usize].iter().enumerate() {
            word.store(l.irr[w] | l.isr[w], Ordering::Relaxed);
        }
    }

    /// Asks whether `vector` is pending in the IRR or in service in the ISR of `cpu`: what the
    /// vector domain may ask by itself, at any time, before it gives a vector back.
    pub fn held_probe(&self) -> impl Fn(u32, Vector) -> bool + Send + Sync + 'static {
        let held = self.held.clone();
        move |cpu, v| {
            held.get(cpu as usize).is_some_and(|w| {
                w[usize::from(v.0 / 64)].load(Ordering::Relaxed) & 1 << (v.0 % 64) != 0
            })
        }
    }

    /// Sets how late the CPUs service interrupts; `seed` draws the interrupts-disabled windows.
    pub fn set_service(&mut self, service: ServiceModel, seed: u64) {
        self.service = service;
        // Its own sequence, so that the traffic of a seed does not depend on the model.
        self.rng = Rng::new(seed ^ 0x1A91_C5E7_0F0F_2026);
    }

    /// The parent domain for the `n`-th device: its remapping unit, or the vector domain.
    pub fn parent_for(&self, n: usize) -> (DomainId, usize) {
        match self.ir.len() {
            0 => (self.vector, 0),
            k => (self.ir[n % k], n % k),
        }
    }

    /// The live allocation of `irq` (number and generation).
    pub fn irq_ref(&self, irq: Irq) -> IrqRef {
        self.sys.table().irq_ref(irq)
    }

    /// A message write from requester `rid` behind remapping unit `unit`, sent for `sender`.
    /// The destination CPU services it at once if it can; otherwise it waits in the IRR.
    pub fn write(&mut self, msg: &Msg, rid: u16, unit: usize, sender: Sender) -> Arrival {
        let (dest, vector, level) = if self.units.is_empty() {
            match MsiFormat::parse(msg) {
                Ok(MsiFormat::Compat(c)) => (c.dest, c.vector, c.trigger == Trigger::Level),
                _ => return Arrival::NotInterrupt,
            }
        } else {
            if msg.address & 0xFFF0_0000 != 0xFEE0_0000 {
                return Arrival::NotInterrupt;
            }
            let table = &self.tables[unit];
            match self.units[unit].lock().translate(msg, rid, table) {
                Ok(r) => (r.dest, r.vector, r.trigger == Trigger::Level),
                Err(f) => return Arrival::Blocked(f),
            }
        };
        if !self.lapics.get(dest as usize).is_some_and(|l| l.online) {
            return Arrival::NoCpu(dest);
        }
        self.deliver(dest, vector, level, sender)
    }

    /// The local APIC of `cpu` accepts `vector` for `sender`, and the CPU takes what it can.
    fn deliver(&mut self, cpu: u32, vector: Vector, level: bool, sender: Sender) -> Arrival {
        let (now, model) = (self.now, self.service);
        let lapic = &mut self.lapics[cpu as usize];
        if lapic.idle()
            && now >= lapic.irqs_off_until
            && model.irqs_off_chance > 0.0
            && model.irqs_off_steps > 0
        {
            let draw = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if draw < model.irqs_off_chance {
                lapic.irqs_off_until = now + 1 + self.rng.below(model.irqs_off_steps);
            }
        }
        let fresh = lapic.accept(vector, level, sender);
        self.mirror(cpu);
        if !fresh {
            return Arrival::Merged;
        }
        self.busy.insert(cpu);
        let mut own = Arrival::Pending { cpu, vector };
        for (v, s, arrival) in self.service(cpu, false) {
            match v == vector && s == sender {
                true => own = arrival,
                false => self.late.push((s, arrival)),
            }
        }
        own
    }

    /// Arrivals that answer no write of the moment (vectors serviced late, level lines firing
    /// again at end of interrupt, retriggers), oldest first, each with its sender.
    pub fn take_late(&mut self) -> Vec<(Sender, Arrival)> {
        std::mem::take(&mut self.late)
    }

    /// Interrupts waiting in the IRRs of every CPU.
    pub fn waiting(&self) -> usize {
        self.busy
            .iter()
            .map(|&c| self.lapics[c as usize].waiting())
            .sum()
    }

    /// Time passes to step `now`: handlers whose time is up end with their EOI, and every CPU
    /// with interrupts enabled takes what its IRR holds. Their arrivals join
    /// [`Machine::take_late`].
    pub fn tick(&mut self, now: u64) {
        self.now = self.now.max(now);
        self.clock.store(self.now, Ordering::Relaxed);
        let g = self.sys.advance_grace(self.now);
        self.released_after_grace += u64::from(g.irq_numbers_released + g.domain_released);
        let busy: Vec<u32> = self.busy.iter().copied().collect();
        for cpu in busy {
            let done = self.service(cpu, false);
            self.late.extend(done.into_iter().map(|(_, s, a)| (s, a)));
        }
    }

    /// CPU `cpu` ends the handlers whose time is up and, unless its interrupts are disabled,
    /// runs its interrupt entry for every vector it may take, highest first. `now` ignores the
    /// handlers' time and the disabled window: the CPU serves everything (a wait that lets it).
    fn service(&mut self, cpu: u32, now: bool) -> Vec<(Vector, Sender, Arrival)> {
        let mut done = Vec::new();
        loop {
            self.end_handlers(cpu, now);
            let l = &self.lapics[cpu as usize];
            if !now && self.now < l.irqs_off_until {
                break;
            }
            if l.next().is_none() {
                break;
            }
            done.extend(self.take_one(cpu));
        }
        if self.lapics[cpu as usize].idle() {
            self.busy.remove(&cpu);
        }
        done
    }

    /// CPU `cpu` takes the vector [`Lapic::next`] names from its IRR into its ISR and runs
    /// its handler, which holds it in service for the handler's time.
    fn take_one(&mut self, cpu: u32) -> Vec<(Vector, Sender, Arrival)> {
        let l = &mut self.lapics[cpu as usize];
        let Some(v) = l.next() else {
            return Vec::new();
        };
        put(&mut l.irr, v.0, false);
        put(&mut l.isr, v.0, true);
        let senders = l.senders.remove(&v.0).unwrap_or_default();
        l.eoi_at.insert(v.0, self.now + self.service.handler_steps);
        self.mirror(cpu);
        let arrival = match self.vectors.lookup_ref(cpu, v) {
            Some(r) if self.sys.handle_ref(r, cpu) == genmsi::Delivery::Handled => {
                Arrival::Handled { irq: r, cpu }
            }
            _ => Arrival::Stale { cpu, vector: v },
        };
        if let Arrival::Handled { irq, .. } = arrival {
            // A level source is quieted by its handler before the end of interrupt.
            self.quiet(irq.irq);
        }
        senders.into_iter().map(|s| (v, s, arrival)).collect()
    }

    /// The handlers of `cpu` whose time is up (all of them with `all`) end with their EOI,
    /// the innermost (highest class) first.
    fn end_handlers(&mut self, cpu: u32, all: bool) {
        loop {
            let l = &mut self.lapics[cpu as usize];
            let Some(v) = top(&l.isr) else { return };
            if !all && l.eoi_at.get(&v).is_some_and(|&t| t > self.now) {
                return;
            }
            // An EOI clears the highest bit of the ISR (SDM Vol. 3A 11.8.5).
            put(&mut l.isr, v, false);
            l.eoi_at.remove(&v);
            let level = bit(&l.tmr, v);
            self.mirror(cpu);
            if level {
                self.eoi_broadcast(Vector(v));
            }
        }
    }

    /// The CPUs serve everything they hold (a modelled wait long enough for interrupts to be
    /// enabled and every handler to end); the arrivals join [`Machine::take_late`].
    pub fn drain(&mut self) {
        while let Some(&cpu) = self.busy.first() {
            let done = self.service(cpu, true);
            self.late.extend(done.into_iter().map(|(_, s, a)| (s, a)));
        }
    }

    /// The CPUs serve what they hold until no IRR holds an interrupt `whose` answers for (a
    /// driver waiting for its own handlers): each such CPU ends its handlers and takes its
    /// vectors in priority order until the last of them ran; the rest stay where they are.
    /// The arrivals join [`Machine::take_late`].
    pub fn drain_where(&mut self, whose: &dyn Fn(Sender) -> bool) {
        let busy: Vec<u32> = self.busy.iter().copied().collect();
        for cpu in busy {
            loop {
                let l = &self.lapics[cpu as usize];
                if !l.senders.values().flatten().any(|&s| whose(s)) {
                    break;
                }
                self.end_handlers(cpu, true);
                let done = self.take_one(cpu);
                self.late.extend(done.into_iter().map(|(_, s, a)| (s, a)));
            }
            if self.lapics[cpu as usize].idle() {
                self.busy.remove(&cpu);
            }
        }
    }

    /// CPU `cpu` starts to go offline: its handlers run to their end, then it disables
    /// interrupts for good; what arrives from now on waits in its IRR for the cleanup to
    /// retrigger it on the irq's new target.
    pub fn offline_begin(&mut self, cpu: u32) {
        self.end_handlers(cpu, true);
        self.lapics[cpu as usize].irqs_off_until = u64::MAX;
        if self.lapics[cpu as usize].idle() {
            self.busy.remove(&cpu);
        }
    }

    /// CPU `cpu` is gone: whatever its IRR still holds is dropped (the cleanup retriggered the
    /// vectors of moved irqs; no handler will run for the rest), each as a late arrival.
    pub fn offline_end(&mut self, cpu: u32) {
        let l = std::mem::take(&mut self.lapics[cpu as usize]);
        self.mirror(cpu);
        for (v, senders) in l.senders {
            let dropped = Arrival::Dropped {
                cpu,
                vector: Vector(v),
            };
            self.late.extend(senders.into_iter().map(|s| (s, dropped)));
        }
        self.busy.remove(&cpu);
    }

    /// CPU `cpu` stays after all (its offline was refused): interrupts are enabled again.
    pub fn offline_abort(&mut self, cpu: u32) {
        self.lapics[cpu as usize].irqs_off_until = self.now;
    }

    /// CPU `cpu` comes (back) online with an empty local APIC.
    pub fn online(&mut self, cpu: u32) {
        self.lapics[cpu as usize] = Lapic::up();
        self.mirror(cpu);
    }

    /// Level-triggered pins belong to devices whose handler deasserts the line.
    fn quiet(&mut self, irq: Irq) {
        if self.ioapic_device.is_none() || self.lines.is_empty() {
            return;
        }
        let Some(info) = self.sys.irq_info(irq) else {
            return;
        };
        if self.ioapic_device == Some(info.device) {
            self.lines.insert(info.desc.index, false);
        }
    }

    /// The end of a level-triggered interrupt reaches the IO-APIC: entries with this vector clear
    /// Remote IRR, and a line still asserted fires again.
    fn eoi_broadcast(&mut self, vector: Vector) {
        let pins: Vec<u32> = self.lines.keys().copied().collect();
        for pin in pins {
            let raw = self.ioapic.lock().rte(pin);
            let same = match Rte::decode(raw) {
                Rte::Compat { vector: v, .. } | Rte::Remapped { vector: v, .. } => v == vector,
            };
            if same && Rte::status(raw).1 {
                self.set_remote_irr(pin, false);
                if self.lines[&pin] {
                    // The line is still asserted: the interrupt latched at the pin goes now.
                    if let Some(again) = self.fire_pin(pin) {
                        self.late.push(again);
                    }
                }
            }
        }
    }

    fn set_remote_irr(&mut self, pin: u32, on: bool) {
        let reg = 0x10 + 2 * pin as usize;
        let mut io = self.ioapic.lock();
        if on {
            io.regs[reg] |= 1 << 14;
        } else {
            io.regs[reg] &= !(1 << 14);
        }
    }

    /// INTx: the source asserts IO-APIC pin `pin` (level). Returns where the interrupt went;
    /// [`Arrival::Merged`] when the line was asserted already (a level line is one interrupt
    /// however often its source asks), `None` when the pin is masked or its previous interrupt
    /// is still in service (the line stays asserted and fires on unmask or end of interrupt).
    pub fn assert_line(&mut self, pin: u32) -> Option<Arrival> {
        if self.lines.insert(pin, true) == Some(true) {
            return Some(Arrival::Merged);
        }
        self.fire_pin(pin).map(|(_, a)| a)
    }

    /// The irq allocation behind IO-APIC pin `pin`.
    fn pin_sender(&self, pin: u32) -> Sender {
        let irq = self
            .ioapic_device
            .and_then(|d| self.sys.desc(d, SlotId::Default, pin).ok())
            .map(|d| d.irq);
        match irq {
            Some(irq) => Sender::Irq(self.irq_ref(irq)),
            None => Sender::Spurious,
        }
    }

    /// The IO-APIC sends pin `pin`'s message if it may.
    pub fn fire_pin(&mut self, pin: u32) -> Option<(Sender, Arrival)> {
        let raw = self.ioapic.lock().rte(pin);
        let rte = Rte::decode(raw);
        let (masked, level) = match rte {
            Rte::Compat { masked, pin, .. } | Rte::Remapped { masked, pin, .. } => {
                (masked, pin.trigger == Trigger::Level)
            }
        };
        if masked || raw == 0 || Rte::status(raw).1 {
            return None;
        }
        if level {
            self.set_remote_irr(pin, true);
        }
        let sender = self.pin_sender(pin);
        Some((
            sender,
            self.write(&rte.message(), IOAPIC_RID, self.ioapic_unit, sender),
        ))
    }

    /// Faults recorded by every remapping unit, by reason.
    pub fn faults(&self) -> BTreeMap<FaultReason, u64> {
        let mut out = BTreeMap::new();
        for u in &self.units {
            for (r, n) in u.lock().faults.counts() {
                *out.entry(r).or_default() += n;
            }
        }
        out
    }

    /// Runs the vector domain's cleanup against the local APICs: an old vector is given back
    /// only when its CPU holds it in neither its IRR nor its ISR. What the IRR of a CPU gone
    /// offline holds for a moved irq is sent again on the irq's new target, with the senders it
    /// was holding; the arrivals join [`Machine::take_late`].
    pub fn cleanup(&mut self) -> Cleanup {
        let online = self.sys.online_cpus();
        let found = RefCell::new(Vec::new());
        let (lapics, vectors) = (&self.lapics, &self.vectors);
        let report = self
            .sys
            .with_domain::<VectorDomain, _>(self.vector, |v| {
                v.cleanup(&|cpu, vec| {
                    let held = lapics
                        .get(cpu as usize)
                        .is_some_and(|l| l.pending(vec) || l.in_service(vec));
                    if held {
                        let gone = !online.contains(cpu);
                        found
                            .borrow_mut()
                            .push((cpu, vec, gone, vectors.peek(cpu, vec)));
                    }
                    held
                })
            })
            .expect("the vector domain is registered");
        let found = found.into_inner();
        self.released_after_grace += report.reclaimed.len() as u64;
        let out = Cleanup {
            released: report.released.len(),
            retriggered: report.retrigger.len(),
            held: found.iter().filter(|f| !f.2).count(),
        };
        for (cpu, vec, _, irq) in found.into_iter().filter(|f| f.2) {
            let Some(irq) = irq.filter(|i| report.retrigger.contains(i)) else {
                continue;
            };
            let target = self.with_vectors(|v| v.target(irq));
            let l = &mut self.lapics[cpu as usize];
            put(&mut l.irr, vec.0, false);
            let senders = l.senders.remove(&vec.0).unwrap_or_default();
            self.mirror(cpu);
            let Some(t) = target else {
                let dropped = Arrival::Dropped { cpu, vector: vec };
                self.late.extend(senders.into_iter().map(|s| (s, dropped)));
                continue;
            };
            // A retrigger merges with the same vector already pending there, like an edge.
            for s in senders {
                match self.deliver(t.cpu, t.vector, false, s) {
                    Arrival::Pending { .. } => {}
                    arrival => self.late.push((s, arrival)),
                }
            }
        }
        out
    }

    /// Runs `f` on the vector domain.
    pub fn with_vectors<T>(&self, f: impl FnOnce(&mut VectorDomain) -> T) -> T {
        self.sys
            .with_domain::<VectorDomain, T>(self.vector, f)
            .expect("the vector domain is registered")
    }
}

/// The IO-APIC's source id (bus 0xF0, device 0x1F, function 0: what firmware reports on PCs).
pub const IOAPIC_RID: u16 = 0xF0F8;

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(irq: u32) -> Sender {
        Sender::Irq(IrqRef {
            irq: Irq(irq),
            generation: 1,
        })
    }

    #[test]
    fn a_second_edge_of_the_same_sender_merges_another_sender_queues_behind_it() {
        let mut l = Lapic::up();
        assert!(l.accept(Vector(0x41), false, sender(1)));
        assert!(!l.accept(Vector(0x41), false, sender(1)), "merged");
        assert!(
            l.accept(Vector(0x41), false, sender(2)),
            "kept for the handler"
        );
        assert_eq!(l.waiting(), 2);
        assert!(l.pending(Vector(0x41)));
    }

    /// SDM Vol. 3A 11.8.3.1: the CPU takes the highest pending vector whose priority class
    /// (vector >> 4) is above the class of every vector in service.
    #[test]
    fn a_vector_in_service_blocks_its_class_and_below() {
        let mut l = Lapic::up();
        put(&mut l.isr, 0x45, true);
        l.accept(Vector(0x41), false, sender(1));
        assert_eq!(l.next(), None, "a lower vector of the same class waits");
        l.accept(Vector(0x4F), false, sender(2));
        assert_eq!(
            l.next(),
            None,
            "a higher vector of the same class waits too"
        );
        l.accept(Vector(0x50), false, sender(3));
        assert_eq!(l.next(), Some(Vector(0x50)), "a higher class nests");
        put(&mut l.isr, 0x45, false);
        assert_eq!(l.next(), Some(Vector(0x50)), "the highest first");
        put(&mut l.irr, 0x50, false);
        assert_eq!(l.next(), Some(Vector(0x4F)));
    }

    #[test]
    fn late_service_holds_merges_and_ends_with_the_eoi() {
        // One CPU, no remapping, an irq of the vector domain written by hand.
        let mut m = Machine::new(1, false, 1, 64);
        m.set_service(
            ServiceModel {
                handler_steps: 2,
                irqs_off_chance: 0.0,
                irqs_off_steps: 0,
            },
            1,
        );
        let v = Vector(0x33);
        let s = sender(7);
        m.tick(10);
        // Nothing maps the vector: the handler finds no irq, but the APIC state is what counts.
        let a = m.deliver(0, v, false, s);
        assert_eq!(a, Arrival::Stale { cpu: 0, vector: v });
        assert!(m.lapics[0].in_service(v), "held for 2 steps");
        let probe = m.held_probe();
        assert!(probe(0, v) && !probe(0, Vector(0x34)) && !probe(5, v));
        assert_eq!(
            m.deliver(0, v, false, s),
            Arrival::Pending { cpu: 0, vector: v }
        );
        assert_eq!(
            m.deliver(0, v, false, s),
            Arrival::Merged,
            "second edge while IRR set"
        );
        assert_eq!(m.waiting(), 1);
        m.tick(11);
        assert!(m.take_late().is_empty(), "still in service");
        m.tick(12);
        let late = m.take_late();
        assert_eq!(late, vec![(s, Arrival::Stale { cpu: 0, vector: v })]);
        assert!(m.lapics[0].in_service(v) && !m.lapics[0].pending(v));
        m.tick(14);
        assert!(m.lapics[0].idle() && m.busy.is_empty());
        assert!(!probe(0, v), "the probe sees the EOI");
    }

    #[test]
    fn a_dying_cpu_keeps_its_irr_and_drops_what_is_not_retriggered() {
        let mut m = Machine::new(2, false, 1, 64);
        m.offline_begin(1);
        let v = Vector(0x40);
        assert_eq!(
            m.deliver(1, v, false, sender(3)),
            Arrival::Pending { cpu: 1, vector: v }
        );
        m.tick(5);
        assert!(m.take_late().is_empty(), "interrupts are off for good");
        m.offline_end(1);
        assert_eq!(
            m.take_late(),
            vec![(sender(3), Arrival::Dropped { cpu: 1, vector: v })]
        );
        assert!(!m.lapics[1].online);
    }
}
