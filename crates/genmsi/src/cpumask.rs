//! CPU masks that cost the same few bytes on 64 CPUs and on 8,192.
//!
//! Most interrupts name one CPU, one node (a contiguous block of CPUs) or the whole machine,
//! so [`CpuMask`] stores those as a range of two numbers. A few scattered CPUs (an SMT sibling
//! pair, a handful of housekeeping CPUs: up to [`CpuMask::FEW`]) are listed inline. A set of
//! up to [`CpuMask::SMALL`] CPUs, and a sparse set of up to [`CpuMask::LIST`] (one CPU per node),
//! is a list of CPU numbers, which is then at most a few bytes bigger than its bitmap, or
//! smaller. Only other irregular sets keep a bitmap. Lists and bitmaps sit behind an [`Arc`],
//! so cloning a mask into every descriptor of a device shares one allocation instead of
//! copying a kilobyte per irq.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// The largest number of CPUs a mask can name (CPU numbers are `0..MAX_CPUS`).
pub const MAX_CPUS: u32 = 65_536;

/// A set of CPU numbers, compressed (see the module docs).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CpuMask(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Empty,
    /// `first..=last`; a single CPU has `first == last`.
    Range {
        first: u32,
        last: u32,
    },
    /// 2 to [`CpuMask::FEW`] CPUs, not contiguous: `cpus[..len]`, ascending (CPU numbers are
    /// below [`MAX_CPUS`] = 2^16).
    Few {
        len: u8,
        cpus: [u16; CpuMask::FEW],
    },
    /// More than [`CpuMask::FEW`] CPUs, not contiguous, ascending: at most [`CpuMask::SMALL`],
    /// or at most [`CpuMask::LIST`] and fewer than 4 per word of the bitmap (2 bytes a CPU,
    /// less than the bitmap's 8 a word).
    List(Arc<[u16]>),
    /// Any other irregular set: never contiguous (those normalise to the variants above), and
    /// the last word is never zero.
    Bits(Arc<[u64]>),
}

impl CpuMask {
    /// Irregular masks of at most this many CPUs are listed inline, without a bitmap.
    pub const FEW: usize = 8;
    /// Irregular masks of at most this many CPUs are listed, whatever their density: a scan of
    /// so few CPUs is the quickest way to answer anything about them.
    pub const SMALL: usize = 16;
    /// Sparse irregular masks of at most this many CPUs are listed (see the module docs).
    pub const LIST: usize = 256;

    /// The empty mask.
    pub const fn empty() -> Self {
        CpuMask(Repr::Empty)
    }

    /// The mask naming only `cpu`; empty when `cpu` is not below [`MAX_CPUS`] (like
    /// [`CpuMask::with`] and [`CpuMask::from_cpus`], which leave such numbers out), so an
    /// affinity built from it is refused as empty rather than naming a CPU that cannot exist.
    /// [`CpuMask::try_single`] tells the two apart.
    pub const fn single(cpu: u32) -> Self {
        if cpu < MAX_CPUS {
            CpuMask(Repr::Range {
                first: cpu,
                last: cpu,
            })
        } else {
            Self::empty()
        }
    }

    /// The mask naming only `cpu`, or `None` when `cpu` is not below [`MAX_CPUS`].
    pub const fn try_single(cpu: u32) -> Option<Self> {
        if cpu < MAX_CPUS {
            Some(CpuMask(Repr::Range {
                first: cpu,
                last: cpu,
            }))
        } else {
            None
        }
    }

    /// CPUs `first..=last` (empty when `first > last`); `last` is clamped below [`MAX_CPUS`].
    pub fn range(first: u32, last: u32) -> Self {
        let last = last.min(MAX_CPUS - 1);
        if first > last {
            CpuMask::empty()
        } else {
            CpuMask(Repr::Range { first, last })
        }
    }

    /// CPUs `0..nr_cpus`.
    pub fn first_n(nr_cpus: u32) -> Self {
        match nr_cpus {
            0 => CpuMask::empty(),
            n => CpuMask::range(0, n - 1),
        }
    }

