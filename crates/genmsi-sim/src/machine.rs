//! The simulated hardware: local APICs, the interrupt bus, remapping units, the IO-APIC's
//! pins and the platform domains, all driven by the real genmsi crates.

use crate::mem::Shared;
use genmsi::{DomainId, Irq, IrqSystem, Msg, SystemConfig};
use genmsi_x86::ioapic::{IoApicModel, Rte};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::{
    FaultReason, InvDescriptor, Invalidate, IrDomain, IrUnit, SharedIrteTable, Trigger, Vector,
    VectorDomain, VectorTable,
};
use std::collections::BTreeMap;
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

/// A local APIC: IRR, ISR and trigger-mode register, 256 bits each.
#[derive(Clone, Debug, Default)]
pub struct Lapic {
    /// Online (accepts interrupts).
    pub online: bool,
    irr: [u64; 4],
    isr: [u64; 4],
    tmr: [u64; 4],
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

impl Lapic {
    /// True when `vector` is pending in the IRR.
    pub fn pending(&self, vector: Vector) -> bool {
        bit(&self.irr, vector.0)
    }

    /// Accepts an interrupt; false when it merged with one already pending.
    fn accept(&mut self, vector: Vector, level: bool) -> bool {
        let fresh = !bit(&self.irr, vector.0);
        put(&mut self.irr, vector.0, true);
        put(&mut self.tmr, vector.0, level);
        fresh
    }

    /// The highest-priority pending vector above every in-service one (SDM Vol. 3A 11.8.3.1:
    /// priority class = vector >> 4).
    fn next(&self) -> Option<Vector> {
        let top = |s: &[u64; 4]| {
            (0..4)
                .rev()
                .find(|&w| s[w] != 0)
                .map(|w| (w * 64 + 63 - s[w].leading_zeros() as usize) as u8)
        };
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
    /// Handled by `irq` on `cpu`.
    Handled {
        /// The irq the vector was mapped to.
        irq: Irq,
        /// The CPU.
        cpu: u32,
    },
    /// Merged with the same vector already pending on that CPU.
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
    /// The destination CPU is offline or does not exist.
    NoCpu(u32),
    /// Not an interrupt message (an ordinary memory write).
    NotInterrupt,
    /// Accepted into the IRR of `cpu`, not serviced yet (a higher-priority vector is in
    /// service): it arrives later, among [`Machine::take_late`].
    Pending {
        /// The CPU.
        cpu: u32,
        /// The vector.
        vector: Vector,
    },
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
    /// Arrivals that answer no write of their own: vectors serviced after the one a write
    /// raised, level lines firing again at end of interrupt, retriggers by cleanup. The event
    /// loop takes them ([`Machine::take_late`]) and accounts each one.
    late: Vec<Arrival>,
    /// The IO-APIC's device id in the irq system, once registered.
    pub ioapic_device: Option<genmsi::DeviceId>,
    /// The remapping unit the IO-APIC sits behind.
    pub ioapic_unit: usize,
    /// The simulated time, read by the grace clock.
    now: Arc<std::sync::atomic::AtomicU64>,
}

impl Machine {
    /// A machine of `cpus` CPUs, with `iommus` remapping units when `remapping`.
    pub fn new(cpus: u32, remapping: bool, iommus: u32, max_irqs: u32) -> Self {
        let sys = IrqSystem::new(SystemConfig::new(cpus, max_irqs));
        // The grace clock is the simulated time; an allocation that finds a pool empty reads
        // it to reclaim what has passed its grace.
        let now = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let clock = now.clone();
        sys.set_grace_clock(Some(Box::new(move || {
            clock.load(std::sync::atomic::Ordering::Relaxed)
        })));
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
            lapics: vec![
                Lapic {
                    online: true,
                    ..Lapic::default()
                };
                cpus as usize
            ],
            ioapic: Shared::new(IoApicModel::new(24)),
            lines: BTreeMap::new(),
            late: Vec::new(),
            ioapic_device: None,
            ioapic_unit: 0,
            now,
        }
    }

    /// The platform's bound on posted-write latency, in steps: a write raised at step `t`
    /// lands by step `t + latency`.
    pub fn set_write_latency(&mut self, latency: u64) {
        self.sys.set_write_latency(latency);
    }

    /// The parent domain for the `n`-th device: its remapping unit, or the vector domain.
    pub fn parent_for(&self, n: usize) -> (DomainId, usize) {
        match self.ir.len() {
            0 => (self.vector, 0),
            k => (self.ir[n % k], n % k),
        }
    }

