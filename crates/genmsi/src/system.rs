//! The irq system: descriptors, domains, devices and the allocation API behind one
//! configuration lock, beside the lock-free delivery table.

use crate::cpumask::MaskInterner;
use crate::device::{Device, DeviceDomain};
use crate::grace::{GraceClock, Quarantine};
use crate::range::RangeAllocator;
use crate::table::{Delivery, HandlerId, IrqHandler, IrqRef, IrqTable};
use crate::{
    CpuMask, DeviceId, DeviceMeta, Domain, DomainId, Error, Irq, MsgStore, MsiDesc, Result, SlotId,
    StoreCaps, MAX_CPUS,
};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use lock_api::{Mutex, RawMutex};

/// Sizes of an [`IrqSystem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemConfig {
    /// CPUs `0..nr_cpus` exist; all start online.
    pub nr_cpus: u32,
    /// Irq numbers `0..max_irqs` can be allocated.
    pub max_irqs: u32,
    /// Handlers that can be registered (besides the built-in counting handler).
    pub max_handlers: u32,
}

/// The most irq numbers a system can have ([`SystemConfig::max_irqs`]): 16 Mi. The delivery
/// table reserves one pointer per 256 numbers up front; vector tables store an irq number
/// (plus one) in 31 bits.
pub const MAX_IRQS: u32 = 1 << 24;

/// The most handlers a system can register ([`SystemConfig::max_handlers`]).
pub const MAX_HANDLERS: u32 = 1 << 16;

impl SystemConfig {
    /// Checks the configuration against the documented limits: 1 to [`MAX_CPUS`] CPUs, at
    /// most [`MAX_IRQS`] irqs and [`MAX_HANDLERS`] handlers.
    pub const fn check(&self) -> Result<()> {
        let reason = if self.nr_cpus == 0 {
            "a system needs at least one CPU"
        } else if self.nr_cpus > MAX_CPUS {
            "more CPUs than MAX_CPUS"
        } else if self.max_irqs > MAX_IRQS {
            "more irqs than MAX_IRQS"
        } else if self.max_handlers > MAX_HANDLERS {
            "more handlers than MAX_HANDLERS"
        } else {
            return Ok(());
        };
        Err(Error::InvalidConfig { reason })
    }

    /// The configuration with every limit clamped into range (at least one CPU).
    pub const fn clamped(self) -> Self {
        SystemConfig {
            nr_cpus: if self.nr_cpus == 0 {
                1
            } else if self.nr_cpus > MAX_CPUS {
                MAX_CPUS
            } else {
                self.nr_cpus
            },
            max_irqs: if self.max_irqs > MAX_IRQS {
                MAX_IRQS
            } else {
                self.max_irqs
            },
            max_handlers: if self.max_handlers > MAX_HANDLERS {
                MAX_HANDLERS
            } else {
                self.max_handlers
            },
        }
    }

    /// A system of `nr_cpus` CPUs with room for `max_irqs` irqs and 64 handlers.
    pub const fn new(nr_cpus: u32, max_irqs: u32) -> Self {
        SystemConfig {
            nr_cpus,
            max_irqs,
            max_handlers: 64,
        }
    }
}

/// Options of an allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocOpts {
    /// CPUs the irqs may target; `None` means every online CPU.
    pub affinity: Option<CpuMask>,
    /// Give each irq one CPU of the affinity, round robin, instead of the whole mask.
    pub spread: bool,
    /// Kernel-managed irqs (fixed affinity, shut down with their CPUs).
    pub managed: bool,
    /// Activate right away (write the message and unmask); otherwise only reserve.
    pub activate: bool,
    /// The store's cookie for the new index (a queue id, a PASID); a range passes it to every
    /// index.
    pub cookie: Option<u64>,
}

impl Default for AllocOpts {
    fn default() -> Self {
        AllocOpts {
            affinity: None,
            spread: false,
            managed: false,
            activate: true,
            cookie: None,
        }
    }
}

/// The configuration-side state of one allocated irq (the delivery side is in [`IrqTable`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct IrqData {
    pub(crate) device: DeviceId,
    pub(crate) slot: SlotId,
    pub(crate) index: u32,
    pub(crate) effective_cpu: Option<u32>,
    /// A managed irq whose CPUs all went offline: deactivated until one returns.
    pub(crate) shut_down: bool,
}