    /// A mask from any CPU numbers (duplicates allowed); numbers at or above [`MAX_CPUS`] are
    /// ignored.
    pub fn from_cpus<I: IntoIterator<Item = u32>>(cpus: I) -> Self {
        let mut words: Vec<u64> = Vec::new();
        for cpu in cpus.into_iter().filter(|&c| c < MAX_CPUS) {
            let w = (cpu / 64) as usize;
            if words.len() <= w {
                words.resize(w + 1, 0);
            }
            words[w] |= 1 << (cpu % 64);
        }
        Self::from_words(words)
    }

    /// Normalises a bitmap into the cheapest representation.
    fn from_words(mut words: Vec<u64>) -> Self {
        while words.last() == Some(&0) {
            words.pop();
        }
        let weight: u32 = words.iter().map(|w| w.count_ones()).sum();
        if weight == 0 {
            return CpuMask::empty();
        }
        let first = first_bit(&words).expect("non-empty bitmap");
        let last = (words.len() as u32 - 1) * 64 + (63 - words.last().unwrap().leading_zeros());
        if last - first + 1 == weight {
            return CpuMask(Repr::Range { first, last });
        }
        // Below MAX_CPUS = 2^16: `from_cpus` leaves larger numbers out.
        let listed = || {
            words.iter().enumerate().flat_map(|(w, &word)| {
                (0..64)
                    .filter(move |b| word & (1 << b) != 0)
                    .map(move |b| (w * 64 + b) as u16)
            })
        };
        let weight = weight as usize;
        if weight <= Self::FEW {
            let mut cpus = [0; Self::FEW];
            for (slot, cpu) in cpus.iter_mut().zip(listed()) {
                *slot = cpu;
            }
            CpuMask(Repr::Few {
                len: weight as u8,
                cpus,
            })
        } else if weight <= Self::SMALL || (weight <= Self::LIST && weight < 4 * words.len()) {
            CpuMask(Repr::List(listed().collect()))
        } else {
            CpuMask(Repr::Bits(words.into()))
        }
    }

    /// True when no CPU is in the mask.
    pub fn is_empty(&self) -> bool {
        matches!(self.0, Repr::Empty)
    }

    /// The number of CPUs in the mask.
    pub fn weight(&self) -> u32 {
        match &self.0 {
            Repr::Empty => 0,
            Repr::Range { first, last } => last - first + 1,
            Repr::Few { len, .. } => u32::from(*len),
            Repr::List(l) => l.len() as u32,
            Repr::Bits(w) => w.iter().map(|w| w.count_ones()).sum(),
        }
    }

    /// True when `cpu` is in the mask.
    pub fn contains(&self, cpu: u32) -> bool {
        match &self.0 {
            Repr::Empty => false,
            Repr::Range { first, last } => (*first..=*last).contains(&cpu),
            Repr::Few { .. } | Repr::List(_) => {
                u16::try_from(cpu).is_ok_and(|cpu| self.list().binary_search(&cpu).is_ok())
            }
            Repr::Bits(w) => w
                .get((cpu / 64) as usize)
                .is_some_and(|word| word & (1 << (cpu % 64)) != 0),
        }
    }

    /// The lowest CPU in the mask.
    pub fn first(&self) -> Option<u32> {
        match &self.0 {
            Repr::Empty => None,
            Repr::Range { first, .. } => Some(*first),
            Repr::Few { .. } | Repr::List(_) => self.list().first().map(|&c| u32::from(c)),
            Repr::Bits(w) => first_bit(w),
        }
    }

    /// The highest CPU in the mask.
    pub fn last(&self) -> Option<u32> {
        match &self.0 {
            Repr::Empty => None,
            Repr::Range { last, .. } => Some(*last),
            Repr::Few { .. } | Repr::List(_) => self.list().last().map(|&c| u32::from(c)),
            Repr::Bits(w) => {
                Some((w.len() as u32 - 1) * 64 + (63 - w.last().unwrap().leading_zeros()))
            }
        }
    }

    /// The single CPU of a one-CPU mask.
    pub fn as_single(&self) -> Option<u32> {
        match self.0 {
            Repr::Range { first, last } if first == last => Some(first),
            _ => None,
        }
    }

    /// The mask as an inclusive range, when it is one (a single CPU, a node, the machine).
    pub fn as_range(&self) -> Option<(u32, u32)> {
        match self.0 {
            Repr::Range { first, last } => Some((first, last)),
            _ => None,
        }
    }

