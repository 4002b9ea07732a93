//! Where the most available vectors are: the index behind [`VectorMatrix`](crate::VectorMatrix).
//!
//! Every CPU has a key, its available vector count (-1 when offline). The question the matrix
//! asks on every allocation is Linux's: "the lowest-numbered CPU of this mask with the strictly
//! largest key". Linux answers it by scanning the mask. [`CpuIndex`] keeps the keys twice so
//! that no mask shape needs a scan:
//!
//! 1. **A max tree over CPU numbers.** A single CPU, a node, two nodes and the whole machine are
//!    ranges `a..=b`: one O(log n) query each.
//! 2. **One bitmap per key value** (the online CPUs holding that many available vectors), each
//!    with a summary bit per non-zero word. For an irregular mask (every 2nd CPU, a housekeeping
//!    set, a random half) the answer is the first CPU of the highest level whose bitmap meets the
//!    mask, found by ANDing words from the top level down. A level that misses the mask costs
//!    one pass over its non-zero words. Keys stay within a few values of each other on a
//!    balanced machine, so a handful of levels is all a query visits; when the levels visited
//!    cost more than scanning the mask would (a small mask drained far below the rest of the
//!    machine), the query finishes with a scan of the mask over the packed keys, which is still
//!    less work per CPU than Linux's.
//!
//! An update (one CPU's key changes) moves one bit between two levels and fixes the tree path.
//! The whole machine is the first CPU of the highest non-empty level.
//!
//! Updates are applied lazily: a CPU whose key changed is only queued, once for the tree and
//! once for the levels, and each queue is applied (reading the keys from the matrix) before the
//! next query that needs that structure: range queries the tree, whole-machine and irregular
//! queries the levels. A CPU that changes many times between two queries (a burst on one CPU)
//! costs one update; a workload that never asks for ranges never maintains the tree; single-CPU
//! masks, which the matrix answers from the CPU's own counts, need neither.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use genmsi::CpuMask;

/// The online CPUs whose key is one value.
#[derive(Clone, Default)]
struct Level {
    count: u32,
    /// Bit `c % 64` of word `c / 64` for CPU `c`; empty until the level is first used.
    words: Vec<u64>,
    /// Bit `w % 64` of word `w / 64` when `words[w]` is not zero.
    summary: Vec<u64>,
}

/// The CPU index (see the module docs).
/// Queue flag: the CPU waits in the tree's queue.
const IN_TREE_QUEUE: u8 = 1 << 0;
/// Queue flag: the CPU waits in the levels' queue.
const IN_LEVEL_QUEUE: u8 = 1 << 1;

#[derive(Clone)]
pub(crate) struct CpuIndex {
    nr: usize,
    /// CPUs the tree, and the levels, have not seen the current key of; per CPU, the queues
    /// it waits in (`IN_TREE_QUEUE`, `IN_LEVEL_QUEUE`).
    tree_queue: Vec<u32>,
    level_queue: Vec<u32>,
    queued: Vec<u8>,
    /// The key each CPU has in the levels.
    level_key: Vec<i32>,
    /// Max tree: leaves at `size..size + nr` hold the keys, padding leaves -1.
    size: usize,
    tree: Vec<i32>,
    /// `levels[k]`: the CPUs with key `k`, for `k` in `1..=max_key` (level 0 is never chosen).
    levels: Vec<Level>,
    /// The highest level with a CPU in it (0 when none).
    top: usize,
    /// The last irregular mask asked about (a clone: its bitmap cannot be freed and another
    /// mask take its address while held) and a level no CPU of it is above: the answer's key,
    /// raised by every key that has grown since.
    hint: Option<(CpuMask, usize)>,
}

impl fmt::Debug for CpuIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuIndex")
            .field("cpus", &self.nr)
            .field("top", &self.top)
            .finish()
    }
}

/// At most this many of a mask's non-zero words are listed for the level walk.
const FEW_WORDS: usize = 8;

/// The indices of `mask`'s non-zero words when there are at most [`FEW_WORDS`], and its CPU
/// count.
fn few_words(mask: &[u64]) -> (Option<([usize; FEW_WORDS], usize)>, usize) {
    // A plain sum, which the compiler vectorises; the listing below stops at the first word
    // past the few.
    let weight = mask.iter().map(|w| w.count_ones() as usize).sum();
    let (mut list, mut len) = ([0; FEW_WORDS], 0);
    for (w, _) in mask.iter().enumerate().filter(|(_, &word)| word != 0) {
        let Some(slot) = list.get_mut(len) else {
            return (None, weight);
        };
        *slot = w;
        len += 1;
    }
    (Some((list, len)), weight)
}