pub(crate) struct DomainNode {
    pub(crate) domain: Box<dyn Domain>,
    pub(crate) parent: Option<DomainId>,
    pub(crate) children: u32,
    pub(crate) users: u32,
}

pub(crate) struct Config {
    pub(crate) nr_cpus: u32,
    pub(crate) online: CpuMask,
    pub(crate) irq_numbers: RangeAllocator,
    pub(crate) irqs: BTreeMap<Irq, IrqData>,
    pub(crate) domains: Vec<Option<DomainNode>>,
    pub(crate) devices: BTreeMap<DeviceId, Device>,
    pub(crate) next_device: u32,
    /// Affinities cut down by offline CPUs, shared between the irqs that have them.
    pub(crate) masks: MaskInterner,
    /// Irq numbers freed, held until their grace has passed (first, count).
    pub(crate) numbers_held: Quarantine<(u32, u32)>,
    /// The platform's bound on posted-write latency (see [`crate::grace`]).
    pub(crate) write_latency: u64,
    /// The embedder's clock, read when an allocation finds a pool empty.
    pub(crate) grace_clock: Option<GraceClockFn>,
}

/// A clock the system reads by itself (see [`IrqSystem::set_grace_clock`]).
pub type GraceClockFn = Box<dyn Fn() -> u64 + Send + Sync>;

/// What [`IrqSystem::advance_grace`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraceReport {
    /// Irq numbers given back to their pool.
    pub irq_numbers_released: u32,
    /// Domain resources (vectors, remapping entries) given back to their pools.
    pub domain_released: u32,
    /// Irq numbers still held.
    pub irq_numbers_held: u32,
    /// Domain resources still held.
    pub domain_held: u32,
}

/// A snapshot of one irq: its descriptor as the core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqInfo {
    /// The irq number.
    pub irq: Irq,
    /// The owning device.
    pub device: DeviceId,
    /// The device's domain slot.
    pub slot: SlotId,
    /// The store's descriptor (index, message, requested affinity, flags).
    pub desc: MsiDesc,
    /// The CPU interrupts arrive on, while active.
    pub effective_cpu: Option<u32>,
    /// Shut down because every CPU of its managed affinity is offline.
    pub shut_down: bool,
    /// Interrupts handled so far.
    pub count: u64,
}

/// What [`IrqSystem::cpu_offline`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfflineReport {
    /// Irqs moved to another CPU.
    pub moved: Vec<Irq>,
    /// Managed irqs shut down (their affinity had no other online CPU).
    pub shut_down: Vec<Irq>,
}

/// Counters that add up: a summary of the whole system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Devices registered.
    pub devices: u32,
    /// Domains registered.
    pub domains: u32,
    /// Irqs allocated.
    pub irqs_allocated: u32,
    /// Irqs active.
    pub irqs_active: u32,
    /// Irq numbers still free.
    pub irq_numbers_free: u32,
    /// Interrupts that named no active irq.
    pub spurious: u64,
    /// Of `spurious`, the interrupts that named a freed allocation (late writes).
    pub stale: u64,
    /// Irq numbers freed but held until their grace has passed (see [`crate::grace`]).
    pub irq_numbers_held: u32,
    /// Domain resources (vectors, remapping entries) freed but held until their grace has
    /// passed, all domains together.
    pub domain_held: u32,
}

/// The irq system: every operation of the model (see the crate docs).
///
/// Configuration takes one lock of type `R` (any [`lock_api::RawMutex`]; a spin lock by
/// default). Delivery ([`IrqSystem::handle`]) never takes it.
pub struct IrqSystem<R: RawMutex = spin::Mutex<()>> {
    pub(crate) table: IrqTable,
    pub(crate) config: Mutex<R, Config>,
}

impl<R: RawMutex> core::fmt::Debug for IrqSystem<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IrqSystem")
            .field("table", &self.table)
            .field("stats", &self.stats())
            .finish()
    }
}
impl<R: RawMutex> IrqSystem<R> {
    /// An empty system, or [`Error::InvalidConfig`] when `config` is beyond the documented
    /// limits ([`SystemConfig::check`]).
    pub fn try_new(config: SystemConfig) -> Result<Self> {
        config.check()?;
        Ok(Self::build(config))
    }

