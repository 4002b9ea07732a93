//! The simulated devices: real configuration spaces and BARs, programmed by genmsi-pci's stores
//! through the `pci_*` conveniences, and a device side that raises interrupts by reading what
//! the stores wrote.

use crate::layout;
use crate::machine::{Arrival, Machine, Sender};
use crate::mem::{Bars, Config, Shared};
use crate::scenario::{DeviceKind, DeviceSpec};
use genmsi::{AllocOpts, CpuMask, DeviceId, Irq, SlotId};
use genmsi_pci::ims::{QueueContexts, QueueStore};
use genmsi_pci::msi::MsiCap;
use genmsi_pci::msix::MsixCap;
use genmsi_pci::{
    pci_add_device, pci_alloc_irq_vectors, pci_create_ims_domain, pci_ims_alloc_irq,
    pci_ims_free_irq, pci_msix_alloc_irq_at, pci_msix_free_irq, Bar, ByteBars, ByteConfig,
    IntxError, IntxPin, IntxRouter, IrqTypes, PciAddress, PciDevice, Signal,
};
use genmsi_x86::hpet::HpetModel;
use genmsi_x86::{HpetStore, IoApicStore, PinConfig};
use std::collections::BTreeMap;

/// How a device raises an interrupt.
#[derive(Debug)]
enum Signaller {
    Msix(MsixCap),
    Msi(MsiCap),
    Intx { pin: u32 },
    Queues(QueueContexts),
    Hpet(Shared<HpetModel>),
}

/// What happened when a device raised one of its interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raised {
    /// The device posted this message write; it lands later (see [`crate::run`]).
    Posted(genmsi::Msg),
    /// The message went out and ended up here.
    Sent(Arrival),
    /// Latched at the device (masked vector, or a level line still in service).
    Latched,
    /// The mechanism is disabled: nothing was sent.
    Disabled,
}

/// One simulated device.
#[derive(Debug)]
pub struct Device {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: DeviceKind,
    /// Its id in the irq system.
    pub id: DeviceId,
    /// The domain slot its interrupts live in.
    pub slot: SlotId,
    /// Requester id its writes carry.
    pub rid: u16,
    /// The remapping unit it sits behind.
    pub unit: usize,
    /// Share of the traffic.
    pub weight: f64,
    /// Store capacity.
    pub capacity: u32,
    /// Allocation options (affinity, managed).
    pub opts: AllocOpts,
    pci: PciDevice<Config, Bars>,
    signal: Signaller,
    /// index -> queue id (IMS).
    queues: BTreeMap<u32, u32>,
    /// Queue ids not bound to an index (IMS).
    free_queues: std::collections::BTreeSet<u32>,
    /// Active indices and their irqs, refreshed by [`Device::refresh`].
    pub live: Vec<(u32, Irq)>,
    /// Interrupts this device raised and that were handled by the right irq.
    pub delivered: u64,
    /// Interrupts this device raised.
    pub raised: u64,
}

/// Routes INTx pins to the IO-APIC: the function in PCI slot `s` with pin P goes to GSI
/// 16 + (s + P - 1) % 8, level, active low.
struct IoApicRouter<'a> {
    m: &'a Machine,
}

impl IntxRouter for IoApicRouter<'_> {
    fn route(&mut self, address: PciAddress, pin: IntxPin) -> Result<Irq, IntxError> {
        let dev = self
            .m
            .ioapic_device
            .ok_or(IntxError::Unrouted { address, pin })?;
        let slot = u32::from(address.requester_id() >> 3 & 0x1F);
        let gsi = 16 + (slot + u32::from(pin.register()) - 1) % 8;
        Ok(self
            .m
            .sys
            .alloc_at(dev, SlotId::Default, gsi, &AllocOpts::default())?)
    }

    fn unroute(&mut self, _: PciAddress, _: IntxPin, irq: Irq) {
        if let (Some(dev), Some(info)) = (self.m.ioapic_device, self.m.sys.irq_info(irq)) {
            let _ = self.m.sys.free_index(dev, SlotId::Default, info.desc.index);
        }
    }
}

