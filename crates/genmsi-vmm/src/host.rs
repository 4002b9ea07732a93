//! The host: an x86 machine running the real genmsi crates, and the passed-through NIC whose
//! MSI-X the VMM drives through `genmsi-pci`.
//!
//! 1. [`HostMachine`] is an [`IrqSystem`] with `genmsi-x86`'s [`VectorDomain`] at the root and,
//!    optionally, a VT-d [`IrDomain`] above it; [`HostMachine::deliver`] is the CPU side: a
//!    message write goes through the remapping unit (if any) to a (CPU, vector), the vector
//!    table names the irq, and the irq is handled.
//! 2. [`HostNic`] is a function with an MSI-X capability whose configuration space and BARs are
//!    byte arrays shared ([`DeviceMemory`]) between the host's MSI-X store (inside the irq
//!    system) and the device side, which raises interrupts from what the store wrote
//!    ([`MsixCap::raise`]). Every allocation or free of a host vector counts as one host
//!    operation ([`HostNic::ops`]).
//! 3. Grace periods ([`genmsi::grace`]): this host delivers synchronously. A raised write
//!    lands and is handled within [`HostMachine::deliver`], so no write is in the fabric and
//!    no IRR holds one once a free returns (its posted-write bound is zero and its local APICs
//!    never hold a vector); [`HostMachine::end_grace`] after each free gives back what the free
//!    held. A delivery split with [`HostMachine::accept`] holds its irq allocation, whose
//!    generation refuses it once freed.

use crate::error::Result;
use crate::guest::{Route, RouteTable};
use genmsi::{AllocOpts, Delivery, DomainId, Irq, IrqRef, IrqSystem, Msg, SystemConfig};
use genmsi_pci::config::header;
use genmsi_pci::msix::MsixCap;
use genmsi_pci::{
    pci_add_device, pci_alloc_irq_vectors, pci_free_irq_vectors, pci_msix_alloc_irq_at,
    pci_msix_free_irq, Bar, ByteBars, ByteConfig, ConfigError, ConfigSpace, IrqTypes, IrqVectors,
    Mmio, MmioError, PciAddress, PciDevice, Signal,
};
use genmsi_x86::msi::MsiFormat;
use genmsi_x86::{
    FaultReason, InvDescriptor, Invalidate, IrDomain, IrUnit, SharedIrteTable, VectorDomain,
    VectorTable,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Device memory shared between the host's stores and the device side: a clone reaches the
/// same bytes (the stores need `Clone` handles, and the device must see what they wrote).
#[derive(Debug, Default)]
pub struct DeviceMemory<T>(Arc<Mutex<T>>);

impl<T> Clone for DeviceMemory<T> {
    fn clone(&self) -> Self {
        DeviceMemory(self.0.clone())
    }
}

impl<T> DeviceMemory<T> {
    /// Shares `mem`.
    pub fn new(mem: T) -> Self {
        DeviceMemory(Arc::new(Mutex::new(mem)))
    }

    /// The memory, locked.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // A panic while holding the lock leaves plain bytes, still consistent per access.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: ConfigSpace> ConfigSpace for DeviceMemory<T> {
    fn size(&self) -> u16 {
        self.lock().size()
    }
    fn read_u8(&self, offset: u16) -> Result<u8, ConfigError> {
        self.lock().read_u8(offset)
    }
    fn read_u16(&self, offset: u16) -> Result<u16, ConfigError> {
        self.lock().read_u16(offset)
    }
    fn read_u32(&self, offset: u16) -> Result<u32, ConfigError> {
        self.lock().read_u32(offset)
    }
    fn write_u8(&mut self, offset: u16, value: u8) -> Result<(), ConfigError> {
        self.lock().write_u8(offset, value)
    }
    fn write_u16(&mut self, offset: u16, value: u16) -> Result<(), ConfigError> {
        self.lock().write_u16(offset, value)
    }
    fn write_u32(&mut self, offset: u16, value: u32) -> Result<(), ConfigError> {
        self.lock().write_u32(offset, value)
    }
}

impl<T: Mmio> Mmio for DeviceMemory<T> {
    fn bar_len(&self, bar: Bar) -> Option<u64> {
        self.lock().bar_len(bar)
    }
    fn read_u32(&self, bar: Bar, offset: u64) -> Result<u32, MmioError> {
        self.lock().read_u32(bar, offset)
    }
    fn write_u32(&mut self, bar: Bar, offset: u64, value: u32) -> Result<(), MmioError> {
        self.lock().write_u32(bar, offset, value)
    }
}

/// A host function's configuration space.
pub type HostConfig = DeviceMemory<ByteConfig<Vec<u8>>>;
/// A host function's BARs.
pub type HostBars = DeviceMemory<ByteBars>;
/// A host PCI function as the `pci_*` conveniences see it.
pub type HostPci = PciDevice<HostConfig, HostBars>;

/// Sizes of the host machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// CPUs (each with the 204 allocatable vectors 0x20..0xEC).
    pub cpus: u32,
    /// VT-d interrupt remapping with this many IRTEs; `None` for none.
    pub irtes: Option<u32>,
}