    /// An empty system, with `config` clamped into the documented limits
    /// ([`SystemConfig::clamped`]); [`IrqSystem::try_new`] refuses such a config instead.
    pub fn new(config: SystemConfig) -> Self {
        Self::build(config.clamped())
    }

    fn build(config: SystemConfig) -> Self {
        IrqSystem {
            table: IrqTable::new(config.max_irqs, config.nr_cpus, config.max_handlers + 1),
            config: Mutex::new(Config {
                nr_cpus: config.nr_cpus,
                online: CpuMask::first_n(config.nr_cpus),
                irq_numbers: RangeAllocator::new(config.max_irqs),
                irqs: BTreeMap::new(),
                domains: Vec::new(),
                devices: BTreeMap::new(),
                next_device: 0,
                masks: MaskInterner::default(),
                numbers_held: Quarantine::new(),
                write_latency: 0,
                grace_clock: None,
            }),
        }
    }

    /// The delivery table (counts, lock-free delivery).
    pub fn table(&self) -> &IrqTable {
        &self.table
    }

    /// Delivers one interrupt of `irq` on `cpu`: the delivery path, lock-free. For an irq
    /// found in a vector table use [`IrqSystem::handle_ref`]: a number looked up before a free
    /// may belong to another device by the time it is handled.
    pub fn handle(&self, irq: Irq, cpu: u32) -> Delivery {
        self.table.deliver(irq, cpu)
    }

    /// Delivers one interrupt of the irq allocation `r` (what a vector table maps) on `cpu`:
    /// the delivery path, lock-free; [`Delivery::Stale`] when that allocation was freed, even
    /// if its number was reused since.
    pub fn handle_ref(&self, r: IrqRef, cpu: u32) -> Delivery {
        self.table.deliver_ref(r, cpu)
    }

    /// The CPUs currently online.
    pub fn online_cpus(&self) -> CpuMask {
        self.config.lock().online.clone()
    }

    /// Registers a handler; irqs use it after [`IrqSystem::set_handler`].
    pub fn register_handler(&self, handler: Box<dyn IrqHandler>) -> Result<HandlerId> {
        let _cfg = self.config.lock();
        self.table.register(handler).ok_or(Error::NoHandlerSlots)
    }

    /// Routes `irq` to `handler`, which will receive `data` with every interrupt.
    pub fn set_handler(&self, irq: Irq, handler: HandlerId, data: u32) -> Result<()> {
        let cfg = self.config.lock();
        if !cfg.irqs.contains_key(&irq) {
            return Err(Error::UnknownIrq(irq));
        }
        if !self.table.has_handler(handler) {
            return Err(Error::Domain {
                domain: "core",
                reason: "handler id not registered",
            });
        }
        self.table.set_handler(irq, handler, data);
        Ok(())
    }

    // ---- domains ----

    /// Registers a domain under `parent` (`None` for a root).
    pub fn add_domain(
        &self,
        domain: Box<dyn Domain>,
        parent: Option<DomainId>,
    ) -> Result<DomainId> {
        let mut cfg = self.config.lock();
        if let Some(p) = parent {
            cfg.domains
                .get_mut(p.0 as usize)
                .and_then(Option::as_mut)
                .ok_or(Error::UnknownDomain(p))?
                .children += 1;
        }
        let node = DomainNode {
            domain,
            parent,
            children: 0,
            users: 0,
        };
        let slot = cfg.domains.iter().position(Option::is_none);
        let id = match slot {
            Some(i) => {
                cfg.domains[i] = Some(node);
                i
            }
            None => {
                cfg.domains.push(Some(node));
                cfg.domains.len() - 1
            }
        };
        Ok(DomainId(id as u32))
    }

    /// Unregisters a domain that has no child domains and no device domains on it.
    pub fn remove_domain(&self, id: DomainId) -> Result<Box<dyn Domain>> {
        let mut cfg = self.config.lock();
        let n = cfg
            .domains
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(Error::UnknownDomain(id))?;
        if n.children > 0 || n.users > 0 {
            return Err(Error::DomainBusy(id));
        }
        let n = cfg.domains[id.0 as usize].take().expect("checked above");
        if let Some(p) = n.parent {
            cfg.domains[p.0 as usize]
                .as_mut()
                .expect("parent outlives child")
                .children -= 1;
        }
        Ok(n.domain)
    }