    /// The bitmap of an irregular mask (CPU `c` is bit `c % 64` of word `c / 64`; the last
    /// word is never zero); `None` for the empty mask, ranges and the listed masks of
    /// [`CpuMask::as_list`], which have no bitmap.
    pub fn as_words(&self) -> Option<&[u64]> {
        match &self.0 {
            Repr::Bits(w) => Some(w),
            _ => None,
        }
    }

    /// The CPUs of an irregular mask kept as a list, ascending: up to [`CpuMask::SMALL`] CPUs
    /// (inline up to [`CpuMask::FEW`]), or a sparse set of up to [`CpuMask::LIST`] (see the
    /// module docs); `None` for every other mask.
    pub fn as_list(&self) -> Option<&[u16]> {
        match &self.0 {
            Repr::Few { len, cpus } => cpus.get(..usize::from(*len)),
            Repr::List(l) => Some(l),
            _ => None,
        }
    }

    /// The CPUs of a listed mask; empty for every other mask.
    fn list(&self) -> &[u16] {
        self.as_list().unwrap_or(&[])
    }

    /// The lowest CPU of the mask that is `>= from`.
    pub fn next_from(&self, from: u32) -> Option<u32> {
        match &self.0 {
            Repr::Empty => None,
            Repr::Range { first, last } => {
                let c = from.max(*first);
                (c <= *last).then_some(c)
            }
            Repr::Few { .. } | Repr::List(_) => {
                let list = self.list();
                let at = list.partition_point(|&c| u32::from(c) < from);
                list.get(at).map(|&c| u32::from(c))
            }
            Repr::Bits(w) => {
                let mut i = (from / 64) as usize;
                if i >= w.len() {
                    return None;
                }
                let mut word = w[i] & (!0u64 << (from % 64));
                loop {
                    if word != 0 {
                        return Some(i as u32 * 64 + word.trailing_zeros());
                    }
                    i += 1;
                    word = *w.get(i)?;
                }
            }
        }
    }