impl MachineConfig {
    /// `cpus` CPUs behind interrupt remapping with 8,192 IRTEs.
    pub const fn remapped(cpus: u32) -> Self {
        MachineConfig {
            cpus,
            irtes: Some(8192),
        }
    }
}

/// Forwards the remapping domain's invalidations to the remapping unit.
#[derive(Debug)]
struct UnitInvalidate(Arc<Mutex<IrUnit>>);

impl Invalidate for UnitInvalidate {
    fn invalidate(&mut self, desc: InvDescriptor) -> Result<(), &'static str> {
        self.0
            .lock()
            .map_err(|_| "remapping unit poisoned")?
            .invalidate(desc);
        Ok(())
    }
}

/// The remapping hardware: its table and its unit (entry cache, faults).
#[derive(Debug)]
struct Remapping {
    table: SharedIrteTable,
    unit: Arc<Mutex<IrUnit>>,
}

/// What became of one message write on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The irq was handled on a CPU.
    Handled(Irq),
    /// The remapping unit blocked the write.
    Blocked(FaultReason),
    /// The write named no active irq (a vector mapped to nothing, not an interrupt message).
    Spurious,
}

/// The host: an irq system over the x86 vector domain, optionally behind VT-d remapping.
#[derive(Debug)]
pub struct HostMachine {
    sys: IrqSystem,
    root: DomainId,
    parent: DomainId,
    vectors: Arc<VectorTable>,
    remapping: Option<Remapping>,
}

impl HostMachine {
    /// A machine of `config.cpus` CPUs; refused ([`genmsi::Error::InvalidConfig`]) beyond
    /// the core's limits ([`genmsi::MAX_CPUS`]). A remapping table is clamped at
    /// [`genmsi_x86::MAX_IRTES`] entries.
    pub fn new(config: MachineConfig) -> Result<Self> {
        let sys = IrqSystem::try_new(SystemConfig::new(config.cpus, 1 << 16))?;
        let mut vd = VectorDomain::new(config.cpus);
        // Synchronous delivery (see the module docs): nothing is ever pending in an IRR.
        vd.set_pending_probe(Some(Box::new(|_, _| false)));
        let vectors = vd.table();
        let root = sys.add_domain(Box::new(vd), None)?;
        let (parent, remapping) = match config.irtes {
            Some(entries) => {
                let table = SharedIrteTable::new(entries);
                let unit = Arc::new(Mutex::new(IrUnit::new(false, false)));
                let ir = IrDomain::new(table.clone(), UnitInvalidate(unit.clone()), false);
                let ir = sys.add_domain(Box::new(ir), Some(root))?;
                (ir, Some(Remapping { table, unit }))
            }
            None => (root, None),
        };
        Ok(HostMachine {
            sys,
            root,
            parent,
            vectors,
            remapping,
        })
    }

