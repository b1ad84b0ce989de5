//! Turns drained DAMON region counts into [`AccessSample`]s. Pure; called by
//! [`super::DamonSampler::drain`] every drain interval.

use crate::sampling::abi::{DamonKey, DamonVal};
use crate::sampling::AccessSample;

/// What one drain saw, for status and the rate controller.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Drained {
    /// Accessed regions turned into samples.
    pub regions: usize,
    /// Entries from another kthread (a previous run of our kdamond) or an unknown
    /// target, dropped.
    pub stale: usize,
    /// Largest region count any target had (DAMON's `nr_regions`).
    pub max_nr_regions: u32,
}

/// `targets[i]` is the pid of target id `i` of our kdamond, whose kthread is
/// `kthread`; `checks_per_aggr` (aggr_us / sample_us) turns DAMON's `nr_accesses`
/// into the fraction of checks that found the region accessed. A value summing
/// several aggregations yields the sum of their fractions.
pub fn to_samples(
    entries: &[(DamonKey, DamonVal)],
    kthread: Option<u32>,
    targets: &[i32],
    checks_per_aggr: f64,
    out: &mut Vec<AccessSample>,
) -> Drained {
    let mut d = Drained::default();
    let checks = checks_per_aggr.max(1.0);
    for (k, v) in entries {
        let pid = targets.get(k.target_id as usize);
        let (Some(&pid), true) = (pid, Some(k.kdamond_pid) == kthread) else {
            d.stale += 1;
            continue;
        };
        if k.end <= k.start || v.nr_accesses == 0 {
            continue;
        }
        d.regions += 1;
        d.max_nr_regions = d.max_nr_regions.max(v.nr_regions);
        out.push(AccessSample {
            pid,
            start: k.start,
            end: k.end,
            weight: v.nr_accesses as f64 / checks,
        });
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kpid: u32, tid: u32, start: u64, end: u64, acc: u64) -> (DamonKey, DamonVal) {
        (
            DamonKey {
                kdamond_pid: kpid,
                target_id: tid,
                start,
                end,
            },
            DamonVal {
                nr_accesses: acc,
                aggregations: 1,
                nr_regions: 50,
            },
        )
    }

    #[test]
    fn weights_are_fractions_of_checks_and_targets_map_to_pids() {
        let mut out = Vec::new();
        let d = to_samples(
            &[e(9, 0, 0, 4096, 10), e(9, 1, 8192, 16384, 20)],
            Some(9),
            &[100, 200],
            20.0,
            &mut out,
        );
        assert_eq!(d.regions, 2);
        assert_eq!(d.max_nr_regions, 50);
        assert_eq!((out[0].pid, out[0].weight), (100, 0.5));
        assert_eq!((out[1].pid, out[1].start, out[1].weight), (200, 8192, 1.0));
    }

    #[test]
    fn stale_kthreads_and_unknown_targets_are_dropped() {
        let mut out = Vec::new();
        let d = to_samples(
            &[
                e(8, 0, 0, 4096, 10),
                e(9, 5, 0, 4096, 10),
                e(9, 0, 0, 4096, 3),
            ],
            Some(9),
            &[100],
            20.0,
            &mut out,
        );
        assert_eq!(d.stale, 2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pid, 100);
    }
}