    /// Runs `f` on the domain `id` as its concrete type `D` (to read its state, or to drive
    /// events such as migration completion).
    pub fn with_domain<D: Domain, T>(
        &self,
        id: DomainId,
        f: impl FnOnce(&mut D) -> T,
    ) -> Result<T> {
        let mut cfg = self.config.lock();
        let n = cfg
            .domains
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(Error::UnknownDomain(id))?;
        let any: &mut dyn core::any::Any = n.domain.as_mut();
        any.downcast_mut::<D>().map(f).ok_or(Error::Domain {
            domain: "core",
            reason: "domain is of another type",
        })
    }

    // ---- devices and their domains ----

    /// Registers a device.
    pub fn add_device(&self, name: &str, meta: DeviceMeta) -> DeviceId {
        let mut cfg = self.config.lock();
        let id = DeviceId(cfg.next_device);
        cfg.next_device += 1;
        cfg.devices.insert(
            id,
            Device {
                name: name.into(),
                meta,
                slots: [None, None],
            },
        );
        id
    }

    /// Unregisters a device whose domain slots are empty.
    pub fn remove_device(&self, device: DeviceId) -> Result<()> {
        let mut cfg = self.config.lock();
        let dev = cfg
            .devices
            .get(&device)
            .ok_or(Error::UnknownDevice(device))?;
        if let Some(slot) = SlotId::ALL
            .into_iter()
            .find(|s| dev.slots[s.idx()].is_some())
        {
            return Err(Error::SlotOccupied { device, slot });
        }
        cfg.devices.remove(&device);
        Ok(())
    }