/// The running answer of a scan: the first CPU with the strictly largest positive key.
#[derive(Clone, Copy)]
struct Best {
    cpu: u32,
    key: i32,
}

impl Best {
    const NONE: Best = Best { cpu: 0, key: 0 };

    /// Takes `cpu` when its key is strictly larger: a select, not a branch (which CPU of a
    /// scan holds the most is not predictable, and a mispredicted branch per CPU costs more
    /// than the CPU's visit).
    #[inline(always)]
    fn offer(&mut self, cpu: u32, key: i32) {
        let take = key > self.key;
        self.key = if take { key } else { self.key };
        self.cpu = if take { cpu } else { self.cpu };
    }

    fn get(self) -> Option<u32> {
        (self.key > 0).then_some(self.cpu)
    }
}

/// Linux's scan of a listed mask (`cpus` ascending, as [`CpuMask::as_list`] gives them): the
/// first CPU below `nr` with the strictly largest positive key.
#[inline]
pub(crate) fn best_of_few(cpus: &[u16], nr: usize, key: impl Fn(u32) -> i32) -> Option<u32> {
    let mut best = Best::NONE;
    for &cpu in cpus {
        if usize::from(cpu) >= nr {
            break;
        }
        best.offer(u32::from(cpu), key(u32::from(cpu)));
    }
    best.get()
}

/// The Linux scan: the first CPU of `mask` (below `nr`) with the strictly largest positive key.
fn scan(mask: &[u64], nr: usize, key: impl Fn(usize) -> i32) -> Option<u32> {
    let mut best = Best::NONE;
    for (w, &word) in mask.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let cpu = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if cpu >= nr {
                return best.get();
            }
            best.offer(cpu as u32, key(cpu));
        }
    }
    best.get()
}

impl CpuIndex {
    /// `nr` CPUs with keys at most `max_key`, every one queued for its first update.
    pub(crate) fn new(nr: usize, max_key: u32) -> Self {
        let size = nr.next_power_of_two().max(1);
        CpuIndex {
            nr,
            tree_queue: (0..nr as u32).collect(),
            level_queue: (0..nr as u32).collect(),
            queued: vec![IN_TREE_QUEUE | IN_LEVEL_QUEUE; nr],
            level_key: vec![-1; nr],
            size,
            tree: vec![-1; 2 * size],
            levels: vec![Level::default(); max_key as usize + 1],
            top: 0,
            hint: None,
        }
    }

    /// Notes that the key of `cpu` (below `nr`) changed; the tree and the levels follow at
    /// the next query that needs them.
    #[inline]
    pub(crate) fn mark(&mut self, cpu: u32) {
        if self.queued[cpu as usize] != IN_TREE_QUEUE | IN_LEVEL_QUEUE {
            self.enqueue(cpu);
        }
    }

    /// Inline, not cold: on whole-machine and irregular workloads every allocation and free
    /// re-queues a CPU the last query flushed, so this runs on every operation there.
    #[inline]
    fn enqueue(&mut self, cpu: u32) {
        let q = &mut self.queued[cpu as usize];
        if *q & IN_TREE_QUEUE == 0 {
            self.tree_queue.push(cpu);
        }
        if *q & IN_LEVEL_QUEUE == 0 {
            self.level_queue.push(cpu);
        }
        *q = IN_TREE_QUEUE | IN_LEVEL_QUEUE;
    }

    /// Brings the tree up to date with `key`.
    fn flush_tree(&mut self, key: &impl Fn(u32) -> i32) {
        while let Some(cpu) = self.tree_queue.pop() {
            self.queued[cpu as usize] &= !IN_TREE_QUEUE;
            let mut i = self.size + cpu as usize;
            self.tree[i] = key(cpu);
            while i > 1 {
                i /= 2;
                let max = self.tree[2 * i].max(self.tree[2 * i + 1]);
                if self.tree[i] == max {
                    // The ancestors above hold maxima of unchanged values: nothing more to do.
                    break;
                }
                self.tree[i] = max;
            }
        }
    }

    /// Brings the levels up to date with `key`.
    fn flush_levels(&mut self, key: &impl Fn(u32) -> i32) {
        while let Some(cpu) = self.level_queue.pop() {
            self.queued[cpu as usize] &= !IN_LEVEL_QUEUE;
            let (c, new) = (cpu as usize, key(cpu));
            let old = self.level_key[c];
            if new > old {
                if let Some((_, bound)) = &mut self.hint {
                    *bound = (*bound).max(new as usize);
                }
            }
            if old != new {
                self.leave(c, old);
                self.enter(c, new);
                self.level_key[c] = new;
            }
        }
    }

