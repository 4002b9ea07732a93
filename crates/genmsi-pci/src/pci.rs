//! `pci_*` conveniences: thin wrappers over the core's allocation API that fill in the
//! device, its requester id and the right store.
//!
//! 1. [`pci_add_device_at`] registers a function with the requester id (or bus range) its
//!    writes carry behind the bridges above it and its INTx path; [`pci_add_device`] does so
//!    for a function on a root bus.
//! 2. [`pci_alloc_irq_vectors`] gives it between `min` and `max` vectors: MSI-X if it has it,
//!    else multi-message MSI (halving the block until the parent accepts it), else its INTx
//!    pin through an [`IntxRouter`]; [`pci_free_irq_vectors`] gives them back.
//! 3. With MSI-X, [`pci_msix_alloc_irq_at`] and [`pci_msix_free_irq`] add and remove single
//!    vectors while the others deliver (dynamic MSI-X; ask [`pci_msix_can_alloc_dyn`] first).
//! 4. [`pci_create_ims_domain`] binds a device-defined IMS store in the secondary slot;
//!    [`pci_ims_alloc_irq`] and [`pci_ims_free_irq`] use it.

use crate::cap::{self, CapError, CapId};
use crate::config::{header, set_intx_disable, ConfigError, ConfigSpace};
use crate::intx::{IntxError, IntxPin, IntxRouter};
use crate::msi::{MsiError, MsiStore};
use crate::msix::{MsixError, MsixStore};
use crate::topology::{intx_path, msi_requester, IntxPath, PciTopology, TopologyError};
use crate::Mmio;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ops::RangeInclusive;
use genmsi::{AllocOpts, DeviceId, DeviceMeta, DomainId, Irq, IrqSystem, MsgStore, SlotId};
use lock_api::RawMutex;

/// A function's bus/device/function: the requester id its message writes carry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress(u16);

/// Requester id layout: bus in bits 15:8, device in 7:3, function in 2:0 (PCI Express Base
/// Specification 2.2.6.2).
mod field {
    pub const BUS_SHIFT: u16 = 8;
    pub const DEVICE_SHIFT: u16 = 3;
    pub const DEVICE_MASK: u8 = 0x1F;
    pub const FUNCTION_MASK: u8 = 0x7;
}

impl PciAddress {
    /// `bus:device.function`, with `device` and `function` cut to the widths of their
    /// fields (5 and 3 bits), as a requester id holds them; [`PciAddress::try_new`] refuses
    /// numbers that do not fit instead.
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        PciAddress(
            (bus as u16) << field::BUS_SHIFT
                | ((device & field::DEVICE_MASK) as u16) << field::DEVICE_SHIFT
                | (function & field::FUNCTION_MASK) as u16,
        )
    }

    /// `bus:device.function`, or the bad device and function numbers back.
    pub const fn try_new(bus: u8, device: u8, function: u8) -> Result<Self, (u8, u8)> {
        if device > field::DEVICE_MASK || function > field::FUNCTION_MASK {
            return Err((device, function));
        }
        Ok(PciAddress(
            (bus as u16) << field::BUS_SHIFT
                | (device as u16) << field::DEVICE_SHIFT
                | function as u16,
        ))
    }

    /// The address a requester id names (every 16-bit value is one).
    pub const fn from_requester_id(rid: u16) -> Self {
        PciAddress(rid)
    }

    /// The requester id.
    pub const fn requester_id(self) -> u16 {
        self.0
    }

    /// The bus number.
    pub const fn bus(self) -> u8 {
        (self.0 >> field::BUS_SHIFT) as u8
    }

    /// The device number.
    pub const fn device(self) -> u8 {
        (self.0 >> field::DEVICE_SHIFT) as u8 & field::DEVICE_MASK
    }

    /// The function number.
    pub const fn function(self) -> u8 {
        self.0 as u8 & field::FUNCTION_MASK
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

impl fmt::Debug for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PciAddress({self})")
    }
}