/// Setup failures, with the device they concern.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

fn fail(name: &str, e: impl std::fmt::Display) -> SetupError {
    SetupError(format!("device `{name}`: {e}"))
}

/// Registers the IO-APIC (pins 16..24 level, active low) and the HPET behind the first unit.
pub fn platform(m: &mut Machine) -> Result<(), SetupError> {
    let mut store = IoApicStore::new(m.ioapic.clone());
    for pin in 16..24 {
        store
            .set_pin(pin, PinConfig::LEVEL_LOW)
            .map_err(|e| fail("ioapic", e))?;
    }
    let id = m.sys.add_device(
        "ioapic",
        genmsi::DeviceMeta::requester(crate::machine::IOAPIC_RID),
    );
    let (parent, unit) = m.parent_for(0);
    m.sys
        .create_device_domain(id, SlotId::Default, Box::new(store), parent)
        .map_err(|e| fail("ioapic", e))?;
    m.ioapic_device = Some(id);
    m.ioapic_unit = unit;
    Ok(())
}

impl Device {
    /// Builds device number `n` of the scenario and allocates its vectors.
    pub fn new(m: &mut Machine, n: usize, spec: &DeviceSpec) -> Result<Device, SetupError> {
        let name = spec.name.as_str();
        let capacity = spec.capacity.unwrap_or(spec.vectors).max(1);
        let address = PciAddress::new(1 + (n / 32) as u8, (n % 32) as u8, 0);
        let (parent, unit) = m.parent_for(n + 1);
        let affinity = spec
            .affinity
            .as_deref()
            .and_then(crate::scenario::parse_cpulist);
        let mut opts = AllocOpts {
            affinity,
            ..AllocOpts::default()
        };
        if spec.kind == DeviceKind::Nvme {
            opts.spread = true;
            opts.managed = true;
        }
        let (cfg, bars) = match spec.kind {
            DeviceKind::Nic | DeviceKind::Nvme | DeviceKind::Passthrough => (
                layout::msix_function(0x8086, 0x1572, capacity),
                ByteBars::new().with_bar(Bar::new(layout::MSIX_BAR), 0x10000),
            ),
            DeviceKind::LegacyMsi => (layout::msi32_function(0x10EC, 0x8139), ByteBars::new()),
            DeviceKind::Intx | DeviceKind::Hpet => {
                (layout::intx_function(0x8086, 0x100E), ByteBars::new())
            }
            DeviceKind::Ims => (
                layout::intx_function(0x8086, 0x0B25),
                ByteBars::new().with_bar(Bar::new(2), 64 * capacity as usize),
            ),
        };
        let cfg: Config = Shared::new(ByteConfig::new(cfg));
        let bars: Bars = Shared::new(bars);
        let pci = pci_add_device(&m.sys, name, address, cfg.clone(), bars.clone());
        let mut queues = BTreeMap::new();
        let (signal, slot) = match spec.kind {
            DeviceKind::Nic | DeviceKind::Nvme | DeviceKind::Passthrough => {
                if spec.vectors > 0 {
                    let v = spec.vectors;
                    pci_alloc_irq_vectors(&m.sys, &pci, parent, v..=v, IrqTypes::MSIX, &opts, None)
                        .map_err(|e| fail(name, e))?;
                }
                let cap =
                    MsixCap::read(&cfg, &bars, layout::MSIX_CAP).map_err(|e| fail(name, e))?;
                (Signaller::Msix(cap), SlotId::Default)
            }
            DeviceKind::LegacyMsi => {
                pci_alloc_irq_vectors(&m.sys, &pci, parent, 1..=1, IrqTypes::MSI, &opts, None)
                    .map_err(|e| fail(name, e))?;
                (
                    Signaller::Msi(MsiCap::read(&cfg, layout::MSI_CAP).map_err(|e| fail(name, e))?),
                    SlotId::Default,
                )
            }
            DeviceKind::Intx => {
                let types = IrqTypes {
                    msix: false,
                    msi: false,
                    intx: true,
                };
                let mut router = IoApicRouter { m };
                let got = pci_alloc_irq_vectors(
                    &m.sys,
                    &pci,
                    parent,
                    1..=1,
                    types,
                    &opts,
                    Some(&mut router),
                )
                .map_err(|e| fail(name, e))?;
                let irq = got.irqs()[0];
                let pin = m
                    .sys
                    .irq_info(irq)
                    .map(|i| i.desc.index)
                    .ok_or_else(|| fail(name, "no pin"))?;
                m.lines.insert(pin, false);
                (Signaller::Intx { pin }, SlotId::Default)
            }
            DeviceKind::Ims => {
                let contexts = QueueContexts {
                    bar: Bar::new(2),
                    base: 0,
                    stride: 64,
                    queues: capacity,
                    interrupt: 0x20,
                };
                let store = QueueStore::new(bars.clone(), contexts).map_err(|e| fail(name, e))?;
                pci_create_ims_domain(&m.sys, &pci, Box::new(store), parent)
                    .map_err(|e| fail(name, e))?;
                for q in 0..spec.vectors {
                    let (index, _) = pci_ims_alloc_irq(&m.sys, &pci, Some(u64::from(q)), &opts)
                        .map_err(|e| fail(name, e))?;
                    queues.insert(index, q);
                }
                (Signaller::Queues(contexts), SlotId::Secondary)
            }
            DeviceKind::Hpet => {
                let model = Shared::new(HpetModel::new(capacity.min(8), capacity.min(8)));
                let store = HpetStore::new(model.clone());
                m.sys
                    .create_device_domain(pci.id, SlotId::Default, Box::new(store), parent)
                    .map_err(|e| fail(name, e))?;
                m.sys
                    .alloc_range(pci.id, SlotId::Default, 0, spec.vectors, &opts)
                    .map_err(|e| fail(name, e))?;
                (Signaller::Hpet(model), SlotId::Default)
            }
        };
        let mut d = Device {
            name: name.into(),
            kind: spec.kind,
            id: pci.id,
            slot,
            rid: address.requester_id(),
            unit,
            weight: spec.weight,
            capacity,
            opts,
            pci,
            signal,
            free_queues: {
                let used: std::collections::BTreeSet<u32> = queues.values().copied().collect();
                (0..capacity).filter(|q| !used.contains(q)).collect()
            },
            queues,
            live: Vec::new(),
            delivered: 0,
            raised: 0,
        };
        d.refresh(m);
        Ok(d)
    }