    /// The irq system.
    pub fn sys(&self) -> &IrqSystem {
        &self.sys
    }

    /// The vector domain (`genmsi_x86::VectorDomain`): per-CPU vectors.
    pub fn vector_domain(&self) -> DomainId {
        self.root
    }

    /// The domain device domains stack on (remapping, or the vector domain).
    pub fn parent(&self) -> DomainId {
        self.parent
    }

    /// Ends the grace of what the frees so far held: on this synchronous host no write to it
    /// can still land (see the module docs). Returns what went back to the pools.
    pub fn end_grace(&self) -> genmsi::GraceReport {
        self.sys.advance_grace(0)
    }

    /// The CPU side: a message written by requester `rid` arrives. [`HostMachine::accept`]
    /// then [`HostMachine::handle`].
    pub fn deliver(&self, msg: &Msg, rid: u16) -> Arrival {
        match self.accept(msg, rid) {
            Ok(accepted) => self.handle(accepted),
            Err(arrival) => arrival,
        }
    }

    /// The first half of a delivery: the remapping unit (if any) translates the write and the
    /// vector table names the irq allocation it was meant for. `Err` is the final outcome of a
    /// write that names no irq (blocked, or spurious).
    pub fn accept(&self, msg: &Msg, rid: u16) -> std::result::Result<Accepted, Arrival> {
        let (cpu, vector) = match &self.remapping {
            Some(r) => {
                let mut unit = r.unit.lock().unwrap_or_else(|e| e.into_inner());
                match unit.translate(msg, rid, &r.table) {
                    Ok(t) => (t.dest, t.vector),
                    Err(reason) => return Err(Arrival::Blocked(reason)),
                }
            }
            None => match MsiFormat::parse(msg) {
                Ok(MsiFormat::Compat(c)) => (c.dest, c.vector),
                _ => return Err(Arrival::Spurious),
            },
        };
        match self.vectors.lookup_ref(cpu, vector) {
            Some(irq) => Ok(Accepted { irq, cpu }),
            None => Err(Arrival::Spurious),
        }
    }

    /// The second half of a delivery: the allocation the vector named is handled on its CPU.
    /// If that allocation was freed since [`HostMachine::accept`] (its number possibly reused
    /// by another device), the interrupt is stale: spurious, never the new owner's.
    pub fn handle(&self, accepted: Accepted) -> Arrival {
        match self.sys.handle_ref(accepted.irq, accepted.cpu) {
            Delivery::Handled => Arrival::Handled(accepted.irq.irq),
            Delivery::Latched | Delivery::Spurious | Delivery::Stale => Arrival::Spurious,
        }
    }
}

/// A message accepted by the CPU side, not yet handled: the irq allocation its vector maps
/// and the CPU it arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The allocation (number and generation) the vector table mapped.
    pub irq: IrqRef,
    /// The CPU the interrupt arrived on.
    pub cpu: u32,
}

/// What the device did when it raised one of its MSI-X vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raise {
    /// It wrote this message.
    Sent(Msg),
    /// The vector (or the function) is masked: the PBA bit latched; `coalesced` when it was
    /// set already.
    Latched {
        /// The pending bit was set before.
        coalesced: bool,
    },
    /// MSI-X is disabled: the function wrote nothing and latched nothing.
    Dropped,
}

/// Where the NIC's MSI-X capability sits in its configuration space.
const MSIX_CAP: u16 = 0x70;
/// The BAR holding the table (at offset 0) and the PBA (on the next 4 KiB page).
const MSIX_BAR: u8 = 4;
const PAGE: u64 = 0x1000;

/// The passed-through NIC: MSI-X with `vectors` entries, driven through `genmsi-pci`.
#[derive(Debug)]
pub struct HostNic {
    machine: Arc<HostMachine>,
    pci: HostPci,
    cap: MsixCap,
    ops: u64,
    /// Time spent in host vector operations (see [`HostNic::host_time`]).
    host_time: Duration,
    /// Host vectors allocated now (kept here: the core's descriptor list is a copy).
    held: u32,
}