    /// A message write from requester `rid` behind remapping unit `unit`. The destination CPU
    /// services it at once.
    pub fn write(&mut self, msg: &Msg, rid: u16, unit: usize) -> Arrival {
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
        let Some(lapic) = self.lapics.get_mut(dest as usize).filter(|l| l.online) else {
            return Arrival::NoCpu(dest);
        };
        if !lapic.accept(vector, level) {
            return Arrival::Merged;
        }
        let mut own = Arrival::Pending { cpu: dest, vector };
        for (v, arrival) in self.service(dest) {
            match v == vector {
                true => own = arrival,
                false => self.late.push(arrival),
            }
        }
        own
    }

    /// Arrivals that answer no write of their own (vectors serviced after the one a write
    /// raised, level lines firing again at end of interrupt, retriggers), oldest first.
    pub fn take_late(&mut self) -> Vec<Arrival> {
        std::mem::take(&mut self.late)
    }

    /// CPU `cpu` runs its interrupt entry for every pending vector, highest first; returns
    /// every arrival with its vector.
    pub fn service(&mut self, cpu: u32) -> Vec<(Vector, Arrival)> {
        let mut done = Vec::new();
        while let Some(v) = self.lapics[cpu as usize].next() {
            let l = &mut self.lapics[cpu as usize];
            put(&mut l.irr, v.0, false);
            put(&mut l.isr, v.0, true);
            let level = bit(&l.tmr, v.0);
            let arrival = match self.vectors.lookup_ref(cpu, v) {
                Some(r) if self.sys.handle_ref(r, cpu) == genmsi::Delivery::Handled => {
                    Arrival::Handled { irq: r.irq, cpu }
                }
                _ => Arrival::Stale { cpu, vector: v },
            };
            done.push((v, arrival));
            if let Arrival::Handled { irq, .. } = arrival {
                // A level source is quieted by its handler before the end of interrupt.
                self.quiet(irq);
            }
            put(&mut self.lapics[cpu as usize].isr, v.0, false);
            if level {
                self.eoi_broadcast(v);
            }
        }
        done
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
                    let again = self.fire_pin(pin);
                    self.late.extend(again);
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

    /// INTx: the source asserts IO-APIC pin `pin` (level). Returns where the interrupt went,
    /// or `None` when the pin is masked or its previous interrupt is still in service (the
    /// line stays asserted and fires on unmask or end of interrupt).
    pub fn assert_line(&mut self, pin: u32) -> Option<Arrival> {
        self.lines.insert(pin, true);
        self.fire_pin(pin)
    }

    /// The IO-APIC sends pin `pin`'s message if it may.
    pub fn fire_pin(&mut self, pin: u32) -> Option<Arrival> {
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
        Some(self.write(&rte.message(), IOAPIC_RID, self.ioapic_unit))
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

    /// The simulated time (the step), the clock of the grace periods ([`genmsi::grace`]).
    pub fn set_time(&mut self, now: u64) {
        self.now.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs the vector domain's cleanup against the local APICs, after advancing the grace
    /// clock to the simulated time (what freed resources held goes back once the posted-write
    /// bound, [`Machine::set_write_latency`], has passed and their IRR/ISR is clear);
    /// retriggered interrupts are delivered on their new target and join
    /// [`Machine::take_late`]. Returns (released, retriggered).
    pub fn cleanup(&mut self) -> (usize, usize) {
        self.sys
            .advance_grace(self.now.load(std::sync::atomic::Ordering::Relaxed));
        let lapics = self.lapics.clone();
        let report = self
            .sys
            .with_domain::<VectorDomain, _>(self.vector, |v| {
                v.cleanup(&|cpu, vec| lapics.get(cpu as usize).is_some_and(|l| l.pending(vec)))
            })
            .expect("the vector domain is registered");
        let retriggered = report.retrigger.len();
        for irq in report.retrigger {
            let target = self
                .sys
                .with_domain::<VectorDomain, _>(self.vector, |v| v.target(irq))
                .expect("the vector domain is registered");
            // A retrigger merges with the same vector already pending there, like an edge.
            if let Some(t) = target {
                match self.lapics[t.cpu as usize].accept(t.vector, false) {
                    true => {
                        let arrivals = self.service(t.cpu);
                        self.late.extend(arrivals.into_iter().map(|(_, a)| a));
                    }
                    false => self.late.push(Arrival::Merged),
                }
            }
        }
        (report.released.len(), retriggered)
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
