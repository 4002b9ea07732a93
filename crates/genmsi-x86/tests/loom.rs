//! Concurrency models of the real delivery and configuration code, explored with loom.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p genmsi-x86 --test loom --release` (what
//! `scripts/test` does, in its own target directory). Under `--cfg loom` the delivery path's
//! atomics (`genmsi`'s irq table, this crate's vector table) are loom's, so every interleaving
//! of their accesses up to the preemption bound is explored. One thread is a CPU delivering an
//! interrupt a device raised (vector table lookup, then the irq table); the other is the
//! configuration path (free and reuse, activate, move, mask/unmask, CPU offline). The
//! configuration lock is uncontended (only one thread configures), so it is not modelled.
#![cfg(loom)]

use genmsi::{
    AllocOpts, CpuMask, Delivery, DeviceId, DeviceMeta, Irq, IrqSystem, Msg, MsgStore, Result,
    SlotId, StoreCaps, SystemConfig,
};
use genmsi_x86::{
    FaultReason, InvDescriptor, Invalidate, IrDomain, IrUnit, SharedIrteTable, Vector,
    VectorDomain, VectorTable,
};
use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// A one-register-per-index device store whose messages the device side reads lock-free, the
/// way a device reads its MSI-X table while the CPU writes it.
struct Wire {
    caps: StoreCaps,
    /// Per index: address (low 32 bits) << 32 | data; 0 when cleared.
    msgs: Arc<[AtomicU64]>,
    masked: Arc<[AtomicBool]>,
}

impl Wire {
    fn new(caps: StoreCaps) -> Self {
        Wire {
            caps,
            msgs: (0..caps.max_index).map(|_| AtomicU64::new(0)).collect(),
            masked: (0..caps.max_index).map(|_| AtomicBool::new(true)).collect(),
        }
    }
}

impl MsgStore for Wire {
    fn name(&self) -> &'static str {
        "wire"
    }
    fn caps(&self) -> StoreCaps {
        self.caps
    }
    fn write_msg(&mut self, index: u32, msg: &Msg) -> Result<()> {
        let packed = (msg.address & 0xFFFF_FFFF) << 32 | u64::from(msg.data);
        self.msgs[index as usize].store(packed, Ordering::SeqCst);
        Ok(())
    }
    fn mask(&mut self, index: u32) -> Result<()> {
        self.masked[index as usize].store(true, Ordering::SeqCst);
        Ok(())
    }
    fn unmask(&mut self, index: u32) -> Result<()> {
        self.masked[index as usize].store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// Per handler data value, the interrupts its handler ran for.
type Calls = Arc<[AtomicU32]>;

struct Machine {
    sys: Arc<IrqSystem>,
    vectors: Arc<VectorTable>,
    calls: Calls,
    handler: genmsi::HandlerId,
    /// The domain device domains stack on: the vector domain, or the remapping domain.
    top: genmsi::DomainId,
    /// The remap table, when the machine remaps.
    irt: Option<SharedIrteTable>,
}

/// The model's remapping unit reads the table afresh for every write (no entry cache), so an
/// invalidation has nothing to drop.
struct NoCache;

impl Invalidate for NoCache {
    fn invalidate(&mut self, _: InvDescriptor) -> core::result::Result<(), &'static str> {
        Ok(())
    }
}

impl Machine {
    fn new(cpus: u32) -> Self {
        Self::build(cpus, false)
    }