    /// The level of CPUs with `key`, if `key` has one (CPUs with nothing available or
    /// offline are in none).
    fn level_mut(levels: &mut [Level], key: i32) -> Option<&mut Level> {
        let k = usize::try_from(key).ok().filter(|&k| k > 0)?;
        levels.get_mut(k)
    }

    fn enter(&mut self, cpu: usize, key: i32) {
        let words = self.nr.div_ceil(64);
        let Some(level) = Self::level_mut(&mut self.levels, key) else {
            return;
        };
        if level.words.is_empty() {
            level.words = vec![0; words];
            level.summary = vec![0; words.div_ceil(64)];
        }
        let w = cpu / 64;
        let word = &mut level.words[w];
        if *word == 0 {
            level.summary[w / 64] |= 1 << (w % 64);
        }
        *word |= 1 << (cpu % 64);
        level.count += 1;
        self.top = self.top.max(key as usize);
    }

    fn leave(&mut self, cpu: usize, key: i32) {
        let Some(level) = Self::level_mut(&mut self.levels, key) else {
            return;
        };
        let w = cpu / 64;
        let word = &mut level.words[w];
        *word &= !(1 << (cpu % 64));
        if *word == 0 {
            level.summary[w / 64] &= !(1 << (w % 64));
        }
        level.count -= 1;
        if level.count == 0 && key as usize == self.top {
            // The top level emptied: the next non-empty one below is the new top.
            self.top = self.levels[..self.top]
                .iter()
                .rposition(|l| l.count > 0)
                .unwrap_or(0);
        }
    }

    /// The lowest CPU of `mask` with the largest positive key, `key` giving the current keys.
    pub(crate) fn best(&mut self, mask: &CpuMask, key: impl Fn(u32) -> i32) -> Option<u32> {
        let best = match mask.as_range() {
            Some((0, hi)) if hi as usize + 1 >= self.nr => {
                self.flush_levels(&key);
                self.first_at_top()
            }
            Some((lo, hi)) => {
                self.flush_tree(&key);
                self.best_in(lo, hi)
            }
            // Listed masks: the matrix answers them itself; here for the index's own answer.
            None if mask.as_list().is_some() => {
                return best_of_few(mask.as_list().unwrap_or_default(), self.nr, &key);
            }
            None => {
                let all = mask.as_words()?;
                let words = &all[..all.len().min(self.nr.div_ceil(64))];
                self.flush_levels(&key);
                let same =
                    |(m, _): &(CpuMask, usize)| m.as_words().is_some_and(|w| core::ptr::eq(w, all));
                let from = match &self.hint {
                    Some(hint) if same(hint) => hint.1.min(self.top),
                    _ => self.top,
                };
                let best = self.best_in_words(words, from);
                let bound = best.map_or(0, |cpu| self.level_key[cpu as usize].max(0) as usize);
                match &mut self.hint {
                    Some(hint) if same(hint) => hint.1 = bound,
                    hint => *hint = Some((mask.clone(), bound)),
                }
                return best;
            }
        };
        best.filter(|&(key, _)| key > 0).map(|(_, cpu)| cpu)
    }

    /// The leftmost CPU of `lo..=hi` with the largest key, and that key.
    fn best_in(&self, lo: u32, hi: u32) -> Option<(i32, u32)> {
        let hi = (hi as usize).min(self.nr.checked_sub(1)?);
        if lo as usize > hi {
            return None;
        }
        let (mut l, mut r) = (self.size + lo as usize, self.size + hi + 1);
        let mut best: Option<(i32, usize)> = None;
        // At most one right-hand node per tree level (CPU numbers are below 2^17).
        let mut right = [0usize; 20];
        let mut nr = 0;
        let consider = |best: &mut Option<(i32, usize)>, node: usize| {
            if best.is_none_or(|(v, _)| self.tree[node] > v) {
                *best = Some((self.tree[node], node));
            }
        };
        while l < r {
            if l & 1 == 1 {
                consider(&mut best, l);
                l += 1;
            }
            if r & 1 == 1 {
                r -= 1;
                right[nr] = r;
                nr += 1;
            }
            l /= 2;
            r /= 2;
        }
        for &node in right[..nr].iter().rev() {
            consider(&mut best, node);
        }
        let (_, node) = best?;
        Some(self.descend(node))
    }

