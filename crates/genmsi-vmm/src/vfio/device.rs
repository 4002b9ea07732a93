//! A vfio-pci function: its container, group and device file, the raw ioctls the MSI-X
//! backend needs, and `VFIO_DEVICE_SET_IRQS` counted and timed.

use super::VfioError;
use serde::Serialize;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use vfio_bindings::bindings::vfio::{
    vfio_group_status, vfio_irq_info, vfio_irq_set, vfio_region_info, VFIO_TYPE1v2_IOMMU,
    VFIO_API_VERSION, VFIO_BASE, VFIO_GROUP_FLAGS_VIABLE, VFIO_IRQ_INFO_NORESIZE,
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_TYPE,
};
use vmm_sys_util::ioctl::{ioctl, ioctl_with_mut_ref, ioctl_with_ptr, ioctl_with_val};

/// The VFIO ioctls (`linux/vfio.h`: `_IO(VFIO_TYPE, VFIO_BASE + n)`).
mod nr {
    use super::{VFIO_BASE, VFIO_TYPE};
    const T: u32 = VFIO_TYPE as u32;
    vmm_sys_util::ioctl_io_nr!(GET_API_VERSION, T, VFIO_BASE);
    vmm_sys_util::ioctl_io_nr!(CHECK_EXTENSION, T, VFIO_BASE + 1);
    vmm_sys_util::ioctl_io_nr!(SET_IOMMU, T, VFIO_BASE + 2);
    vmm_sys_util::ioctl_io_nr!(GROUP_GET_STATUS, T, VFIO_BASE + 3);
    vmm_sys_util::ioctl_io_nr!(GROUP_SET_CONTAINER, T, VFIO_BASE + 4);
    vmm_sys_util::ioctl_io_nr!(GROUP_GET_DEVICE_FD, T, VFIO_BASE + 6);
    vmm_sys_util::ioctl_io_nr!(DEVICE_GET_REGION_INFO, T, VFIO_BASE + 8);
    vmm_sys_util::ioctl_io_nr!(DEVICE_GET_IRQ_INFO, T, VFIO_BASE + 9);
    vmm_sys_util::ioctl_io_nr!(DEVICE_SET_IRQS, T, VFIO_BASE + 10);
}

/// PCI capability id of MSI-X (PCIe Base 7.7.2).
const CAP_MSIX: u8 = 0x11;
/// Configuration space: Status register, Capabilities List bit, capabilities pointer.
const STATUS: u64 = 0x06;
const STATUS_CAP_LIST: u16 = 1 << 4;
const CAP_POINTER: u64 = 0x34;
/// Command register, Bus Master Enable and Memory Space Enable.
const COMMAND: u64 = 0x04;
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;

/// `VFIO_DEVICE_SET_IRQS` calls on one function and the time spent in them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SetIrqsStats {
    /// Calls (enable, add, detach, disable).
    pub calls: u64,
    /// Of which disabled MSI-X.
    pub disables: u64,
    /// Time in them.
    pub time: Duration,
}

/// Where the function's MSI-X table and PBA are (PCIe Base 7.7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCap {
    /// Offset of the capability in configuration space.
    pub offset: u64,
    /// Table entries.
    pub vectors: u32,
    /// The table's BAR and offset in it.
    pub table: (u8, u64),
    /// The PBA's BAR and offset in it.
    pub pba: (u8, u64),
}

#[derive(Clone, Copy, Debug)]
struct Region {
    offset: u64,
    size: u64,
}

/// Read and write access to a function's BARs through its device file, usable from another
/// thread than the backend's (a device model, a test making the device fire).
#[derive(Debug)]
pub struct BarAccess {
    device: File,
    bars: [Option<Region>; 6],
}

impl BarAccess {
    /// Reads `bar` at `offset`.
    pub fn read(&self, bar: u8, offset: u64, data: &mut [u8]) -> Result<(), VfioError> {
        let region = self.bars.get(usize::from(bar)).copied().flatten();
        read_at(&self.device, region, offset, data)
    }

    /// Writes `bar` at `offset`.
    pub fn write(&self, bar: u8, offset: u64, data: &[u8]) -> Result<(), VfioError> {
        let region = self.bars.get(usize::from(bar)).copied().flatten();
        write_at(&self.device, region, offset, data)
    }
}

