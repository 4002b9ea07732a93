//! Where a function sits in the hierarchy, and what that means for its interrupts: the
//! requester ids its message writes may carry (DMA aliases), the source check a remapping unit
//! can make of them, and the pin its INTx arrives at on the root bus.
//!
//! 1. The embedder describes the bridges it enumerated, each with [`Bridge::read`] from its
//!    configuration space (header type, secondary and subordinate bus numbers, the PCI Express
//!    capability's device/port type), behind the [`PciTopology`] trait: for a bus, the bridge
//!    whose secondary side it is. A slice of bridges implements it.
//! 2. [`dma_aliases`] walks upstream from a function, as Linux's `pci_for_each_dma_alias`:
//!    the function's own id first; root ports and switch ports add nothing (PCI Express keeps
//!    the requester id); a PCIe-to-PCI/PCI-X bridge adds its secondary bus with devfn 0 (it
//!    may take ownership of the transaction); a PCI/PCI-X-to-PCIe (reverse) bridge and a
//!    conventional PCI bridge add their own id.
//! 3. [`msi_requester`] picks the check from the last alias, as VT-d's `set_msi_sid`: an alias
//!    on another bus than the bridge that produced it (the PCIe-to-PCI case) verifies the buses
//!    from the alias's to the function's; several aliases all on one bus verify that bus; an
//!    alias from a bridge on another bus than the function is verified as the requester id;
//!    otherwise the function's own id. [`RequesterCheck::meta`] is what the core's
//!    [`DeviceMeta`] carries to a remapping domain.
//! 4. [`intx_path`] swizzles an INTx pin through every bridge up to the root bus
//!    (PCI-to-PCI Bridge Architecture Specification 9.1), as Linux's `pci_common_swizzle`.
//!
//! A topology read from devices can be anything: a walk that has not reached a root bus after
//! 256 bridges (a cycle) ends in [`TopologyError::Loop`].

use crate::cap::{self, CapError, CapId};
use crate::config::{ConfigError, ConfigSpace};
use crate::intx::IntxPin;
use crate::pci::PciAddress;
use alloc::vec::Vec;
use core::fmt;
use genmsi::{BusRange, DeviceMeta};

/// Type 1 header registers (PCI Express Base Specification 7.5.1.3) and the PCI Express
/// Capabilities register (7.5.3.2).
mod field {
    /// Header Type (7.5.1.1.9), a byte at 0x0E: bits 6:0 the layout, 1 for a bridge.
    pub const HEADER_TYPE: u16 = 0x0E;
    pub const HEADER_LAYOUT_MASK: u8 = 0x7F;
    pub const HEADER_LAYOUT_BRIDGE: u8 = 1;
    /// Secondary Bus Number (7.5.1.3.3), a byte at 0x19.
    pub const SECONDARY_BUS: u16 = 0x19;
    /// Subordinate Bus Number (7.5.1.3.4), a byte at 0x1A.
    pub const SUBORDINATE_BUS: u16 = 0x1A;
    /// PCI Express Capabilities register: a word at offset 2 of the capability; Device/Port
    /// Type in bits 7:4.
    pub const PCIE_CAPS: u16 = 2;
    pub const PORT_TYPE_SHIFT: u16 = 4;
    pub const PORT_TYPE_MASK: u16 = 0xF;
}

/// The Device/Port Type of a PCI Express function (7.5.3.2, bits 7:4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortType {
    /// 0000: PCI Express endpoint.
    Endpoint,
    /// 0001: legacy PCI Express endpoint.
    LegacyEndpoint,
    /// 0100: root port of a root complex.
    RootPort,
    /// 0101: upstream port of a switch.
    SwitchUpstream,
    /// 0110: downstream port of a switch.
    SwitchDownstream,
    /// 0111: PCI Express to PCI/PCI-X bridge.
    PcieToPci,
    /// 1000: PCI/PCI-X to PCI Express (reverse) bridge.
    PciToPcie,
    /// 1001: root complex integrated endpoint.
    RootComplexEndpoint,
    /// 1010: root complex event collector.
    EventCollector,
    /// Any other value, kept as read.
    Reserved(u8),
}

