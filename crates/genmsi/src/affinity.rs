//! Linux's spreading of a multi-queue device's vectors over the machine, so that a driver
//! ported from Linux gets the same masks (`irq_create_affinity_masks`, `group_cpus_evenly`).
//!
//! 1. The first `pre_vectors` and the last `post_vectors` of a device's vectors (an admin
//!    queue, a configuration interrupt) are not spread: they get the default affinity and are
//!    not managed ([`IrqAffinity`], as Linux's `struct irq_affinity`).
//! 2. The others are spread in groups ([`group_cpus_evenly`]): present CPUs first, then the
//!    possible CPUs that are not present; within each pass NUMA nodes get groups in proportion
//!    to their CPUs (smallest node first), and a group takes a CPU with its SMT siblings
//!    before the next CPU. With fewer groups than nodes, each group takes whole nodes.
//! 3. The spread vectors are **managed**: the kernel owns their affinity
//!    ([`AffinityDesc::managed`]); allocate each with [`AllocOpts`](crate::AllocOpts)
//!    `affinity` = its mask and `managed` set.
//!
//! Differences from Linux 6.12, on purpose: Linux orders nodes of equal size by its heapsort,
//! which is not stable; here nodes of equal size keep their node order (masks differ only on
//! machines with several nodes of the same size and fewer groups than CPUs). With more
//! vectors to spread than CPUs, 6.12 leaves the masks past the last group empty; here they
//! take the default affinity, as Linux does since it counts the groups it made
//! (`group_cpus_evenly(.., &nummasks)`).

use crate::CpuMask;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;

/// The machine as spreading sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Per NUMA node (index = node id), its possible CPUs.
    pub nodes: Vec<Vec<u32>>,
    /// Present CPUs (spread first).
    pub present: Vec<u32>,
    /// Per CPU, its SMT siblings including itself (empty: none known).
    pub siblings: Vec<Vec<u32>>,
}

impl Topology {
    /// `cpus` CPUs, all present, on one node, without SMT.
    pub fn flat(cpus: u32) -> Self {
        Topology {
            nodes: alloc::vec![(0..cpus).collect()],
            present: (0..cpus).collect(),
            siblings: Vec::new(),
        }
    }

    fn possible(&self) -> BTreeSet<u32> {
        self.nodes.iter().flatten().copied().collect()
    }

    fn siblings_of(&self, cpu: u32) -> &[u32] {
        self.siblings.get(cpu as usize).map_or(&[], Vec::as_slice)
    }
}

/// Vectors a device leaves out of the spreading (Linux's `struct irq_affinity`, one set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqAffinity {
    /// Vectors at the start with the default affinity (unmanaged).
    pub pre_vectors: u32,
    /// Vectors at the end with the default affinity (unmanaged).
    pub post_vectors: u32,
}

/// One vector's affinity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffinityDesc {
    /// The CPUs it may target.
    pub mask: CpuMask,
    /// The kernel owns it (spread vectors).
    pub managed: bool,
}

/// The affinity of each of a device's `nvecs` vectors, as Linux's `irq_create_affinity_masks`
/// gives it: `default` (Linux's `irq_default_affinity`, usually every CPU) for the pre and
/// post vectors, a spread group for each other one. `None` when nothing is left to spread
/// (Linux returns no masks then, and the device's vectors all take the default affinity).
pub fn create_affinity_masks(
    nvecs: u32,
    affd: IrqAffinity,
    topology: &Topology,
    default: &CpuMask,
) -> Option<Vec<AffinityDesc>> {
    let fixed = affd.pre_vectors.saturating_add(affd.post_vectors);
    let affvecs = nvecs.checked_sub(fixed).filter(|&n| n > 0)?;
    let groups = group_cpus_evenly(affvecs, topology);
    let used = groups.len() as u32;
    let mut out = Vec::with_capacity(nvecs as usize);
    for v in 0..nvecs {
        let spread = v >= affd.pre_vectors && v < nvecs - affd.post_vectors;
        let group = v.wrapping_sub(affd.pre_vectors);
        let mask = match spread && group < used {
            true => groups[group as usize].clone(),
            // Groups beyond the CPUs there are (more vectors than CPUs) and the fixed vectors.
            false => default.clone(),
        };
        out.push(AffinityDesc {
            mask,
            managed: spread,
        });
    }
    Some(out)
}