fn read_at(
    device: &File,
    region: Option<Region>,
    offset: u64,
    data: &mut [u8],
) -> Result<(), VfioError> {
    let r = region.ok_or(VfioError::NoRegion)?;
    if offset + data.len() as u64 > r.size {
        return Err(VfioError::NoRegion);
    }
    device
        .read_exact_at(data, r.offset + offset)
        .map_err(|e| io_from("device read", e))
}

fn write_at(
    device: &File,
    region: Option<Region>,
    offset: u64,
    data: &[u8],
) -> Result<(), VfioError> {
    let r = region.ok_or(VfioError::NoRegion)?;
    if offset + data.len() as u64 > r.size {
        return Err(VfioError::NoRegion);
    }
    device
        .write_all_at(data, r.offset + offset)
        .map_err(|e| io_from("device write", e))
}

/// An opened vfio-pci function (see the module docs).
#[derive(Debug)]
pub struct VfioDevice {
    name: String,
    /// Kept open: the group holds the container, the device holds the group.
    _container: File,
    _group: File,
    device: File,
    config: Region,
    bars: [Option<Region>; 6],
    msix: MsixCap,
    msix_flags: u32,
    stats: SetIrqsStats,
}

fn io(op: &'static str) -> VfioError {
    VfioError::Io {
        op,
        errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    }
}

fn io_from(op: &'static str, e: std::io::Error) -> VfioError {
    VfioError::Io {
        op,
        errno: e.raw_os_error().unwrap_or(0),
    }
}

