//! The allocation API: ranges, a given index after init, any free index, grow, shrink, free.

use crate::domain::{AllocRequest, IrqRequest};
use crate::system::{device_domain, AllocOpts, Config, IrqData, IrqSystem};
use crate::walk::{activate_irq, chain_of, deactivate_irq, node};
use crate::{CpuMask, DeviceId, Error, Irq, Msg, MsiDesc, Result, SlotId, Unsupported};
use alloc::vec::Vec;
use lock_api::RawMutex;

/// Which indices an allocation asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Indices {
    Range { first: u32, count: u32 },
    Any,
}

impl<R: RawMutex> IrqSystem<R> {
    // ---- the allocation API ----

    /// Allocates indices `first..first + count` (the classic "N vectors at init").
    pub fn alloc_range(
        &self,
        device: DeviceId,
        slot: SlotId,
        first: u32,
        count: u32,
        opts: &AllocOpts,
    ) -> Result<Vec<Irq>> {
        let got = self.alloc(device, slot, Indices::Range { first, count }, opts)?;
        Ok(got.into_iter().map(|(_, irq)| irq).collect())
    }

    /// Allocates exactly `index`, also after the store is enabled (dynamic MSI-X: the entry a
    /// guest just unmasked), with every other index left as it is.
    pub fn alloc_at(
        &self,
        device: DeviceId,
        slot: SlotId,
        index: u32,
        opts: &AllocOpts,
    ) -> Result<Irq> {
        let got = self.alloc(
            device,
            slot,
            Indices::Range {
                first: index,
                count: 1,
            },
            opts,
        )?;
        Ok(got[0].1)
    }

    /// Allocates the lowest free index (IMS), returning it with its irq.
    pub fn alloc_any(
        &self,
        device: DeviceId,
        slot: SlotId,
        opts: &AllocOpts,
    ) -> Result<(u32, Irq)> {
        Ok(self.alloc(device, slot, Indices::Any, opts)?[0])
    }