/// `numgrps` groups of CPUs covering the machine evenly (Linux's `group_cpus_evenly`; see the
/// module docs). Returns at most `numgrps` masks, fewer when there are fewer CPUs.
pub fn group_cpus_evenly(numgrps: u32, topology: &Topology) -> Vec<CpuMask> {
    if numgrps == 0 {
        return Vec::new();
    }
    let mut masks: Vec<BTreeSet<u32>> = alloc::vec![BTreeSet::new(); numgrps as usize];
    let possible = topology.possible();
    let present: BTreeSet<u32> = topology
        .present
        .iter()
        .copied()
        .filter(|c| possible.contains(c))
        .collect();
    let nr_present = spread(0, numgrps, topology, &present, &mut masks);
    let start = if nr_present >= numgrps { 0 } else { nr_present };
    let others: BTreeSet<u32> = possible.difference(&present).copied().collect();
    let nr_others = spread(start, numgrps, topology, &others, &mut masks);
    let n = (nr_present + nr_others).min(numgrps) as usize;
    masks.into_iter().take(n).map(CpuMask::from_cpus).collect()
}

/// One pass of the spreading over `cpus` from group `start` (Linux's `__group_cpus_evenly`);
/// returns the groups it filled.
fn spread(
    start: u32,
    numgrps: u32,
    topology: &Topology,
    cpus: &BTreeSet<u32>,
    masks: &mut [BTreeSet<u32>],
) -> u32 {
    if cpus.is_empty() {
        return 0;
    }
    // Nodes with CPUs in the pass, and those CPUs.
    let nodes: Vec<(usize, BTreeSet<u32>)> = topology
        .nodes
        .iter()
        .enumerate()
        .map(|(n, node)| {
            (
                n,
                node.iter().copied().filter(|c| cpus.contains(c)).collect(),
            )
        })
        .filter(|(_, c): &(usize, BTreeSet<u32>)| !c.is_empty())
        .collect();
    let mut cur = start;
    if numgrps as usize <= nodes.len() {
        for (_, node_cpus) in &nodes {
            masks[cur as usize].extend(node_cpus);
            cur += 1;
            if cur == numgrps {
                cur = 0;
            }
        }
        return numgrps;
    }
    let mut done = 0;
    for (node_cpus, ngroups) in groups_per_node(numgrps, &nodes) {
        let mut left = node_cpus.clone();
        let ncpus = node_cpus.len() as u32;
        let mut extra = ncpus - ngroups * (ncpus / ngroups);
        for _ in 0..ngroups {
            let mut per_group = ncpus / ngroups;
            if extra > 0 {
                per_group += 1;
                extra -= 1;
            }
            if cur >= numgrps {
                cur = 0;
            }
            take_group(&mut masks[cur as usize], &mut left, per_group, topology);
            cur += 1;
        }
        done += ngroups;
    }
    done
}

/// Groups per node, in proportion to their CPUs, smallest node first (Linux's
/// `alloc_nodes_groups`): every node gets at least one, and the rounding is carried to the
/// nodes after it so that the total is exact.
fn groups_per_node(numgrps: u32, nodes: &[(usize, BTreeSet<u32>)]) -> Vec<(&BTreeSet<u32>, u32)> {
    let mut by_size: Vec<&(usize, BTreeSet<u32>)> = nodes.iter().collect();
    by_size.sort_by_key(|(_, c)| c.len());
    let mut remaining_cpus: u32 = nodes.iter().map(|(_, c)| c.len() as u32).sum();
    let mut numgrps = numgrps.min(remaining_cpus);
    by_size
        .into_iter()
        .map(|(_, cpus)| {
            let ncpus = cpus.len() as u32;
            let ngroups =
                (u64::from(numgrps) * u64::from(ncpus) / u64::from(remaining_cpus)).max(1) as u32;
            remaining_cpus -= ncpus;
            numgrps = numgrps.saturating_sub(ngroups);
            (cpus, ngroups)
        })
        .collect()
}

