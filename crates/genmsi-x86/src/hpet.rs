//! HPET timers with FSB delivery as a message store (IA-PC HPET specification 1.0a: 2.3.8
//! timer N configuration and capability register at 0x100 + 0x20 N, and the timer N FSB
//! interrupt route register at 0x110 + 0x20 N).

use genmsi::{Error, Msg, MsgStore, Result, StoreCaps};

/// 64-bit access to the HPET register block (memory mapped at 0xFED00000 on PCs).
pub trait HpetRegs: Send {
    /// Reads the register at byte offset `offset`.
    fn read64(&mut self, offset: u32) -> u64;
    /// Writes the register at byte offset `offset`.
    fn write64(&mut self, offset: u32, value: u64);
}

mod field {
    //! HPET 1.0a: 2.3.4 general capabilities (offset 0x00), 2.3.8 timer N configuration and
    //! capability (0x100 + 0x20 N), timer N FSB interrupt route (0x110 + 0x20 N).

    /// General capabilities bits 12:8: number of the last timer.
    pub const NUM_TIM_SHIFT: u32 = 8;
    /// Timer N configuration register.
    pub const fn config(n: u32) -> u32 {
        0x100 + 0x20 * n
    }
    /// Timer N FSB route register: bits 31:0 value (data), bits 63:32 address.
    pub const fn fsb_route(n: u32) -> u32 {
        0x110 + 0x20 * n
    }
    /// Tn_INT_ENB_CNF: the timer may raise interrupts.
    pub const INT_ENB: u64 = 1 << 2;
    /// Tn_FSB_EN_CNF: deliver by FSB message instead of an IO-APIC pin.
    pub const FSB_EN: u64 = 1 << 14;
    /// Tn_FSB_INT_DEL_CAP (read only): the timer can deliver FSB messages.
    pub const FSB_CAP: u64 = 1 << 15;
}

/// The FSB routes of an HPET's timers as a [`MsgStore`]: index = timer number. Only timers with
/// FSB capability can be allocated; the store masks a timer by clearing its interrupt enable.
#[derive(Debug)]
pub struct HpetStore<R: HpetRegs> {
    regs: R,
    timers: u32,
}

impl<R: HpetRegs> HpetStore<R> {
    /// A store over `regs`; the timer count comes from the capabilities register.
    pub fn new(mut regs: R) -> Self {
        let timers = ((regs.read64(0) >> field::NUM_TIM_SHIFT) & 0x1F) as u32 + 1;
        HpetStore { regs, timers }
    }

    /// The registers.
    pub fn regs(&mut self) -> &mut R {
        &mut self.regs
    }

    /// True when timer `n` can deliver FSB messages.
    pub fn fsb_capable(&mut self, n: u32) -> bool {
        n < self.timers && self.regs.read64(field::config(n)) & field::FSB_CAP != 0
    }

    fn timer(&mut self, index: u32) -> Result<()> {
        if self.fsb_capable(index) {
            Ok(())
        } else {
            Err(Error::Store {
                index,
                reason: "timer has no FSB delivery",
            })
        }
    }

    fn update_config(&mut self, n: u32, set: u64, clear: u64) {
        let v = self.regs.read64(field::config(n));
        self.regs.write64(field::config(n), (v | set) & !clear);
    }
}

impl<R: HpetRegs + 'static> MsgStore for HpetStore<R> {
    fn name(&self) -> &'static str {
        "hpet-fsb"
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps {
            max_index: self.timers,
            per_vector_mask: true,
            alloc_after_enable: true,
            write_masked: true,
            block_only: false,
            any_index: false,
        }
    }

    fn prepare(&mut self, index: u32, _cookie: Option<u64>) -> Result<()> {
        self.timer(index)?;
        // FSB delivery on, interrupts off until unmasked.
        self.update_config(index, field::FSB_EN, field::INT_ENB);
        Ok(())
    }

    fn release(&mut self, index: u32) {
        if self.timer(index).is_ok() {
            self.update_config(index, 0, field::FSB_EN | field::INT_ENB);
        }
    }

    fn write_msg(&mut self, index: u32, msg: &Msg) -> Result<()> {
        self.timer(index)?;
        let address = u32::try_from(msg.address).map_err(|_| Error::Store {
            index,
            reason: "the FSB route holds a 32-bit address",
        })?;
        self.regs.write64(
            field::fsb_route(index),
            u64::from(address) << 32 | u64::from(msg.data),
        );
        Ok(())
    }

    fn mask(&mut self, index: u32) -> Result<()> {
        self.timer(index)?;
        self.update_config(index, 0, field::INT_ENB);
        Ok(())
    }

    fn unmask(&mut self, index: u32) -> Result<()> {
        self.timer(index)?;
        self.update_config(index, field::INT_ENB, 0);
        Ok(())
    }
}