impl HostNic {
    /// A NIC at `address` with an MSI-X table of `vectors` (1..=2048) entries; the table is
    /// at offset 0 of BAR4 and the PBA on the 4 KiB page after it.
    pub fn new(machine: Arc<HostMachine>, address: PciAddress, vectors: u32) -> Result<Self> {
        if vectors == 0 || vectors > 2048 {
            return Err(crate::Error::Layout { vectors });
        }
        let pba_at = (u64::from(vectors) * 16).next_multiple_of(PAGE);
        let mut cfg = vec![0u8; 256];
        cfg[0..4].copy_from_slice(&[0x86, 0x80, 0x72, 0x15]);
        cfg[usize::from(header::STATUS)] = header::STATUS_CAP_LIST as u8;
        cfg[usize::from(header::CAP_POINTER)] = MSIX_CAP as u8;
        let at = usize::from(MSIX_CAP);
        // 7.7.2: ID 0x11, next 0, Table Size N - 1, Table BIR 4 offset 0, PBA BIR 4 at pba_at.
        cfg[at] = 0x11;
        cfg[at + 2..at + 4].copy_from_slice(&((vectors - 1) as u16).to_le_bytes());
        cfg[at + 4..at + 8].copy_from_slice(&u32::from(MSIX_BAR).to_le_bytes());
        cfg[at + 8..at + 12].copy_from_slice(&(pba_at as u32 | u32::from(MSIX_BAR)).to_le_bytes());
        let bars = ByteBars::new().with_bar(Bar::new(MSIX_BAR), (pba_at + PAGE) as usize);
        let config = DeviceMemory::new(ByteConfig::new(cfg));
        let bars = DeviceMemory::new(bars);
        let cap = MsixCap::read(&config, &bars, MSIX_CAP)?;
        let pci = pci_add_device(machine.sys(), "passthrough-nic", address, config, bars);
        Ok(HostNic {
            machine,
            pci,
            cap,
            ops: 0,
            host_time: Duration::ZERO,
            held: 0,
        })
    }

    /// The machine.
    pub fn machine(&self) -> &Arc<HostMachine> {
        &self.machine
    }

    /// The function as registered.
    pub fn pci(&self) -> &HostPci {
        &self.pci
    }

    /// The MSI-X capability.
    pub fn cap(&self) -> &MsixCap {
        &self.cap
    }

    /// Host vector operations so far: every allocation, free, activation or deactivation of
    /// one host vector.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Wall time spent in host vector operations so far ([`HostNic::enable`],
    /// [`HostNic::disable`], [`HostNic::alloc_at`], [`HostNic::alloc_at_routed`] with its
    /// route, [`HostNic::free`], [`HostNic::activate`], [`HostNic::deactivate`]): the host's
    /// share of a workload, without the device traffic around it.
    pub fn host_time(&self) -> Duration {
        self.host_time
    }

    /// Runs one host vector operation, adding its wall time to [`HostNic::host_time`].
    fn timed<T>(&mut self, op: impl FnOnce(&mut Self) -> T) -> T {
        let start = Instant::now();
        let result = op(self);
        self.host_time += start.elapsed();
        result
    }

    /// Host vectors allocated now.
    pub fn allocated(&self) -> u32 {
        self.held
    }

    /// Enables MSI-X with vectors `0..count` the classic way (`pci_alloc_irq_vectors`);
    /// `activate` false only reserves them (entries stay masked).
    pub fn enable(&mut self, count: u32, activate: bool) -> Result<Vec<Irq>> {
        self.timed(|nic| nic.enable_untimed(count, activate))
    }