/// Fills one group with `count` CPUs of `left`: the first CPU, then its siblings still in
/// `left`, then the next CPU (Linux's `grp_spread_init_one`).
fn take_group(group: &mut BTreeSet<u32>, left: &mut BTreeSet<u32>, mut count: u32, t: &Topology) {
    while count > 0 {
        let Some(cpu) = left.pop_first() else {
            return;
        };
        group.insert(cpu);
        count -= 1;
        for &sibling in t.siblings_of(cpu) {
            if count == 0 {
                break;
            }
            if left.remove(&sibling) {
                group.insert(sibling);
                count -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(m: &CpuMask) -> Vec<u32> {
        m.iter().collect()
    }

    /// NVMe's layout on 8 CPUs (pre_vectors 1): the admin queue everywhere, one managed queue
    /// per CPU in order, as the captured 6.12 kernel shows them.
    #[test]
    fn nvme_on_eight_flat_cpus() {
        let t = Topology::flat(8);
        let all = CpuMask::range(0, 7);
        let masks = create_affinity_masks(
            9,
            IrqAffinity {
                pre_vectors: 1,
                post_vectors: 0,
            },
            &t,
            &all,
        )
        .unwrap();
        assert_eq!(
            masks[0],
            AffinityDesc {
                mask: all,
                managed: false
            }
        );
        for q in 1..9u32 {
            assert_eq!(list(&masks[q as usize].mask), [q - 1]);
            assert!(masks[q as usize].managed);
        }
    }

    /// Worked by hand from the rules: 2 nodes of 4 CPUs, SMT siblings (n, n+4 within the
    /// machine's numbering: 0/4, 1/5 on node 0 = {0,1,4,5}; 2/6, 3/7 on node 1 = {2,3,6,7}),
    /// 4 groups: 2 per node, each a CPU with its sibling.
    #[test]
    fn siblings_stay_together_and_nodes_share_in_proportion() {
        let t = Topology {
            nodes: alloc::vec![alloc::vec![0, 1, 4, 5], alloc::vec![2, 3, 6, 7]],
            present: (0..8).collect(),
            siblings: alloc::vec![
                alloc::vec![0, 4],
                alloc::vec![1, 5],
                alloc::vec![2, 6],
                alloc::vec![3, 7],
                alloc::vec![0, 4],
                alloc::vec![1, 5],
                alloc::vec![2, 6],
                alloc::vec![3, 7],
            ],
        };
        let g: Vec<Vec<u32>> = group_cpus_evenly(4, &t).iter().map(list).collect();
        assert_eq!(g, [[0, 4], [1, 5], [2, 6], [3, 7]]);
        // 3 groups over nodes of 4: the first node (by order among equals) gets 1 group of 4
        // (3 * 4 / 8 = 1), the second 2 groups of 2.
        let g: Vec<Vec<u32>> = group_cpus_evenly(3, &t).iter().map(list).collect();
        assert_eq!(
            g,
            [
                alloc::vec![0, 1, 4, 5],
                alloc::vec![2, 6],
                alloc::vec![3, 7]
            ]
        );
        // Fewer groups than nodes: whole nodes, round robin.
        let g: Vec<Vec<u32>> = group_cpus_evenly(1, &t).iter().map(list).collect();
        assert_eq!(g, [[0, 1, 2, 3, 4, 5, 6, 7]]);
    }

    /// Unequal nodes: the smaller node goes first and gets its proportional share; 5 CPUs not
    /// dividing evenly give the first groups one more CPU.
    #[test]
    fn uneven_nodes_and_rounding() {
        let t = Topology {
            nodes: alloc::vec![(0..5).collect(), alloc::vec![5, 6]],
            present: (0..7).collect(),
            siblings: Vec::new(),
        };
        // 4 groups over 7 CPUs: node 1 (2 CPUs) first: max(1, 4*2/7) = 1 group of 2; node 0:
        // 3 groups over 5 CPUs: 2, 2, 1.
        let g: Vec<Vec<u32>> = group_cpus_evenly(4, &t).iter().map(list).collect();
        assert_eq!(
            g,
            [
                alloc::vec![5, 6],
                alloc::vec![0, 1],
                alloc::vec![2, 3],
                alloc::vec![4]
            ]
        );
    }

    /// Possible CPUs that are not present are spread in a second pass, after the present ones.
    #[test]
    fn absent_cpus_come_after_the_present_ones() {
        let t = Topology {
            nodes: alloc::vec![(0..4).collect()],
            present: alloc::vec![0, 1],
            siblings: Vec::new(),
        };
        let g: Vec<Vec<u32>> = group_cpus_evenly(4, &t).iter().map(list).collect();
        assert_eq!(g, [[0], [1], [2], [3]]);
        let g: Vec<Vec<u32>> = group_cpus_evenly(2, &t).iter().map(list).collect();
        assert_eq!(g, [[0, 2], [1, 3]]);
    }

    #[test]
    fn nothing_to_spread_and_more_vectors_than_cpus() {
        let t = Topology::flat(2);
        let all = CpuMask::range(0, 1);
        let affd = IrqAffinity {
            pre_vectors: 1,
            post_vectors: 1,
        };
        assert_eq!(create_affinity_masks(2, affd, &t, &all), None);
        // 5 spread vectors over 2 CPUs: two groups, the rest the default affinity.
        let m = create_affinity_masks(7, affd, &t, &all).unwrap();
        let got: Vec<(Vec<u32>, bool)> = m.iter().map(|d| (list(&d.mask), d.managed)).collect();
        assert_eq!(got[1], (alloc::vec![0], true));
        assert_eq!(got[2], (alloc::vec![1], true));
        assert_eq!(got[3], (alloc::vec![0, 1], true));
        assert_eq!(got[6], (alloc::vec![0, 1], false));
    }
}