/// A PCI function registered with an [`IrqSystem`]: its device id, its address, and handles
/// to its configuration space and BARs.
///
/// The handles are cloned into the stores created for the function, so a clone must reach the
/// same device memory (a mapped BAR, a simulator's shared region). The byte-array
/// implementations ([`ByteConfig`](crate::ByteConfig), [`ByteBars`](crate::ByteBars)) clone
/// into independent copies: enough for one store, not for two that share a BAR.
#[derive(Clone, Debug)]
pub struct PciDevice<C, M> {
    /// The core's device id.
    pub id: DeviceId,
    /// Bus/device/function.
    pub address: PciAddress,
    /// Configuration space.
    pub config: C,
    /// Memory BARs.
    pub bars: M,
    /// Where its INTx pin arrives on the root bus (through the bridges above it).
    pub intx: IntxPath,
}

/// Which interrupt mechanisms [`pci_alloc_irq_vectors`] may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqTypes {
    /// MSI-X.
    pub msix: bool,
    /// MSI.
    pub msi: bool,
    /// The INTx pin.
    pub intx: bool,
}

impl IrqTypes {
    /// MSI-X, then MSI, then INTx.
    pub const ALL: IrqTypes = IrqTypes {
        msix: true,
        msi: true,
        intx: true,
    };
    /// MSI-X only.
    pub const MSIX: IrqTypes = IrqTypes {
        msix: true,
        msi: false,
        intx: false,
    };
    /// MSI only.
    pub const MSI: IrqTypes = IrqTypes {
        msix: false,
        msi: true,
        intx: false,
    };
}

/// What [`pci_alloc_irq_vectors`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrqVectors {
    /// MSI-X vectors, index `i` in position `i`.
    Msix(Vec<Irq>),
    /// An MSI block, index `i` in position `i`.
    Msi(Vec<Irq>),
    /// The function's interrupt pin.
    Intx {
        /// The irq the pin raises.
        irq: Irq,
        /// The pin.
        pin: IntxPin,
    },
}

impl IrqVectors {
    /// The irqs, by index.
    pub fn irqs(&self) -> &[Irq] {
        match self {
            IrqVectors::Msix(irqs) | IrqVectors::Msi(irqs) => irqs,
            IrqVectors::Intx { irq, .. } => core::slice::from_ref(irq),
        }
    }
}

/// Why a convenience refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PciError {
    /// The core refused.
    Core(genmsi::Error),
    /// A configuration access failed.
    Config(ConfigError),
    /// The capability list is malformed.
    Cap(CapError),
    /// The MSI capability is unusable.
    Msi(MsiError),
    /// The MSI-X capability is unusable.
    Msix(MsixError),
    /// INTx is unusable.
    Intx(IntxError),
    /// `min` is zero or above `max`.
    BadRange {
        /// The minimum asked for.
        min: u32,
        /// The maximum asked for.
        max: u32,
    },
    /// The function does not have the capability.
    NoCapability {
        /// The capability.
        id: CapId,
    },
    /// The function offers fewer vectors than the minimum.
    TooFewVectors {
        /// What it offers.
        available: u32,
        /// The minimum asked for.
        min: u32,
    },
    /// INTx was allowed but no router was given.
    NoIntxRouter,
    /// The other mechanism (MSI while MSI-X is asked for, or the reverse) is enabled: a function
    /// must never have both on.
    OtherEnabled {
        /// The capability that is enabled.
        id: CapId,
    },
    /// The function's default slot does not hold an MSI-X store.
    NotMsix {
        /// The device.
        device: DeviceId,
    },
}

macro_rules! from_error {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for PciError {
            fn from(e: $ty) -> Self {
                PciError::$variant(e)
            }
        }
    )*};
}
from_error!(
    Core(genmsi::Error),
    Config(ConfigError),
    Cap(CapError),
    Msi(MsiError),
    Msix(MsixError),
    Intx(IntxError)
);

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::Core(e) => write!(f, "{e}"),
            PciError::Config(e) => write!(f, "{e}"),
            PciError::Cap(e) => write!(f, "{e}"),
            PciError::Msi(e) => write!(f, "{e}"),
            PciError::Msix(e) => write!(f, "{e}"),
            PciError::Intx(e) => write!(f, "{e}"),
            PciError::BadRange { min, max } => write!(f, "bad vector range {min}..={max}"),
            PciError::NoCapability { id } => write!(f, "the function has no {id:?} capability"),
            PciError::TooFewVectors { available, min } => {
                write!(f, "the function offers {available} vectors, {min} needed")
            }
            PciError::NoIntxRouter => f.write_str("INTx needs a router"),
            PciError::OtherEnabled { id } => write!(f, "the {id:?} capability is enabled"),
            PciError::NotMsix { device } => {
                write!(f, "device {} does not use MSI-X", device.0)
            }
        }
    }
}

