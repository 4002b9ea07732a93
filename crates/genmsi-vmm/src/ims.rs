//! IMS for a mediated device (scalable IOV): the guest sees a virtual function with its own
//! MSI-X, one vector per work queue; each queue the guest creates is backed by a queue of
//! one physical accelerator, whose interrupt message lives in the queue's context (IMS).
//!
//! 1. The physical [`HostAccelerator`] has queue contexts in BAR0, bound as an IMS
//!    [`QueueStore`] in the secondary slot (`pci_create_ims_domain`); a [`MediatedDevice`]
//!    owns a slice of its queues.
//! 2. **Create**: guest queue `q` takes host queue `slice.start + q` and a host IMS entry at
//!    any free index with that queue as cookie (`pci_ims_alloc_irq`); the route
//!    `host irq -> guest vector q` is set. **Destroy** frees the entry: IMS grows and shrinks
//!    with the guest's queues while the other queues keep delivering.
//! 3. The guest's MSI-X for the virtual function is emulated like a passed-through one
//!    ([`MsixEmulation`]): a masked vector's interrupts set its emulated pending bit and are
//!    injected on unmask; a new address or data only changes the route.

use crate::error::{AccessError, Result};
use crate::guest::{Counters, GuestMsix, Injection, Route, RouteTable};
use crate::host::{Arrival, DeviceMemory, HostMachine, HostPci, Raise};
use crate::msix_emul::{Effect, MsixEmulation, MsixLayout};
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
    /// An accelerator at `address` with `queues` queue contexts, its IMS domain created.
    pub fn new(machine: Arc<HostMachine>, address: PciAddress, queues: u32) -> Result<Self> {
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

    /// The message arrives at the host CPUs.
    pub fn deliver(&self, msg: &Msg) -> Arrival {
        self.machine.deliver(msg, self.pci.address.requester_id())
    }
}

/// A guest queue and what backs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueBacking {
    /// The accelerator's queue.
    pub host_queue: u32,
    /// The host IMS index.
    pub index: u32,
    /// The host irq.
    pub irq: Irq,
}

/// The guest-visible virtual function of a mediated device (see the module docs).
#[derive(Debug)]
pub struct MediatedDevice {
    host: HostAccelerator,
    slice: Range<u32>,
    guest: GuestMsix,
    queues: BTreeMap<u32, QueueBacking>,
    routes: RouteTable,
}

impl MediatedDevice {
    /// A virtual function over host queues `slice` of `host`: one guest MSI-X vector per
    /// queue, the table at offset 0 of the virtual BAR0 and the PBA on the next 4 KiB page.
    pub fn new(host: HostAccelerator, slice: Range<u32>, record: bool) -> Result<Self> {
        let vectors = slice.len() as u32;
        if slice.end > host.contexts.queues {
            return Err(Error::Layout { vectors });
        }
        let pba_at = (vectors * 16).next_multiple_of(0x1000);
        let layout = MsixLayout::new(vectors, BarRegion::parse(0)?, BarRegion::parse(pba_at)?, 0)?;
        Ok(MediatedDevice {
            host,
            slice,
            guest: GuestMsix::new(MsixEmulation::new(layout), record),
            queues: BTreeMap::new(),
            routes: RouteTable::default(),
        })
    }

    /// The physical accelerator.
    pub fn host(&self) -> &HostAccelerator {
        &self.host
    }

    /// The host machine.
    pub fn host_machine(&self) -> &Arc<HostMachine> {
        &self.host.machine
    }

    /// The guest's emulated MSI-X.
    pub fn guest(&self) -> &MsixEmulation {
        self.guest.emul()
    }

    /// The counters of interrupts raised and what became of them.
    pub fn counters(&self) -> Counters {
        self.guest.counters
    }

    /// Every injected (vector, message), when recording.
    pub fn injected(&self) -> &[(u32, Msg)] {
        self.guest.injected()
    }

    /// The guest's queues and their backing.
    pub fn queues(&self) -> impl Iterator<Item = (u32, QueueBacking)> + '_ {
        self.queues.iter().map(|(&q, &b)| (q, b))
    }

    /// A guest read of the virtual MSI-X capability.
    pub fn config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        self.guest().config_read(offset, data)
    }

    /// A guest write to the virtual MSI-X capability.
    pub fn config_write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let effect = self.guest.emul_mut().config_write(offset, data)?;
        self.guest.settle(&effect);
        Ok(())
    }

    /// A guest read of the virtual BAR (table or PBA).
    pub fn mmio_read(&self, bar: Bar, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        self.guest().mmio_read(bar, offset, data)
    }

    /// A guest write to the virtual BAR (table or PBA).
    pub fn mmio_write(&mut self, bar: Bar, offset: u64, data: &[u8]) -> Result<()> {
        let effect = self.guest.emul_mut().mmio_write(bar, offset, data)?;
        if let Effect::Entry(c) = effect {
            if let (true, Some(b)) = (c.msg_changed, self.queues.get(&c.index)) {
                self.routes.set_msg(b.irq, self.guest.emul().msg(c.index));
            }
        }
        self.guest.settle(&effect);
        Ok(())
    }

    /// The guest creates queue `queue`: a host queue and an IMS entry at any free index.
    pub fn create_queue(&mut self, queue: u32) -> Result<QueueBacking> {
        let queues = self.slice.len() as u32;
        if queue >= queues {
            return Err(Error::Budget {
                index: queue,
                budget: queues,
                in_use: self.queues.len() as u32,
            });
        }
        if self.queues.contains_key(&queue) {
            return Err(Error::Queue {
                queue,
                exists: true,
            });
        }
        let host_queue = self.slice.start + queue;
        let (index, irq) = self.host.alloc(host_queue)?;
        let backing = QueueBacking {
            host_queue,
            index,
            irq,
        };
        self.queues.insert(queue, backing);
        let msg = self.guest().msg(queue);
        self.routes.set(irq, Route { entry: queue, msg });
        Ok(backing)
    }

    /// The guest destroys queue `queue`: its IMS entry is freed.
    pub fn destroy_queue(&mut self, queue: u32) -> Result<()> {
        let b = *self.queues.get(&queue).ok_or(Error::Queue {
            queue,
            exists: false,
        })?;
        self.host.free(b.index)?;
        self.routes.remove(b.irq);
        self.queues.remove(&queue);
        Ok(())
    }

    /// The device side: the host queue behind guest queue `queue` completes work.
    pub fn complete(&mut self, queue: u32) -> Result<Option<Injection>> {
        let raise = self.host.raise(self.slice.start + queue)?;
        let host = &self.host;
        Ok(self.guest.raised(raise, |m| host.deliver(m), &self.routes))
    }
}
