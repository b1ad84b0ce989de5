//! The granule-count backends (`fault`, `hw-sample`): a BPF program counts events
//! per (tgid, address >> granule_shift) in an LRU hash, filtered by a map of tracked
//! tgids; [`PageSampler`] keeps that filter in step with the managed pids and turns
//! the drained counts into [`AccessSample`]s. Drained by the [`super::SamplingSet`]
//! every `sampling.drain_interval_ms`.

use super::abi::PageKey;
use super::bpf::{DrainMap, PidFilter, Stats};
use super::{AccessSample, Sampler, SamplerError};
use std::collections::BTreeSet;
use tierd_api::BackendStatus;

/// Granule the in-kernel maps count at: 64 KiB, the heat table's default granule.
pub const GRANULE_SHIFT: u32 = 16;

/// Appends one sample per counted granule; `scale` turns a count into a weight.
pub fn to_samples(entries: &[(PageKey, u64)], shift: u32, scale: f64, out: &mut Vec<AccessSample>) {
    out.extend(entries.iter().filter(|(_, n)| *n > 0).map(|(k, n)| {
        let start = k.granule << shift;
        AccessSample {
            pid: k.tgid as i32,
            start,
            end: start + (1u64 << shift),
            weight: *n as f64 * scale,
        }
    }));
}

/// One granule-count backend: its maps, the tracked set, and what keeps the
/// program attached (`_attached`: the loaded object, perf fds).
pub struct PageSampler<M, F> {
    pub name: &'static str,
    pub pages: M,
    pub filter: F,
    pub scale: f64,
    pub detail: String,
    pub stats: Option<Stats>,
    pub _attached: Option<Box<dyn Send>>,
    tracked: BTreeSet<i32>,
    buf: Vec<(PageKey, u64)>,
    seen_updates: u64,
}

impl<M, F> PageSampler<M, F> {
    pub fn new(name: &'static str, pages: M, filter: F, scale: f64, detail: String) -> Self {
        PageSampler {
            name,
            pages,
            filter,
            scale,
            detail,
            stats: None,
            _attached: None,
            tracked: BTreeSet::new(),
            buf: Vec::new(),
            seen_updates: 0,
        }
    }
}

impl<M: DrainMap<PageKey, u64>, F: PidFilter> Sampler for PageSampler<M, F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn track(&mut self, pid: i32) -> Result<(), SamplerError> {
        self.filter
            .add(pid as u32)
            .map_err(|msg| SamplerError::Track {
                backend: self.name,
                pid,
                msg,
            })?;
        self.tracked.insert(pid);
        Ok(())
    }

    fn untrack(&mut self, pid: i32) {
        self.filter.remove(pid as u32);
        self.tracked.remove(&pid);
    }

    fn drain(&mut self, out: &mut Vec<AccessSample>) -> Result<(), SamplerError> {
        self.buf.clear();
        if let Some(st) = &self.stats {
            if !st.changed_since(&mut self.seen_updates) {
                return Ok(());
            }
        }
        self.pages
            .drain_into(&mut self.buf)
            .map_err(|msg| SamplerError::Drain {
                backend: self.name,
                msg,
            })?;
        // Counts of a process untracked since the last drain are stale: drop them.
        self.buf
            .retain(|(k, _)| self.tracked.contains(&(k.tgid as i32)));
        to_samples(&self.buf, GRANULE_SHIFT, self.scale, out);
        Ok(())
    }

    fn status(&self) -> BackendStatus {
        let dropped = self.stats.as_ref().map_or(0, |s| s.dropped());
        BackendStatus {
            name: self.name.into(),
            active: true,
            detail: format!(
                "{}; {} processes tracked; {dropped} events dropped (map full)",
                self.detail,
                self.tracked.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::bpf::fake::{FakeFilter, FakeMap};

    fn key(tgid: u32, granule: u64) -> PageKey {
        PageKey {
            tgid,
            pad: 0,
            granule,
        }
    }

    #[test]
    fn counts_become_granule_samples() {
        let mut out = Vec::new();
        to_samples(&[(key(7, 3), 8), (key(7, 4), 0)], 16, 0.125, &mut out);
        assert_eq!(
            out,
            vec![AccessSample {
                pid: 7,
                start: 3 << 16,
                end: 4 << 16,
                weight: 1.0
            }]
        );
    }

    #[test]
    fn filter_follows_tracking_and_stale_counts_are_dropped() {
        let map = FakeMap::default();
        let filter = FakeFilter::default();
        let mut s = PageSampler::new("fault", map.clone(), filter.clone(), 1.0, String::new());
        s.track(10).unwrap();
        s.track(11).unwrap();
        s.untrack(11);
        assert_eq!(
            filter.0.lock().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![10]
        );
        map.0
            .lock()
            .unwrap()
            .extend([(key(10, 1), 2), (key(11, 1), 5)]);
        let mut out = Vec::new();
        s.drain(&mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].pid, out[0].weight), (10, 2.0));
        out.clear();
        s.drain(&mut out).unwrap();
        assert!(out.is_empty(), "a drain empties the map");
    }
}