    /// The lowest CPU with the largest positive key, from the levels: (key, CPU).
    fn first_at_top(&self) -> Option<(i32, u32)> {
        let level = self.levels.get(self.top).filter(|_| self.top > 0)?;
        let s = level.summary.iter().position(|&w| w != 0)?;
        let w = s * 64 + level.summary[s].trailing_zeros() as usize;
        let cpu = w * 64 + level.words[w].trailing_zeros() as usize;
        Some((self.top as i32, cpu as u32))
    }

    /// The leftmost leaf under `node` holding `node`'s maximum: (key, CPU).
    fn descend(&self, mut node: usize) -> (i32, u32) {
        let value = self.tree[node];
        while node < self.size {
            node = if self.tree[2 * node] == value {
                2 * node
            } else {
                2 * node + 1
            };
        }
        (value, (node - self.size) as u32)
    }

    /// The lowest CPU of an irregular mask (as words, within the machine) with the largest
    /// positive key, no CPU of the mask having a key above level `from`. The level walk may
    /// look at an eighth as many words as the mask has CPUs before it gives up for a scan, so
    /// that a mask whose CPUs sit below many levels of other CPUs costs at most a little more
    /// than the scan would have.
    fn best_in_words(&self, mask: &[u64], from: usize) -> Option<u32> {
        let (few, weight) = few_words(mask);
        let mut budget = weight / 8 + 4;
        let mut spend = || {
            budget = budget.checked_sub(1)?;
            Some(())
        };
        let packed = |cpu: usize| self.level_key[cpu];
        for level in self.levels[1..=from].iter().rev() {
            if level.count == 0 {
                continue;
            }
            if let Some((list, len)) = few {
                // A mask in a few words (a node's cores and their siblings): visit those words
                // of each level, not all the level's.
                for &w in &list[..len] {
                    let hit = level.words[w] & mask[w];
                    if hit != 0 {
                        return Some((w * 64) as u32 + hit.trailing_zeros());
                    }
                    if spend().is_none() {
                        return scan(mask, self.nr, packed);
                    }
                }
                continue;
            }
            'level: for (s, &summary) in level.summary.iter().enumerate() {
                let mut bits = summary;
                while bits != 0 {
                    let w = s * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let Some(&m) = mask.get(w) else {
                        break 'level;
                    };
                    let hit = level.words[w] & m;
                    if hit != 0 {
                        return Some((w * 64) as u32 + hit.trailing_zeros());
                    }
                    if spend().is_none() {
                        return scan(mask, self.nr, packed);
                    }
                }
            }
        }
        None
    }

    /// Checks the tree and the levels against `key(cpu)` for every CPU once the queued updates
    /// are applied (on a copy).
    pub(crate) fn check(&self, key: impl Fn(u32) -> i32) -> Result<(), &'static str> {
        for (queue, flag) in [
            (&self.tree_queue, IN_TREE_QUEUE),
            (&self.level_queue, IN_LEVEL_QUEUE),
        ] {
            let flagged = self.queued.iter().filter(|&&q| q & flag != 0).count();
            if queue.len() != flagged || queue.iter().any(|&c| self.queued[c as usize] & flag == 0)
            {
                return Err("index update queue differs from its flags");
            }
        }
        let mut index = self.clone();
        index.flush_tree(&key);
        index.flush_levels(&key);
        index.check_flushed(key)
    }

    fn check_flushed(&self, key: impl Fn(u32) -> i32) -> Result<(), &'static str> {
        let mut counts = vec![0u32; self.levels.len()];
        for cpu in 0..self.nr {
            let k = key(cpu as u32);
            if self.tree[self.size + cpu] != k || self.level_key[cpu] != k {
                return Err("index leaf differs from the CPU's available count");
            }
            for (l, level) in self.levels.iter().enumerate().skip(1) {
                let member = level
                    .words
                    .get(cpu / 64)
                    .is_some_and(|w| w & (1 << (cpu % 64)) != 0);
                if member != (k == l as i32) {
                    return Err("index level membership differs from the CPU's count");
                }
            }
            if k > 0 {
                counts[k as usize] += 1;
            }
        }
        for i in 1..self.size {
            if self.tree[i] != self.tree[2 * i].max(self.tree[2 * i + 1]) {
                return Err("index tree node is not the max of its children");
            }
        }
        for (l, level) in self.levels.iter().enumerate().skip(1) {
            if level.count != counts[l] {
                return Err("index level count differs from its members");
            }
            for (w, &word) in level.words.iter().enumerate() {
                if (level.summary[w / 64] & (1 << (w % 64)) != 0) != (word != 0) {
                    return Err("index level summary differs from its words");
                }
            }
        }
        if self.top != counts.iter().rposition(|&c| c > 0).unwrap_or(0) {
            return Err("index top level is not the highest level in use");
        }
        Ok(())
    }
}