    /// The CPUs of the mask, lowest first.
    pub fn iter(&self) -> Iter<'_> {
        Iter(match &self.0 {
            Repr::Empty => Walk::Listed([].iter()),
            Repr::Range { first, last } => Walk::Range(*first..=*last),
            Repr::Few { .. } | Repr::List(_) => Walk::Listed(self.list().iter()),
            Repr::Bits(w) => Walk::Bits {
                words: w,
                at: 0,
                bits: w.first().copied().unwrap_or(0),
            },
        })
    }

    /// Word `i` of the mask as a bitmap (CPUs `64 * i..64 * i + 64`).
    fn word(&self, i: u32) -> u64 {
        match &self.0 {
            Repr::Empty => 0,
            Repr::Range { first, last } => {
                let (lo, hi) = (i * 64, i * 64 + 63);
                if *last < lo || *first > hi {
                    return 0;
                }
                let from = first.saturating_sub(lo);
                let to = (*last).min(hi) - lo;
                (u64::MAX >> (63 - to)) & (u64::MAX << from)
            }
            Repr::Few { .. } | Repr::List(_) => {
                let list = self.list();
                let at = list.partition_point(|&c| u32::from(c) / 64 < i);
                list[at..]
                    .iter()
                    .map(|&c| u32::from(c))
                    .take_while(|c| c / 64 == i)
                    .fold(0, |word, c| word | 1 << (c % 64))
            }
            Repr::Bits(w) => w.get(i as usize).copied().unwrap_or(0),
        }
    }

    /// CPUs in both masks. When one mask holds the other, the result is a clone of the smaller
    /// one, sharing its bitmap: intersecting a device's mask with a machine that has it all
    /// online allocates nothing.
    pub fn and(&self, other: &CpuMask) -> CpuMask {
        match (&self.0, &other.0) {
            (Repr::Empty, _) | (_, Repr::Empty) => CpuMask::empty(),
            (Repr::Range { first: a, last: b }, Repr::Range { first: c, last: d }) => {
                CpuMask::range(*a.max(c), *b.min(d))
            }
            _ if self.is_subset(other) => self.clone(),
            _ if other.is_subset(self) => other.clone(),
            _ => {
                let (lo, hi) = (
                    self.first().max(other.first()).unwrap_or(0),
                    self.last().min(other.last()).unwrap_or(0),
                );
                if lo > hi {
                    return CpuMask::empty();
                }
                let words = (0..=hi / 64)
                    .map(|i| {
                        if i < lo / 64 {
                            0
                        } else {
                            self.word(i) & other.word(i)
                        }
                    })
                    .collect();
                Self::from_words(words)
            }
        }
    }

    /// The mask without `cpu`.
    pub fn without(&self, cpu: u32) -> CpuMask {
        match self.0 {
            Repr::Range { first, last } if cpu == first => CpuMask::range(first + 1, last),
            Repr::Range { first, last } if cpu == last => CpuMask::range(first, last - 1),
            _ if !self.contains(cpu) => self.clone(),
            _ => CpuMask::from_cpus(self.iter().filter(|&c| c != cpu)),
        }
    }

    /// The mask with `cpu` added.
    pub fn with(&self, cpu: u32) -> CpuMask {
        match self.0 {
            _ if self.contains(cpu) || cpu >= MAX_CPUS => self.clone(),
            Repr::Empty => CpuMask::single(cpu),
            Repr::Range { first, last } if cpu + 1 == first => CpuMask::range(cpu, last),
            Repr::Range { first, last } if cpu == last + 1 => CpuMask::range(first, cpu),
            _ => CpuMask::from_cpus(self.iter().chain(Some(cpu))),
        }
    }

    /// True when every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuMask) -> bool {
        match (&self.0, &other.0) {
            (Repr::Empty, _) => true,
            (_, Repr::Empty) => false,
            (Repr::Range { first: a, last: b }, Repr::Range { first: c, last: d }) => {
                c <= a && b <= d
            }
            _ => {
                let (Some(first), Some(last)) = (self.first(), self.last()) else {
                    return true;
                };
                (first / 64..=last / 64).all(|i| self.word(i) & !other.word(i) == 0)
            }
        }
    }

    /// True when the masks share a CPU (allocates nothing).
    pub fn intersects(&self, other: &CpuMask) -> bool {
        let (Some(lo), Some(hi)) = (
            self.first().max(other.first()),
            self.last().min(other.last()),
        ) else {
            return false;
        };
        lo <= hi && (lo / 64..=hi / 64).any(|i| self.word(i) & other.word(i) != 0)
    }

    /// Heap bytes this mask owns (0 unless it is an irregular set of more than
    /// [`CpuMask::FEW`] CPUs; shared clones count once each).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Bits(w) => w.len() * 8,
            Repr::List(l) => l.len() * 2,
            _ => 0,
        }
    }
}

/// Shares identical irregular masks, so irqs whose affinities were cut down the same way (by
/// the same offline CPUs) hold one bitmap between them, not one each. Keeps the most recent
/// [`MaskInterner::MAX`] distinct bitmaps.
#[derive(Debug, Default)]
pub(crate) struct MaskInterner {
    masks: Vec<CpuMask>,
}

impl MaskInterner {
    /// Distinct bitmaps kept.
    const MAX: usize = 64;

    /// `mask`, or an equal mask already interned (sharing its bitmap).
    pub(crate) fn intern(&mut self, mask: CpuMask) -> CpuMask {
        if mask.heap_bytes() == 0 {
            return mask;
        }
        if let Some(m) = self.masks.iter().find(|m| **m == mask) {
            return m.clone();
        }
        if self.masks.len() == Self::MAX {
            self.masks.remove(0);
        }
        self.masks.push(mask.clone());
        mask
    }
}

fn first_bit(words: &[u64]) -> Option<u32> {
    words
        .iter()
        .position(|&w| w != 0)
        .map(|i| i as u32 * 64 + words[i].trailing_zeros())
}

/// Iterator over the CPUs of a [`CpuMask`].
#[derive(Debug)]
pub struct Iter<'a>(Walk<'a>);

/// How [`Iter`] walks each representation.
#[derive(Debug)]
enum Walk<'a> {
    Range(core::ops::RangeInclusive<u32>),
    Listed(core::slice::Iter<'a, u16>),
    /// Word `at` of `words`, with the CPUs already returned cleared from `bits`.
    Bits {
        words: &'a [u64],
        at: usize,
        bits: u64,
    },
}