impl core::error::Error for PciError {}

/// Registers the function at `address` on a root bus (no bridge above it) with its own
/// requester id; [`pci_add_device_at`] places a function anywhere in a hierarchy.
pub fn pci_add_device<R: RawMutex, C, M>(
    sys: &IrqSystem<R>,
    name: &str,
    address: PciAddress,
    config: C,
    bars: M,
) -> PciDevice<C, M> {
    PciDevice {
        id: sys.add_device(name, DeviceMeta::requester(address.requester_id())),
        address,
        config,
        bars,
        intx: IntxPath::direct(address),
    }
}

/// Registers the function at `address` in `topology`: its message writes are checked against
/// what the bridges above it make of its requester id ([`msi_requester`]: its own id, a
/// bridge's alias or a bus range), and its INTx pin is swizzled through them to the root bus
/// ([`intx_path`]). Nothing is registered when the topology cannot be walked.
pub fn pci_add_device_at<R: RawMutex, C, M, T: PciTopology + ?Sized>(
    sys: &IrqSystem<R>,
    name: &str,
    address: PciAddress,
    topology: &T,
    config: C,
    bars: M,
) -> Result<PciDevice<C, M>, TopologyError> {
    let meta = msi_requester(topology, address)?.meta();
    let intx = intx_path(topology, address)?;
    Ok(PciDevice {
        id: sys.add_device(name, meta),
        address,
        config,
        bars,
        intx,
    })
}

/// Gives the function between `vectors.start()` and `vectors.end()` vectors (see the module
/// docs for the order); the error is the last mechanism's refusal.
pub fn pci_alloc_irq_vectors<R, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    parent: DomainId,
    vectors: RangeInclusive<u32>,
    types: IrqTypes,
    opts: &AllocOpts,
    intx: Option<&mut dyn IntxRouter>,
) -> Result<IrqVectors, PciError>
where
    R: RawMutex,
    C: ConfigSpace + Clone + Send + 'static,
    M: Mmio + Clone + Send + 'static,
{
    let (min, max) = vectors.into_inner();
    if min == 0 || min > max {
        return Err(PciError::BadRange { min, max });
    }
    let mut last = PciError::NoCapability { id: CapId::MsiX };
    if types.msix {
        match alloc_msix(sys, dev, parent, min, max, opts) {
            Ok(irqs) => return Ok(IrqVectors::Msix(irqs)),
            Err(e) => last = e,
        }
    }
    if types.msi {
        match alloc_msi(sys, dev, parent, min, max, opts) {
            Ok(irqs) => return Ok(IrqVectors::Msi(irqs)),
            Err(e) => last = e,
        }
    }
    if types.intx {
        match (min, intx) {
            (1, Some(router)) => return alloc_intx(dev, router),
            (1, None) => last = PciError::NoIntxRouter,
            (min, _) => last = PciError::TooFewVectors { available: 1, min },
        }
    }
    Err(last)
}

/// Binds `store` in the default slot and allocates `0..count`; on failure the slot is
/// emptied again.
fn alloc_block<R: RawMutex>(
    sys: &IrqSystem<R>,
    device: DeviceId,
    store: Box<dyn MsgStore>,
    parent: DomainId,
    count: u32,
    opts: &AllocOpts,
) -> Result<Vec<Irq>, genmsi::Error> {
    sys.create_device_domain(device, SlotId::Default, store, parent)?;
    sys.alloc_range(device, SlotId::Default, 0, count, opts)
        .inspect_err(|_| {
            // The slot is empty of indices after a refused allocation; removing it cannot fail.
            let _ = sys.remove_device_domain(device, SlotId::Default);
        })
}

