//! IMS for a mediated device (scalable IOV): the guest sees a virtual function with its own
//! MSI-X, one vector per work queue; each queue the guest creates is backed by a queue of
//! one physical accelerator, whose interrupt message lives in the queue's context (IMS).
//!
//! The host side goes through the same seam as a passed-through function's
//! ([`MsiBackend`]): guest queue `q` is backend entry `q`, backed while the queue exists
//! ([`Strategy::Queues`]). The shape is the same because what differs is only *when* an entry
//! is backed (queue create, not unmask) and *where* its host resource sits (any free IMS
//! index, chosen by the host): both stay inside the backend and [`VirtMsix`].
//!
//! 1. The physical [`HostAccelerator`] has queue contexts in BAR0, bound as an IMS
//!    [`QueueStore`] in the secondary slot (`pci_create_ims_domain`).
//! 2. [`ImsBackend`], the host model: backing guest queue `q` takes host queue
//!    `slice.start + q` and a host IMS entry at any free index with that queue as cookie
//!    (`pci_ims_alloc_irq`), masked; the route `host irq -> guest vector q` is set. Unmask and
//!    mask are the host IMS entry's (a masked queue latches Interrupt Pending in its context,
//!    sent once at unmask); release frees the entry. On KVM the backend is
//!    `kvm::KvmMsix`: a guest queue's interrupt is one GSI route and one irqfd.
//! 3. [`MediatedDevice`]: the guest's virtual function ([`VirtMsix`] with
//!    [`Strategy::Queues`]); **create** and **destroy** back and release the queue's entry, so
//!    IMS grows and shrinks with the guest's queues while the other queues keep delivering.
//!    A guest mask holds the queue's interrupt in the backend; a PBA read shows it; a new
//!    address or data changes the route only.

use crate::backend::{Budget, MsiBackend};
use crate::error::{AccessError, Result};
use crate::guest::RECORDED;
use crate::guest::{Counters, Injection, Route, RouteTable};
use crate::host::{Arrival, DeviceMemory, HostMachine, HostPci, Raise};
use crate::msix_emul::{MsixEmulation, MsixLayout};
use crate::ring::Ring;
use crate::virt::{Strategy, VirtMsix};
use crate::Error;
use genmsi::{AllocOpts, Irq, Msg};
use genmsi_pci::ims::QueueContexts;
use genmsi_pci::msix::Region as BarRegion;
use genmsi_pci::{
    pci_add_device, pci_create_ims_domain, pci_ims_alloc_irq, pci_ims_free_irq, Bar, ByteBars,
    ByteConfig, PciAddress, QueueStore, Signal,
};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

/// Queue contexts: 64 bytes each from offset 0 of BAR0, the interrupt block at +0x20.
const CONTEXT_STRIDE: u64 = 64;
/// The most queue contexts the model accelerator has (256 KiB of BAR0).
pub const MAX_QUEUES: u32 = 4096;
const INTERRUPT_BLOCK: u64 = 0x20;

/// The physical accelerator: queue contexts holding each queue's interrupt message (IMS).
#[derive(Debug)]
pub struct HostAccelerator {
    machine: Arc<HostMachine>,
    pci: HostPci,
    contexts: QueueContexts,
    ops: u64,
}

impl HostAccelerator {
    /// An accelerator at `address` with `queues` (1..=[`MAX_QUEUES`]) queue contexts, its
    /// IMS domain created; [`Error::Layout`] for any other count.
    pub fn new(machine: Arc<HostMachine>, address: PciAddress, queues: u32) -> Result<Self> {
        if queues == 0 || queues > MAX_QUEUES {
            return Err(Error::Layout { vectors: queues });
        }
        let contexts = QueueContexts {
            bar: Bar::new(0),
            base: 0,
            stride: CONTEXT_STRIDE,
            queues,
            interrupt: INTERRUPT_BLOCK,
        };
        let len = u64::from(queues) * CONTEXT_STRIDE;
        let bars = DeviceMemory::new(ByteBars::new().with_bar(contexts.bar, len as usize));
        let mut cfg = vec![0u8; 256];
        cfg[0..4].copy_from_slice(&[0x86, 0x80, 0x25, 0x0B]);
        let config = DeviceMemory::new(ByteConfig::new(cfg));
        let store = QueueStore::new(bars.clone(), contexts)?;
        let pci = pci_add_device(machine.sys(), "accelerator", address, config, bars);
        pci_create_ims_domain(machine.sys(), &pci, Box::new(store), machine.parent())?;
        Ok(HostAccelerator {
            machine,
            pci,
            contexts,
            ops: 0,
        })
    }

