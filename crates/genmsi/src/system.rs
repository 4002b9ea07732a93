//! The irq system: descriptors, domains, devices and the allocation API behind one
//! configuration lock, beside the lock-free delivery table.

use crate::device::{Device, DeviceDomain};
use crate::domain::{AllocRequest, Composed, IrqRequest};
use crate::range::RangeAllocator;
use crate::table::{Delivery, HandlerId, IrqHandler, IrqTable};
use crate::{
    CpuMask, DeviceId, DeviceMeta, Domain, DomainId, Error, Irq, Msg, MsgStore, MsiDesc, Result,
    SlotId, StoreCaps, Unsupported,
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

impl SystemConfig {
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

/// Which indices an allocation asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Indices {
    Range { first: u32, count: u32 },
    Any,
}

/// The configuration-side state of one allocated irq (the delivery side is in [`IrqTable`]).
#[derive(Clone, Copy, Debug)]
struct IrqData {
    device: DeviceId,
    slot: SlotId,
    index: u32,
    effective_cpu: Option<u32>,
    /// A managed irq whose CPUs all went offline: deactivated until one returns.
    shut_down: bool,
}

struct DomainNode {
    domain: Box<dyn Domain>,
    parent: Option<DomainId>,
    children: u32,
    users: u32,
}

struct Config {
    nr_cpus: u32,
    online: CpuMask,
    irq_numbers: RangeAllocator,
    irqs: BTreeMap<Irq, IrqData>,
    domains: Vec<Option<DomainNode>>,
    devices: BTreeMap<DeviceId, Device>,
    next_device: u32,
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
}

/// The irq system: every operation of the model (see the crate docs).
///
/// Configuration takes one lock of type `R` (any [`lock_api::RawMutex`]; a spin lock by
/// default). Delivery ([`IrqSystem::handle`]) never takes it.
pub struct IrqSystem<R: RawMutex = spin::Mutex<()>> {
    table: IrqTable,
    config: Mutex<R, Config>,
}

impl<R: RawMutex> core::fmt::Debug for IrqSystem<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IrqSystem")
            .field("table", &self.table)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The chain of domains from a device domain's parent down to the root.
fn chain_of(domains: &[Option<DomainNode>], parent: DomainId) -> Vec<DomainId> {
    let mut chain = Vec::new();
    let mut next = Some(parent);
    while let Some(id) = next {
        chain.push(id);
        next = domains[id.0 as usize].as_ref().and_then(|n| n.parent);
    }
    chain
}

fn node(domains: &mut [Option<DomainNode>], id: DomainId) -> &mut dyn Domain {
    domains[id.0 as usize]
        .as_mut()
        .expect("chained domains stay registered while they have users")
        .domain
        .as_mut()
}

/// Activates `irq` through `chain` (root last in `chain`, first to run) and writes the message
/// into the store. On error nothing stays activated.
fn activate_irq(
    domains: &mut [Option<DomainNode>],
    chain: &[DomainId],
    dd: &mut DeviceDomain,
    table: &IrqTable,
    irq: Irq,
    index: u32,
) -> Result<Option<u32>> {
    let mut composed: Option<Composed> = None;
    let mut effective = None;
    for (done, &id) in chain.iter().rev().enumerate() {
        match node(domains, id).activate(irq, composed.as_ref()) {
            Ok(c) => {
                effective = effective.or(c.effective_cpu);
                composed = Some(c);
            }
            Err(e) => {
                for &id in chain[chain.len() - done..].iter() {
                    node(domains, id).deactivate(irq);
                }
                return Err(e);
            }
        }
    }
    let msg = composed.expect("a chain has at least one domain").msg;
    let caps = dd.store.caps();
    let desc = dd.descs.get_mut(&index).expect("descriptor exists");
    // A slot is masked while inactive; it is unmasked only after its message is complete.
    if let Err(e) = dd.store.write_msg(index, &msg).and_then(|()| {
        if caps.per_vector_mask && !desc.masked {
            dd.store.unmask(index)
        } else {
            Ok(())
        }
    }) {
        for &id in chain {
            node(domains, id).deactivate(irq);
        }
        return Err(e);
    }
    desc.msg = msg;
    desc.active = true;
    table.set_soft_masked(irq, !caps.per_vector_mask && desc.masked);
    table.set_active(irq, true);
    Ok(effective)
}

/// Quiesces the store slot and deactivates `irq` top down.
fn deactivate_irq(
    domains: &mut [Option<DomainNode>],
    chain: &[DomainId],
    dd: &mut DeviceDomain,
    table: &IrqTable,
    irq: Irq,
    index: u32,
) {
    let caps = dd.store.caps();
    // Hardware refusing to mask or clear a slot we are tearing down cannot be undone here;
    // the slot's irq is marked inactive below, so anything it still raises counts as spurious.
    if caps.per_vector_mask {
        let _ = dd.store.mask(index);
    }
    let _ = dd.store.write_msg(index, &Msg::ZERO);
    table.set_active(irq, false);
    for &id in chain {
        node(domains, id).deactivate(irq);
    }
    if let Some(desc) = dd.descs.get_mut(&index) {
        desc.active = false;
        desc.msg = Msg::ZERO;
    }
}

/// Writes a new message into a live slot: masked if the store needs it, through the interim
/// message first when the root asks for a two-step move.
fn rewrite_live(
    store: &mut dyn MsgStore,
    caps: StoreCaps,
    desc: &MsiDesc,
    composed: &Composed,
) -> Result<()> {
    let guard = caps.write_masked && caps.per_vector_mask && !desc.masked;
    if guard {
        store.mask(desc.index)?;
    }
    let written = composed
        .interim
        .map_or(Ok(()), |m| store.write_msg(desc.index, &m))
        .and_then(|()| store.write_msg(desc.index, &composed.msg));
    if guard {
        store.unmask(desc.index)?;
    }
    written
}

impl<R: RawMutex> IrqSystem<R> {
    /// An empty system.
    pub fn new(config: SystemConfig) -> Self {
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
            }),
        }
    }

    /// The delivery table (counts, lock-free delivery).
    pub fn table(&self) -> &IrqTable {
        &self.table
    }

    /// Delivers one interrupt of `irq` on `cpu`: the delivery path, lock-free.
    pub fn handle(&self, irq: Irq, cpu: u32) -> Delivery {
        self.table.deliver(irq, cpu)
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
        self.free_all(device, slot)?;
        let mut cfg = self.config.lock();
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

    // ---- the allocation API ----

    /// Allocates indices `first..first + count` (the classic "N vectors at init").
    pub fn alloc_range(
        &self,
        device: DeviceId,
        slot: SlotId,
        first: u32,
        count: u32,
        opts: &AllocOpts,
    ) -> Result<Vec<Irq>> {
        let got = self.alloc(device, slot, Indices::Range { first, count }, opts)?;
        Ok(got.into_iter().map(|(_, irq)| irq).collect())
    }

    /// Allocates exactly `index`, also after the store is enabled (dynamic MSI-X: the entry a
    /// guest just unmasked), with every other index left as it is.
    pub fn alloc_at(
        &self,
        device: DeviceId,
        slot: SlotId,
        index: u32,
        opts: &AllocOpts,
    ) -> Result<Irq> {
        let got = self.alloc(
            device,
            slot,
            Indices::Range {
                first: index,
                count: 1,
            },
            opts,
        )?;
        Ok(got[0].1)
    }

    /// Allocates the lowest free index (IMS), returning it with its irq.
    pub fn alloc_any(
        &self,
        device: DeviceId,
        slot: SlotId,
        opts: &AllocOpts,
    ) -> Result<(u32, Irq)> {
        Ok(self.alloc(device, slot, Indices::Any, opts)?[0])
    }

    /// Allocates every free index below `count` (grow a device to `count` vectors).
    pub fn grow_to(
        &self,
        device: DeviceId,
        slot: SlotId,
        count: u32,
        opts: &AllocOpts,
    ) -> Result<Vec<Irq>> {
        let missing: Vec<u32> = {
            let mut cfg = self.config.lock();
            let dd = device_domain(&mut cfg.devices, device, slot)?;
            let limit = dd.store.caps().max_index;
            if count > limit {
                return Err(Error::IndexOutOfRange {
                    index: count - 1,
                    limit,
                });
            }
            (0..count).filter(|i| dd.free.is_free(*i)).collect()
        };
        let mut done = Vec::new();
        for index in missing {
            match self.alloc_at(device, slot, index, opts) {
                Ok(irq) => done.push((index, irq)),
                Err(e) => {
                    for (index, _) in done {
                        self.free_index(device, slot, index)?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(done.into_iter().map(|(_, irq)| irq).collect())
    }

    /// Frees every allocated index at or above `count` (shrink a device to `count` vectors).
    pub fn shrink_to(&self, device: DeviceId, slot: SlotId, count: u32) -> Result<u32> {
        let indices: Vec<u32> = {
            let mut cfg = self.config.lock();
            let dd = device_domain(&mut cfg.devices, device, slot)?;
            dd.descs.range(count..).map(|(&i, _)| i).collect()
        };
        self.free_indices(device, slot, &indices)?;
        Ok(indices.len() as u32)
    }

    fn alloc(
        &self,
        device: DeviceId,
        slot: SlotId,
        indices: Indices,
        opts: &AllocOpts,
    ) -> Result<Vec<(u32, Irq)>> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let meta = cfg
            .devices
            .get(&device)
            .ok_or(Error::UnknownDevice(device))?
            .meta;
        let online = cfg.online.clone();
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        let caps = dd.store.caps();

        // 1. Validate everything before touching anything.
        if dd.enabled() && !caps.alloc_after_enable {
            return Err(Error::NotSupported(Unsupported::AllocAfterEnable));
        }
        let (first, count) = match indices {
            Indices::Range { count: 0, .. } => return Err(Error::InvalidCount { count: 0 }),
            Indices::Range { first, count } => {
                let last = first.checked_add(count - 1).ok_or(Error::IndexOutOfRange {
                    index: first,
                    limit: caps.max_index,
                })?;
                if last >= caps.max_index {
                    return Err(Error::IndexOutOfRange {
                        index: last,
                        limit: caps.max_index,
                    });
                }
                if let Some(index) = (first..=last).find(|&i| !dd.free.is_free(i)) {
                    return Err(Error::IndexInUse { index });
                }
                (first, count)
            }
            Indices::Any if !caps.any_index => {
                return Err(Error::NotSupported(Unsupported::AnyIndex))
            }
            Indices::Any => {
                let index = dd
                    .free
                    .free_ranges()
                    .next()
                    .ok_or(Error::StoreFull {
                        limit: caps.max_index,
                    })?
                    .0;
                (index, 1)
            }
        };
        if caps.block_only && (first != 0 || !count.is_power_of_two()) {
            return Err(Error::NotSupported(Unsupported::BlockOnly));
        }
        let affinity = opts
            .affinity
            .as_ref()
            .map_or(online.clone(), |a| a.and(&online));
        if affinity.is_empty() {
            return Err(Error::EmptyAffinity);
        }

        // 2. Irq numbers.
        let irq0 = cfg
            .irq_numbers
            .alloc(count, 1)
            .ok_or(Error::NoIrqNumbers { requested: count })?;
        self.table.populate(Irq(irq0), count);
        let requests: Vec<IrqRequest> = (0..count)
            .map(|i| IrqRequest {
                irq: Irq(irq0 + i),
                index: first + i,
                affinity: match opts.spread {
                    true => CpuMask::single(nth_cpu(&affinity, i)),
                    false => affinity.clone(),
                },
                managed: opts.managed,
                level: dd.store.is_level(first + i),
            })
            .collect();
        let irqs: Vec<Irq> = requests.iter().map(|r| r.irq).collect();
        let release_numbers = |cfg: &mut Config| {
            cfg.irq_numbers
                .release(irq0, count)
                .expect("numbers were allocated above");
        };

        // 3. Parent domains, root first; on failure free the levels done, top down.
        let parent = dd.parent;
        let chain = chain_of(&cfg.domains, parent);
        for (done, &id) in chain.iter().rev().enumerate() {
            let req = AllocRequest {
                device,
                meta: &meta,
                irqs: &requests,
                block: caps.block_only,
                store: caps,
                direct: id == parent,
            };
            if let Err(e) = node(&mut cfg.domains, id).alloc(&req) {
                for &id in chain[chain.len() - done..].iter() {
                    node(&mut cfg.domains, id).free(&irqs);
                }
                release_numbers(cfg);
                return Err(e);
            }
        }
        let undo_domains = |cfg: &mut Config| {
            for &id in &chain {
                node(&mut cfg.domains, id).free(&irqs);
            }
            release_numbers(cfg);
        };

        // 4. The store: bind each index, enable the store on first use.
        let dd = device_domain(&mut cfg.devices, device, slot).expect("checked above");
        let was_enabled = dd.enabled();
        let mut prepared = 0;
        let mut store_result = Ok(());
        for r in &requests {
            store_result = dd.store.prepare(r.index, opts.cookie);
            if store_result.is_err() {
                break;
            }
            prepared += 1;
        }
        if store_result.is_ok() && !was_enabled {
            store_result = dd.store.enable();
        }
        if let Err(e) = store_result {
            for r in &requests[..prepared] {
                dd.store.release(r.index);
            }
            undo_domains(cfg);
            return Err(e);
        }
        for r in &requests {
            dd.free.reserve(r.index, 1);
            dd.descs.insert(
                r.index,
                MsiDesc {
                    index: r.index,
                    irq: r.irq,
                    msg: Msg::ZERO,
                    affinity: r.affinity.clone(),
                    cookie: opts.cookie,
                    managed: opts.managed,
                    masked: false,
                    active: false,
                    meta,
                },
            );
            cfg.irqs.insert(
                r.irq,
                IrqData {
                    device,
                    slot,
                    index: r.index,
                    effective_cpu: None,
                    shut_down: false,
                },
            );
        }

        // 5. Activation; a failure takes the whole allocation back.
        if opts.activate {
            for (n, r) in requests.iter().enumerate() {
                let dd = device_domain(&mut cfg.devices, device, slot).expect("checked above");
                match activate_irq(&mut cfg.domains, &chain, dd, &self.table, r.irq, r.index) {
                    Ok(cpu) => cfg.irqs.get_mut(&r.irq).expect("inserted").effective_cpu = cpu,
                    Err(e) => {
                        for r in &requests[..n] {
                            deactivate_irq(
                                &mut cfg.domains,
                                &chain,
                                dd,
                                &self.table,
                                r.irq,
                                r.index,
                            );
                        }
                        self.forget(cfg, device, slot, &requests, !was_enabled);
                        undo_domains(cfg);
                        return Err(e);
                    }
                }
            }
        }
        Ok(requests.iter().map(|r| (r.index, r.irq)).collect())
    }

    /// Drops the descriptors of `requests` and releases their store slots (domains untouched).
    fn forget(
        &self,
        cfg: &mut Config,
        device: DeviceId,
        slot: SlotId,
        requests: &[IrqRequest],
        disable: bool,
    ) {
        let dd = device_domain(&mut cfg.devices, device, slot).expect("device domain exists");
        for r in requests {
            dd.descs.remove(&r.index);
            dd.free
                .release(r.index, 1)
                .expect("index was reserved by this allocation");
            dd.store.release(r.index);
            cfg.irqs.remove(&r.irq);
            self.table.reset(r.irq);
        }
        if disable && !dd.enabled() {
            dd.store.disable();
        }
    }

    /// Frees one index: quiesce, deactivate, free every level, release the irq number.
    pub fn free_index(&self, device: DeviceId, slot: SlotId, index: u32) -> Result<()> {
        self.free_indices(device, slot, &[index])
    }

    /// Frees `first..first + count`; every index of the range must be allocated.
    pub fn free_range(&self, device: DeviceId, slot: SlotId, first: u32, count: u32) -> Result<()> {
        let last = first
            .checked_add(count.max(1) - 1)
            .ok_or(Error::NotAllocated { index: first })?;
        let indices: Vec<u32> = (first..=last).collect();
        self.free_indices(device, slot, &indices)
    }

    /// Frees every index of the device domain; returns how many there were.
    pub fn free_all(&self, device: DeviceId, slot: SlotId) -> Result<u32> {
        self.shrink_to(device, slot, 0)
    }

    fn free_indices(&self, device: DeviceId, slot: SlotId, indices: &[u32]) -> Result<()> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        let caps = dd.store.caps();
        if let Some(&index) = indices.iter().find(|i| !dd.descs.contains_key(i)) {
            return Err(Error::NotAllocated { index });
        }
        // Stores that cannot change while enabled (classic MSI) are only freed as a whole.
        if !caps.alloc_after_enable && indices.len() != dd.descs.len() {
            return Err(Error::NotSupported(Unsupported::AllocAfterEnable));
        }
        let chain = chain_of(&cfg.domains, dd.parent);
        let mut requests = Vec::with_capacity(indices.len());
        for &index in indices {
            let desc = &dd.descs[&index];
            if desc.active {
                let irq = desc.irq;
                deactivate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, index);
            }
            let desc = &dd.descs[&index];
            requests.push(IrqRequest {
                irq: desc.irq,
                index,
                affinity: desc.affinity.clone(),
                managed: desc.managed,
                level: dd.store.is_level(index),
            });
        }
        let irqs: Vec<Irq> = requests.iter().map(|r| r.irq).collect();
        for &id in &chain {
            node(&mut cfg.domains, id).free(&irqs);
        }
        self.forget(cfg, device, slot, &requests, true);
        for irq in irqs {
            cfg.irq_numbers
                .release(irq.0, 1)
                .expect("an allocated irq has its number");
        }
        Ok(())
    }

    // ---- per-irq operations ----

    /// Activates an allocated, inactive irq (after an allocation with `activate: false`).
    pub fn activate(&self, irq: Irq) -> Result<()> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let d = *cfg.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
        let dd = device_domain(&mut cfg.devices, d.device, d.slot)?;
        if dd.descs[&d.index].active {
            return Ok(());
        }
        let chain = chain_of(&cfg.domains, dd.parent);
        let cpu = activate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, d.index)?;
        let data = cfg.irqs.get_mut(&irq).expect("checked above");
        data.effective_cpu = cpu;
        data.shut_down = false;
        Ok(())
    }

    /// Deactivates an irq: its slot is masked and cleared, its resources stay reserved.
    pub fn deactivate(&self, irq: Irq) -> Result<()> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let d = *cfg.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
        let dd = device_domain(&mut cfg.devices, d.device, d.slot)?;
        if dd.descs[&d.index].active {
            let chain = chain_of(&cfg.domains, dd.parent);
            deactivate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, d.index);
        }
        cfg.irqs.get_mut(&irq).expect("checked above").effective_cpu = None;
        Ok(())
    }

    /// Moves an active irq to the CPUs of `mask` (restricted to online CPUs).
    pub fn set_affinity(&self, irq: Irq, mask: &CpuMask) -> Result<()> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let target = mask.and(&cfg.online);
        if target.is_empty() {
            return Err(Error::EmptyAffinity);
        }
        move_irq(cfg, irq, &target)?;
        let d = cfg.irqs[&irq];
        device_domain(&mut cfg.devices, d.device, d.slot)?
            .descs
            .get_mut(&d.index)
            .expect("allocated irq has a descriptor")
            .affinity = mask.clone();
        Ok(())
    }

    /// Masks an irq at its source (or in software, for stores without per-vector masks).
    pub fn mask(&self, irq: Irq) -> Result<()> {
        self.set_masked(irq, true).map(|_| ())
    }

    /// Unmasks an irq. An interrupt latched in software while masked is delivered now, on the
    /// irq's CPU; a store with per-vector masks delivers its own pending bit.
    pub fn unmask(&self, irq: Irq) -> Result<Option<Delivery>> {
        let replay_on = self.set_masked(irq, false)?;
        Ok(replay_on.map(|cpu| self.table.deliver(irq, cpu)))
    }

    /// Returns the CPU to replay a latched interrupt on, after an unmask.
    fn set_masked(&self, irq: Irq, masked: bool) -> Result<Option<u32>> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let d = *cfg.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
        let dd = device_domain(&mut cfg.devices, d.device, d.slot)?;
        let caps = dd.store.caps();
        let desc = dd
            .descs
            .get_mut(&d.index)
            .expect("allocated irq has a descriptor");
        if desc.masked == masked {
            return Ok(None);
        }
        if caps.per_vector_mask && desc.active {
            match masked {
                true => dd.store.mask(d.index)?,
                false => dd.store.unmask(d.index)?,
            }
        }
        desc.masked = masked;
        let chain = chain_of(&cfg.domains, dd.parent);
        for &id in &chain {
            let dom = node(&mut cfg.domains, id);
            match masked {
                true => dom.mask(irq),
                false => dom.unmask(irq),
            }
        }
        if caps.per_vector_mask {
            return Ok(None);
        }
        self.table.set_soft_masked(irq, masked);
        Ok(match masked {
            false if self.table.take_pending(irq) => d.effective_cpu,
            _ => None,
        })
    }

    /// The message the hierarchy composes for `irq` now (what its store slot must hold).
    pub fn compose_msg(&self, irq: Irq) -> Result<Msg> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let d = *cfg.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
        let dd = device_domain(&mut cfg.devices, d.device, d.slot)?;
        let chain = chain_of(&cfg.domains, dd.parent);
        let mut composed = None;
        for &id in chain.iter().rev() {
            let dom = node(&mut cfg.domains, id);
            composed = Some(
                dom.compose_msg(irq, composed.as_ref())
                    .ok_or(Error::NotActive(irq))?,
            );
        }
        Ok(composed.expect("a chain has at least one domain").msg)
    }

    // ---- CPU hotplug ----

    /// Takes `cpu` offline: irqs targeting it move to another CPU of their affinity (or of the
    /// machine, when none is left); managed irqs with no CPU left are shut down. Then every
    /// domain hears of it.
    pub fn cpu_offline(&self, cpu: u32) -> Result<OfflineReport> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        if !cfg.online.contains(cpu) {
            return Ok(OfflineReport::default());
        }
        let remaining = cfg.online.without(cpu);
        if remaining.is_empty() {
            return Err(Error::EmptyAffinity);
        }
        let victims: Vec<Irq> = cfg
            .irqs
            .iter()
            .filter(|(_, d)| d.effective_cpu == Some(cpu))
            .map(|(&irq, _)| irq)
            .collect();
        let mut report = OfflineReport::default();
        for irq in victims {
            let d = cfg.irqs[&irq];
            let dd = device_domain(&mut cfg.devices, d.device, d.slot)?;
            let desc = &dd.descs[&d.index];
            let target = desc.affinity.and(&remaining);
            if desc.managed && target.is_empty() {
                let chain = chain_of(&cfg.domains, dd.parent);
                deactivate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, d.index);
                let data = cfg.irqs.get_mut(&irq).expect("victim exists");
                data.effective_cpu = None;
                data.shut_down = true;
                report.shut_down.push(irq);
            } else {
                let target = if target.is_empty() {
                    remaining.clone()
                } else {
                    target
                };
                move_irq(cfg, irq, &target)?;
                report.moved.push(irq);
            }
        }
        cfg.online = remaining;
        for n in cfg.domains.iter_mut().flatten() {
            n.domain.cpu_offline(cpu);
        }
        Ok(report)
    }

    /// Brings `cpu` online and restarts the managed irqs that were shut down for lack of it.
    pub fn cpu_online(&self, cpu: u32) -> Result<Vec<Irq>> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        if cpu >= cfg.nr_cpus {
            return Err(Error::EmptyAffinity);
        }
        cfg.online = cfg.online.with(cpu);
        for n in cfg.domains.iter_mut().flatten() {
            n.domain.cpu_online(cpu);
        }
        let sleeping: Vec<Irq> = cfg
            .irqs
            .iter()
            .filter(|(_, d)| d.shut_down)
            .map(|(&irq, _)| irq)
            .collect();
        let mut restarted = Vec::new();
        for irq in sleeping {
            let d = cfg.irqs[&irq];
            let dd = device_domain(&mut cfg.devices, d.device, d.slot)?;
            if !dd.descs[&d.index].affinity.contains(cpu) {
                continue;
            }
            let chain = chain_of(&cfg.domains, dd.parent);
            let eff = activate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, d.index)?;
            let data = cfg.irqs.get_mut(&irq).expect("exists");
            data.effective_cpu = eff;
            data.shut_down = false;
            restarted.push(irq);
        }
        Ok(restarted)
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
        }
    }

    /// A readable dump of the whole state: domains, devices, descriptors.
    pub fn dump(&self) -> String {
        let cfg = self.config.lock();
        let mut out = String::new();
        let _ = writeln!(out, "online cpus: {}", cfg.online);
        for (i, n) in cfg.domains.iter().enumerate() {
            if let Some(n) = n {
                let parent = n.parent.map_or(-1, |p| p.0 as i64);
                let _ = writeln!(
                    out,
                    "domain {i} {} parent {parent} users {}",
                    n.domain.name(),
                    n.users
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

fn device_domain(
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

/// The `n`-th CPU of `mask`, wrapping around.
fn nth_cpu(mask: &CpuMask, n: u32) -> u32 {
    let n = n % mask.weight();
    match mask.as_range() {
        Some((first, _)) => first + n,
        None => mask.iter().nth(n as usize).expect("n < weight"),
    }
}

/// Moves an active irq to `target` through its chain; on failure of a level above the root,
/// the levels below are moved back, so the irq stays where it was.
fn move_irq(cfg: &mut Config, irq: Irq, target: &CpuMask) -> Result<()> {
    let d = *cfg.irqs.get(&irq).ok_or(Error::UnknownIrq(irq))?;
    let dd = device_domain(&mut cfg.devices, d.device, d.slot)?;
    let desc = dd
        .descs
        .get(&d.index)
        .expect("allocated irq has a descriptor")
        .clone();
    if !desc.active {
        return Err(Error::NotActive(irq));
    }
    let chain = chain_of(&cfg.domains, dd.parent);
    let walk = |domains: &mut [Option<DomainNode>], mask: &CpuMask| -> Result<Composed> {
        let mut composed: Option<Composed> = None;
        let mut effective = None;
        for (done, &id) in chain.iter().rev().enumerate() {
            match node(domains, id).set_affinity(irq, mask, composed.as_ref()) {
                Ok(c) => {
                    effective = effective.or(c.effective_cpu);
                    composed = Some(c);
                }
                Err(e) if done == 0 => return Err(e),
                Err(e) => {
                    // Move the levels below back to where the irq was.
                    let old = d
                        .effective_cpu
                        .map_or(desc.affinity.clone(), CpuMask::single);
                    let mut back: Option<Composed> = None;
                    for &id in chain[chain.len() - done..].iter().rev() {
                        back = node(domains, id)
                            .set_affinity(irq, &old, back.as_ref())
                            .ok();
                    }
                    return Err(e);
                }
            }
        }
        let mut c = composed.expect("a chain has at least one domain");
        c.effective_cpu = effective;
        Ok(c)
    };
    let composed = walk(&mut cfg.domains, target)?;
    let caps = dd.store.caps();
    if composed.msg != desc.msg {
        if let Err(e) = rewrite_live(dd.store.as_mut(), caps, &desc, &composed) {
            let old = d
                .effective_cpu
                .map_or(desc.affinity.clone(), CpuMask::single);
            let _ = walk(&mut cfg.domains, &old);
            return Err(e);
        }
        dd.descs.get_mut(&d.index).expect("exists").msg = composed.msg;
    }
    cfg.irqs.get_mut(&irq).expect("exists").effective_cpu = composed.effective_cpu;
    Ok(())
}