    fn enable_untimed(&mut self, count: u32, activate: bool) -> Result<Vec<Irq>> {
        let opts = AllocOpts {
            activate,
            ..AllocOpts::default()
        };
        let got = pci_alloc_irq_vectors(
            self.machine.sys(),
            &self.pci,
            self.machine.parent(),
            count..=count,
            IrqTypes::MSIX,
            &opts,
            None,
        )?;
        self.ops += u64::from(count);
        self.held = count;
        Ok(got.irqs().to_vec())
    }

    /// Frees every vector and disables MSI-X (`pci_free_irq_vectors`); returns how many there
    /// were.
    pub fn disable(&mut self) -> Result<u32> {
        self.timed(Self::disable_untimed)
    }

    fn disable_untimed(&mut self) -> Result<u32> {
        let count = self.held;
        let vectors = IrqVectors::Msix(Vec::new());
        pci_free_irq_vectors(self.machine.sys(), &self.pci, &vectors, None)?;
        self.machine.end_grace();
        self.ops += u64::from(count);
        self.held = 0;
        Ok(count)
    }

    /// Clears MSI-X Enable in the function's Message Control, as the host's MSI-X shutdown
    /// does before it frees the vectors: from here the function sends nothing.
    pub fn clear_enable(&mut self) -> Result<()> {
        self.write_enable(false)
    }

    /// Sets MSI-X Enable again after [`HostNic::clear_enable`], the vectors held as they
    /// are: from here the function sends and latches again.
    pub fn set_enable(&mut self) -> Result<()> {
        self.write_enable(true)
    }

    fn write_enable(&mut self, on: bool) -> Result<()> {
        let control = self.cap.read_control(&self.pci.config)?;
        let mut config = self.pci.config.clone();
        config
            .write_u16(self.cap.control(), control.with_enabled(on).0)
            .map_err(genmsi_pci::MsixError::Config)?;
        Ok(())
    }

    /// Allocates exactly vector `index` while the others deliver (dynamic MSI-X).
    pub fn alloc_at(&mut self, index: u32) -> Result<Irq> {
        self.timed(|nic| nic.alloc_at_with(index, true))
    }

    /// Allocates vector `index`, installs `route` for it while its entry is still masked (the
    /// function may send what it latched the moment the entry is unmasked, and that must find
    /// its route), then activates it. One host operation, like [`HostNic::alloc_at`]; on error
    /// the vector and the route are gone again.
    pub fn alloc_at_routed(
        &mut self,
        index: u32,
        routes: &mut RouteTable,
        route: Route,
    ) -> Result<Irq> {
        self.timed(|nic| nic.alloc_at_routed_untimed(index, routes, route))
    }

    fn alloc_at_routed_untimed(
        &mut self,
        index: u32,
        routes: &mut RouteTable,
        route: Route,
    ) -> Result<Irq> {
        let irq = self.alloc_at_with(index, false)?;
        routes.set(irq, route);
        if let Err(e) = self.machine.sys().activate(irq) {
            routes.remove(irq);
            pci_msix_free_irq(self.machine.sys(), &self.pci, index)?;
            self.machine.end_grace();
            self.held -= 1;
            return Err(e.into());
        }
        Ok(irq)
    }

    /// Allocates vector `index`, active or only reserved (its entry masked).
    pub fn alloc_at_with(&mut self, index: u32, activate: bool) -> Result<Irq> {
        let opts = AllocOpts {
            activate,
            ..AllocOpts::default()
        };
        let (_, irq) = pci_msix_alloc_irq_at(self.machine.sys(), &self.pci, Some(index), &opts)?;
        self.ops += 1;
        self.held += 1;
        Ok(irq)
    }

    /// Frees vector `index`, leaving the others as they are.
    pub fn free(&mut self, index: u32) -> Result<()> {
        self.timed(|nic| {
            pci_msix_free_irq(nic.machine.sys(), &nic.pci, index)?;
            nic.machine.end_grace();
            nic.ops += 1;
            nic.held -= 1;
            Ok(())
        })
    }