    /// The queue contexts.
    pub fn contexts(&self) -> &QueueContexts {
        &self.contexts
    }

    /// The function as registered.
    pub fn pci(&self) -> &HostPci {
        &self.pci
    }

    /// IMS entries allocated or freed so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Binds host queue `queue` to an IMS entry at any free index.
    pub fn alloc(&mut self, queue: u32) -> Result<(u32, Irq)> {
        let opts = AllocOpts::default();
        let got = pci_ims_alloc_irq(self.machine.sys(), &self.pci, Some(queue.into()), &opts)?;
        self.ops += 1;
        Ok(got)
    }

    /// Frees IMS entry `index`.
    pub fn free(&mut self, index: u32) -> Result<()> {
        pci_ims_free_irq(self.machine.sys(), &self.pci, index)?;
        self.ops += 1;
        Ok(())
    }

    /// The device side: host queue `queue` completes work.
    pub fn raise(&self, queue: u32) -> Result<Raise> {
        let mut bars = self.pci.bars.clone();
        let coalesced = self.contexts.read(&bars, queue)?.pending();
        Ok(match self.contexts.raise(&mut bars, queue)? {
            Signal::Sent(msg) => Raise::Sent(msg),
            Signal::Pending => Raise::Latched { coalesced },
            Signal::Disabled => Raise::Dropped,
        })
    }

    /// The device side: host queue `queue`'s interrupt was unmasked; it sends what it latched.
    pub fn replay(&self, queue: u32) -> Result<Option<Msg>> {
        let mut bars = self.pci.bars.clone();
        Ok(self.contexts.replay(&mut bars, queue)?)
    }

    /// Host queue `queue` has Interrupt Pending set.
    pub fn pending(&self, queue: u32) -> bool {
        self.contexts
            .read(&self.pci.bars, queue)
            .is_ok_and(|q| q.pending())
    }

    /// The message arrives at the host CPUs.
    pub fn deliver(&self, msg: &Msg) -> Arrival {
        self.machine.deliver(msg, self.pci.address.requester_id())
    }
}

/// A guest queue and what backs it on the host model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueBacking {
    /// The accelerator's queue.
    pub host_queue: u32,
    /// The host IMS index.
    pub index: u32,
    /// The host irq.
    pub irq: Irq,
}

/// The host model behind a mediated device's queues (see the module docs, step 2).
#[derive(Debug)]
pub struct ImsBackend {
    host: HostAccelerator,
    slice: Range<u32>,
    queues: BTreeMap<u32, QueueBacking>,
    routes: RouteTable,
    /// The guest's MSI-X Enable, as the virtual function's interrupt logic sees it.
    enabled: bool,
    budget: Budget,
    counters: Counters,
    log: Option<Ring<(u32, Msg)>>,
}

impl ImsBackend {
    /// Host queues `slice` of `host`, one per guest queue; with `record`, the latest
    /// [`RECORDED`] injected messages are kept (the counters count them all).
    pub fn new(host: HostAccelerator, slice: Range<u32>, record: bool) -> Result<Self> {
        if slice.end > host.contexts.queues || slice.is_empty() {
            return Err(Error::Layout {
                vectors: slice.len() as u32,
            });
        }
        Ok(ImsBackend {
            budget: Budget {
                limit: slice.len() as u32,
                ..Budget::default()
            },
            host,
            slice,
            queues: BTreeMap::new(),
            routes: RouteTable::default(),
            enabled: false,
            counters: Counters::default(),
            log: record.then(|| Ring::new(RECORDED)),
        })
    }

    /// The physical accelerator.
    pub fn host(&self) -> &HostAccelerator {
        &self.host
    }

    /// Guest queues (the virtual function's vectors).
    pub fn vectors(&self) -> u32 {
        self.slice.len() as u32
    }

    /// What backs guest queue `queue`.
    pub fn queue(&self, queue: u32) -> Option<QueueBacking> {
        self.queues.get(&queue).copied()
    }

    /// The counters of interrupts raised and what became of them.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The latest injected (vector, message), oldest first, when recording.
    pub fn injected(&self) -> Vec<(u32, Msg)> {
        self.log
            .as_ref()
            .map_or_else(Vec::new, |log| log.iter().copied().collect())
    }

    fn backing(&self, queue: u32) -> Result<QueueBacking> {
        self.queue(queue).ok_or(Error::NotBacked { index: queue })
    }