/// The running answer of a managed scan: the last CPU with the largest positive key.
#[derive(Clone, Copy, Default)]
struct LastFewest {
    cpu: u32,
    key: u16,
}

impl LastFewest {
    /// A select, as in [`Best::offer`]; `>=`: the last CPU wins a tie.
    #[inline(always)]
    fn offer(&mut self, cpu: u32, key: u16) {
        let take = key >= self.key && key > 0;
        self.key = if take { key } else { self.key };
        self.cpu = if take { cpu } else { self.cpu };
    }

    fn get(self) -> Option<u32> {
        (self.key > 0).then_some(self.cpu)
    }
}

/// Above the most managed vectors a CPU can have allocated (its 256 vectors).
const MANAGED_TOP: u32 = 257;

/// Where the next managed vector goes: Linux's choice (`matrix_find_best_cpu_managed`), the
/// *last* online CPU of the mask with the fewest managed vectors allocated, among those with a
/// reserved one left, found from one packed count per CPU instead of the CPUs' records.
///
/// Each CPU's key is `MANAGED_TOP - managed_allocated` while it is online with a spare
/// reservation, 0 otherwise: the pick is the last CPU with the largest key. Ranges (a node, the
/// machine) ask a [`CpuIndex`] that holds CPU `c` at position `nr - 1 - c`, so that its "lowest
/// position with the largest key" is that last CPU; listed and bitmap masks scan the packed keys
/// of their CPUs, branch-free.
#[derive(Clone, Debug)]
pub(crate) struct ManagedIndex {
    keys: Vec<u16>,
    index: CpuIndex,
}

impl ManagedIndex {
    /// `nr` CPUs, none with a spare reservation.
    pub(crate) fn new(nr: usize) -> Self {
        ManagedIndex {
            keys: vec![0; nr],
            index: CpuIndex::new(nr, MANAGED_TOP),
        }
    }

    /// The key of a CPU with these counts.
    pub(crate) fn key(online: bool, reserved: u32, allocated: u32) -> u16 {
        if online && reserved > allocated {
            (MANAGED_TOP - allocated) as u16
        } else {
            0
        }
    }

    /// Sets the key of `cpu` (below `nr`).
    #[inline]
    pub(crate) fn set(&mut self, cpu: u32, key: u16) {
        let slot = &mut self.keys[cpu as usize];
        if *slot != key {
            *slot = key;
            self.index.mark((self.keys.len() - 1) as u32 - cpu);
        }
    }

    /// The CPU of `mask` whose managed vector goes next.
    pub(crate) fn best(&mut self, mask: &CpuMask) -> Option<u32> {
        let last = self.keys.len().checked_sub(1)? as u32;
        let keys = &self.keys;
        if let Some((lo, hi)) = mask.as_range() {
            let hi = hi.min(last);
            if lo > hi {
                return None;
            }
            let reversed = CpuMask::range(last - hi, last - lo);
            let key = |p: u32| i32::from(keys[(last - p) as usize]);
            return self.index.best(&reversed, key).map(|p| last - p);
        }
        let mut best = LastFewest::default();
        if let Some(cpus) = mask.as_list() {
            for &cpu in cpus.iter().take_while(|&&c| u32::from(c) <= last) {
                best.offer(u32::from(cpu), keys[usize::from(cpu)]);
            }
        } else if let Some(words) = mask.as_words() {
            for (w, &word) in words.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let cpu = w as u32 * 64 + bits.trailing_zeros();
                    bits &= bits - 1;
                    if cpu > last {
                        return best.get();
                    }
                    best.offer(cpu, keys[cpu as usize]);
                }
            }
        }
        best.get()
    }

    /// Checks the packed keys against `key(cpu)` and the index against the packed keys.
    pub(crate) fn check(&self, key: impl Fn(u32) -> u16) -> Result<(), &'static str> {
        if (0..self.keys.len() as u32).any(|c| self.keys[c as usize] != key(c)) {
            return Err("managed key differs from the CPU's counts");
        }
        let last = self.keys.len().saturating_sub(1) as u32;
        self.index
            .check(|p| i32::from(self.keys[(last - p) as usize]))
    }
}