/// The offset of capability `id`, which the function must have.
fn find_cap<C: ConfigSpace>(config: &C, id: CapId) -> Result<u16, PciError> {
    cap::find(config, id)?.ok_or(PciError::NoCapability { id })
}

/// Refuses when the capability `id` exists and its Enable bit (bit 15 of MSI-X Message Control,
/// bit 0 of MSI Message Control: PCIe 7.7.2.2, 7.7.1.2) is set.
fn refuse_if_enabled<C: ConfigSpace>(config: &C, id: CapId) -> Result<(), PciError> {
    let Some(offset) = cap::find(config, id)? else {
        return Ok(());
    };
    let control = config.read_u16(offset + 2)?;
    let bit = if id == CapId::MsiX { 1 << 15 } else { 1 };
    if control & bit != 0 {
        return Err(PciError::OtherEnabled { id });
    }
    Ok(())
}

fn alloc_msix<R, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    parent: DomainId,
    min: u32,
    max: u32,
    opts: &AllocOpts,
) -> Result<Vec<Irq>, PciError>
where
    R: RawMutex,
    C: ConfigSpace + Clone + Send + 'static,
    M: Mmio + Clone + Send + 'static,
{
    let offset = find_cap(&dev.config, CapId::MsiX)?;
    refuse_if_enabled(&dev.config, CapId::Msi)?;
    let store = MsixStore::new(dev.config.clone(), dev.bars.clone(), offset)?;
    let available = store.cap().table_size;
    if available < min {
        return Err(PciError::TooFewVectors { available, min });
    }
    Ok(alloc_block(
        sys,
        dev.id,
        Box::new(store),
        parent,
        available.min(max),
        opts,
    )?)
}

fn alloc_msi<R, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    parent: DomainId,
    min: u32,
    max: u32,
    opts: &AllocOpts,
) -> Result<Vec<Irq>, PciError>
where
    R: RawMutex,
    C: ConfigSpace + Clone + Send + 'static,
{
    let offset = find_cap(&dev.config, CapId::Msi)?;
    refuse_if_enabled(&dev.config, CapId::MsiX)?;
    let available = MsiStore::new(dev.config.clone(), offset)?
        .cap()
        .features
        .vectors;
    if available < min {
        return Err(PciError::TooFewVectors { available, min });
    }
    // The smallest power-of-two block that holds as many vectors as allowed (the function
    // offers a power of two, so it fits); halve while the parent refuses the block (a parent
    // without remapping cannot give a block whose messages differ in low data bits), down to
    // the smallest block that still holds `min`. Like Linux, a block may be larger than the
    // vectors handed out: the rest stay reserved with it.
    let want = available.min(max);
    let mut count = want.next_power_of_two();
    loop {
        let store = MsiStore::new(dev.config.clone(), offset)?;
        match alloc_block(sys, dev.id, Box::new(store), parent, count, opts) {
            Ok(mut irqs) => {
                irqs.truncate(want.min(count) as usize);
                return Ok(irqs);
            }
            Err(e) if count / 2 < min => return Err(e.into()),
            Err(_) => count /= 2,
        }
    }
}

fn alloc_intx<C: ConfigSpace + Clone, M>(
    dev: &PciDevice<C, M>,
    router: &mut dyn IntxRouter,
) -> Result<IrqVectors, PciError> {
    let raw = dev.config.read_u8(header::INTERRUPT_PIN)?;
    let pin = IntxPin::from_register(raw)?.ok_or(IntxError::NoPin {
        address: dev.address,
    })?;
    let (root, root_pin) = (dev.intx.root, dev.intx.pin(pin));
    let irq = router.route(root, root_pin)?;
    let mut config = dev.config.clone();
    if let Err(e) = set_intx_disable(&mut config, false) {
        router.unroute(root, root_pin, irq);
        return Err(e.into());
    }
    Ok(IrqVectors::Intx { irq, pin })
}

