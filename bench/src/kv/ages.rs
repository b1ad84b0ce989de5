//! Where a replay's fast-node misses fall: block reads bucketed by the age of the
//! block's contents (wall time since the replay last wrote it), with the hits in each
//! bucket. Misses on young blocks mean the mover was too slow to bring new KV in;
//! misses on old blocks mean it demoted (or never promoted) blocks still in use.

/// Upper bounds of the age buckets, seconds; the last bucket is everything older.
pub const BOUNDS_S: [f64; 4] = [0.5, 1.0, 2.0, 4.0];

#[derive(Debug, Clone)]
pub struct ReadAges {
    written_at: Vec<f64>,
    /// (reads, hits) per bucket: BOUNDS_S.len() + 1 buckets.
    pub buckets: [(u64, u64); BOUNDS_S.len() + 1],
}

impl ReadAges {
    /// Every slot counts as written at time 0 (the pool is filled before the replay).
    pub fn new(slots: usize) -> ReadAges {
        ReadAges {
            written_at: vec![0.0; slots],
            buckets: [(0, 0); BOUNDS_S.len() + 1],
        }
    }

    pub fn written(&mut self, slots: &[u32], now_s: f64) {
        for &s in slots {
            self.written_at[s as usize] = now_s;
        }
    }

    pub fn read(&mut self, slot: u32, hit: bool, now_s: f64) {
        let age = now_s - self.written_at[slot as usize];
        let b = BOUNDS_S
            .iter()
            .position(|&u| age < u)
            .unwrap_or(BOUNDS_S.len());
        self.buckets[b].0 += 1;
        self.buckets[b].1 += u64::from(hit);
    }

    /// `(label, reads, hits)` per bucket, e.g. `("age_0.5_1s", ..)`, `("age_ge4s", ..)`.
    pub fn labelled(&self) -> Vec<(String, u64, u64)> {
        let mut lo = 0.0;
        let mut out = Vec::new();
        for (i, &(r, h)) in self.buckets.iter().enumerate() {
            let label = match BOUNDS_S.get(i) {
                Some(&hi) => format!("age_{lo}_{hi}s"),
                None => format!("age_ge{lo}s"),
            };
            out.push((label, r, h));
            lo = BOUNDS_S.get(i).copied().unwrap_or(lo);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_land_in_the_bucket_of_their_age() {
        let mut a = ReadAges::new(3);
        a.written(&[1], 10.0);
        a.read(1, true, 10.2); // 0.2 s
        a.read(1, false, 11.5); // 1.5 s
        a.read(0, false, 10.0); // 10 s: never rewritten
        a.read(2, true, 3.0); // 3 s
        let l = a.labelled();
        assert_eq!(l[0], ("age_0_0.5s".to_string(), 1, 1));
        assert_eq!(l[1], ("age_0.5_1s".to_string(), 0, 0));
        assert_eq!(l[2], ("age_1_2s".to_string(), 1, 0));
        assert_eq!(l[3], ("age_2_4s".to_string(), 1, 1));
        assert_eq!(l[4], ("age_ge4s".to_string(), 1, 0));
    }
}