    /// Creates the per-device domain `slot` of `device`: `store` bound to `parent`.
    pub fn create_device_domain(
        &self,
        device: DeviceId,
        slot: SlotId,
        store: Box<dyn MsgStore>,
        parent: DomainId,
    ) -> Result<()> {
        let mut cfg = self.config.lock();
        let Config {
            domains, devices, ..
        } = &mut *cfg;
        let dev = devices
            .get_mut(&device)
            .ok_or(Error::UnknownDevice(device))?;
        if dev.slots[slot.idx()].is_some() {
            return Err(Error::SlotOccupied { device, slot });
        }
        domains
            .get_mut(parent.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(Error::UnknownDomain(parent))?
            .users += 1;
        dev.slots[slot.idx()] = Some(DeviceDomain::new(store, parent));
        Ok(())
    }

    /// Frees every index of the device domain and removes it, returning its store.
    pub fn remove_device_domain(
        &self,
        device: DeviceId,
        slot: SlotId,
    ) -> Result<Box<dyn MsgStore>> {
        let mut cfg = self.config.lock();
        let indices: Vec<u32> = device_domain(&mut cfg.devices, device, slot)?
            .descs
            .keys()
            .copied()
            .collect();
        // Freed and removed under one lock hold: nothing can be allocated in between.
        self.free_in(&mut cfg, device, slot, &indices)?;
        let Config {
            domains, devices, ..
        } = &mut *cfg;
        let dd = devices
            .get_mut(&device)
            .ok_or(Error::UnknownDevice(device))?
            .slots[slot.idx()]
        .take()
        .ok_or(Error::SlotEmpty { device, slot })?;
        domains[dd.parent.0 as usize]
            .as_mut()
            .expect("parent outlives its users")
            .users -= 1;
        Ok(dd.store)
    }

    /// Runs `f` on the store of a device domain as its concrete type `S`.
    pub fn with_store<S: MsgStore, T>(
        &self,
        device: DeviceId,
        slot: SlotId,
        f: impl FnOnce(&mut S) -> T,
    ) -> Result<T> {
        let mut cfg = self.config.lock();
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        let any: &mut dyn core::any::Any = dd.store.as_mut();
        any.downcast_mut::<S>().map(f).ok_or(Error::Store {
            index: 0,
            reason: "store is of another type",
        })
    }

    // ---- views ----

    /// A snapshot of one irq.
    pub fn irq_info(&self, irq: Irq) -> Option<IrqInfo> {
        let mut cfg = self.config.lock();
        let d = *cfg.irqs.get(&irq)?;
        let dd = device_domain(&mut cfg.devices, d.device, d.slot).ok()?;
        Some(IrqInfo {
            irq,
            device: d.device,
            slot: d.slot,
            desc: dd.descs[&d.index].clone(),
            effective_cpu: d.effective_cpu,
            shut_down: d.shut_down,
            count: self.table.count(irq),
        })
    }

    /// The descriptor of one index.
    pub fn desc(&self, device: DeviceId, slot: SlotId, index: u32) -> Result<MsiDesc> {
        let mut cfg = self.config.lock();
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        dd.descs
            .get(&index)
            .cloned()
            .ok_or(Error::NotAllocated { index })
    }

    /// Every descriptor of a device domain, in index order.
    pub fn descs(&self, device: DeviceId, slot: SlotId) -> Result<Vec<MsiDesc>> {
        let mut cfg = self.config.lock();
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        Ok(dd.descs.values().cloned().collect())
    }

    /// The store's capabilities and its number of free indices.
    pub fn store_caps(&self, device: DeviceId, slot: SlotId) -> Result<(StoreCaps, u32)> {
        let mut cfg = self.config.lock();
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        Ok((dd.store.caps(), dd.free.free_count()))
    }

    /// Summary counters.
    pub fn stats(&self) -> Stats {
        let cfg = self.config.lock();
        Stats {
            devices: cfg.devices.len() as u32,
            domains: cfg.domains.iter().flatten().count() as u32,
            irqs_allocated: cfg.irqs.len() as u32,
            irqs_active: cfg
                .irqs
                .values()
                .filter(|d| d.effective_cpu.is_some())
                .count() as u32,
            irq_numbers_free: cfg.irq_numbers.free_count(),
            spurious: self.table.spurious(),
            stale: self.table.stale(),
            irq_numbers_held: held_numbers(&cfg.numbers_held),
            domain_held: domains_held(&cfg.domains),
        }
    }

    /// A readable dump of the whole state: domains, devices, descriptors.
    pub fn dump(&self) -> String {
        let cfg = self.config.lock();
        let mut out = String::new();
        let _ = writeln!(out, "online cpus: {}", cfg.online);
        let clock = cfg.numbers_held.clock();
        let _ = writeln!(
            out,
            "grace: now {} write latency {} irq numbers held {}",
            clock.now,
            cfg.write_latency,
            held_numbers(&cfg.numbers_held)
        );
        for (first, since) in cfg.numbers_held.iter() {
            let _ = writeln!(
                out,
                "  held irqs {}..{} since {since:?}",
                first.0,
                first.0 + first.1
            );
        }
        for (i, n) in cfg.domains.iter().enumerate() {
            if let Some(n) = n {
                let parent = n.parent.map_or(-1, |p| p.0 as i64);
                let _ = writeln!(
                    out,
                    "domain {i} {} parent {parent} users {} held {}",
                    n.domain.name(),
                    n.users,
                    n.domain.held()
                );
            }
        }
        for (id, dev) in &cfg.devices {
            let _ = writeln!(
                out,
                "device {} {} rid {:?}",
                id.0, dev.name, dev.meta.requester_id
            );
            for (s, dd) in dev.slots.iter().enumerate() {
                let Some(dd) = dd else { continue };
                let _ = writeln!(
                    out,
                    "  slot {s} store {} parent {} free {}/{}",
                    dd.store.name(),
                    dd.parent.0,
                    dd.free.free_count(),
                    dd.store.caps().max_index
                );
                for d in dd.descs.values() {
                    let cpu = cfg.irqs.get(&d.irq).and_then(|x| x.effective_cpu);
                    let _ = writeln!(
                        out,
                        "    index {} irq {} {:?} affinity {} cpu {:?} {}{}{} count {}",
                        d.index,
                        d.irq.0,
                        d.msg,
                        d.affinity,
                        cpu,
                        if d.active { "active" } else { "inactive" },
                        if d.masked { " masked" } else { "" },
                        if d.managed { " managed" } else { "" },
                        self.table.count(d.irq)
                    );
                }
            }
        }
        out
    }
}

fn held_numbers(q: &Quarantine<(u32, u32)>) -> u32 {
    q.iter().map(|(r, _)| r.1).sum()
}

fn domains_held(domains: &[Option<DomainNode>]) -> u32 {
    domains.iter().flatten().map(|n| n.domain.held()).sum()
}

impl<R: RawMutex> IrqSystem<R> {
    // ---- grace periods (see `crate::grace`) ----