    /// A message the accelerator sent arrives at the host and goes along its route.
    fn arrive(&mut self, msg: &Msg) -> Option<Injection> {
        match self.host.deliver(msg) {
            Arrival::Handled(irq) => match self.routes.get(irq) {
                Some(route) => {
                    self.counters.injected += 1;
                    if let Some(log) = &mut self.log {
                        log.push((route.entry, route.msg));
                    }
                    return Some(Injection::Injected);
                }
                None => self.counters.spurious += 1,
            },
            Arrival::Blocked(_) => self.counters.blocked += 1,
            Arrival::Spurious => self.counters.spurious += 1,
        }
        None
    }

    /// The device side: the host queue behind guest queue `queue` completes work. `None`
    /// when the interrupt never reached the guest (no queue, the guest's MSI-X disabled:
    /// counted lost; blocked or spurious: counted so).
    pub fn complete(&mut self, queue: u32) -> Result<Option<Injection>> {
        if queue >= self.vectors() {
            return Err(Error::NotBacked { index: queue });
        }
        self.counters.raised += 1;
        if !self.enabled {
            // The virtual function's MSI-X is disabled: it signals nothing, latches nothing.
            self.counters.lost += 1;
            return Ok(None);
        }
        Ok(match self.host.raise(self.slice.start + queue)? {
            Raise::Sent(msg) => self.arrive(&msg),
            Raise::Latched { coalesced: false } => Some(Injection::Latched),
            Raise::Latched { coalesced: true } => {
                self.counters.coalesced += 1;
                Some(Injection::Coalesced)
            }
            Raise::Dropped => {
                self.counters.lost += 1;
                None
            }
        })
    }
}

impl MsiBackend for ImsBackend {
    fn back(&mut self, queue: u32, msg: Msg) -> Result<()> {
        if queue >= self.vectors() || self.budget.in_use >= self.budget.limit {
            return Err(Error::Budget {
                index: queue,
                budget: self.budget.limit,
                in_use: self.budget.in_use,
            });
        }
        if self.queues.contains_key(&queue) {
            return self.set_msg(queue, msg);
        }
        let host_queue = self.slice.start + queue;
        let (index, irq) = self.host.alloc(host_queue)?;
        // Masked before the route is set and before anything can raise it (the model runs
        // the device side on this thread only).
        if let Err(e) = self.host.machine.sys().mask(irq) {
            self.host.free(index)?;
            return Err(e.into());
        }
        self.queues.insert(
            queue,
            QueueBacking {
                host_queue,
                index,
                irq,
            },
        );
        self.routes.set(irq, Route { entry: queue, msg });
        self.budget.in_use += 1;
        self.budget.max_in_use = self.budget.max_in_use.max(self.budget.in_use);
        Ok(())
    }

    fn set_msg(&mut self, queue: u32, msg: Msg) -> Result<()> {
        let b = self.backing(queue)?;
        self.routes.set_msg(b.irq, msg);
        Ok(())
    }

    fn unmask(&mut self, queue: u32) -> Result<()> {
        let b = self.backing(queue)?;
        self.host.machine.sys().unmask(b.irq)?;
        // The queue sends what it latched while masked, once.
        if let Some(msg) = self.host.replay(b.host_queue)? {
            self.arrive(&msg);
        }
        Ok(())
    }

    fn mask(&mut self, queue: u32) -> Result<()> {
        let b = self.backing(queue)?;
        Ok(self.host.machine.sys().mask(b.irq)?)
    }

    fn release(&mut self, queue: u32) -> Result<()> {
        let b = self.backing(queue)?;
        // A pending interrupt goes with the queue: count it, so the counters still add up.
        if self.host.pending(b.host_queue) {
            self.counters.lost += 1;
        }
        self.host.free(b.index)?;
        self.routes.remove(b.irq);
        self.queues.remove(&queue);
        self.budget.in_use -= 1;
        Ok(())
    }

    fn is_backed(&self, queue: u32) -> bool {
        self.queues.contains_key(&queue)
    }

    fn pending(&self, queue: u32) -> bool {
        self.queue(queue)
            .is_some_and(|b| self.host.pending(b.host_queue))
    }