impl PortType {
    /// Decodes the 4-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0xF {
            0b0000 => PortType::Endpoint,
            0b0001 => PortType::LegacyEndpoint,
            0b0100 => PortType::RootPort,
            0b0101 => PortType::SwitchUpstream,
            0b0110 => PortType::SwitchDownstream,
            0b0111 => PortType::PcieToPci,
            0b1000 => PortType::PciToPcie,
            0b1001 => PortType::RootComplexEndpoint,
            0b1010 => PortType::EventCollector,
            other => PortType::Reserved(other),
        }
    }
}

/// What kind of bridge a Type 1 function is, for the alias rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BridgeKind {
    /// A conventional PCI-to-PCI bridge: no PCI Express capability.
    Pci,
    /// A PCI Express function of this device/port type.
    Express(PortType),
}

/// A bridge: where it is, what it is, and the buses behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bridge {
    /// The bridge's own bus/device/function (on its primary bus).
    pub address: PciAddress,
    /// Its kind.
    pub kind: BridgeKind,
    /// The bus directly behind it.
    pub secondary: u8,
    /// The highest bus behind it.
    pub subordinate: u8,
}

impl Bridge {
    /// Reads the function at `address` from its configuration space: `None` when it is not a
    /// bridge (header layout other than 1), else its kind and bus numbers.
    pub fn read<C: ConfigSpace + ?Sized>(
        cfg: &C,
        address: PciAddress,
    ) -> Result<Option<Bridge>, TopologyError> {
        let layout = cfg.read_u8(field::HEADER_TYPE)? & field::HEADER_LAYOUT_MASK;
        if layout != field::HEADER_LAYOUT_BRIDGE {
            return Ok(None);
        }
        let kind = match cap::find(cfg, CapId::PciExpress)? {
            None => BridgeKind::Pci,
            Some(at) => {
                let caps = cfg.read_u16(at + field::PCIE_CAPS)?;
                BridgeKind::Express(PortType::from_bits(
                    (caps >> field::PORT_TYPE_SHIFT & field::PORT_TYPE_MASK) as u8,
                ))
            }
        };
        Ok(Some(Bridge {
            address,
            kind,
            secondary: cfg.read_u8(field::SECONDARY_BUS)?,
            subordinate: cfg.read_u8(field::SUBORDINATE_BUS)?,
        }))
    }
}

/// The hierarchy as the embedder enumerated it.
pub trait PciTopology {
    /// The bridge whose secondary bus is `bus`, or `None` when `bus` is a root bus.
    fn bridge_to(&self, bus: u8) -> Option<Bridge>;
}

/// Every bridge of the machine, in any order; a bus no bridge leads to is a root bus.
impl PciTopology for [Bridge] {
    fn bridge_to(&self, bus: u8) -> Option<Bridge> {
        self.iter().find(|b| b.secondary == bus).copied()
    }
}

/// A machine whose functions all sit on root buses: no bridges.
#[derive(Clone, Copy, Debug, Default)]
pub struct RootBusOnly;

impl PciTopology for RootBusOnly {
    fn bridge_to(&self, _: u8) -> Option<Bridge> {
        None
    }
}

/// Why the topology could not be walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// The walk from `bus` upward did not reach a root bus within 256 bridges: the bridges
    /// form a cycle.
    Loop {
        /// The bus the walk started from.
        bus: u8,
    },
    /// A configuration access failed.
    Config(ConfigError),
    /// The capability list is malformed.
    Cap(CapError),
}

impl From<ConfigError> for TopologyError {
    fn from(e: ConfigError) -> Self {
        TopologyError::Config(e)
    }
}