impl Iterator for Iter<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        match &mut self.0 {
            Walk::Range(r) => r.next(),
            Walk::Listed(l) => l.next().map(|&c| u32::from(c)),
            Walk::Bits { words, at, bits } => {
                while *bits == 0 {
                    *at += 1;
                    *bits = *words.get(*at)?;
                }
                let cpu = *at as u32 * 64 + bits.trailing_zeros();
                *bits &= *bits - 1;
                Some(cpu)
            }
        }
    }
}

impl fmt::Debug for CpuMask {
    /// Prints the Linux cpulist format: `0-3,8,10-11`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut run: Option<(u32, u32)> = None;
        let mut sep = "";
        let mut emit = |f: &mut fmt::Formatter<'_>, (a, b): (u32, u32)| {
            let r = if a == b {
                write!(f, "{sep}{a}")
            } else {
                write!(f, "{sep}{a}-{b}")
            };
            sep = ",";
            r
        };
        match self.as_range() {
            Some(r) => emit(f, r),
            None => {
                for c in self.iter() {
                    run = match run {
                        Some((a, b)) if b + 1 == c => Some((a, c)),
                        Some(r) => {
                            emit(f, r)?;
                            Some((c, c))
                        }
                        None => Some((c, c)),
                    };
                }
                run.map_or(Ok(()), |r| emit(f, r))
            }
        }
    }
}