    /// Sets the platform's bound on posted-write latency, in the unit of the clock given to
    /// [`IrqSystem::advance_grace`]: a write a device issued at time `t` has reached the
    /// remapping unit or a CPU's IRR by `t + latency`. Zero (the default) says writes land
    /// before the next advance of the clock.
    pub fn set_write_latency(&self, latency: u64) {
        self.config.lock().write_latency = latency;
    }

    /// Gives the system the embedder's clock (the unit of [`IrqSystem::set_write_latency`]),
    /// read when an allocation finds a pool empty so that it can release what has passed its
    /// grace by then; without it, an allocation can only release what had passed its grace
    /// at the last [`IrqSystem::advance_grace`].
    pub fn set_grace_clock(&self, clock: Option<GraceClockFn>) {
        self.config.lock().grace_clock = clock;
    }

    /// Advances the grace clock to `now` (monotonic; an earlier time counts as no change):
    /// what was freed since the last advance starts its grace at `now`, and what has passed its
    /// grace goes back to its pool, at every level. A vector goes back only when its CPU's
    /// IRR/ISR was also found clear (the vector domain's cleanup, or its probe).
    pub fn advance_grace(&self, now: u64) -> GraceReport {
        self.advance_in(&mut self.config.lock(), now)
    }

    pub(crate) fn advance_in(&self, cfg: &mut Config, now: u64) -> GraceReport {
        let clock = GraceClock {
            now,
            write_latency: cfg.write_latency,
        };
        let mut report = GraceReport::default();
        for n in cfg.domains.iter_mut().flatten() {
            report.domain_released += n.domain.advance_grace(clock);
        }
        cfg.numbers_held.advance(clock);
        for (first, count) in cfg.numbers_held.release_expired() {
            cfg.irq_numbers
                .release(first, count)
                .expect("held irq numbers are allocated");
            report.irq_numbers_released += count;
        }
        report.irq_numbers_held = held_numbers(&cfg.numbers_held);
        report.domain_held = domains_held(&cfg.domains);
        report
    }

    /// An allocation found a pool empty: advances the grace to the embedder's clock, if it
    /// gave one, or else releases what had passed its grace at the last advance and was still
    /// held (a vector whose IRR the vector domain can now probe); says whether anything went
    /// back to a pool. Without a clock nothing is stamped: the last advance's time is earlier
    /// than the frees since, and would end their grace too soon.
    pub(crate) fn reclaim_in(&self, cfg: &mut Config) -> bool {
        if let Some(now) = cfg.grace_clock.as_ref().map(|c| c()) {
            let r = self.advance_in(cfg, now);
            return r.irq_numbers_released + r.domain_released > 0;
        }
        let mut released = 0;
        for n in cfg.domains.iter_mut().flatten() {
            released += n.domain.reclaim();
        }
        for (first, count) in cfg.numbers_held.release_expired() {
            cfg.irq_numbers
                .release(first, count)
                .expect("held irq numbers are allocated");
            released += count;
        }
        released > 0
    }
}

/// An allocated irq's configuration data and its device domain.
pub(crate) fn locate<'a>(
    irqs: &BTreeMap<Irq, IrqData>,
    devices: &'a mut BTreeMap<DeviceId, Device>,
    irq: Irq,
) -> Result<(IrqData, &'a mut DeviceDomain)> {
    let d = *irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
    Ok((d, device_domain(devices, d.device, d.slot)?))
}

pub(crate) fn device_domain(
    devices: &mut BTreeMap<DeviceId, Device>,
    device: DeviceId,
    slot: SlotId,
) -> Result<&mut DeviceDomain> {
    devices
        .get_mut(&device)
        .ok_or(Error::UnknownDevice(device))?
        .slots[slot.idx()]
    .as_mut()
    .ok_or(Error::SlotEmpty { device, slot })
}