impl From<CapError> for TopologyError {
    fn from(e: CapError) -> Self {
        TopologyError::Cap(e)
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::Loop { bus } => {
                write!(f, "the bridges above bus {bus:#04x} never reach a root bus")
            }
            TopologyError::Config(e) => write!(f, "{e}"),
            TopologyError::Cap(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for TopologyError {}

/// One requester id a function's requests may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmaAlias {
    /// The function that produced it: the function itself or a bridge above it.
    pub via: PciAddress,
    /// The requester id.
    pub alias: PciAddress,
}

/// Calls `f` with every bridge from the one above `device`'s bus up to the one on a root bus.
fn walk_up<T: PciTopology + ?Sized>(
    topology: &T,
    device: PciAddress,
    mut f: impl FnMut(&Bridge),
) -> Result<(), TopologyError> {
    let mut bus = device.bus();
    // A chain of bridges has at most one per bus number.
    for _ in 0..=u8::MAX {
        let Some(bridge) = topology.bridge_to(bus) else {
            return Ok(());
        };
        f(&bridge);
        bus = bridge.address.bus();
    }
    Err(TopologyError::Loop { bus: device.bus() })
}

/// The requester ids `device`'s requests may carry, nearest first (see the module docs).
pub fn dma_aliases<T: PciTopology + ?Sized>(
    topology: &T,
    device: PciAddress,
) -> Result<Vec<DmaAlias>, TopologyError> {
    let mut aliases = Vec::new();
    aliases.push(DmaAlias {
        via: device,
        alias: device,
    });
    walk_up(topology, device, |bridge| {
        let alias = match bridge.kind {
            // PCI Express carries the requester id through root and switch ports; a port of a
            // type that bridges nothing adds nothing either.
            BridgeKind::Express(
                PortType::RootPort
                | PortType::SwitchUpstream
                | PortType::SwitchDownstream
                | PortType::Endpoint
                | PortType::LegacyEndpoint
                | PortType::RootComplexEndpoint
                | PortType::EventCollector
                | PortType::Reserved(_),
            ) => return,
            // PCIe-to-PCI bridges may take ownership of a transaction with their secondary
            // bus number and devfn 0 (PCI Express to PCI/PCI-X Bridge Specification 2.3).
            BridgeKind::Express(PortType::PcieToPci) => PciAddress::new(bridge.secondary, 0, 0),
            BridgeKind::Express(PortType::PciToPcie) | BridgeKind::Pci => bridge.address,
        };
        aliases.push(DmaAlias {
            via: bridge.address,
            alias,
        });
    })?;
    Ok(aliases)
}

/// The source check a remapping unit can make of a function's message writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequesterCheck {
    /// The writes carry exactly this requester id.
    Id(PciAddress),
    /// The writes may carry any requester id on these buses; `alias` is the one they carry
    /// where the topology says (the last bridge's alias).
    Buses {
        /// The buses.
        range: BusRange,
        /// The last alias.
        alias: PciAddress,
    },
}

impl RequesterCheck {
    /// The core's device meta data for this check.
    pub const fn meta(self) -> DeviceMeta {
        match self {
            RequesterCheck::Id(id) => DeviceMeta::requester(id.requester_id()),
            RequesterCheck::Buses { range, alias } => DeviceMeta {
                requester_id: Some(alias.requester_id()),
                requester_buses: Some(range),
            },
        }
    }
}

/// The check for `device`'s message writes, from its last DMA alias (see the module docs).
pub fn msi_requester<T: PciTopology + ?Sized>(
    topology: &T,
    device: PciAddress,
) -> Result<RequesterCheck, TopologyError> {
    let aliases = dma_aliases(topology, device)?;
    // Aliases on the same bus as the one before them (the first counts).
    let mut bus_matches = 0;
    let mut previous: Option<u8> = None;
    for a in &aliases {
        if previous.is_none_or(|bus| bus == a.alias.bus()) {
            bus_matches += 1;
        }
        previous = Some(a.alias.bus());
    }
    let last = *aliases
        .last()
        .expect("the device itself is always an alias");
    let buses = |first| RequesterCheck::Buses {
        range: BusRange {
            first,
            last: device.bus(),
        },
        alias: last.alias,
    };
    Ok(if last.alias.bus() != last.via.bus() {
        buses(last.alias.bus())
    } else if aliases.len() >= 2 && bus_matches == aliases.len() {
        buses(device.bus())
    } else if last.via.bus() != device.bus() {
        RequesterCheck::Id(last.alias)
    } else {
        RequesterCheck::Id(device)
    })
}

/// Where a function's INTx arrives on the root bus: the root-bus function its pin reaches
/// (the function itself on a root bus, else the topmost bridge) and the rotation the bridges
/// apply on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IntxPath {
    /// The function on the root bus.
    pub root: PciAddress,
    /// The sum of the device numbers below each bridge, modulo 4.
    pub rotation: u8,
}

