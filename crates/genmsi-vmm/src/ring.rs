//! A bounded log for records fed from outside (a guest, a device, a fault): the newest
//! `capacity` records plus exact counters, so that no input rate grows host memory.
//!
//! 1. [`Ring::push`] keeps the record; when the ring is full the oldest goes and
//!    [`Ring::overwritten`] counts it.
//! 2. [`Ring::total`] counts every record ever pushed, kept or not.
//! 3. [`Ring::drain`] takes the kept records, oldest first; the counters stay.

use std::collections::VecDeque;

/// A bounded log (see the module docs).
#[derive(Clone, Debug)]
pub struct Ring<T> {
    records: VecDeque<T>,
    capacity: usize,
    total: u64,
    overwritten: u64,
}

impl<T> Ring<T> {
    /// A ring keeping at most `capacity` records (at least one). Memory is taken as records
    /// come, up to `capacity`.
    pub fn new(capacity: usize) -> Self {
        Ring {
            records: VecDeque::new(),
            capacity: capacity.max(1),
            total: 0,
            overwritten: 0,
        }
    }

    /// Records `record`, dropping the oldest if full.
    pub fn push(&mut self, record: T) {
        if self.records.len() == self.capacity {
            self.records.pop_front();
            self.overwritten += 1;
        }
        self.records.push_back(record);
        self.total += 1;
    }

    /// The kept records, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.records.iter()
    }

    /// Takes the kept records, oldest first.
    pub fn drain(&mut self) -> Vec<T> {
        self.records.drain(..).collect()
    }

    /// Records kept now.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Nothing kept now.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The most records kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records pushed since the ring was made.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Records dropped, oldest first, to keep the bound.
    pub fn overwritten(&self) -> u64 {
        self.overwritten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_counts_every_record() {
        let mut r = Ring::new(3);
        for k in 0..10 {
            r.push(k);
        }
        assert_eq!(r.len(), 3);
        assert_eq!((r.total(), r.overwritten()), (10, 7));
        assert_eq!(r.drain(), vec![7, 8, 9]);
        assert!(r.is_empty());
        assert_eq!(r.total(), 10, "counters survive a drain");
        assert_eq!(Ring::<u8>::new(0).capacity(), 1);
    }
}