/// An HPET register block in memory (a model for tests and simulators): `timers` timers, the
/// first `fsb` of them FSB capable.
#[derive(Clone, Debug)]
pub struct HpetModel {
    /// Registers by offset / 8 (0x00..0x100 + 0x20 * timers).
    pub regs: alloc::vec::Vec<u64>,
}

impl HpetModel {
    /// A model with `timers` timers (1..=32), the first `fsb` FSB capable.
    pub fn new(timers: u32, fsb: u32) -> Self {
        let timers = timers.clamp(1, 32);
        let mut regs = alloc::vec![0u64; (field::config(timers) / 8) as usize];
        regs[0] = u64::from(timers - 1) << field::NUM_TIM_SHIFT | 1;
        for n in 0..fsb.min(timers) {
            regs[(field::config(n) / 8) as usize] = field::FSB_CAP;
        }
        HpetModel { regs }
    }

    /// The FSB route of timer `n` as (address, data); zero past the model's timers (a
    /// register that does not exist reads as zero, as through [`HpetRegs::read64`]).
    pub fn route(&self, n: u32) -> (u32, u32) {
        let v = self.reg(0x110, n);
        ((v >> 32) as u32, v as u32)
    }

    /// Timer `n`'s configuration register; zero past the model's timers.
    pub fn config(&self, n: u32) -> u64 {
        self.reg(0x100, n)
    }

    /// The register at `base + 0x20 n` (without overflow for any `n`).
    fn reg(&self, base: u64, n: u32) -> u64 {
        let offset = base + 0x20 * u64::from(n);
        usize::try_from(offset / 8)
            .ok()
            .and_then(|i| self.regs.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// The message timer `n` sends when it fires, if enabled for FSB delivery.
    pub fn fire(&self, n: u32) -> Option<Msg> {
        let c = self.config(n);
        let on = c & field::FSB_EN != 0 && c & field::INT_ENB != 0;
        on.then(|| {
            let (a, d) = self.route(n);
            Msg::new(u64::from(a), d)
        })
    }
}

impl HpetRegs for HpetModel {
    fn read64(&mut self, offset: u32) -> u64 {
        self.regs.get((offset / 8) as usize).copied().unwrap_or(0)
    }

    fn write64(&mut self, offset: u32, value: u64) {
        let cap_reg = offset >= 0x100 && (offset - 0x100) % 0x20 == 0;
        if let Some(r) = self.regs.get_mut((offset / 8) as usize) {
            *r = if cap_reg {
                (*r & field::FSB_CAP) | (value & !field::FSB_CAP)
            } else {
                value
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // HPET 1.0a: timer 2's FSB route register is at 0x110 + 0x40 = 0x150; address in bits 63:32,
    // value in bits 31:0. A message (0xFEE01000, 0x45) is the register value
    // 0xFEE0_1000_0000_0045.
    #[test]
    fn hpet_fsb_route_layout() {
        assert_eq!(field::fsb_route(2), 0x150);
        assert_eq!(field::config(2), 0x140);
        let mut s = HpetStore::new(HpetModel::new(3, 3));
        assert_eq!(s.caps().max_index, 3);
        s.prepare(2, None).unwrap();
        s.write_msg(2, &Msg::new(0xFEE0_1000, 0x45)).unwrap();
        assert_eq!(s.regs().read64(0x150), 0xFEE0_1000_0000_0045);
        assert_eq!(s.regs().fire(2), None, "masked until unmasked");
        s.unmask(2).unwrap();
        assert_eq!(s.regs().fire(2), Some(Msg::new(0xFEE0_1000, 0x45)));
        assert_eq!(
            s.regs().config(2),
            field::FSB_CAP | field::FSB_EN | field::INT_ENB
        );
        s.release(2);
        assert_eq!(s.regs().config(2), field::FSB_CAP);
    }

    #[test]
    fn timers_without_fsb_and_wide_addresses_are_refused() {
        let mut s = HpetStore::new(HpetModel::new(3, 1));
        assert!(s.prepare(1, None).is_err());
        assert!(s.write_msg(0, &Msg::new(0x1_FEE0_0000, 0)).is_err());
        assert!(s.mask(7).is_err());
    }
}
