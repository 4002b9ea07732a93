//! [`VfioMsix`]: the [`MsiBackend`] over a vfio-pci function's host MSI-X vectors.

use super::device::VfioDevice;
use crate::backend::{Budget, MsiBackend};
use crate::error::{Error, Result, VfioError};
use genmsi::Msg;
use serde::Serialize;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// How the host vectors grow (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Growth {
    /// Exactly the backed entry's vector, added with MSI-X enabled (Linux 6.5+).
    Dynamic,
    /// A block `0..n` enabled at once, grown by disabling MSI-X and enabling it with more.
    Reenable,
}

#[derive(Debug)]
struct Entry {
    eventfd: Arc<EventFd>,
    unmasked: bool,
    /// The host vector signals this eventfd.
    attached: bool,
}

/// One vfio-pci function's host MSI-X vectors behind the seam (see the module docs).
#[derive(Debug)]
pub struct VfioMsix {
    device: VfioDevice,
    growth: Growth,
    entries: Vec<Option<Entry>>,
    /// Host MSI-X is enabled with this block (0: disabled).
    host_block: u32,
    /// The guest function's Enable (what [`MsiBackend::enable`] says).
    enabled: bool,
    budget: Budget,
}

fn event_error(op: &'static str, e: std::io::Error) -> Error {
    Error::Vfio(VfioError::Io {
        op,
        errno: e.raw_os_error().unwrap_or(0),
    })
}

impl VfioMsix {
    /// The backend of `device`, holding at most `budget` vectors (and never more than its
    /// table has). [`Growth::Dynamic`] on a kernel that reports NORESIZE is refused with
    /// [`VfioError::NoResize`]: [`Growth::Reenable`] is the explicit fallback.
    pub fn new(device: VfioDevice, growth: Growth, budget: u32) -> Result<Self> {
        if growth == Growth::Dynamic && !device.dynamic_msix() {
            return Err(Error::Vfio(VfioError::NoResize {
                index: 0,
                enabled: 0,
            }));
        }
        let vectors = device.msix().vectors;
        Ok(VfioMsix {
            device,
            growth,
            entries: (0..vectors).map(|_| None).collect(),
            host_block: 0,
            enabled: false,
            budget: Budget {
                limit: budget.min(vectors),
                ..Budget::default()
            },
        })
    }

    /// The function.
    pub fn device(&self) -> &VfioDevice {
        &self.device
    }

    /// The growth.
    pub fn growth(&self) -> Growth {
        self.growth
    }

    /// The block host MSI-X is enabled with (0: disabled).
    pub fn host_block(&self) -> u32 {
        self.host_block
    }

    /// Entry `index`'s eventfd, signalled by its host vector (where a consumer waits).
    pub fn eventfd(&self, index: u32) -> Option<Arc<EventFd>> {
        self.entry(index).ok().map(|e| e.eventfd.clone())
    }

    /// Interrupts delivered to unmasked entry `index` since the last call (a masked entry's
    /// are held: 0).
    pub fn take(&self, index: u32) -> Result<u64> {
        match self.entry(index) {
            Ok(e) if e.unmasked => match e.eventfd.read() {
                Ok(n) => Ok(n),
                Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(0),
                Err(err) => Err(event_error("eventfd read", err)),
            },
            _ => Ok(0),
        }
    }

    /// Backs `index` with `eventfd` (shared with a consumer such as KVM's irqfd) instead of
    /// a new one.
    pub fn back_eventfd(&mut self, index: u32, eventfd: Arc<EventFd>) -> Result<()> {
        let vectors = self.entries.len() as u32;
        if index >= vectors {
            return Err(Error::Vfio(VfioError::OutOfRange { index, vectors }));
        }
        if self.is_backed(index) {
            return Ok(());
        }
        if self.budget.in_use >= self.budget.limit {
            return Err(Error::Budget {
                index,
                budget: self.budget.limit,
                in_use: self.budget.in_use,
            });
        }
        if self.growth == Growth::Dynamic && self.enabled {
            self.attach_dynamic(index, &eventfd)?;
        }
        let attached = self.growth == Growth::Dynamic && self.enabled;
        self.entries[index as usize] = Some(Entry {
            eventfd,
            unmasked: false,
            attached,
        });
        self.budget.in_use += 1;
        self.budget.max_in_use = self.budget.max_in_use.max(self.budget.in_use);
        Ok(())
    }

    fn entry(&self, index: u32) -> Result<&Entry> {
        self.entries
            .get(index as usize)
            .and_then(Option::as_ref)
            .ok_or(Error::NotBacked { index })
    }

