//! IMS kept in queue contexts: each queue's context structure (in a BAR) holds the message
//! that signals its completions. The cookie of an index is the queue id.
//!
//! The interrupt block inside a context is the device's own layout: address bits 31:0 at +0,
//! address bits 63:32 at +4, data at +8, and an interrupt control dword at +0xC. The rest of
//! the context (ring addresses, head and tail) belongs to the queue's driver; the store never
//! writes it.

use super::{check_address, check_region, ImsError};
use crate::bar::{self, Bar, MaskBit, Mmio};
use crate::error::to_core;
use crate::signal::Signal;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use genmsi::{Msg, MsgStore, StoreCaps};

/// The interrupt block's fields, each declared once.
mod field {
    /// The block's size: message (12 bytes) and the control dword.
    pub const BLOCK_SIZE: u64 = 16;
    /// The control dword at +0xC.
    pub const CONTROL: u64 = 0x0C;
    /// Control bit 0: Interrupt Enable (the queue signals completions); clear = masked.
    pub const ENABLE: u32 = 1 << 0;
    /// Control bit 1: Interrupt Pending, set by the device when a completion finds the
    /// interrupt disabled.
    pub const PENDING: u32 = 1 << 1;
}

/// Where the queue contexts are and where the interrupt block sits inside each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueContexts {
    /// The BAR holding the contexts.
    pub bar: Bar,
    /// The first context's offset.
    pub base: u64,
    /// Bytes from one context to the next.
    pub stride: u64,
    /// The number of queues.
    pub queues: u32,
    /// The interrupt block's offset inside a context (dword aligned).
    pub interrupt: u64,
}

/// One queue's interrupt block as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueInterrupt {
    /// Address and data.
    pub msg: Msg,
    /// The control dword, raw.
    pub control: u32,
}

impl QueueInterrupt {
    /// Interrupt Enable is clear.
    pub fn masked(&self) -> bool {
        self.control & field::ENABLE == 0
    }
    /// Interrupt Pending.
    pub fn pending(&self) -> bool {
        self.control & field::PENDING != 0
    }
}

impl QueueContexts {
    /// Checks that the block fits in a context and every context lies in an implemented BAR.
    pub fn check<M: Mmio + ?Sized>(&self, bars: &M) -> Result<(), ImsError> {
        if self.interrupt % 4 != 0 || self.base % 4 != 0 || self.stride % 4 != 0 {
            return Err(ImsError::BadLayout {
                value: self.interrupt,
            });
        }
        if self.interrupt.saturating_add(field::BLOCK_SIZE) > self.stride {
            return Err(ImsError::BadLayout { value: self.stride });
        }
        let len = u64::from(self.queues)
            .checked_mul(self.stride)
            .ok_or(ImsError::BadLayout { value: self.stride })?;
        check_region(bars, self.bar, self.base, len)
    }

    /// The offset of `queue`'s interrupt block.
    pub fn block(&self, queue: u32) -> Result<u64, ImsError> {
        if queue >= self.queues {
            return Err(ImsError::QueueOutOfRange {
                queue: u64::from(queue),
                queues: self.queues,
            });
        }
        u64::from(queue)
            .checked_mul(self.stride)
            .and_then(|at| at.checked_add(self.base))
            .and_then(|at| at.checked_add(self.interrupt))
            .ok_or(ImsError::BadLayout { value: self.stride })
    }

    /// Reads `queue`'s interrupt block.
    pub fn read<M: Mmio + ?Sized>(&self, bars: &M, queue: u32) -> Result<QueueInterrupt, ImsError> {
        let dwords = bar::read_entry(bars, self.bar, self.block(queue)?)?;
        Ok(QueueInterrupt {
            msg: bar::msg_of(&dwords),
            control: dwords[3],
        })
    }

    fn enable_bit(&self, queue: u32) -> Result<MaskBit, ImsError> {
        Ok(MaskBit {
            bar: self.bar,
            at: self.block(queue)? + field::CONTROL,
            bit: field::ENABLE,
            set_masks: false,
        })
    }

    /// Disables `queue`'s interrupt and clears its message and pending bit.
    fn clear<M: Mmio + ?Sized>(&self, bars: &mut M, queue: u32) -> Result<(), ImsError> {
        let at = self.block(queue)?;
        bars.write_u32(self.bar, at + field::CONTROL, 0)?;
        bar::write_msg_dwords(bars, self.bar, at, &Msg::ZERO)?;
        Ok(())
    }

    /// The device side: `queue` completes work. With its interrupt disabled the completion
    /// latches Interrupt Pending; otherwise the message is sent.
    pub fn raise<M: Mmio + ?Sized>(&self, bars: &mut M, queue: u32) -> Result<Signal, ImsError> {
        let q = self.read(bars, queue)?;
        if q.masked() {
            if q.msg == Msg::ZERO {
                return Ok(Signal::Disabled);
            }
            let at = self.block(queue)? + field::CONTROL;
            bar::modify_u32(bars, self.bar, at, 0, field::PENDING)?;
            return Ok(Signal::Pending);
        }
        Ok(Signal::Sent(q.msg))
    }

    /// The device side: sends `queue`'s interrupt if it is pending and enabled.
    pub fn replay<M: Mmio + ?Sized>(
        &self,
        bars: &mut M,
        queue: u32,
    ) -> Result<Option<Msg>, ImsError> {
        let q = self.read(bars, queue)?;
        if !q.pending() || q.masked() {
            return Ok(None);
        }
        let at = self.block(queue)? + field::CONTROL;
        bar::modify_u32(bars, self.bar, at, field::PENDING, 0)?;
        Ok(Some(q.msg))
    }
}