impl IntxPath {
    /// A function on a root bus: its own slot, no rotation.
    pub const fn direct(address: PciAddress) -> Self {
        IntxPath {
            root: address,
            rotation: 0,
        }
    }

    /// The pin `pin` arrives on at [`IntxPath::root`].
    pub const fn pin(self, pin: IntxPin) -> IntxPin {
        pin.swizzle(self.rotation)
    }
}

/// The path of `device`'s INTx to the root bus: at each bridge the pin rotates by the device
/// number below it (a rotation by `a` then by `b` is one by `a + b`).
pub fn intx_path<T: PciTopology + ?Sized>(
    topology: &T,
    device: PciAddress,
) -> Result<IntxPath, TopologyError> {
    let mut path = IntxPath::direct(device);
    walk_up(topology, device, |bridge| {
        path.rotation = (path.rotation + path.root.device()) % 4;
        path.root = bridge.address;
    })?;
    Ok(path)
}

/// The function on a root bus through which `device`'s `pin` arrives, and the pin it arrives
/// on (see [`intx_path`]).
pub fn intx_root_pin<T: PciTopology + ?Sized>(
    topology: &T,
    device: PciAddress,
    pin: IntxPin,
) -> Result<(PciAddress, IntxPin), TopologyError> {
    let path = intx_path(topology, device)?;
    Ok((path.root, path.pin(pin)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const fn addr(bus: u8, device: u8, function: u8) -> PciAddress {
        PciAddress::new(bus, device, function)
    }

    const fn bridge(at: PciAddress, kind: BridgeKind, secondary: u8, subordinate: u8) -> Bridge {
        Bridge {
            address: at,
            kind,
            secondary,
            subordinate,
        }
    }

    /// Bus 0: a root port 00:1c.0 to bus 1 (an endpoint at 01:00.0), a PCIe-to-PCI bridge
    /// 00:09.0 to bus 2 (devices at 02:03.0, and a conventional bridge 02:01.0 to bus 3 with a
    /// device at 03:04.0), a reverse bridge 00:0a.0 to bus 4 (a PCIe device at 04:00.0), a
    /// multi-function device at 00:05.0-00:05.1. Switches: `switch_ports_keep_the_requester_id`.
    fn machine() -> Vec<Bridge> {
        vec![
            bridge(
                addr(0, 0x1c, 0),
                BridgeKind::Express(PortType::RootPort),
                1,
                1,
            ),
            bridge(
                addr(0, 9, 0),
                BridgeKind::Express(PortType::PcieToPci),
                2,
                3,
            ),
            bridge(addr(2, 1, 0), BridgeKind::Pci, 3, 3),
            bridge(
                addr(0, 0x0a, 0),
                BridgeKind::Express(PortType::PciToPcie),
                4,
                4,
            ),
        ]
    }

    fn rids(aliases: &[DmaAlias]) -> Vec<(u16, u16)> {
        aliases
            .iter()
            .map(|a| (a.via.requester_id(), a.alias.requester_id()))
            .collect()
    }

    /// Each row: the function, its aliases as (producer, requester id) pairs nearest first,
    /// and the check, each worked from Linux's rules (module docs, steps 2 and 3).
    #[test]
    fn alias_table_follows_linux() {
        let m = machine();
        let own = |a: PciAddress| RequesterCheck::Id(a);
        // (what, function, its aliases as (producer, requester id), the check)
        type Row = (&'static str, PciAddress, Vec<(u16, u16)>, RequesterCheck);
        let rows: [Row; 6] = [
            // Root port skipped: only the device's own id, which is checked.
            (
                "a device behind a root port",
                addr(1, 0, 0),
                vec![(0x0100, 0x0100)],
                own(addr(1, 0, 0)),
            ),
            // The PCIe-to-PCI bridge adds (its secondary bus 2, devfn 0) = 0x0200. The last
            // alias's bus (2) differs from its bridge's (0): verify buses 2..=2.
            (
                "a device behind a PCIe-to-PCI bridge",
                addr(2, 3, 0),
                vec![(0x0218, 0x0218), (0x0048, 0x0200)],
                RequesterCheck::Buses {
                    range: BusRange { first: 2, last: 2 },
                    alias: addr(2, 0, 0),
                },
            ),
            // The conventional bridge 02:01.0 adds its own id 0x0208, then the PCIe-to-PCI
            // bridge 0x0200: last alias bus 2 vs bridge bus 0, so buses 2..=3.
            (
                "a conventional bridge behind a PCIe-to-PCI bridge",
                addr(3, 4, 0),
                vec![(0x0320, 0x0320), (0x0208, 0x0208), (0x0048, 0x0200)],
                RequesterCheck::Buses {
                    range: BusRange { first: 2, last: 3 },
                    alias: addr(2, 0, 0),
                },
            ),
            // The reverse bridge adds its own id 0x0050, on bus 0 like the bridge (no bus
            // range); aliases on buses 4 and 0 (no common bus); the bridge's bus 0 differs
            // from the device's 4: the alias is the requester id.
            (
                "a device behind a reverse (PCI-to-PCIe) bridge",
                addr(4, 0, 0),
                vec![(0x0400, 0x0400), (0x0050, 0x0050)],
                own(addr(0, 0x0a, 0)),
            ),
            // Functions of one device on a root bus: each its own id, no alias.
            (
                "function 0 of a multi-function device",
                addr(0, 5, 0),
                vec![(0x0028, 0x0028)],
                own(addr(0, 5, 0)),
            ),
            (
                "function 1 of a multi-function device",
                addr(0, 5, 1),
                vec![(0x0029, 0x0029)],
                own(addr(0, 5, 1)),
            ),
        ];
        for (what, device, aliases, check) in rows {
            let got = dma_aliases(&m[..], device).unwrap();
            assert_eq!(rids(&got), aliases, "{what}: aliases");
            assert_eq!(msi_requester(&m[..], device), Ok(check), "{what}: check");
        }
    }

    /// A conventional bridge directly on bus 0 (no PCIe-to-PCI bridge): its own id, on bus 0,
    /// is verified as the requester id of the device on bus 5.
    #[test]
    fn a_conventional_bridge_alone_is_verified_by_id() {
        let m = [bridge(addr(0, 0x1e, 0), BridgeKind::Pci, 5, 5)];
        assert_eq!(
            rids(&dma_aliases(&m[..], addr(5, 2, 0)).unwrap()),
            [(0x0510, 0x0510), (0x00F0, 0x00F0)]
        );
        assert_eq!(
            msi_requester(&m[..], addr(5, 2, 0)).unwrap().meta(),
            DeviceMeta::requester(0x00F0)
        );
    }

    /// Switch ports are skipped like root ports: a device under root port, upstream and
    /// downstream ports keeps its own id.
    #[test]
    fn switch_ports_keep_the_requester_id() {
        let m = [
            bridge(
                addr(0, 0x1c, 0),
                BridgeKind::Express(PortType::RootPort),
                1,
                3,
            ),
            bridge(
                addr(1, 0, 0),
                BridgeKind::Express(PortType::SwitchUpstream),
                2,
                3,
            ),
            bridge(
                addr(2, 1, 0),
                BridgeKind::Express(PortType::SwitchDownstream),
                3,
                3,
            ),
        ];
        let d = addr(3, 0, 1);
        assert_eq!(rids(&dma_aliases(&m[..], d).unwrap()), [(0x0301, 0x0301)]);
        assert_eq!(
            msi_requester(&m[..], d).unwrap().meta(),
            DeviceMeta::requester(0x0301)
        );
    }

    /// The meta data a bus range hands to the core: the alias the writes carry and the buses.
    #[test]
    fn bus_range_meta() {
        let m = machine();
        assert_eq!(
            msi_requester(&m[..], addr(3, 4, 0)).unwrap().meta(),
            DeviceMeta {
                requester_id: Some(0x0200),
                requester_buses: Some(BusRange { first: 2, last: 3 }),
            }
        );
    }

    /// Bridges that lead back to themselves end in a typed error, for every walk.
    #[test]
    fn a_cycle_is_an_error() {
        let m = [
            bridge(addr(7, 0, 0), BridgeKind::Pci, 8, 8),
            bridge(addr(8, 0, 0), BridgeKind::Pci, 7, 7),
        ];
        let d = addr(8, 3, 0);
        assert_eq!(dma_aliases(&m[..], d), Err(TopologyError::Loop { bus: 8 }));
        assert_eq!(
            msi_requester(&m[..], d),
            Err(TopologyError::Loop { bus: 8 })
        );
        assert_eq!(
            intx_root_pin(&m[..], d, IntxPin::A),
            Err(TopologyError::Loop { bus: 8 })
        );
    }

    /// INTx through bridges: INTA of 03:04.0 rotates by 4 at the conventional bridge (INTA),
    /// arrives at 02:01.0, rotates by 1 at the PCIe-to-PCI bridge (INTB) and arrives on bus 0
    /// at 00:09.0 as INTB. A device on bus 0 keeps its pin.
    #[test]
    fn intx_swizzles_up_to_the_root_slot() {
        let m = machine();
        assert_eq!(
            intx_root_pin(&m[..], addr(3, 4, 0), IntxPin::A),
            Ok((addr(0, 9, 0), IntxPin::B))
        );
        // 02:03.0 INTA -> INTD at 00:09.0.
        assert_eq!(
            intx_root_pin(&m[..], addr(2, 3, 0), IntxPin::A),
            Ok((addr(0, 9, 0), IntxPin::D))
        );
        // 02:03.0 INTC -> (2 + 3) % 4 = INTB.
        assert_eq!(
            intx_root_pin(&m[..], addr(2, 3, 0), IntxPin::C),
            Ok((addr(0, 9, 0), IntxPin::B))
        );
        assert_eq!(
            intx_root_pin(&m[..], addr(0, 5, 1), IntxPin::C),
            Ok((addr(0, 5, 1), IntxPin::C))
        );
    }

    /// A bridge read from configuration space: a PCIe-to-PCI bridge (PCI Express capability at
    /// 0x40 with Device/Port Type 0111 in bits 7:4 of its Capabilities register), secondary
    /// bus 1, subordinate 2; the same header with no capability list is conventional; a Type 0
    /// header is no bridge.
    #[test]
    fn bridges_read_from_config_space() {
        let mut bytes = [0u8; 256];
        bytes[0x06] = 0x10; // Status: Capabilities List
        bytes[0x0E] = 0x01; // Header Type: layout 1
        bytes[0x19] = 1;
        bytes[0x1A] = 2;
        bytes[0x34] = 0x40;
        bytes[0x40..0x44].copy_from_slice(&[0x10, 0x00, 0x72, 0x00]);
        let at = addr(0, 9, 0);
        let cfg = crate::ByteConfig::new(bytes);
        assert_eq!(
            Bridge::read(&cfg, at),
            Ok(Some(bridge(
                at,
                BridgeKind::Express(PortType::PcieToPci),
                1,
                2
            )))
        );
        bytes[0x06] = 0;
        let cfg = crate::ByteConfig::new(bytes);
        assert_eq!(
            Bridge::read(&cfg, at),
            Ok(Some(bridge(at, BridgeKind::Pci, 1, 2)))
        );
        bytes[0x0E] = 0x80; // multi-function, layout 0
        assert_eq!(Bridge::read(&crate::ByteConfig::new(bytes), at), Ok(None));
        assert_eq!(PortType::from_bits(0b1000), PortType::PciToPcie);
        assert_eq!(PortType::from_bits(0b1111), PortType::Reserved(0xF));
    }
}
