//! Irq numbers.

/// A global irq number, as handed out by [`IrqSystem`](crate::IrqSystem).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Irq(pub u32);