    /// The descriptors of this device's interrupts. An INTx function's interrupt is its IO-APIC
    /// pin.
    fn descs(&self, m: &Machine) -> Vec<genmsi::MsiDesc> {
        let (id, pin) = match self.signal {
            Signaller::Intx { pin } => (m.ioapic_device.unwrap_or(self.id), Some(pin)),
            _ => (self.id, None),
        };
        let mut descs = m.sys.descs(id, self.slot).unwrap_or_default();
        descs.retain(|d| pin.is_none_or(|p| p == d.index));
        descs
    }

    /// Re-reads which indices are active.
    pub fn refresh(&mut self, m: &Machine) {
        self.live = self
            .descs(m)
            .into_iter()
            .filter(|d| d.active)
            .map(|d| (d.index, d.irq))
            .collect();
    }

    /// Every allocated index and its irq, active or not, in index order.
    pub fn allocated(&self, m: &Machine) -> Vec<(u32, Irq)> {
        self.descs(m)
            .into_iter()
            .map(|d| (d.index, d.irq))
            .collect()
    }

    /// The device raises interrupt `index`.
    pub fn raise(&mut self, m: &mut Machine, index: u32) -> Raised {
        let signal = match &self.signal {
            Signaller::Msix(cap) => cap.raise(&self.pci.config, &mut self.pci.bars, index).ok(),
            Signaller::Msi(cap) => cap.raise(&mut self.pci.config, index).ok(),
            Signaller::Queues(q) => {
                let queue = self.queues.get(&index).copied().unwrap_or(u32::MAX);
                q.raise(&mut self.pci.bars, queue).ok()
            }
            Signaller::Hpet(model) => Some(
                model
                    .lock()
                    .fire(index)
                    .map_or(Signal::Disabled, Signal::Sent),
            ),
            Signaller::Intx { pin } => {
                return m.assert_line(*pin).map_or(Raised::Latched, Raised::Sent);
            }
        };
        match signal {
            Some(Signal::Sent(msg)) => Raised::Posted(msg),
            Some(Signal::Pending) => Raised::Latched,
            Some(Signal::Disabled) | None => Raised::Disabled,
        }
    }

