//! The KVM backend: each guest entry the host backs is one **GSI route** (an MSI route in the
//! VM's routing table) and one **irqfd** (an eventfd the device writes, bound to the GSI).
//!
//! 1. [`GsiRoutes`] is the VM's routing table, shared by every device of the VM: the in-kernel
//!    irqchip's legacy routes, then MSI routes on GSIs handed out and taken back one by one.
//!    `KVM_SET_GSI_ROUTING` replaces the whole table, so changes are batched and sent once per
//!    [`GsiRoutes::commit`]; calls and their time are counted ([`RoutingStats`]).
//! 2. [`KvmMsix::back`] takes a GSI and an eventfd for entry `i`, the route goes in the next
//!    commit; the entry starts masked (irqfd not assigned).
//! 3. **Unmask** assigns the irqfd (after committing the route it needs). **Mask** deassigns
//!    it: the eventfd keeps counting what the device raises, so nothing is lost and the
//!    pending state is exact; KVM's irqfd assign injects once what the eventfd counted.
//! 4. A message change rewrites the route (the irqfd stays); release deassigns the irqfd,
//!    drops the eventfd and frees the GSI and route; what the eventfd counted stays latched in
//!    the device (delivered once the entry is backed and unmasked again), and so does what was
//!    latched across a disable of the function: PCIe clears no pending bit there.
//! 5. Each device has a budget of routes ([`Error::Budget`]); the VM has
//!    `KVM_MAX_IRQ_ROUTES` ([`Error::Routes`]).
//!
//! The device side is [`Triggers`]: what a device model writes to raise entry `i` (with VFIO,
//! the eventfds would be the ones handed to `VFIO_DEVICE_SET_IRQS`; that is not built here).
//!
//! A VMM adopts it in a few lines (`no_run`: it needs `/dev/kvm`):
//!
//! ```no_run
//! use genmsi_pci::{msix::Region, Bar};
//! use genmsi_vmm::kvm::{GsiRoutes, KvmMsix};
//! use genmsi_vmm::{MsixLayout, Strategy, VirtMsix};
//! use std::sync::Arc;
//!
//! let kvm = kvm_ioctls::Kvm::new().unwrap();
//! let vm = Arc::new(kvm.create_vm().unwrap());
//! vm.create_irq_chip().unwrap();
//! let routes = GsiRoutes::new(vm.clone()); // one per VM, shared by its devices
//! // 2,048 entries, at most 512 routes for this function.
//! let backend = KvmMsix::new(vm.clone(), routes.clone(), 2048, 512)?;
//! let device = backend.triggers(); // the device raises entry i with device.fire(i)
//! let layout = MsixLayout::new(2048, Region::parse(0)?, Region::parse(0x8000)?, 0)?;
//! let mut msix = VirtMsix::new(layout, backend, Strategy::OnDemand);
//! // In the vCPU loop, every trapped access to the capability or the BAR goes to `msix`:
//! msix.mmio_write(Bar::new(0), 5 * 16 + 12, &0u32.to_le_bytes())?; // the guest unmasks 5
//! msix.config_write(3, &[0x80])?; // and sets MSI-X Enable: entry 5 gets its route and irqfd
//! assert_eq!(routes.lock().unwrap().len(), 1);
//! device.fire(5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::backend::{Budget, MsiBackend};
use crate::error::{Error, Result};
use crate::msix_emul::MsixLayout;
use genmsi::Msg;
use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MAX_IRQ_ROUTES,
};
use kvm_ioctls::VmFd;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// GSIs of the in-kernel irqchip: the IO-APIC's 24 pins (0..16 also on the PICs).
const LEGACY_GSIS: u32 = 24;
/// GSIs below this are the PICs' pins too.
const PIC_GSIS: u32 = 16;

/// `KVM_SET_GSI_ROUTING` calls and their time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RoutingStats {
    /// Calls.
    pub calls: u64,
    /// Time in them.
    pub time: Duration,
    /// The most MSI routes in the table at once.
    pub routes_max: u32,
}

/// The VM's GSI routing table (see the module docs).
#[derive(Debug)]
pub struct GsiRoutes {
    vm: Arc<VmFd>,
    legacy: Vec<kvm_irq_routing_entry>,
    msi: BTreeMap<u32, kvm_irq_routing_entry>,
    /// GSIs given back, reused first.
    free: Vec<u32>,
    next: u32,
    limit: u32,
    dirty: bool,
    stats: RoutingStats,
}