/// Queue contexts as a [`MsgStore`]: index `i` is bound to the queue named by its cookie.
#[derive(Debug)]
pub struct QueueStore<M> {
    bars: M,
    contexts: QueueContexts,
    /// index -> queue
    bound: Vec<Option<u32>>,
    /// queue -> index
    owner: BTreeMap<u32, u32>,
    last_error: Option<ImsError>,
}

impl<M: Mmio> QueueStore<M> {
    /// The store over `contexts`, with up to one interrupt per queue. Every queue's interrupt
    /// block is cleared (disabled, zero message); the rest of each context is left alone.
    pub fn new(mut bars: M, contexts: QueueContexts) -> Result<Self, ImsError> {
        contexts.check(&bars)?;
        for queue in 0..contexts.queues {
            contexts.clear(&mut bars, queue)?;
        }
        Ok(QueueStore {
            bars,
            contexts,
            bound: alloc::vec![None; contexts.queues as usize],
            owner: BTreeMap::new(),
            last_error: None,
        })
    }

    /// The layout.
    pub fn contexts(&self) -> &QueueContexts {
        &self.contexts
    }

    /// The BARs.
    pub fn bars(&self) -> &M {
        &self.bars
    }

    /// The BARs, writable (the device side in tests).
    pub fn bars_mut(&mut self) -> &mut M {
        &mut self.bars
    }

    /// The queue bound to `index`.
    pub fn queue_of(&self, index: u32) -> Option<u32> {
        self.bound.get(index as usize).copied().flatten()
    }

    /// The full error of the store's last refusal.
    pub fn last_error(&self) -> Option<ImsError> {
        self.last_error
    }

    fn bound_queue(&self, index: u32) -> Result<u32, ImsError> {
        self.queue_of(index).ok_or(ImsError::NotBound { index })
    }

    fn do_prepare(&mut self, index: u32, cookie: Option<u64>) -> Result<(), ImsError> {
        let queues = self.contexts.queues;
        let slot = self
            .bound
            .get(index as usize)
            .ok_or(ImsError::IndexOutOfRange {
                index,
                size: queues,
            })?;
        if slot.is_some() {
            return Err(ImsError::QueueBusy {
                queue: slot.unwrap_or_default(),
                index,
            });
        }
        let queue = cookie.ok_or(ImsError::NoQueue { index })?;
        let queue = u32::try_from(queue)
            .ok()
            .filter(|&q| q < queues)
            .ok_or(ImsError::QueueOutOfRange { queue, queues })?;
        if let Some(&other) = self.owner.get(&queue) {
            return Err(ImsError::QueueBusy {
                queue,
                index: other,
            });
        }
        self.contexts.clear(&mut self.bars, queue)?;
        self.bound[index as usize] = Some(queue);
        self.owner.insert(queue, index);
        Ok(())
    }

    fn do_release(&mut self, index: u32) -> Result<(), ImsError> {
        let queue = self.bound_queue(index)?;
        self.bound[index as usize] = None;
        self.owner.remove(&queue);
        self.contexts.clear(&mut self.bars, queue)
    }

    fn do_write(&mut self, index: u32, msg: &Msg) -> Result<(), ImsError> {
        check_address(msg.address)?;
        let queue = self.bound_queue(index)?;
        let at = self.contexts.block(queue)?;
        let enable = self.contexts.enable_bit(queue)?;
        Ok(bar::write_msg_masked(
            &mut self.bars,
            at,
            msg,
            enable,
            true,
        )?)
    }

    fn set_masked(&mut self, index: u32, masked: bool) -> Result<(), ImsError> {
        let queue = self.bound_queue(index)?;
        Ok(self
            .contexts
            .enable_bit(queue)?
            .set(&mut self.bars, masked)?)
    }

    fn fail(&mut self, index: u32) -> impl FnOnce(ImsError) -> genmsi::Error + '_ {
        move |e| to_core(&mut self.last_error, index, e)
    }
}

impl<M: Mmio + Send + 'static> MsgStore for QueueStore<M> {
    fn name(&self) -> &'static str {
        "ims-queue"
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps {
            write_masked: true,
            ..StoreCaps::dynamic(self.contexts.queues)
        }
    }

    fn write_msg(&mut self, index: u32, msg: &Msg) -> genmsi::Result<()> {
        self.do_write(index, msg).map_err(self.fail(index))
    }

    fn mask(&mut self, index: u32) -> genmsi::Result<()> {
        self.set_masked(index, true).map_err(self.fail(index))
    }

    fn unmask(&mut self, index: u32) -> genmsi::Result<()> {
        self.set_masked(index, false).map_err(self.fail(index))
    }

    fn prepare(&mut self, index: u32, cookie: Option<u64>) -> genmsi::Result<()> {
        self.do_prepare(index, cookie).map_err(self.fail(index))
    }

    fn release(&mut self, index: u32) {
        if let Err(e) = self.do_release(index) {
            self.last_error = Some(e);
        }
    }

    fn is_pending(&self, index: u32) -> bool {
        self.queue_of(index)
            .and_then(|q| self.contexts.read(&self.bars, q).ok())
            .is_some_and(|q| q.pending())
    }
}
