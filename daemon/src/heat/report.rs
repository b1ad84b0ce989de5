//! Read-side reports of a heat table: the heat histogram, the merged hottest regions
//! (`tierctl heat`), the snapshots kept for heatmaps, and the table's own memory.

use super::{Cell, HeatTable, Histogram};
use tierd_api::{HeatRegion, HeatSnapshot};

impl HeatTable {
    /// Bytes per heat class.
    pub fn histogram(&self, now_ms: u32) -> Histogram {
        let mut h = Histogram::new();
        for (_, _, heat) in self.iter(now_ms) {
            h.add(heat, self.granule());
        }
        h
    }

    /// Memory the table uses, bytes (cells, keys, hash control bytes, history).
    pub fn memory_bytes(&self) -> u64 {
        let per = std::mem::size_of::<(u64, Cell)>() + 1;
        let hist: usize = self
            .history
            .iter()
            .map(|s| s.regions.len() * std::mem::size_of::<HeatRegion>())
            .sum();
        (self.capacity() * per + hist) as u64
    }

    /// Regions hottest first, adjacent granules with the same node and similar heat
    /// merged; cut after `top_bytes` when given.
    pub fn regions(&self, now_ms: u32, top_bytes: Option<u64>) -> Vec<HeatRegion> {
        let mut by_addr: Vec<(u64, f64, Option<u32>)> = self
            .iter(now_ms)
            .filter(|(_, _, h)| *h > 1e-3)
            .map(|(a, c, h)| (a, h, c.node()))
            .collect();
        by_addr.sort_unstable_by_key(|x| x.0);
        let mut merged: Vec<HeatRegion> = Vec::new();
        for (a, h, n) in by_addr {
            let node = n.map(|n| n as i32);
            if let Some(last) = merged.last_mut() {
                let close = (last.heat - h).abs() <= 0.05 * last.heat.max(h);
                if last.end == a && last.node == node && close {
                    let w = ((last.end - last.start) / self.granule()) as f64;
                    last.heat = (last.heat * w + h) / (w + 1.0);
                    last.end = a + self.granule();
                    continue;
                }
            }
            merged.push(HeatRegion {
                start: a,
                end: a + self.granule(),
                heat: h,
                node,
            });
        }
        merged.sort_by(|x, y| y.heat.total_cmp(&x.heat).then(x.start.cmp(&y.start)));
        if let Some(limit) = top_bytes {
            let mut total = 0;
            let mut out = Vec::new();
            for r in merged {
                if total >= limit {
                    break;
                }
                let len = (r.end - r.start).min(limit - total);
                total += len;
                out.push(HeatRegion {
                    end: r.start + len,
                    ..r
                });
            }
            return out;
        }
        merged
    }

    /// Stores a snapshot for the heatmap (at most 512 hottest regions).
    pub fn snapshot(&mut self, now_ms: u32) {
        let mut regions = self.regions(now_ms, None);
        regions.truncate(512);
        self.history.push(HeatSnapshot {
            t_s: now_ms as f64 / 1000.0,
            regions,
        });
        if self.history.len() > self.history_len {
            let excess = self.history.len() - self.history_len;
            self.history.drain(..excess);
        }
    }

    pub fn history(&self) -> &[HeatSnapshot] {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 64 << 10;

    fn table() -> HeatTable {
        HeatTable::new(G, 1000, 4, 300)
    }

    #[test]
    fn regions_merge_and_rank_and_cut() {
        let mut t = table();
        t.record(0, 4 * G, 1.0, 0); // 4 granules of heat 1
        t.record(10 * G, 11 * G, 5.0, 0); // one granule of heat 5
        let r = t.regions(0, None);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].start, r[0].end), (10 * G, 11 * G));
        assert_eq!((r[1].start, r[1].end), (0, 4 * G));
        let top = t.regions(0, Some(2 * G));
        assert_eq!(top.len(), 2);
        assert_eq!(top[1].end - top[1].start, G);
    }

    #[test]
    fn history_is_bounded_and_memory_is_small() {
        let mut t = table();
        // 640 MiB of granules.
        for mib in (0..640).step_by(8) {
            t.record(mib << 20, (mib + 8) << 20, 0.5, 0);
        }
        for ms in 0..10 {
            t.snapshot(ms * 1000);
        }
        assert_eq!(t.history().len(), 4);
        let cells_bytes =
            t.memory_bytes() - (t.history().len() * std::mem::size_of::<HeatRegion>()) as u64;
        let ratio = cells_bytes as f64 / (640u64 << 20) as f64;
        assert!(ratio < 0.001, "heat table costs {ratio} of managed memory");
    }
}