impl VfioDevice {
    /// Opens the function `name` (`0000:00:02.0`), bound to vfio-pci: its IOMMU group from
    /// sysfs, a type1 container of its own, the device file, its regions and its MSI-X
    /// capability. Refused with [`VfioError::NoMsix`] if it has none.
    pub fn open(name: &str) -> Result<Self, VfioError> {
        let link = std::fs::read_link(format!("/sys/bus/pci/devices/{name}/iommu_group"))
            .map_err(|e| io_from("read iommu_group", e))?;
        let group_id = link
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or(VfioError::Io {
                op: "parse iommu_group",
                errno: 0,
            })?;
        let rw = |path: &str, op| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| io_from(op, e))
        };
        let container = rw("/dev/vfio/vfio", "open /dev/vfio/vfio")?;
        // SAFETY: VFIO_GET_API_VERSION takes no argument; the fd is a VFIO container.
        let version = unsafe { ioctl(&container, nr::GET_API_VERSION()) };
        if version != VFIO_API_VERSION as i32 {
            return Err(VfioError::Io {
                op: "VFIO_GET_API_VERSION",
                errno: version,
            });
        }
        // SAFETY: VFIO_CHECK_EXTENSION takes an integer by value.
        let type1 =
            unsafe { ioctl_with_val(&container, nr::CHECK_EXTENSION(), VFIO_TYPE1v2_IOMMU.into()) };
        if type1 != 1 {
            return Err(VfioError::Io {
                op: "VFIO_CHECK_EXTENSION(TYPE1v2)",
                errno: type1,
            });
        }
        let group = rw(&format!("/dev/vfio/{group_id}"), "open /dev/vfio/<group>")?;
        let mut status = vfio_group_status {
            argsz: size_of::<vfio_group_status>() as u32,
            flags: 0,
        };
        // SAFETY: the kernel writes a vfio_group_status of argsz bytes, which `status` is.
        if unsafe { ioctl_with_mut_ref(&group, nr::GROUP_GET_STATUS(), &mut status) } < 0 {
            return Err(io("VFIO_GROUP_GET_STATUS"));
        }
        if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioError::NotViable { group: group_id });
        }
        let container_fd: RawFd = container.as_raw_fd();
        // SAFETY: VFIO_GROUP_SET_CONTAINER reads one int (the container fd) at the pointer.
        if unsafe { ioctl_with_ptr(&group, nr::GROUP_SET_CONTAINER(), &container_fd) } < 0 {
            return Err(io("VFIO_GROUP_SET_CONTAINER"));
        }
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
        if unsafe { ioctl_with_val(&container, nr::SET_IOMMU(), VFIO_TYPE1v2_IOMMU.into()) } < 0 {
            return Err(io("VFIO_SET_IOMMU"));
        }
        let cname = CString::new(name).map_err(|_| VfioError::Io {
            op: "device name",
            errno: 0,
        })?;
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD reads a NUL-terminated string at the pointer.
        let fd = unsafe { ioctl_with_ptr(&group, nr::GROUP_GET_DEVICE_FD(), cname.as_ptr()) };
        if fd < 0 {
            return Err(io("VFIO_GROUP_GET_DEVICE_FD"));
        }
        // SAFETY: the ioctl returned a new file descriptor that nothing else owns.
        let device = unsafe { File::from_raw_fd(fd) };
        let region = |index: u32| -> Result<Option<Region>, VfioError> {
            let mut info = vfio_region_info {
                argsz: size_of::<vfio_region_info>() as u32,
                index,
                ..Default::default()
            };
            // SAFETY: the kernel writes at most argsz bytes into `info`.
            if unsafe { ioctl_with_mut_ref(&device, nr::DEVICE_GET_REGION_INFO(), &mut info) } < 0 {
                return Err(io("VFIO_DEVICE_GET_REGION_INFO"));
            }
            Ok((info.size > 0).then_some(Region {
                offset: info.offset,
                size: info.size,
            }))
        };
        let config = region(VFIO_PCI_CONFIG_REGION_INDEX)?.ok_or(VfioError::NoMsix)?;
        let mut bars = [None; 6];
        for (i, bar) in bars.iter_mut().enumerate() {
            *bar = region(VFIO_PCI_BAR0_REGION_INDEX + i as u32)?;
        }
        let mut irq = vfio_irq_info {
            argsz: size_of::<vfio_irq_info>() as u32,
            index: VFIO_PCI_MSIX_IRQ_INDEX,
            ..Default::default()
        };
        // SAFETY: the kernel writes at most argsz bytes into `irq`.
        if unsafe { ioctl_with_mut_ref(&device, nr::DEVICE_GET_IRQ_INFO(), &mut irq) } < 0 {
            return Err(io("VFIO_DEVICE_GET_IRQ_INFO"));
        }
        let mut dev = VfioDevice {
            name: name.to_owned(),
            _container: container,
            _group: group,
            device,
            config,
            bars,
            msix: MsixCap {
                offset: 0,
                vectors: irq.count,
                table: (0, 0),
                pba: (0, 0),
            },
            msix_flags: irq.flags,
            stats: SetIrqsStats::default(),
        };
        if irq.count == 0 {
            return Err(VfioError::NoMsix);
        }
        dev.msix = dev.find_msix()?;
        Ok(dev)
    }

    /// Walks the capability list for MSI-X.
    fn find_msix(&self) -> Result<MsixCap, VfioError> {
        let status = self.config_u16(STATUS)?;
        let mut at = match status & STATUS_CAP_LIST {
            0 => 0,
            _ => u64::from(self.config_u8(CAP_POINTER)? & !3),
        };
        // A list longer than configuration space can hold is broken: stop there.
        for _ in 0..48 {
            if at == 0 {
                break;
            }
            if self.config_u8(at)? == CAP_MSIX {
                let control = self.config_u16(at + 2)?;
                let table = self.config_u32(at + 4)?;
                let pba = self.config_u32(at + 8)?;
                return Ok(MsixCap {
                    offset: at,
                    vectors: u32::from(control & 0x7ff) + 1,
                    table: ((table & 7) as u8, u64::from(table & !7)),
                    pba: ((pba & 7) as u8, u64::from(pba & !7)),
                });
            }
            at = u64::from(self.config_u8(at + 1)? & !3);
        }
        Err(VfioError::NoMsix)
    }

    /// The function's name (its PCI address).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its MSI-X capability.
    pub fn msix(&self) -> MsixCap {
        self.msix
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`'s flags for the MSI-X index.
    pub fn msix_flags(&self) -> u32 {
        self.msix_flags
    }

    /// The host kernel adds MSI-X vectors while MSI-X is enabled (no
    /// `VFIO_IRQ_INFO_NORESIZE`; Linux 6.5 and later on a device that supports it).
    pub fn dynamic_msix(&self) -> bool {
        self.msix_flags & VFIO_IRQ_INFO_NORESIZE == 0
    }

    /// `VFIO_DEVICE_SET_IRQS` calls so far.
    pub fn stats(&self) -> SetIrqsStats {
        self.stats
    }

    /// Reads configuration space (as vfio-pci shows it).
    pub fn config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), VfioError> {
        read_at(&self.device, Some(self.config), offset, data)
    }

    /// Writes configuration space.
    pub fn config_write(&self, offset: u64, data: &[u8]) -> Result<(), VfioError> {
        write_at(&self.device, Some(self.config), offset, data)
    }

    fn config_u8(&self, offset: u64) -> Result<u8, VfioError> {
        let mut b = [0; 1];
        self.config_read(offset, &mut b)?;
        Ok(b[0])
    }

    fn config_u16(&self, offset: u64) -> Result<u16, VfioError> {
        let mut b = [0; 2];
        self.config_read(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn config_u32(&self, offset: u64) -> Result<u32, VfioError> {
        let mut b = [0; 4];
        self.config_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Sets Memory Space Enable and Bus Master Enable (a function sends no message without
    /// bus mastering).
    pub fn enable_bus_master(&self) -> Result<(), VfioError> {
        let command = self.config_u16(COMMAND)? | COMMAND_MEMORY | COMMAND_BUS_MASTER;
        self.config_write(COMMAND, &command.to_le_bytes())
    }

    /// Reads `bar` at `offset` (through the device file).
    pub fn bar_read(&self, bar: u8, offset: u64, data: &mut [u8]) -> Result<(), VfioError> {
        let region = self.bars.get(usize::from(bar)).copied().flatten();
        read_at(&self.device, region, offset, data)
    }

    /// Writes `bar` at `offset`.
    pub fn bar_write(&self, bar: u8, offset: u64, data: &[u8]) -> Result<(), VfioError> {
        let region = self.bars.get(usize::from(bar)).copied().flatten();
        write_at(&self.device, region, offset, data)
    }

    /// A handle on the BARs for another thread.
    pub fn bar_access(&self) -> Result<BarAccess, VfioError> {
        Ok(BarAccess {
            device: self
                .device
                .try_clone()
                .map_err(|e| io_from("dup device fd", e))?,
            bars: self.bars,
        })
    }

    /// Entry `index`'s Pending Bit, read from the device's own PBA.
    pub fn pba_bit(&self, index: u32) -> Result<bool, VfioError> {
        let (bar, at) = self.msix.pba;
        let mut qword = [0; 8];
        self.bar_read(bar, at + u64::from(index / 64) * 8, &mut qword)?;
        Ok(u64::from_le_bytes(qword) >> (index % 64) & 1 == 1)
    }

    /// One `VFIO_DEVICE_SET_IRQS` on the MSI-X index: `fds[k]` becomes the trigger of vector
    /// `start + k` (-1 detaches it). With MSI-X disabled this enables it with
    /// `start + fds.len()` vectors; with `fds` empty it disables MSI-X.
    pub fn set_irqs(&mut self, start: u32, fds: &[RawFd]) -> Result<(), VfioError> {
        let header = size_of::<vfio_irq_set>();
        // u32 words: the header is five of them, each eventfd one more.
        let mut words = vec![0u32; header / 4 + fds.len()];
        words[0] = (header + fds.len() * 4) as u32;
        words[1] = VFIO_IRQ_SET_ACTION_TRIGGER
            | match fds.is_empty() {
                true => VFIO_IRQ_SET_DATA_NONE,
                false => VFIO_IRQ_SET_DATA_EVENTFD,
            };
        words[2] = VFIO_PCI_MSIX_IRQ_INDEX;
        words[3] = if fds.is_empty() { 0 } else { start };
        words[4] = fds.len() as u32;
        for (w, &fd) in words[header / 4..].iter_mut().zip(fds) {
            *w = fd as u32;
        }
        let begin = Instant::now();
        // SAFETY: `words` is a vfio_irq_set header followed by `count` i32 eventfds, argsz
        // bytes long, 4-byte aligned as the struct requires; the kernel only reads it.
        let r = unsafe { ioctl_with_ptr(&self.device, nr::DEVICE_SET_IRQS(), words.as_ptr()) };
        self.stats.time += begin.elapsed();
        self.stats.calls += 1;
        self.stats.disables += u64::from(fds.is_empty());
        match r < 0 {
            true => Err(io("VFIO_DEVICE_SET_IRQS")),
            false => Ok(()),
        }
    }
}
