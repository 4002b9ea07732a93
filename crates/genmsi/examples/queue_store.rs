//! A new interrupt source in a few lines: a device that keeps its messages in per-queue
//! contexts (device-defined storage, "IMS"), managed by the genmsi core.
//!
//! An embedder writes the [`MsgStore`] for its device (where the (address, data) pairs live
//! and how an index is masked), binds it to a parent domain, and then allocates: any free
//! index for a new queue (with the queue id as cookie), a particular index, frees, all while
//! the other queues keep delivering. The root here is the core's software root (`SoftRoot`);
//! on x86 it is `genmsi_x86::VectorDomain` (see that crate's example).
//!
//! Run: `cargo run -p genmsi --example queue_store`

use genmsi::soft::SoftRoot;
use genmsi::{
    AllocOpts, Delivery, DeviceMeta, IrqSystem, Msg, MsgStore, SlotId, StoreCaps, SystemConfig,
};

/// One queue context as the device keeps it: the message it sends on completion, a mask
/// bit, and the queue the context belongs to.
#[derive(Clone, Copy, Debug, Default)]
struct QueueContext {
    msg: Msg,
    masked: bool,
    queue: Option<u64>,
}

/// The device's store: `contexts[i]` is interrupt index `i`.
#[derive(Debug)]
struct QueueStore {
    contexts: Vec<QueueContext>,
}

impl QueueStore {
    fn new(queues: u32) -> Self {
        QueueStore {
            contexts: vec![
                QueueContext {
                    masked: true,
                    ..Default::default()
                };
                queues as usize
            ],
        }
    }

    fn context(&mut self, index: u32) -> genmsi::Result<&mut QueueContext> {
        let limit = self.contexts.len() as u32;
        self.contexts
            .get_mut(index as usize)
            .ok_or(genmsi::Error::IndexOutOfRange { index, limit })
    }

    /// What the device does to raise index `index`: send the stored message unless masked.
    fn raise(&self, index: u32) -> Option<Msg> {
        let c = self.contexts.get(index as usize)?;
        (!c.masked).then_some(c.msg)
    }
}

impl MsgStore for QueueStore {
    fn name(&self) -> &'static str {
        "queue-contexts"
    }

    fn caps(&self) -> StoreCaps {
        // Any free context can take a queue, at any time, each masked on its own.
        StoreCaps::dynamic(self.contexts.len() as u32)
    }

    fn write_msg(&mut self, index: u32, msg: &Msg) -> genmsi::Result<()> {
        self.context(index)?.msg = *msg;
        Ok(())
    }

    fn mask(&mut self, index: u32) -> genmsi::Result<()> {
        self.context(index)?.masked = true;
        Ok(())
    }

    fn unmask(&mut self, index: u32) -> genmsi::Result<()> {
        self.context(index)?.masked = false;
        Ok(())
    }

    fn prepare(&mut self, index: u32, cookie: Option<u64>) -> genmsi::Result<()> {
        // The cookie is the queue id the driver asked for: the device tags its context.
        self.context(index)?.queue = cookie;
        Ok(())
    }

    fn release(&mut self, index: u32) {
        if let Ok(c) = self.context(index) {
            *c = QueueContext {
                masked: true,
                ..Default::default()
            };
        }
    }
}

fn main() -> Result<(), genmsi::Error> {
    // A system of 4 CPUs with room for 1,024 irqs; the root hands out 200 "vectors" per CPU.
    let sys: IrqSystem = IrqSystem::new(SystemConfig::new(4, 1024));
    let root = sys.add_domain(Box::new(SoftRoot::new(4, 200)), None)?;
    let dev = sys.add_device("accel", DeviceMeta::requester(0x0300));
    sys.create_device_domain(dev, SlotId::Secondary, Box::new(QueueStore::new(64)), root)?;

    // Three queues are created: each takes any free context, tagged with its queue id.
    let opts = AllocOpts::default();
    let mut queues = Vec::new();
    for queue_id in [7u64, 9, 12] {
        let mut o = opts.clone();
        o.cookie = Some(queue_id);
        let (index, irq) = sys.alloc_any(dev, SlotId::Secondary, &o)?;
        println!("queue {queue_id}: context {index}, irq {}", irq.0);
        queues.push((index, irq));
    }

    // The device raises each queue's interrupt: it sends what the store holds, the root
    // decodes the message into (irq, CPU) and the core delivers it.
    for &(index, irq) in &queues {
        let msg = sys
            .with_store::<QueueStore, _>(dev, SlotId::Secondary, |s| s.raise(index))?
            .expect("an allocated queue is unmasked");
        let (to, cpu) = SoftRoot::decode(&msg).expect("the root composed this message");
        assert_eq!(to, irq);
        assert_eq!(sys.handle(to, cpu), Delivery::Handled);
    }

    // Queue 9 goes away while the others keep delivering; its context is masked again.
    let (freed, _) = queues[1];
    sys.free_index(dev, SlotId::Secondary, freed)?;
    let silent = sys.with_store::<QueueStore, _>(dev, SlotId::Secondary, |s| s.raise(freed))?;
    assert!(silent.is_none(), "a freed context sends nothing");

    // A driver that needs a particular context (say, the one its firmware expects) asks for
    // it by index.
    let irq = sys.alloc_at(dev, SlotId::Secondary, 40, &opts)?;
    println!("context 40: irq {}", irq.0);

    // Bad input is a typed error, and nothing changed.
    let refused = sys.alloc_at(dev, SlotId::Secondary, 64, &opts);
    println!("context 64: {refused:?}");
    assert!(refused.is_err());

    for (index, irq) in [queues[0], queues[2]] {
        println!(
            "context {index}: irq {} handled {} time(s)",
            irq.0,
            sys.table().count(irq)
        );
    }
    Ok(())
}