    /// Activates a reserved vector: its entry is programmed and unmasked.
    pub fn activate(&mut self, irq: Irq) -> Result<()> {
        self.timed(|nic| {
            nic.machine.sys().activate(irq)?;
            nic.ops += 1;
            Ok(())
        })
    }

    /// Deactivates a vector but keeps it reserved: its entry is masked and cleared.
    pub fn deactivate(&mut self, irq: Irq) -> Result<()> {
        self.timed(|nic| {
            nic.machine.sys().deactivate(irq)?;
            nic.machine.end_grace();
            nic.ops += 1;
            Ok(())
        })
    }

    /// MSI-X Enable as the function sees it.
    pub fn msix_enabled(&self) -> bool {
        self.cap
            .read_control(&self.pci.config)
            .is_ok_and(|c| c.enabled())
    }

    /// The device side: the function raises vector `index`.
    pub fn raise(&self, index: u32) -> Result<Raise> {
        let mut bars = self.pci.bars.clone();
        let coalesced = self.cap.pending(&bars, index)?;
        Ok(match self.cap.raise(&self.pci.config, &mut bars, index)? {
            Signal::Sent(msg) => Raise::Sent(msg),
            Signal::Pending => Raise::Latched { coalesced },
            Signal::Disabled => Raise::Dropped,
        })
    }

    /// The device side: vector `index` was unmasked; the function sends it if its pending bit
    /// was set (6.1.4.5), clearing the bit.
    pub fn replay(&self, index: u32) -> Result<Option<Msg>> {
        let mut bars = self.pci.bars.clone();
        Ok(self.cap.replay(&self.pci.config, &mut bars, index)?)
    }

    /// The function's pending bit for `index`.
    pub fn pending(&self, index: u32) -> bool {
        self.cap.pending(&self.pci.bars, index).unwrap_or(false)
    }

    /// The message written by the function arrives at the host CPUs.
    pub fn deliver(&self, msg: &Msg) -> Arrival {
        self.machine.deliver(msg, self.pci.address.requester_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(irtes: Option<u32>) -> HostNic {
        let machine = Arc::new(HostMachine::new(MachineConfig { cpus: 4, irtes }).unwrap());
        HostNic::new(machine, PciAddress::new(0x3A, 0, 0), 64).unwrap()
    }

    #[test]
    fn a_vector_allocated_at_its_index_delivers_through_the_x86_stack() {
        for irtes in [None, Some(256)] {
            let mut nic = nic(irtes);
            assert_eq!(nic.raise(3).unwrap(), Raise::Dropped, "MSI-X disabled");
            let anchor = nic.enable(1, false).unwrap()[0];
            assert!(nic.msix_enabled());
            // Enabled, vector 3 not allocated: its entry is masked, the PBA latches.
            assert_eq!(nic.raise(3).unwrap(), Raise::Latched { coalesced: false });
            assert_eq!(nic.raise(3).unwrap(), Raise::Latched { coalesced: true });
            let irq = nic.alloc_at(3).unwrap();
            let msg = nic
                .replay(3)
                .unwrap()
                .expect("pending bit replays on unmask");
            assert_eq!(nic.deliver(&msg), Arrival::Handled(irq));
            let Raise::Sent(msg) = nic.raise(3).unwrap() else {
                panic!("vector 3 is live")
            };
            assert_eq!(nic.deliver(&msg), Arrival::Handled(irq));
            assert_eq!(nic.machine().sys().table().count(irq), 2);
            nic.activate(anchor).unwrap();
            nic.free(3).unwrap();
            assert_eq!(nic.allocated(), 1);
            let descs = nic
                .machine()
                .sys()
                .descs(nic.pci().id, genmsi::SlotId::Default);
            assert_eq!(descs.unwrap().len(), 1);
            assert_eq!(nic.ops(), 4);
            nic.clear_enable().unwrap();
            assert_eq!(nic.raise(0).unwrap(), Raise::Dropped);
            assert_eq!(nic.disable().unwrap(), 1);
            assert_eq!(nic.allocated(), 0);
        }
    }
}