/// Gives back what [`pci_alloc_irq_vectors`] returned.
pub fn pci_free_irq_vectors<R: RawMutex, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    vectors: &IrqVectors,
    intx: Option<&mut dyn IntxRouter>,
) -> Result<(), PciError> {
    match vectors {
        IrqVectors::Msix(_) | IrqVectors::Msi(_) => {
            sys.remove_device_domain(dev.id, SlotId::Default)?;
        }
        IrqVectors::Intx { irq, pin } => match intx {
            Some(router) => router.unroute(dev.intx.root, dev.intx.pin(*pin), *irq),
            None => return Err(PciError::NoIntxRouter),
        },
    }
    Ok(())
}

/// True when the function's MSI-X store takes and frees vectors while others deliver.
pub fn pci_msix_can_alloc_dyn<R: RawMutex, C, M>(sys: &IrqSystem<R>, dev: &PciDevice<C, M>) -> bool
where
    C: ConfigSpace + Send + 'static,
    M: Mmio + Send + 'static,
{
    sys.with_store::<MsixStore<C, M>, _>(dev.id, SlotId::Default, |s| s.dynamic())
        .unwrap_or(false)
}

/// Allocates MSI-X vector `index` (or, with `None`, the lowest free one) while the other
/// vectors stay enabled and delivering; returns the index and its irq.
pub fn pci_msix_alloc_irq_at<R: RawMutex, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    index: Option<u32>,
    opts: &AllocOpts,
) -> Result<(u32, Irq), PciError>
where
    C: ConfigSpace + Send + 'static,
    M: Mmio + Send + 'static,
{
    if sys
        .with_store::<MsixStore<C, M>, _>(dev.id, SlotId::Default, |_| ())
        .is_err()
    {
        return Err(PciError::NotMsix { device: dev.id });
    }
    Ok(match index {
        Some(index) => (index, sys.alloc_at(dev.id, SlotId::Default, index, opts)?),
        None => sys.alloc_any(dev.id, SlotId::Default, opts)?,
    })
}

/// Frees MSI-X vector `index`, leaving the others as they are.
pub fn pci_msix_free_irq<R: RawMutex, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    index: u32,
) -> Result<(), PciError> {
    Ok(sys.free_index(dev.id, SlotId::Default, index)?)
}

/// Binds a device-defined IMS store to `parent` in the function's secondary slot.
pub fn pci_create_ims_domain<R: RawMutex, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    store: Box<dyn MsgStore>,
    parent: DomainId,
) -> Result<(), PciError> {
    Ok(sys.create_device_domain(dev.id, SlotId::Secondary, store, parent)?)
}

/// Allocates any free IMS index with `cookie` (a PASID, a queue id); returns it and its irq.
pub fn pci_ims_alloc_irq<R: RawMutex, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    cookie: Option<u64>,
    opts: &AllocOpts,
) -> Result<(u32, Irq), PciError> {
    let opts = AllocOpts {
        cookie,
        ..opts.clone()
    };
    Ok(sys.alloc_any(dev.id, SlotId::Secondary, &opts)?)
}

/// Frees IMS index `index`.
pub fn pci_ims_free_irq<R: RawMutex, C, M>(
    sys: &IrqSystem<R>,
    dev: &PciDevice<C, M>,
    index: u32,
) -> Result<(), PciError> {
    Ok(sys.free_index(dev.id, SlotId::Secondary, index)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requester_id_by_hand() {
        // 2.2.6.2: bus 0x3A, device 0x1F, function 5 -> 0011_1010 11111 101b = 0x3AFD.
        let a = PciAddress::new(0x3A, 0x1F, 5);
        assert_eq!(a.requester_id(), 0x3AFD);
        assert_eq!((a.bus(), a.device(), a.function()), (0x3A, 0x1F, 5));
        assert_eq!(alloc::format!("{a}"), "3a:1f.5");
        assert_eq!(PciAddress::try_new(0, 32, 0), Err((32, 0)));
        assert_eq!(PciAddress::try_new(0, 0, 8), Err((0, 8)));
        assert_eq!(PciAddress::from_requester_id(0x3AFD), a);
    }
}