    /// The message the device would send for `index` right now (for replay attacks).
    pub fn current_msg(&self, index: u32) -> Option<genmsi::Msg> {
        match &self.signal {
            Signaller::Msix(cap) => cap.read_entry(&self.pci.bars, index).ok().map(|e| e.msg),
            _ => None,
        }
    }

    /// Allocates exactly MSI-X `index` (a guest unmasked it).
    pub fn alloc_at(&mut self, m: &Machine, index: u32) -> Result<Irq, genmsi_pci::PciError> {
        let got =
            pci_msix_alloc_irq_at(&m.sys, &self.pci, Some(index), &self.opts).map(|(_, irq)| irq);
        self.refresh(m);
        got
    }

    /// Frees MSI-X `index`.
    pub fn free_at(&mut self, m: &Machine, index: u32) -> Result<(), genmsi_pci::PciError> {
        let r = pci_msix_free_irq(&m.sys, &self.pci, index);
        self.refresh(m);
        r
    }

    /// IMS: a new queue at any free index targeting `cpus`.
    pub fn add_queue(
        &mut self,
        m: &Machine,
        cpus: Option<&CpuMask>,
    ) -> Result<u32, genmsi_pci::PciError> {
        let queue = self.free_queues.first().copied().unwrap_or(self.capacity);
        let opts = AllocOpts {
            affinity: cpus.cloned().or(self.opts.affinity.clone()),
            ..self.opts.clone()
        };
        let (index, _) = pci_ims_alloc_irq(&m.sys, &self.pci, Some(u64::from(queue)), &opts)?;
        self.queues.insert(index, queue);
        self.free_queues.remove(&queue);
        Ok(index)
    }

    /// IMS: destroys the queue at `index`.
    pub fn remove_queue(&mut self, m: &Machine, index: u32) -> Result<(), genmsi_pci::PciError> {
        pci_ims_free_irq(&m.sys, &self.pci, index)?;
        if let Some(q) = self.queues.remove(&index) {
            self.free_queues.insert(q);
        }
        Ok(())
    }

    /// IMS queue indices in use.
    pub fn queue_indices(&self) -> Vec<u32> {
        self.queues.keys().copied().collect()
    }

    /// MSI-X: sends `index` if its PBA bit is set and it is unmasked now; returns the irq
    /// allocation it was sent for and where it went.
    pub fn replay(&mut self, m: &mut Machine, index: u32) -> Option<(Sender, Arrival)> {
        let irq = m.sys.desc(self.id, self.slot, index).ok()?.irq;
        let sender = Sender::Irq(m.irq_ref(irq));
        let msg = match &self.signal {
            Signaller::Msix(cap) => cap
                .replay(&self.pci.config, &mut self.pci.bars, index)
                .ok()??,
            _ => return None,
        };
        Some((sender, m.write(&msg, self.rid, self.unit, sender)))
    }

    /// The store's name.
    pub fn store_name(&self) -> &'static str {
        match self.signal {
            Signaller::Msix(_) => "msix",
            Signaller::Msi(_) => "msi",
            Signaller::Intx { .. } => "ioapic",
            Signaller::Queues(_) => "ims-queue",
            Signaller::Hpet(_) => "hpet-fsb",
        }
    }
}