    /// `cpus` CPUs; with `remap`, device domains stack on a VT-d remapping domain.
    fn build(cpus: u32, remap: bool) -> Self {
        let sys: IrqSystem = IrqSystem::new(SystemConfig::new(cpus, 256));
        let vd = VectorDomain::new(cpus);
        let vectors = vd.table();
        let root = sys.add_domain(Box::new(vd), None).unwrap();
        let (top, irt) = match remap {
            false => (root, None),
            true => {
                let irt = SharedIrteTable::new(16);
                let ir = IrDomain::new(irt.clone(), NoCache, false);
                (sys.add_domain(Box::new(ir), Some(root)).unwrap(), Some(irt))
            }
        };
        let calls: Calls = (0..4).map(|_| AtomicU32::new(0)).collect();
        let c = calls.clone();
        let handler = sys
            .register_handler(Box::new(move |_irq: Irq, _cpu: u32, data: u32| {
                c[data as usize].fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        Machine {
            sys: Arc::new(sys),
            vectors,
            calls,
            handler,
            top,
            irt,
        }
    }

    /// A device with a one-index store under the vector domain; its irq (on CPU 0, activated
    /// unless `activate` is false) hands `data` to the counting handler.
    fn device(&self, name: &str, caps: StoreCaps, data: u32, activate: bool) -> (DeviceId, Irq) {
        let dev = self.bare_device(name, 0x100, caps);
        let irq = self.bind(dev, data, activate, 0);
        (dev, irq)
    }

    /// A device with requester id `rid` and a store, no irq yet.
    fn bare_device(&self, name: &str, rid: u16, caps: StoreCaps) -> DeviceId {
        let meta = DeviceMeta::requester(rid);
        let dev = self.sys.add_device(name, meta);
        self.sys
            .create_device_domain(dev, SlotId::Default, Box::new(Wire::new(caps)), self.top)
            .unwrap();
        dev
    }

    fn bind(&self, dev: DeviceId, data: u32, activate: bool, cpu: u32) -> Irq {
        let opts = AllocOpts {
            affinity: Some(CpuMask::single(cpu)),
            activate,
            ..AllocOpts::default()
        };
        let irq = self.sys.alloc_at(dev, SlotId::Default, 0, &opts).unwrap();
        self.sys.set_handler(irq, self.handler, data).unwrap();
        irq
    }

    /// The (CPU, vector) the irq's message names now.
    fn target(&self, irq: Irq) -> (u32, Vector) {
        let t = self
            .sys
            .with_domain(genmsi::DomainId(0), |v: &mut VectorDomain| v.target(irq))
            .unwrap()
            .unwrap();
        (t.cpu, t.vector)
    }

    /// The device side of `dev`'s index 0: what it reads from its store.
    fn wire(&self, dev: DeviceId) -> WireView {
        self.sys
            .with_store(dev, SlotId::Default, |w: &mut Wire| WireView {
                msgs: w.msgs.clone(),
                masked: w.masked.clone(),
            })
            .unwrap()
    }

    fn calls(&self, data: u32) -> u32 {
        self.calls[data as usize].load(Ordering::SeqCst)
    }
}

/// The CPU side of one interrupt that landed in `cpu`'s IRR on `vector`: the interrupt entry
/// looks the vector up and delivers what it names.
fn interrupt_entry(sys: &IrqSystem, vectors: &VectorTable, cpu: u32, vector: Vector) -> Delivery {
    match vectors.lookup_ref(cpu, vector) {
        Some(r) => sys.handle_ref(r, cpu),
        None => Delivery::Spurious,
    }
}

/// What a device sees of its store.
struct WireView {
    msgs: Arc<[AtomicU64]>,
    masked: Arc<[AtomicBool]>,
}

impl WireView {
    /// The device raises index 0: if the slot is unmasked and holds a message, the write
    /// lands in the destination CPU's IRR and that CPU's interrupt entry runs. `None` when the
    /// device had nothing to send.
    fn raise(&self, sys: &IrqSystem, vectors: &VectorTable) -> Option<Delivery> {
        let packed = self.msgs[0].load(Ordering::SeqCst);
        if packed == 0 || self.masked[0].load(Ordering::SeqCst) {
            return None;
        }
        // Compatibility format (SDM 11.11): destination in address bits 19:12, vector in
        // data bits 7:0.
        let (address, data) = ((packed >> 32) as u32, packed as u32);
        let cpu = (address >> 12) & 0xFF;
        Some(interrupt_entry(sys, vectors, cpu, Vector(data as u8)))
    }
}

/// The same entry with the irq number alone (the delivery path before generations).
fn interrupt_entry_by_number(
    sys: &IrqSystem,
    vectors: &VectorTable,
    cpu: u32,
    vector: Vector,
) -> Delivery {
    match vectors.lookup(cpu, vector) {
        Some(irq) => sys.handle(irq, cpu),
        None => Delivery::Spurious,
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    // Every race below needs one preemption; three leave room for the waits in between.
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Device A's interrupt is being delivered (its CPU may have looked its vector up already)
/// while A's irq is freed and its number is given to device B. The interrupt must never count
/// for B or run B's handler. B's irq sits on the other CPU, so that only the irq number is
/// reused here, not A's vector: the models of a write racing free and reuse of the vector and
/// the remapping entry are `late_write_*` below.
fn free_and_reuse(entry: fn(&IrqSystem, &VectorTable, u32, Vector) -> Delivery) {
    model(move || {
        let m = Machine::new(2);
        let caps = StoreCaps::dynamic(1);
        let (a, irq_a) = m.device("a", caps, 1, true);
        let b = m.bare_device("b", 0x200, caps);
        let (cpu, vector) = m.target(irq_a);

        let (sys, vectors) = (m.sys.clone(), m.vectors.clone());
        let cpu_side = loom::thread::spawn(move || entry(&sys, &vectors, cpu, vector));

        m.sys.free_index(a, SlotId::Default, 0).unwrap();
        // A's interrupt is already in its CPU (the entry runs): no write is in the fabric, so
        // the number's grace ends at the first advance. A's vector stays held (no cleanup).
        m.sys.advance_grace(0);
        let irq_b = m.bind(b, 2, true, 1);
        assert_eq!(irq_b, irq_a, "the model needs the number reused");

        let outcome = cpu_side.join().unwrap();
        assert!(
            m.calls(2) == 0 && m.sys.table().count(irq_b) == 0,
            "misdelivered: device A's interrupt counted for device B ({outcome:?})"
        );
        assert!(m.calls(1) <= 1);
        assert_eq!(outcome == Delivery::Handled, m.calls(1) == 1);
    });
}

#[test]
fn free_and_reuse_never_reaches_the_next_owner() {
    free_and_reuse(interrupt_entry);
}

/// The same model on the delivery path by irq number alone: loom must find the misdelivery
/// (this is the bug the generations fix; if it stops failing, the model lost its power).
#[test]
#[should_panic(expected = "misdelivered")]
fn free_and_reuse_by_number_misdelivers() {
    free_and_reuse(interrupt_entry_by_number);
}

/// An interrupt arrives while its irq (a store without per-vector masks: masked in software)
/// is masked and unmasked: it is handled exactly once, directly or replayed by the unmask, and
/// nothing stays latched.
#[test]
fn mask_unmask_loses_and_doubles_nothing() {
    model(|| {
        let m = Machine::new(1);
        let caps = StoreCaps {
            per_vector_mask: false,
            ..StoreCaps::dynamic(1)
        };
        let (_, irq) = m.device("soft", caps, 1, true);
        let (cpu, vector) = m.target(irq);
        let (sys, vectors) = (m.sys.clone(), m.vectors.clone());
        let cpu_side = loom::thread::spawn(move || interrupt_entry(&sys, &vectors, cpu, vector));
        m.sys.mask(irq).unwrap();
        let replay = m.sys.unmask(irq).unwrap();
        let outcome = cpu_side.join().unwrap();
        assert_eq!(m.calls(1), 1, "delivered {outcome:?}, replayed {replay:?}");
        assert!(!m.sys.table().is_pending(irq));
    });
}

/// The device raises as soon as it sees a message in its store while the irq is being
/// activated: whatever it sends is handled, never counted as spurious.
#[test]
fn an_interrupt_right_after_activation_is_handled() {
    model(|| {
        let m = Machine::new(1);
        let (dev, irq) = m.device("late", StoreCaps::dynamic(1), 1, false);
        let wire = m.wire(dev);
        let (sys, vectors) = (m.sys.clone(), m.vectors.clone());
        let device = loom::thread::spawn(move || wire.raise(&sys, &vectors));
        m.sys.activate(irq).unwrap();
        if let Some(outcome) = device.join().unwrap() {
            assert_eq!(outcome, Delivery::Handled);
            assert_eq!(m.calls(1), 1);
        }
    });
}

/// The device raises while its irq moves to another CPU (by an affinity change, or because
/// its CPU goes offline): whether it read the old message or the new one, the interrupt is
/// handled exactly once; the old target is released by cleanup only afterwards.
fn move_during_delivery(offline: bool) {
    model(move || {
        let m = Machine::new(2);
        let (dev, irq) = m.device("mover", StoreCaps::dynamic(1), 1, true);
        let (cpu, vector) = m.target(irq);
        let wire = m.wire(dev);
        let (sys, vectors) = (m.sys.clone(), m.vectors.clone());
        let device = loom::thread::spawn(move || wire.raise(&sys, &vectors));
        if offline {
            m.sys.cpu_offline(0).unwrap();
        } else {
            m.sys.set_affinity(irq, &CpuMask::single(1)).unwrap();
        }
        let outcome = device.join().unwrap();
        assert_eq!(outcome, Some(Delivery::Handled));
        assert_eq!(m.calls(1), 1);
        assert_eq!(m.target(irq).0, 1);
        // Nothing is pending any more: cleanup releases the old vector.
        let done = m
            .sys
            .with_domain(genmsi::DomainId(0), |v: &mut VectorDomain| {
                v.complete_move(irq);
                v.cleanup(&|_, _| false)
            })
            .unwrap();
        assert_eq!(done.released.len(), 1);
        assert_eq!(m.vectors.peek(cpu, vector), None);
    });
}

#[test]
fn a_move_keeps_the_interrupt_in_flight() {
    move_during_delivery(false);
}

#[test]
fn a_cpu_offline_keeps_the_interrupt_in_flight() {
    move_during_delivery(true);
}

/// What became of a device's write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Landing {
    /// It reached a CPU, whose interrupt entry did this.
    Cpu(Delivery),
    /// The remapping unit refused it.
    Blocked(FaultReason),
}

/// One posted write on its way from a device to a CPU, and the IRR/ISR bit it sets there.
#[derive(Default)]
struct Flight {
    /// Set when the write reached the remapping unit or a CPU: from then on it is no longer in
    /// the fabric (the platform's posted-write bound says this happens within a known time).
    landed: AtomicBool,
    /// The write's vector is in its CPU's IRR or ISR: latched, not yet through the interrupt
    /// entry and EOI.
    pending: AtomicBool,
}

impl Flight {
    /// The write `msg` (address low 32 bits, data) from requester `rid` lands: through the
    /// remapping unit when the machine remaps, then in the IRR of the CPU it names, whose
    /// interrupt entry runs and ends with an EOI.
    fn land(&self, m: &MachineView, msg: (u32, u32), rid: u16) -> Landing {
        let (address, data) = msg;
        let (cpu, vector) = match &m.irt {
            None => ((address >> 12) & 0xFF, Vector(data as u8)),
            Some(irt) => {
                let msg = Msg {
                    address: u64::from(address),
                    data,
                };
                // A unit without a cache: it reads the entry as the table holds it now.
                match IrUnit::new(false, false).translate(&msg, rid, irt) {
                    Ok(r) => (r.dest, r.vector),
                    Err(reason) => {
                        self.landed.store(true, Ordering::SeqCst);
                        return Landing::Blocked(reason);
                    }
                }
            }
        };
        self.pending.store(true, Ordering::SeqCst);
        self.landed.store(true, Ordering::SeqCst);
        let outcome = interrupt_entry(&m.sys, &m.vectors, cpu, vector);
        self.pending.store(false, Ordering::SeqCst);
        Landing::Cpu(outcome)
    }
}

/// What the device side needs of the machine.
struct MachineView {
    sys: Arc<IrqSystem>,
    vectors: Arc<VectorTable>,
    irt: Option<SharedIrteTable>,
}

impl Machine {
    fn view(&self) -> MachineView {
        MachineView {
            sys: self.sys.clone(),
            vectors: self.vectors.clone(),
            irt: self.irt.clone(),
        }
    }

    /// The message index 0 of `dev` holds now (address low 32 bits, data).
    fn message(&self, dev: DeviceId) -> (u32, u32) {
        let packed = self.wire(dev).msgs[0].load(Ordering::SeqCst);
        ((packed >> 32) as u32, packed as u32)
    }
}

/// The platform's bound on posted-write latency in [`late_write`] (in the model's time unit).
const WRITE_LATENCY: u64 = 10;

/// Who takes the freed resources in [`late_write`].
#[derive(Clone, Copy, Debug)]
enum Reuse {
    /// Another device, on the same CPU.
    OtherDevice,
    /// The same device, at the same index (a queue destroyed and created again).
    SameIndex,
}

/// Device A wrote its message just before its index is freed (the write is posted: in the
/// fabric, not yet at the remapping unit or the CPU). The configuration path frees the index
/// and allocates again on the same CPU: for another device or for A's same index, right away
/// (`after_grace` false) or once the write is known to have landed and the cleanup checked
/// the CPU's IRR/ISR (`after_grace` true). The write must never be handled as the new
/// owner's interrupt: it is A's (handled before the free took effect), stale, spurious or
/// blocked by the remapping unit.
///
/// The grace clock: the free happens before time 0 (the first advance stamps what it held),
/// and the platform's bound on posted-write latency is [`WRITE_LATENCY`]: an advance to that
/// time is only made once the write has landed, which is what the bound promises.
fn late_write(remap: bool, reuse: Reuse, after_grace: bool) {
    model(move || {
        let m = Machine::build(1, remap);
        m.sys.set_write_latency(WRITE_LATENCY);
        let caps = StoreCaps::dynamic(1);
        let (a, irq_a) = m.device("a", caps, 1, true);
        let (cpu, vector) = m.target(irq_a);
        let b = match reuse {
            Reuse::OtherDevice => m.bare_device("b", 0x200, caps),
            Reuse::SameIndex => a,
        };
        let write = m.message(a);
        let flight = Arc::new(Flight::default());
        let mut reclaimed = false;
        let (f, view) = (flight.clone(), m.view());
        let device = loom::thread::spawn(move || f.land(&view, write, 0x100));

        m.sys.free_index(a, SlotId::Default, 0).unwrap();
        m.sys.advance_grace(0);
        if after_grace {
            // The platform's bound: by now every write issued before the free has landed.
            while !flight.landed.load(Ordering::SeqCst) {
                loom::thread::yield_now();
            }
            m.sys.advance_grace(WRITE_LATENCY);
            let report = m
                .sys
                .with_domain(genmsi::DomainId(0), |v: &mut VectorDomain| {
                    v.cleanup(&|c, v| {
                        c == cpu && v == vector && flight.pending.load(Ordering::SeqCst)
                    })
                })
                .unwrap();
            reclaimed = report.reclaimed.len() == 1;
        }
        let irq_b = m.bind(b, 2, true, 0);
        let landing = device.join().unwrap();
        assert!(
            m.calls(2) == 0 && m.sys.table().count(irq_b) == 0,
            "misdelivered: device A's write was handled as {reuse:?}'s new irq {irq_b:?} \
             (remap {remap}, after grace {after_grace}, {landing:?}, A had {irq_a:?} on \
             CPU {cpu} vector {vector:?}, the new irq has {:?})",
            m.target(irq_b)
        );
        assert_eq!(
            landing == Landing::Cpu(Delivery::Handled),
            m.calls(1) == 1,
            "{landing:?}"
        );
        // A write that found the freed marker is counted as stale, nothing else.
        let stale = u64::from(landing == Landing::Cpu(Delivery::Stale));
        assert_eq!(m.sys.table().stale(), stale, "{landing:?}");
        let stats = m.sys.stats();
        if after_grace {
            // The grace ended: the number and the remapping entry are back in their pools, and
            // the vector too unless the write was still in the IRR/ISR at the cleanup.
            assert_eq!(irq_b, irq_a, "the number's grace ended");
            assert_eq!(stats.irq_numbers_held, 0);
            assert_eq!(
                reclaimed,
                m.target(irq_b) == (cpu, vector),
                "the vector is reused exactly when the cleanup gave it back ({landing:?})"
            );
            assert_eq!(stats.domain_held, u32::from(!reclaimed));
        } else {
            // Nothing A had is given out during its grace.
            assert_ne!(irq_b, irq_a);
            assert_ne!(m.target(irq_b), (cpu, vector));
            assert_eq!(stats.irq_numbers_held, 1);
            assert_eq!(stats.domain_held, 1 + u32::from(remap));
        }
    });
}

#[test]
fn late_write_never_reaches_another_device_on_the_same_vector() {
    late_write(false, Reuse::OtherDevice, false);
}

#[test]
fn late_write_never_reaches_the_same_index_reallocated() {
    late_write(false, Reuse::SameIndex, false);
}

#[test]
fn late_write_never_reaches_the_same_index_reallocated_under_remapping() {
    late_write(true, Reuse::SameIndex, false);
}

#[test]
fn late_write_still_in_the_irr_never_reaches_the_next_owner() {
    late_write(false, Reuse::OtherDevice, true);
}

#[test]
fn late_write_still_in_the_irr_never_reaches_the_same_index_under_remapping() {
    late_write(true, Reuse::SameIndex, true);
}