impl fmt::Display for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use proptest::prelude::*;

    #[test]
    fn common_masks_need_no_heap() {
        assert_eq!(CpuMask::single(8191).heap_bytes(), 0);
        assert_eq!(CpuMask::first_n(8192).heap_bytes(), 0);
        assert_eq!(CpuMask::range(64, 127).heap_bytes(), 0);
        assert_eq!(CpuMask::from_cpus(0..8192).as_range(), Some((0, 8191)));
        assert!(core::mem::size_of::<CpuMask>() <= 24);
    }

    #[test]
    fn a_few_scattered_cpus_are_listed_inline() {
        let pair = CpuMask::from_cpus([8000, 3]);
        assert_eq!(pair.as_list(), Some(&[3u16, 8000][..]));
        assert_eq!((pair.heap_bytes(), pair.weight()), (0, 2));
        assert_eq!((pair.first(), pair.last()), (Some(3), Some(8000)));
        assert_eq!(pair.next_from(4), Some(8000));
        assert!(pair.contains(8000) && !pair.contains(8001) && !pair.contains(3 + 65_536));
        assert_eq!(format!("{pair}"), "3,8000");
        let eight = CpuMask::from_cpus((0..8).map(|i| i * 1000));
        assert_eq!(eight.as_list().map(<[u16]>::len), Some(8));
        // Nine CPUs 1,000 apart: a list of 18 bytes, not a bitmap of 1,064.
        let nine = eight.with(8500);
        assert!(matches!(nine.0, Repr::List(_)));
        assert_eq!(
            (nine.weight(), nine.heap_bytes(), nine.as_words()),
            (9, 18, None)
        );
        assert_eq!(
            (nine.next_from(7001), nine.word(132)),
            (Some(8500), 1 << (8500 % 64))
        );
        assert!(nine.contains(8500) && !nine.contains(8499) && nine.is_subset(&nine.with(1)));
        // Up to 16 CPUs are a list however close; 17 neighbours, four or more per word, are a
        // bitmap.
        assert!(CpuMask::from_cpus((0..16).map(|i| 100 + 2 * i))
            .as_list()
            .is_some());
        let dense = CpuMask::from_cpus((0..17).map(|i| 100 + 2 * i));
        assert_eq!((dense.as_list(), dense.weight()), (None, 17));
        assert!(dense.as_words().is_some());
        // 257 sparse CPUs are more than a list holds.
        let sparse = |n: u32| CpuMask::from_cpus((0..n).map(|i| i * 200));
        assert!(sparse(256).as_list().is_some() && sparse(257).as_words().is_some());
        // Back to eight (inline) and to a range: every set has one representation.
        assert_eq!(nine.without(8500), eight);
        assert_eq!(
            dense.without(100),
            CpuMask::from_cpus((1..17).map(|i| 100 + 2 * i))
        );
        assert!(dense.without(100).as_list().is_some());
        assert_eq!(CpuMask::from_cpus([4, 6]).with(5), CpuMask::range(4, 6));
        assert_eq!(
            CpuMask::from_cpus([65_535, 1]).as_list(),
            Some(&[1u16, 65_535][..])
        );
    }

    /// Whether two masks share one heap allocation.
    fn shared(a: &CpuMask, b: &CpuMask) -> bool {
        match (&a.0, &b.0) {
            (Repr::Bits(x), Repr::Bits(y)) => Arc::ptr_eq(x, y),
            (Repr::List(x), Repr::List(y)) => Arc::ptr_eq(x, y),
            _ => false,
        }
    }

    #[test]
    fn intersecting_with_a_superset_shares_the_bitmap() {
        let node = CpuMask::from_cpus((64..128).step_by(2));
        let online = CpuMask::from_cpus((0..8192).filter(|&c| c != 5000));
        let cut = node.and(&online);
        assert_eq!(cut, node);
        assert!(shared(&cut, &node));
        let mut interner = MaskInterner::default();
        let a = interner.intern(CpuMask::range(4990, 5010).and(&online));
        let b = interner.intern(CpuMask::range(4990, 5010).and(&online));
        assert!(shared(&a, &b) && a.heap_bytes() > 0);
    }

    #[test]
    fn irregular_sets_normalise_and_print_as_cpulist() {
        let m = CpuMask::from_cpus([10, 0, 1, 2, 3, 8, 11]);
        assert_eq!(format!("{m:?}"), "0-3,8,10-11");
        assert_eq!(m.weight(), 7);
        assert_eq!(
            m.without(8).without(10).without(11).as_range(),
            Some((0, 3))
        );
        assert_eq!(format!("{:?}", CpuMask::empty()), "{}");
        assert_eq!(CpuMask::range(5, 4), CpuMask::empty());
        assert_eq!(CpuMask::try_single(MAX_CPUS), None);
    }

    fn model(cpus: &[u32]) -> alloc::collections::BTreeSet<u32> {
        cpus.iter().copied().collect()
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(a in proptest::collection::vec(0u32..300, 0..40),
                              b in proptest::collection::vec(0u32..300, 0..40),
                              probe in 0u32..310) {
            let (ma, mb) = (CpuMask::from_cpus(a.iter().copied()), CpuMask::from_cpus(b.iter().copied()));
            let (sa, sb) = (model(&a), model(&b));
            prop_assert_eq!(ma.iter().collect::<Vec<_>>(), sa.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(ma.weight() as usize, sa.len());
            prop_assert_eq!(ma.contains(probe), sa.contains(&probe));
            prop_assert_eq!(ma.first(), sa.first().copied());
            prop_assert_eq!(ma.last(), sa.last().copied());
            prop_assert_eq!(ma.next_from(probe), sa.range(probe..).next().copied());
            let inter: Vec<u32> = sa.intersection(&sb).copied().collect();
            prop_assert_eq!(ma.and(&mb).iter().collect::<Vec<_>>(), inter);
            prop_assert_eq!(ma.is_subset(&mb), sa.is_subset(&sb));
            prop_assert_eq!(ma.intersects(&mb), !sa.is_disjoint(&sb));
            let range = CpuMask::range(probe / 2, probe);
            let sr: alloc::collections::BTreeSet<u32> = (probe / 2..=probe).collect();
            prop_assert_eq!(ma.and(&range).iter().collect::<Vec<_>>(), sa.intersection(&sr).copied().collect::<Vec<_>>());
            prop_assert_eq!(range.and(&ma), ma.and(&range));
            prop_assert_eq!(range.is_subset(&ma), sr.is_subset(&sa));
            prop_assert_eq!(ma.is_subset(&range), sa.is_subset(&sr));
            let mut w = sa.clone();
            w.remove(&probe);
            prop_assert_eq!(ma.without(probe), CpuMask::from_cpus(w.iter().copied()));
            let mut w = sa.clone();
            w.insert(probe);
            prop_assert_eq!(ma.with(probe), CpuMask::from_cpus(w.iter().copied()));
        }
    }
}
