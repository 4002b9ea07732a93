//! A first-fit allocator of number ranges (irq numbers, store indices, remap-table handles).
//!
//! Free space is kept as a map of disjoint, coalesced intervals, so the cost of an operation
//! grows with the number of holes, not with the size of the space: a space of a million irq
//! numbers that is mostly allocated in a few blocks stays a handful of map entries.

use alloc::collections::BTreeMap;

/// Free-range bookkeeping over `0..limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeAllocator {
    /// start -> end (exclusive) of every free interval; intervals never touch.
    free: BTreeMap<u32, u32>,
    limit: u32,
    free_count: u32,
}

/// Why [`RangeAllocator::release`] refused a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseError {
    /// Part of the range lies at or beyond the limit.
    OutOfRange,
    /// Part of the range is already free (a double free).
    NotAllocated {
        /// The first number of the range that was already free.
        first_free: u32,
    },
}

impl RangeAllocator {
    /// An allocator with every number of `0..limit` free.
    pub fn new(limit: u32) -> Self {
        let mut free = BTreeMap::new();
        if limit > 0 {
            free.insert(0, limit);
        }
        RangeAllocator {
            free,
            limit,
            free_count: limit,
        }
    }

    /// The size of the space.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// How many numbers are free.
    pub fn free_count(&self) -> u32 {
        self.free_count
    }

    /// How many numbers are allocated.
    pub fn used_count(&self) -> u32 {
        self.limit - self.free_count
    }

    /// True when `n` is free.
    pub fn is_free(&self, n: u32) -> bool {
        self.free
            .range(..=n)
            .next_back()
            .is_some_and(|(_, &end)| n < end)
    }

    /// Allocates the lowest block of `count` numbers whose start is a multiple of `align`
    /// (`align` must be a power of two; 0 or 1 means unaligned).
    pub fn alloc(&mut self, count: u32, align: u32) -> Option<u32> {
        if count == 0 {
            return None;
        }
        let align = align.max(1);
        if !align.is_power_of_two() {
            return None;
        }
        let start = self.free.iter().find_map(|(&s, &e)| {
            let a = s.checked_add(align - 1)? & !(align - 1);
            (a.checked_add(count)? <= e).then_some(a)
        })?;
        self.take(start, count);
        Some(start)
    }

    /// Allocates exactly `start..start + count`; false (and nothing changed) unless all of it is
    /// free.
    pub fn reserve(&mut self, start: u32, count: u32) -> bool {
        let Some(end) = start.checked_add(count) else {
            return false;
        };
        let fits = count > 0
            && self
                .free
                .range(..=start)
                .next_back()
                .is_some_and(|(_, &e)| end <= e);
        if fits {
            self.take(start, count);
        }
        fits
    }

    /// Removes `start..start+count` from the free interval that contains it.
    fn take(&mut self, start: u32, count: u32) {
        let (&s, &e) = self
            .free
            .range(..=start)
            .next_back()
            .expect("caller checked the range is free");
        self.free.remove(&s);
        if s < start {
            self.free.insert(s, start);
        }
        if start + count < e {
            self.free.insert(start + count, e);
        }
        self.free_count -= count;
    }

    /// Returns `start..start + count` to the free space; nothing changes on error.
    pub fn release(&mut self, start: u32, count: u32) -> Result<(), ReleaseError> {
        let end = start
            .checked_add(count)
            .filter(|&e| e <= self.limit)
            .ok_or(ReleaseError::OutOfRange)?;
        if count == 0 {
            return Ok(());
        }
        let before = self.free.range(..end).next_back().map(|(&s, &e)| (s, e));
        if let Some((s, e)) = before {
            if e > start {
                return Err(ReleaseError::NotAllocated {
                    first_free: s.max(start),
                });
            }
        }
        let (mut new_start, mut new_end) = (start, end);
        if let Some((s, e)) = before.filter(|&(_, e)| e == start) {
            self.free.remove(&s);
            new_start = s;
            debug_assert_eq!(e, start);
        }
        if let Some(e) = self.free.remove(&end) {
            new_end = e;
        }
        self.free.insert(new_start, new_end);
        self.free_count += count;
        Ok(())
    }

    /// The free intervals, lowest first, as `(start, end_exclusive)`.
    pub fn free_ranges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.free.iter().map(|(&s, &e)| (s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn aligned_blocks_first_fit_and_coalescing() {
        let mut r = RangeAllocator::new(64);
        assert_eq!(r.alloc(1, 1), Some(0));
        assert_eq!(r.alloc(4, 4), Some(4));
        assert_eq!(r.alloc(2, 1), Some(1));
        assert_eq!(r.alloc(8, 8), Some(8));
        assert_eq!(r.free_count(), 64 - 15);
        assert!(r.reserve(3, 1));
        assert!(!r.reserve(3, 1));
        assert_eq!(r.release(0, 16), Ok(()));
        assert_eq!(r.free_ranges().collect::<Vec<_>>(), [(0, 64)]);
        assert_eq!(
            r.release(4, 1),
            Err(ReleaseError::NotAllocated { first_free: 4 })
        );
        assert_eq!(r.release(60, 8), Err(ReleaseError::OutOfRange));
        assert_eq!(r.alloc(65, 1), None);
        assert_eq!(r.alloc(3, 3), None, "alignment must be a power of two");
        assert_eq!(r, RangeAllocator::new(64));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u32, u32),
        Reserve(u32, u32),
        Release(u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u32..9, prop::sample::select(alloc::vec![1u32, 2, 4, 8]))
                .prop_map(|(c, a)| Op::Alloc(c, a)),
            (0u32..130, 1u32..6).prop_map(|(s, c)| Op::Reserve(s, c)),
            (0u32..130, 1u32..6).prop_map(|(s, c)| Op::Release(s, c)),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_set_model(ops in proptest::collection::vec(op(), 1..80)) {
            let limit = 128;
            let mut r = RangeAllocator::new(limit);
            let mut used = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Alloc(c, a) => {
                        let expect = (0..limit).step_by(a as usize)
                            .find(|&s| s + c <= limit && (s..s + c).all(|n| !used.contains(&n)));
                        prop_assert_eq!(r.alloc(c, a), expect);
                        if let Some(s) = expect { used.extend(s..s + c); }
                    }
                    Op::Reserve(s, c) => {
                        let ok = s + c <= limit && (s..s + c).all(|n| !used.contains(&n));
                        prop_assert_eq!(r.reserve(s, c), ok);
                        if ok { used.extend(s..s + c); }
                    }
                    Op::Release(s, c) => {
                        let ok = s + c <= limit && (s..s + c).all(|n| used.contains(&n));
                        prop_assert_eq!(r.release(s, c).is_ok(), ok);
                        if ok { for n in s..s + c { used.remove(&n); } }
                    }
                }
                prop_assert_eq!(r.used_count() as usize, used.len());
                for n in 0..limit { prop_assert_eq!(r.is_free(n), !used.contains(&n)); }
            }
        }
    }
}