/// A routing table shared by the devices of one VM.
pub type SharedRoutes = Arc<Mutex<GsiRoutes>>;

fn kvm_error(op: &'static str, e: impl Into<std::io::Error>) -> Error {
    Error::Kvm {
        op,
        errno: e.into().raw_os_error().unwrap_or(0),
    }
}

fn msi_entry(gsi: u32, msg: Msg) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    e.u.msi.address_lo = msg.address as u32;
    e.u.msi.address_hi = (msg.address >> 32) as u32;
    e.u.msi.data = msg.data;
    e
}

fn irqchip_entry(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = irqchip;
    e.u.irqchip.pin = pin;
    e
}

impl GsiRoutes {
    /// The table of `vm` (created with the in-kernel irqchip): its legacy routes as KVM sets
    /// them up, GSIs from 24 for MSI routes.
    pub fn new(vm: Arc<VmFd>) -> SharedRoutes {
        let mut legacy = Vec::new();
        for gsi in 0..LEGACY_GSIS {
            if gsi < PIC_GSIS {
                let chip = match gsi < 8 {
                    true => KVM_IRQCHIP_PIC_MASTER,
                    false => KVM_IRQCHIP_PIC_SLAVE,
                };
                legacy.push(irqchip_entry(gsi, chip, gsi % 8));
            }
            legacy.push(irqchip_entry(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        }
        let limit = KVM_MAX_IRQ_ROUTES as u32 - legacy.len() as u32;
        Arc::new(Mutex::new(GsiRoutes {
            vm,
            legacy,
            msi: BTreeMap::new(),
            free: Vec::new(),
            next: LEGACY_GSIS,
            limit,
            dirty: false,
            stats: RoutingStats::default(),
        }))
    }

    /// MSI routes the VM may hold.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// MSI routes now (committed or not).
    pub fn len(&self) -> u32 {
        self.msi.len() as u32
    }

    /// No MSI route.
    pub fn is_empty(&self) -> bool {
        self.msi.is_empty()
    }

    /// Calls and time so far.
    pub fn stats(&self) -> RoutingStats {
        self.stats
    }

    /// A GSI routed to `msg` (in the next commit).
    fn alloc(&mut self, msg: Msg) -> Result<u32> {
        let fits = self.len() < self.limit;
        let gsi = match self.free.pop() {
            Some(gsi) if fits => gsi,
            None if fits && self.next < KVM_MAX_IRQ_ROUTES as u32 => {
                self.next += 1;
                self.next - 1
            }
            other => {
                self.free.extend(other);
                return Err(Error::Routes { limit: self.limit });
            }
        };
        self.msi.insert(gsi, msi_entry(gsi, msg));
        self.dirty = true;
        self.stats.routes_max = self.stats.routes_max.max(self.len());
        Ok(gsi)
    }

    fn set(&mut self, gsi: u32, msg: Msg) {
        self.msi.insert(gsi, msi_entry(gsi, msg));
        self.dirty = true;
    }

    fn free(&mut self, gsi: u32) {
        if self.msi.remove(&gsi).is_some() {
            self.free.push(gsi);
            self.dirty = true;
        }
    }

    /// Sends the table to KVM if it changed (one `KVM_SET_GSI_ROUTING`).
    pub fn commit(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let entries: Vec<kvm_irq_routing_entry> = self
            .legacy
            .iter()
            .chain(self.msi.values())
            .copied()
            .collect();
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|_| Error::Routes { limit: self.limit })?;
        let start = Instant::now();
        self.vm
            .set_gsi_routing(&table)
            .map_err(|e| kvm_error("KVM_SET_GSI_ROUTING", e))?;
        self.stats.time += start.elapsed();
        self.stats.calls += 1;
        self.dirty = false;
        Ok(())
    }
}

/// What happened when the device raised an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fire {
    /// Written to the entry's eventfd (delivered, or held while the entry is masked).
    Sent,
    /// The entry has no eventfd: its pending bit latched in the device (delivered when the
    /// entry is backed and unmasked).
    Latched,
    /// The function's MSI-X is disabled: nothing is sent or latched.
    Dropped,
}

#[derive(Debug, Default)]
struct Slot {
    eventfd: Option<EventFd>,
    latched: bool,
}

