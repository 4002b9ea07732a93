//! Per-irq operations (activate, deactivate, move, mask) and CPU hotplug.

use crate::system::{device_domain, locate, Config, IrqSystem, OfflineReport};
use crate::table::{Delivery, IrqRef};
use crate::walk::{activate_irq, chain_of, deactivate_irq, move_irq, node};
use crate::{CpuMask, Error, Irq, Msg, Result};
use alloc::vec::Vec;
use lock_api::RawMutex;

impl<R: RawMutex> IrqSystem<R> {
    // ---- per-irq operations ----

    /// Activates an allocated, inactive irq (after an allocation with `activate: false`).
    pub fn activate(&self, irq: Irq) -> Result<()> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let (d, dd) = locate(&cfg.irqs, &mut cfg.devices, irq)?;
        if dd.descs[&d.index].active {
            return Ok(());
        }
        match self.start(cfg, irq) {
            // A pool ran dry: reclaim what has passed its grace and try once more.
            Err(e) if e.is_exhaustion() && self.reclaim_in(cfg) => self.start(cfg, irq),
            r => r,
        }
    }

    /// Activates `irq` through its hierarchy and records where it now arrives; on error
    /// nothing changed.
    fn start(&self, cfg: &mut Config, irq: Irq) -> Result<()> {
        let (d, dd) = locate(&cfg.irqs, &mut cfg.devices, irq)?;
        let chain = chain_of(&cfg.domains, dd.parent);
        let cpu = activate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, d.index)?;
        let data = cfg.irqs.get_mut(&irq).expect("located above");
        data.effective_cpu = cpu;
        data.shut_down = false;
        Ok(())
    }

    /// Deactivates an irq: its slot is masked and cleared, its resources stay reserved.
    pub fn deactivate(&self, irq: Irq) -> Result<()> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let (d, dd) = locate(&cfg.irqs, &mut cfg.devices, irq)?;
        if dd.descs[&d.index].active {
            let chain = chain_of(&cfg.domains, dd.parent);
            deactivate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, d.index);
        }
        let data = cfg.irqs.get_mut(&irq).expect("checked above");
        data.effective_cpu = None;
        // Deactivated on purpose: a CPU coming back does not restart it.
        data.shut_down = false;
        Ok(())
    }

    /// Moves an active irq to the CPUs of `mask` (restricted to online CPUs).
    pub fn set_affinity(&self, irq: Irq, mask: &CpuMask) -> Result<()> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let target = cfg.masks.intern(mask.and(&cfg.online));
        if target.is_empty() {
            return Err(Error::EmptyAffinity);
        }
        match self.move_counted(cfg, irq, &target) {
            Err(e) if e.is_exhaustion() && self.reclaim_in(cfg) => {
                self.move_counted(cfg, irq, &target)?
            }
            r => r?,
        }
        let d = cfg.irqs[&irq];
        device_domain(&mut cfg.devices, d.device, d.slot)?
            .descs
            .get_mut(&d.index)
            .expect("allocated irq has a descriptor")
            .affinity = mask.clone();
        Ok(())
    }

    /// Masks an irq at its source (or in software, for stores without per-vector masks).
    pub fn mask(&self, irq: Irq) -> Result<()> {
        self.set_masked(irq, true).map(|_| ())
    }

    /// Unmasks an irq. An interrupt latched in software while masked is delivered now, on the
    /// irq's CPU; a store with per-vector masks delivers its own pending bit.
    pub fn unmask(&self, irq: Irq) -> Result<Option<Delivery>> {
        let replay_on = self.set_masked(irq, false)?;
        // Replayed after the lock is dropped, through the allocation seen under it: if the irq
        // is freed meanwhile, the replay is stale rather than the number's next owner's.
        Ok(replay_on.map(|(r, cpu)| self.table.deliver_ref(r, cpu)))
    }

    /// Returns the allocation and the CPU to replay a latched interrupt on, after an unmask.
    fn set_masked(&self, irq: Irq, masked: bool) -> Result<Option<(IrqRef, u32)>> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let (d, dd) = locate(&cfg.irqs, &mut cfg.devices, irq)?;
        let caps = dd.store.caps();
        let desc = dd
            .descs
            .get_mut(&d.index)
            .expect("allocated irq has a descriptor");
        if desc.masked == masked {
            return Ok(None);
        }
        if caps.per_vector_mask && desc.active {
            match masked {
                true => dd.store.mask(d.index)?,
                false => dd.store.unmask(d.index)?,
            }
        }
        desc.masked = masked;
        let chain = chain_of(&cfg.domains, dd.parent);
        for &id in &chain {
            let dom = node(&mut cfg.domains, id);
            match masked {
                true => dom.mask(irq),
                false => dom.unmask(irq),
            }
        }
        if caps.per_vector_mask {
            return Ok(None);
        }
        self.table.set_soft_masked(irq, masked);
        Ok(match masked {
            false if self.table.take_pending(irq) => {
                d.effective_cpu.map(|cpu| (self.table.irq_ref(irq), cpu))
            }
            _ => None,
        })
    }

    /// The message the hierarchy composes for `irq` now (what its store slot must hold).
    pub fn compose_msg(&self, irq: Irq) -> Result<Msg> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let (_, dd) = locate(&cfg.irqs, &mut cfg.devices, irq)?;
        let chain = chain_of(&cfg.domains, dd.parent);
        let mut composed = None;
        for &id in chain.iter().rev() {
            let dom = node(&mut cfg.domains, id);
            composed = Some(
                dom.compose_msg(irq, composed.as_ref())
                    .ok_or(Error::NotActive(irq))?,
            );
        }
        Ok(composed.expect("a chain has at least one domain").msg)
    }

    // ---- CPU hotplug ----

    /// Takes `cpu` offline: irqs targeting it move to another CPU of their affinity (or of the
    /// machine, when none is left); managed irqs with no CPU left are shut down. The domains
    /// hear of it first, so that nothing new is placed on the CPU. If an irq cannot move, every
    /// step already taken is undone and the CPU stays online.
    pub fn cpu_offline(&self, cpu: u32) -> Result<OfflineReport> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        if !cfg.online.contains(cpu) {
            return Ok(OfflineReport::default());
        }
        let remaining = cfg.online.without(cpu);
        if remaining.is_empty() {
            return Err(Error::EmptyAffinity);
        }
        for n in cfg.domains.iter_mut().flatten() {
            n.domain.cpu_offline(cpu);
        }
        let victims: Vec<Irq> = cfg
            .irqs
            .iter()
            .filter(|(_, d)| d.effective_cpu == Some(cpu))
            .map(|(&irq, _)| irq)
            .collect();
        let mut report = OfflineReport::default();
        for irq in victims {
            if let Err(e) = self.evacuate(cfg, irq, &remaining, &mut report) {
                self.undo_offline(cfg, cpu, &report);
                return Err(e);
            }
        }
        cfg.online = remaining;
        Ok(report)
    }

    /// Moves one irq off the CPU going away, or shuts it down when it is managed and has no CPU left.
    fn evacuate(
        &self,
        cfg: &mut Config,
        irq: Irq,
        remaining: &CpuMask,
        report: &mut OfflineReport,
    ) -> Result<()> {
        let (d, dd) = locate(&cfg.irqs, &mut cfg.devices, irq)?;
        let desc = &dd.descs[&d.index];
        let target = cfg.masks.intern(desc.affinity.and(remaining));
        if desc.managed && target.is_empty() {
            let chain = chain_of(&cfg.domains, dd.parent);
            deactivate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, d.index);
            let data = cfg.irqs.get_mut(&irq).expect("victim exists");
            data.effective_cpu = None;
            data.shut_down = true;
            report.shut_down.push(irq);
            return Ok(());
        }
        // An affinity with no CPU left is broken: the irq goes anywhere online, as on Linux.
        let target = if target.is_empty() {
            remaining.clone()
        } else {
            target
        };
        match self.move_counted(cfg, irq, &target) {
            Err(_) if &target != remaining => self.move_counted(cfg, irq, remaining)?,
            other => other?,
        }
        report.moved.push(irq);
        Ok(())
    }

    /// Moves `irq` to `target` and folds the per-CPU counts of the CPUs it left (see
    /// [`IrqTable`](crate::IrqTable)'s docs).
    fn move_counted(&self, cfg: &mut Config, irq: Irq, target: &CpuMask) -> Result<()> {
        move_irq(cfg, irq, target)?;
        self.table
            .fold_counts(irq, cfg.irqs.get(&irq).and_then(|d| d.effective_cpu));
        Ok(())
    }

    /// Puts back what a failed [`IrqSystem::cpu_offline`] did, newest first.
    fn undo_offline(&self, cfg: &mut Config, cpu: u32, report: &OfflineReport) {
        for n in cfg.domains.iter_mut().flatten() {
            n.domain.cpu_online(cpu);
        }
        for &irq in report.moved.iter().rev() {
            // Whatever was released on `cpu` is free again, so the way back is open.
            let _ = self.move_counted(cfg, irq, &CpuMask::single(cpu));
        }
        for &irq in report.shut_down.iter().rev() {
            let _ = self.start(cfg, irq);
        }
    }

    /// Brings `cpu` online and restarts the managed irqs that were shut down for lack of it;
    /// returns those that restarted.
    pub fn cpu_online(&self, cpu: u32) -> Result<Vec<Irq>> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        if cpu >= cfg.nr_cpus {
            return Err(Error::EmptyAffinity);
        }
        cfg.online = cfg.online.with(cpu);
        for n in cfg.domains.iter_mut().flatten() {
            n.domain.cpu_online(cpu);
        }
        let sleeping: Vec<Irq> = cfg
            .irqs
            .iter()
            .filter(|(_, d)| d.shut_down)
            .map(|(&irq, _)| irq)
            .collect();
        let mut restarted = Vec::new();
        for irq in sleeping {
            let (d, dd) = locate(&cfg.irqs, &mut cfg.devices, irq)?;
            if !dd.descs[&d.index].affinity.contains(cpu) {
                continue;
            }
            // An irq that cannot restart now stays shut down (visible in `irq_info`) and is
            // tried again when one of its CPUs comes online; the others still restart.
            if self.start(cfg, irq).is_ok() {
                restarted.push(irq);
            }
        }
        Ok(restarted)
    }
}