    fn budget(&self) -> Budget {
        self.budget
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    fn enable(&mut self, on: bool) -> Result<()> {
        self.enabled = on;
        Ok(())
    }
}

/// The guest-visible virtual function of a mediated device over a backend (see the module
/// docs, step 3): [`ImsBackend`] on the host model, `kvm::KvmMsix` on KVM.
#[derive(Debug)]
pub struct MediatedDevice<B = ImsBackend> {
    virt: VirtMsix<B>,
}

impl MediatedDevice<ImsBackend> {
    /// A virtual function over host queues `slice` of `host` (the host model): one guest
    /// MSI-X vector per queue, the table at offset 0 of the virtual BAR0 and the PBA on the
    /// next 4 KiB page.
    pub fn new(host: HostAccelerator, slice: Range<u32>, record: bool) -> Result<Self> {
        let vectors = slice.len() as u32;
        MediatedDevice::over(ImsBackend::new(host, slice, record)?, vectors)
    }

    /// The physical accelerator.
    pub fn host(&self) -> &HostAccelerator {
        self.virt.backend().host()
    }

    /// The host machine.
    pub fn host_machine(&self) -> &Arc<HostMachine> {
        &self.host().machine
    }

    /// The counters of interrupts raised and what became of them.
    pub fn counters(&self) -> Counters {
        self.virt.backend().counters()
    }

    /// The latest injected (vector, message), oldest first, when recording.
    pub fn injected(&self) -> Vec<(u32, Msg)> {
        self.virt.backend().injected()
    }

    /// Interrupts held now: the pending bits of masked queues.
    pub fn pending(&self) -> u64 {
        self.queues()
            .filter(|&q| self.virt.backend().pending(q))
            .count() as u64
    }

    /// The device side: the host queue behind guest queue `queue` completes work.
    pub fn complete(&mut self, queue: u32) -> Result<Option<Injection>> {
        self.virt.backend_mut().complete(queue)
    }
}

impl<B: MsiBackend> MediatedDevice<B> {
    /// A virtual function with `vectors` queues over `backend` (entry `q` is queue `q`);
    /// [`Error::Layout`] unless `vectors` is 1..=[`MsixLayout::MAX_VECTORS`].
    pub fn over(backend: B, vectors: u32) -> Result<Self> {
        if vectors == 0 || vectors > MsixLayout::MAX_VECTORS {
            return Err(Error::Layout { vectors });
        }
        let pba_at = (vectors * 16).next_multiple_of(0x1000);
        let layout = MsixLayout::new(vectors, BarRegion::parse(0)?, BarRegion::parse(pba_at)?, 0)?;
        Ok(MediatedDevice {
            virt: VirtMsix::new(layout, backend, Strategy::Queues),
        })
    }

    /// The virtual function's MSI-X over the backend.
    pub fn virt(&self) -> &VirtMsix<B> {
        &self.virt
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        self.virt.backend()
    }

    /// The backend, for the device side.
    pub fn backend_mut(&mut self) -> &mut B {
        self.virt.backend_mut()
    }

    /// The guest's emulated MSI-X.
    pub fn guest(&self) -> &MsixEmulation {
        self.virt.emul()
    }

    /// The guest's queues that exist (backed), in order.
    pub fn queues(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.guest().layout().vectors).filter(|&q| self.virt.backend().is_backed(q))
    }

    /// A guest read of the virtual MSI-X capability.
    pub fn config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        self.virt.config_read(offset, data)
    }

    /// A guest write to the virtual MSI-X capability.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.virt.config_write(offset, data)
    }

    /// A guest read of the virtual BAR (table or PBA); the PBA shows what masked queues hold.
    pub fn mmio_read(&self, bar: Bar, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        self.virt.mmio_read(bar, offset, data)
    }

    /// A guest write to the virtual BAR (table or PBA).
    pub fn mmio_write(&mut self, bar: Bar, offset: u64, data: &[u8]) -> Result<()> {
        self.virt.mmio_write(bar, offset, data)
    }

    /// The guest creates queue `queue`: its interrupt gets host resources (refused with
    /// [`Error::Budget`] past the virtual function's queues or the backend's budget, with
    /// [`Error::Queue`] if it exists).
    pub fn create_queue(&mut self, queue: u32) -> Result<()> {
        let vectors = self.guest().layout().vectors;
        if queue >= vectors {
            return Err(Error::Budget {
                index: queue,
                budget: vectors,
                in_use: self.virt.budget().in_use,
            });
        }
        self.virt.back_entry(queue)
    }

    /// The guest destroys queue `queue`: its interrupt's host resources are released.
    pub fn destroy_queue(&mut self, queue: u32) -> Result<()> {
        self.virt.release_entry(queue)
    }
}