/// The device side of a [`KvmMsix`]: what raising entry `i` writes.
#[derive(Debug)]
pub struct Triggers {
    enabled: AtomicBool,
    slots: Vec<Mutex<Slot>>,
}

impl Triggers {
    fn new(entries: u32) -> Self {
        Triggers {
            enabled: AtomicBool::new(false),
            slots: (0..entries).map(|_| Mutex::default()).collect(),
        }
    }

    fn slot(&self, index: u32) -> Option<MutexGuard<'_, Slot>> {
        let slot = self.slots.get(index as usize)?;
        Some(slot.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The device raises entry `index` (an index past the table is dropped).
    pub fn fire(&self, index: u32) -> Fire {
        let Some(mut slot) = self.slot(index) else {
            return Fire::Dropped;
        };
        // Read under the slot's lock: a disable takes every slot's lock after clearing it.
        if !self.enabled.load(Ordering::Acquire) {
            return Fire::Dropped;
        }
        match &slot.eventfd {
            Some(e) if e.write(1).is_ok() => Fire::Sent,
            _ => {
                slot.latched = true;
                Fire::Latched
            }
        }
    }

    /// Entries in the table.
    pub fn len(&self) -> u32 {
        self.slots.len() as u32
    }

    /// No entry.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[derive(Debug)]
struct KvmEntry {
    gsi: u32,
    eventfd: EventFd,
    unmasked: bool,
}

/// One device's entries on KVM (see the module docs).
#[derive(Debug)]
pub struct KvmMsix {
    vm: Arc<VmFd>,
    routes: SharedRoutes,
    entries: Vec<Option<KvmEntry>>,
    triggers: Arc<Triggers>,
    budget: Budget,
}

impl KvmMsix {
    /// A device with `entries` (1..=2048, an MSI-X table's most) entries on `vm`, holding
    /// at most `budget` routes; [`Error::Layout`] for any other count, before anything is
    /// allocated.
    pub fn new(vm: Arc<VmFd>, routes: SharedRoutes, entries: u32, budget: u32) -> Result<Self> {
        if entries == 0 || entries > MsixLayout::MAX_VECTORS {
            return Err(Error::Layout { vectors: entries });
        }
        Ok(KvmMsix {
            vm,
            routes,
            entries: (0..entries).map(|_| None).collect(),
            triggers: Arc::new(Triggers::new(entries)),
            budget: Budget {
                limit: budget,
                ..Budget::default()
            },
        })
    }

    /// The device side.
    pub fn triggers(&self) -> Arc<Triggers> {
        self.triggers.clone()
    }

    /// Entry `index`'s eventfd, which KVM's irqfd waits on while the entry is unmasked: a
    /// VFIO host vector signals it directly (`vfio::VfioKvmMsix`).
    pub fn eventfd(&self, index: u32) -> Option<&EventFd> {
        self.entry(index).ok().map(|e| &e.eventfd)
    }

    /// The VM's routing table.
    pub fn routes(&self) -> &SharedRoutes {
        &self.routes
    }

    fn table(&self) -> MutexGuard<'_, GsiRoutes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(&self, index: u32) -> Result<&KvmEntry> {
        self.entries
            .get(index as usize)
            .and_then(Option::as_ref)
            .ok_or(Error::NotBacked { index })
    }

    /// What the eventfd of a masked entry counted, left in place.
    fn counted(eventfd: &EventFd) -> Result<u64> {
        match eventfd.read() {
            Ok(n) => {
                // Nobody else reads a masked entry's eventfd: put the count back.
                eventfd
                    .write(n)
                    .map_err(|e| kvm_error("eventfd write", e))?;
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(kvm_error("eventfd read", e)),
        }
    }
}

impl MsiBackend for KvmMsix {
    fn back(&mut self, index: u32, msg: Msg) -> Result<()> {
        if self.entries.get(index as usize).is_none() {
            return Err(Error::NotBacked { index });
        }
        if self.is_backed(index) {
            return self.set_msg(index, msg);
        }
        if self.budget.in_use >= self.budget.limit {
            return Err(Error::Budget {
                index,
                budget: self.budget.limit,
                in_use: self.budget.in_use,
            });
        }
        let eventfd = EventFd::new(EFD_NONBLOCK).map_err(|e| kvm_error("eventfd", e))?;
        let device = eventfd
            .try_clone()
            .map_err(|e| kvm_error("eventfd dup", e))?;
        let gsi = self.table().alloc(msg)?;
        if let Some(mut slot) = self.triggers.slot(index) {
            // What the device latched while the entry had no eventfd becomes the eventfd's
            // count: held while masked, delivered at unmask.
            if std::mem::take(&mut slot.latched) {
                device.write(1).map_err(|e| kvm_error("eventfd write", e))?;
            }
            slot.eventfd = Some(device);
        }
        self.entries[index as usize] = Some(KvmEntry {
            gsi,
            eventfd,
            unmasked: false,
        });
        self.budget.in_use += 1;
        self.budget.max_in_use = self.budget.max_in_use.max(self.budget.in_use);
        Ok(())
    }

    fn set_msg(&mut self, index: u32, msg: Msg) -> Result<()> {
        let gsi = self.entry(index)?.gsi;
        self.table().set(gsi, msg);
        Ok(())
    }

    fn unmask(&mut self, index: u32) -> Result<()> {
        let e = self.entry(index)?;
        if e.unmasked {
            return Ok(());
        }
        // The irqfd injects through the route: it must be in KVM's table first.
        self.table().commit()?;
        let e = self.entry(index)?;
        // No raise while the irqfd is assigned: the assign polls the eventfd's count without
        // its lock, so a write landing meanwhile can be seen both by the poll (injected as
        // "pending before the assign") and by the irqfd's wakeup (injected again).
        let slot = self.triggers.slot(index);
        self.vm
            .register_irqfd(&e.eventfd, e.gsi)
            .map_err(|err| kvm_error("KVM_IRQFD assign", err))?;
        // KVM injected once what the eventfd counted before the assign, without reading it;
        // from now on its wakeup reads the count at every write. Clear the stale count, or a
        // later unmask would inject it again.
        match e.eventfd.read() {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => {}
            Err(err) => return Err(kvm_error("eventfd read", err)),
        }
        drop(slot);
        if let Some(Some(e)) = self.entries.get_mut(index as usize) {
            e.unmasked = true;
        }
        Ok(())
    }

    fn mask(&mut self, index: u32) -> Result<()> {
        let e = self.entry(index)?;
        if !e.unmasked {
            return Ok(());
        }
        // Deassign waits until KVM is done with the irqfd; the eventfd counts from there.
        self.vm
            .unregister_irqfd(&e.eventfd, e.gsi)
            .map_err(|err| kvm_error("KVM_IRQFD deassign", err))?;
        if let Some(Some(e)) = self.entries.get_mut(index as usize) {
            e.unmasked = false;
        }
        Ok(())
    }

    fn release(&mut self, index: u32) -> Result<()> {
        self.mask(index)?;
        let Some(e) = self.entries.get_mut(index as usize).and_then(Option::take) else {
            return Ok(());
        };
        if let Some(mut slot) = self.triggers.slot(index) {
            slot.eventfd = None;
            // What the masked entry's eventfd counted stays pending in the device (the PBA
            // bit outlives the entry's host resources): delivered once it is backed and
            // unmasked again. Under the slot's lock, no raise is in between.
            match e.eventfd.read() {
                Ok(n) if n > 0 => slot.latched = true,
                Ok(_) => {}
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => return Err(kvm_error("eventfd read", err)),
            }
        }
        self.table().free(e.gsi);
        self.budget.in_use -= 1;
        Ok(())
    }

    fn is_backed(&self, index: u32) -> bool {
        self.entry(index).is_ok()
    }

    fn pending(&self, index: u32) -> bool {
        match self.entry(index) {
            Ok(e) => !e.unmasked && Self::counted(&e.eventfd).is_ok_and(|n| n > 0),
            Err(_) => self.triggers.slot(index).is_some_and(|s| s.latched),
        }
    }

    fn budget(&self) -> Budget {
        self.budget
    }

    fn commit(&mut self) -> Result<()> {
        self.table().commit()
    }

    fn enable(&mut self, on: bool) -> Result<()> {
        self.triggers.enabled.store(on, Ordering::Release);
        if !on {
            // A disabled function sends and latches nothing from here; wait out raises in
            // flight. What it latched before stays pending (PCIe defines no clearing of the
            // PBA at a disable): sent when the entry is unmasked with MSI-X enabled again.
            for i in 0..self.triggers.len() {
                drop(self.triggers.slot(i));
            }
        }
        Ok(())
    }
}