    /// Host vector `index` signals `eventfd`, MSI-X staying enabled; the first enables MSI-X
    /// with one vector. Nothing is left changed on failure.
    fn attach_dynamic(&mut self, index: u32, eventfd: &EventFd) -> Result<()> {
        let fd = eventfd.as_raw_fd();
        if self.host_block == 0 {
            let first = if index == 0 { fd } else { -1 };
            self.device.set_irqs(0, &[first])?;
            self.host_block = 1;
            if index == 0 {
                return Ok(());
            }
            if let Err(e) = self.device.set_irqs(index, &[fd]) {
                // Mop up: the enable was for this entry alone.
                self.device.set_irqs(0, &[])?;
                self.host_block = 0;
                return Err(e.into());
            }
            return Ok(());
        }
        if !self.device.dynamic_msix() && index >= self.host_block {
            return Err(Error::Vfio(VfioError::NoResize {
                index,
                enabled: self.host_block,
            }));
        }
        self.device.set_irqs(index, &[fd])?;
        self.host_block = self.host_block.max(index + 1);
        Ok(())
    }

    /// Host MSI-X off: every vector goes.
    fn disable_host(&mut self) -> Result<()> {
        if self.host_block > 0 {
            self.device.set_irqs(0, &[])?;
            self.host_block = 0;
        }
        for e in self.entries.iter_mut().flatten() {
            e.attached = false;
        }
        Ok(())
    }

    /// Reenable: host MSI-X enabled with the block `0..=highest backed entry`.
    fn commit_block(&mut self) -> Result<()> {
        let Some(top) = self.entries.iter().rposition(Option::is_some) else {
            return Ok(());
        };
        let n = top as u32 + 1;
        let detached: Vec<u32> = (0..n)
            .filter(|&i| {
                self.entries[i as usize]
                    .as_ref()
                    .is_some_and(|e| !e.attached)
            })
            .collect();
        if detached.is_empty() {
            return Ok(());
        }
        if n <= self.host_block {
            for i in detached {
                let fd = self.entry(i)?.eventfd.as_raw_fd();
                self.device.set_irqs(i, &[fd])?;
                if let Some(e) = &mut self.entries[i as usize] {
                    e.attached = true;
                }
            }
            return Ok(());
        }
        // A bigger block: off, then on with every vector.
        self.disable_host()?;
        let fds: Vec<i32> = self.entries[..n as usize]
            .iter()
            .map(|e| e.as_ref().map_or(-1, |e| e.eventfd.as_raw_fd()))
            .collect();
        self.device.set_irqs(0, &fds)?;
        self.host_block = n;
        for e in self.entries.iter_mut().flatten() {
            e.attached = true;
        }
        Ok(())
    }
}

impl MsiBackend for VfioMsix {
    fn back(&mut self, index: u32, _msg: Msg) -> Result<()> {
        if self.is_backed(index) {
            return Ok(());
        }
        // The guest's message is the guest's (KVM routes it); the host vector's is the host's.
        let eventfd = EventFd::new(EFD_NONBLOCK).map_err(|e| event_error("eventfd", e))?;
        self.back_eventfd(index, Arc::new(eventfd))
    }

    fn set_msg(&mut self, index: u32, _msg: Msg) -> Result<()> {
        self.entry(index).map(|_| ())
    }

    fn unmask(&mut self, index: u32) -> Result<()> {
        self.entry(index)?;
        if let Some(Some(e)) = self.entries.get_mut(index as usize) {
            e.unmasked = true;
        }
        Ok(())
    }

    fn mask(&mut self, index: u32) -> Result<()> {
        self.entry(index)?;
        if let Some(Some(e)) = self.entries.get_mut(index as usize) {
            e.unmasked = false;
        }
        Ok(())
    }

    fn release(&mut self, index: u32) -> Result<()> {
        let attached = self.entry(index)?.attached;
        if attached && self.host_block > 0 {
            self.device.set_irqs(index, &[-1])?;
        }
        self.entries[index as usize] = None;
        self.budget.in_use -= 1;
        Ok(())
    }

    fn is_backed(&self, index: u32) -> bool {
        self.entry(index).is_ok()
    }

    fn pending(&self, index: u32) -> bool {
        match self.entry(index) {
            Ok(e) if e.unmasked => false,
            // Nobody reads a masked entry's eventfd: peek and put the count back.
            Ok(e) => match e.eventfd.read() {
                Ok(n) => e.eventfd.write(n).is_ok(),
                Err(_) => false,
            },
            Err(_) => self.host_block > 0 && self.device.pba_bit(index).unwrap_or(false),
        }
    }

    fn budget(&self) -> Budget {
        self.budget
    }

    fn commit(&mut self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        match self.growth {
            Growth::Reenable => self.commit_block(),
            Growth::Dynamic => {
                let detached: Vec<u32> = (0..self.entries.len() as u32)
                    .filter(|&i| self.entry(i).is_ok_and(|e| !e.attached))
                    .collect();
                for i in detached {
                    let eventfd = self.entry(i)?.eventfd.clone();
                    self.attach_dynamic(i, &eventfd)?;
                    if let Some(Some(e)) = self.entries.get_mut(i as usize) {
                        e.attached = true;
                    }
                }
                Ok(())
            }
        }
    }

    fn enable(&mut self, on: bool) -> Result<()> {
        self.enabled = on;
        match on {
            true => Ok(()),
            false => self.disable_host(),
        }
    }
}