    /// Allocates every free index below `count` (grow a device to `count` vectors), all or
    /// nothing.
    pub fn grow_to(
        &self,
        device: DeviceId,
        slot: SlotId,
        count: u32,
        opts: &AllocOpts,
    ) -> Result<Vec<Irq>> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        let limit = dd.store.caps().max_index;
        if count > limit {
            return Err(Error::IndexOutOfRange {
                index: count - 1,
                limit,
            });
        }
        let missing: Vec<u32> = (0..count).filter(|i| dd.free.is_free(*i)).collect();
        let mut done = Vec::new();
        for index in missing {
            let one = Indices::Range {
                first: index,
                count: 1,
            };
            match self.alloc_in(cfg, device, slot, one, opts) {
                Ok(got) => done.push(got[0]),
                Err(e) => {
                    let indices: Vec<u32> = done.iter().map(|&(i, _)| i).collect();
                    self.free_in(cfg, device, slot, &indices)
                        .expect("freeing what this call allocated under the same lock");
                    return Err(e);
                }
            }
        }
        Ok(done.into_iter().map(|(_, irq)| irq).collect())
    }

    /// Frees every allocated index at or above `count` (shrink a device to `count` vectors).
    pub fn shrink_to(&self, device: DeviceId, slot: SlotId, count: u32) -> Result<u32> {
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        let indices: Vec<u32> = dd.descs.range(count..).map(|(&i, _)| i).collect();
        self.free_in(cfg, device, slot, &indices)?;
        Ok(indices.len() as u32)
    }

    fn alloc(
        &self,
        device: DeviceId,
        slot: SlotId,
        indices: Indices,
        opts: &AllocOpts,
    ) -> Result<Vec<(u32, Irq)>> {
        self.alloc_in(&mut self.config.lock(), device, slot, indices, opts)
    }

    /// Allocates; when a pool is empty (irq numbers, vectors, remapping entries), reclaims
    /// what has passed its grace (see [`crate::grace`]) and tries once more.
    fn alloc_in(
        &self,
        cfg: &mut Config,
        device: DeviceId,
        slot: SlotId,
        indices: Indices,
        opts: &AllocOpts,
    ) -> Result<Vec<(u32, Irq)>> {
        match self.alloc_once(cfg, device, slot, indices, opts) {
            Err(e) if e.is_exhaustion() && self.reclaim_in(cfg) => {
                self.alloc_once(cfg, device, slot, indices, opts)
            }
            r => r,
        }
    }

    fn alloc_once(
        &self,
        cfg: &mut Config,
        device: DeviceId,
        slot: SlotId,
        indices: Indices,
        opts: &AllocOpts,
    ) -> Result<Vec<(u32, Irq)>> {
        let meta = cfg
            .devices
            .get(&device)
            .ok_or(Error::UnknownDevice(device))?
            .meta;
        let online = cfg.online.clone();
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        let caps = dd.store.caps();

        // 1. Validate everything before touching anything.
        if dd.enabled() && !caps.alloc_after_enable {
            return Err(Error::NotSupported(Unsupported::AllocAfterEnable));
        }
        let (first, count) = match indices {
            Indices::Range { count: 0, .. } => return Err(Error::InvalidCount { count: 0 }),
            Indices::Range { first, count } => {
                let last = first.checked_add(count - 1).ok_or(Error::IndexOutOfRange {
                    index: first,
                    limit: caps.max_index,
                })?;
                if last >= caps.max_index {
                    return Err(Error::IndexOutOfRange {
                        index: last,
                        limit: caps.max_index,
                    });
                }
                if let Some(index) = (first..=last).find(|&i| !dd.free.is_free(i)) {
                    return Err(Error::IndexInUse { index });
                }
                (first, count)
            }
            Indices::Any if !caps.any_index => {
                return Err(Error::NotSupported(Unsupported::AnyIndex))
            }
            Indices::Any => {
                let index = dd
                    .free
                    .free_ranges()
                    .next()
                    .ok_or(Error::StoreFull {
                        limit: caps.max_index,
                    })?
                    .0;
                (index, 1)
            }
        };
        if caps.block_only && (first != 0 || !count.is_power_of_two()) {
            return Err(Error::NotSupported(Unsupported::BlockOnly));
        }
        // Intersected once per call; a mask the online CPUs hold whole stays the caller's
        // (shared) mask, and a cut-down one is shared with every irq cut down the same way.
        let affinity = match &opts.affinity {
            None => online.clone(),
            Some(a) => cfg.masks.intern(a.and(&online)),
        };
        if affinity.is_empty() {
            return Err(Error::EmptyAffinity);
        }

        // 2. Irq numbers.
        let irq0 = cfg
            .irq_numbers
            .alloc(count, 1)
            .ok_or(Error::NoIrqNumbers { requested: count })?;
        self.table.populate(Irq(irq0), count);
        let requests: Vec<IrqRequest> = (0..count)
            .map(|i| IrqRequest {
                irq: Irq(irq0 + i),
                generation: self.table.irq_ref(Irq(irq0 + i)).generation,
                index: first + i,
                affinity: match opts.spread {
                    true => CpuMask::single(nth_cpu(&affinity, i)),
                    false => affinity.clone(),
                },
                managed: opts.managed,
                level: dd.store.is_level(first + i),
            })
            .collect();
        let irqs: Vec<Irq> = requests.iter().map(|r| r.irq).collect();
        let release_numbers = |cfg: &mut Config| {
            cfg.irq_numbers
                .release(irq0, count)
                .expect("numbers were allocated above");
        };
        // Numbers whose irqs were activated (their message reached the store) are held for
        // their grace, like the resources of the levels below.
        let hold_numbers = |cfg: &mut Config| cfg.numbers_held.hold((irq0, count));

        // 3. Parent domains, root first; on failure free the levels done, top down.
        let parent = dd.parent;
        let chain = chain_of(&cfg.domains, parent);
        for (done, &id) in chain.iter().rev().enumerate() {
            let req = AllocRequest {
                device,
                meta: &meta,
                irqs: &requests,
                block: caps.block_only,
                store: caps,
                direct: id == parent,
            };
            if let Err(e) = node(&mut cfg.domains, id).alloc(&req) {
                for &id in chain[chain.len() - done..].iter() {
                    node(&mut cfg.domains, id).free(&irqs);
                }
                release_numbers(cfg);
                return Err(e);
            }
        }
        let free_domains = |cfg: &mut Config| {
            for &id in &chain {
                node(&mut cfg.domains, id).free(&irqs);
            }
        };

        // 4. The store: bind each index, enable the store on first use.
        let dd = device_domain(&mut cfg.devices, device, slot).expect("checked above");
        let was_enabled = dd.enabled();
        let mut prepared = 0;
        let mut store_result = Ok(());
        for r in &requests {
            store_result = dd.store.prepare(r.index, opts.cookie);
            if store_result.is_err() {
                break;
            }
            prepared += 1;
        }
        if store_result.is_ok() && !was_enabled {
            store_result = dd.store.enable();
        }
        if let Err(e) = store_result {
            for r in &requests[..prepared] {
                dd.store.release(r.index);
            }
            free_domains(cfg);
            release_numbers(cfg);
            return Err(e);
        }
        for r in &requests {
            dd.free.reserve(r.index, 1);
            dd.descs.insert(
                r.index,
                MsiDesc {
                    index: r.index,
                    irq: r.irq,
                    msg: Msg::ZERO,
                    affinity: r.affinity.clone(),
                    cookie: opts.cookie,
                    managed: opts.managed,
                    masked: false,
                    active: false,
                    meta,
                },
            );
            cfg.irqs.insert(
                r.irq,
                IrqData {
                    device,
                    slot,
                    index: r.index,
                    effective_cpu: None,
                    shut_down: false,
                },
            );
        }

        // 5. Activation; a failure takes the whole allocation back.
        if opts.activate {
            for (n, r) in requests.iter().enumerate() {
                let dd = device_domain(&mut cfg.devices, device, slot).expect("checked above");
                match activate_irq(&mut cfg.domains, &chain, dd, &self.table, r.irq, r.index) {
                    Ok(cpu) => cfg.irqs.get_mut(&r.irq).expect("inserted").effective_cpu = cpu,
                    Err(e) => {
                        for r in &requests[..n] {
                            deactivate_irq(
                                &mut cfg.domains,
                                &chain,
                                dd,
                                &self.table,
                                r.irq,
                                r.index,
                            );
                        }
                        self.forget(cfg, device, slot, &requests, !was_enabled);
                        free_domains(cfg);
                        if n == 0 {
                            release_numbers(cfg);
                        } else {
                            hold_numbers(cfg);
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(requests.iter().map(|r| (r.index, r.irq)).collect())
    }

    /// Drops the descriptors of `requests` and releases their store slots (domains untouched).
    fn forget(
        &self,
        cfg: &mut Config,
        device: DeviceId,
        slot: SlotId,
        requests: &[IrqRequest],
        disable: bool,
    ) {
        let dd = device_domain(&mut cfg.devices, device, slot).expect("device domain exists");
        for r in requests {
            dd.descs.remove(&r.index);
            dd.free
                .release(r.index, 1)
                .expect("index was reserved by this allocation");
            dd.store.release(r.index);
            cfg.irqs.remove(&r.irq);
            self.table.reset(r.irq);
        }
        if disable && !dd.enabled() {
            dd.store.disable();
        }
    }

    /// Frees one index: quiesce, deactivate, free every level; the irq number (and what the
    /// levels below held for it) goes back to its pool after its grace (see [`crate::grace`]).
    pub fn free_index(&self, device: DeviceId, slot: SlotId, index: u32) -> Result<()> {
        self.free_in(&mut self.config.lock(), device, slot, &[index])
    }

    /// Frees `first..first + count`; every index of the range must be allocated.
    pub fn free_range(&self, device: DeviceId, slot: SlotId, first: u32, count: u32) -> Result<()> {
        if count == 0 {
            return Err(Error::InvalidCount { count });
        }
        let mut guard = self.config.lock();
        let cfg = &mut *guard;
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        let last = first.saturating_add(count - 1);
        // Collect from the descriptors, never from the range: `count` comes from the caller.
        let indices: Vec<u32> = dd.descs.range(first..=last).map(|(&i, _)| i).collect();
        if indices.len() as u64 != u64::from(count) {
            let missing = (first..=last)
                .zip(
                    indices
                        .iter()
                        .copied()
                        .map(Some)
                        .chain(core::iter::repeat(None)),
                )
                .find(|&(want, have)| have != Some(want))
                .map_or(first, |(want, _)| want);
            return Err(Error::NotAllocated { index: missing });
        }
        self.free_in(cfg, device, slot, &indices)
    }

    /// Frees every index of the device domain; returns how many there were.
    pub fn free_all(&self, device: DeviceId, slot: SlotId) -> Result<u32> {
        self.shrink_to(device, slot, 0)
    }

    pub(crate) fn free_in(
        &self,
        cfg: &mut Config,
        device: DeviceId,
        slot: SlotId,
        indices: &[u32],
    ) -> Result<()> {
        let dd = device_domain(&mut cfg.devices, device, slot)?;
        let caps = dd.store.caps();
        if let Some(&index) = indices.iter().find(|i| !dd.descs.contains_key(i)) {
            return Err(Error::NotAllocated { index });
        }
        // Stores that cannot change while enabled (classic MSI) are only freed as a whole.
        if !caps.alloc_after_enable && indices.len() != dd.descs.len() {
            return Err(Error::NotSupported(Unsupported::AllocAfterEnable));
        }
        let chain = chain_of(&cfg.domains, dd.parent);
        let mut requests = Vec::with_capacity(indices.len());
        for &index in indices {
            let desc = &dd.descs[&index];
            if desc.active {
                let irq = desc.irq;
                deactivate_irq(&mut cfg.domains, &chain, dd, &self.table, irq, index);
            }
            let desc = &dd.descs[&index];
            requests.push(IrqRequest {
                irq: desc.irq,
                generation: self.table.irq_ref(desc.irq).generation,
                index,
                affinity: desc.affinity.clone(),
                managed: desc.managed,
                level: dd.store.is_level(index),
            });
        }
        let irqs: Vec<Irq> = requests.iter().map(|r| r.irq).collect();
        for &id in &chain {
            node(&mut cfg.domains, id).free(&irqs);
        }
        self.forget(cfg, device, slot, &requests, true);
        for irq in irqs {
            // A write the device sent before the free may still be in flight, and a delivery
            // path may name the number alone (a level-triggered pin's end of interrupt, a
            // simulator's record): the number waits for its grace too.
            cfg.numbers_held.hold((irq.0, 1));
        }
        Ok(())
    }
}

/// The `n`-th CPU of `mask`, wrapping around.
fn nth_cpu(mask: &CpuMask, n: u32) -> u32 {
    let n = n % mask.weight();
    match mask.as_range() {
        Some((first, _)) => first + n,
        None => mask.iter().nth(n as usize).expect("n < weight"),
    }
}
