//! Bytes per heat class (log2 buckets): the hot/warm/cold picture of a process, and the
//! input of the policy's capacity-aware threshold.

/// Bucket `i` holds granules with heat in `[2^(i-OFFSET), 2^(i+1-OFFSET))`; bucket 0
/// also holds everything colder (including zero).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    pub bytes: Vec<u64>,
}

const OFFSET: i32 = 10;
const BUCKETS: usize = 24;

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            bytes: vec![0; BUCKETS],
        }
    }

    pub fn bucket_of(heat: f64) -> usize {
        if heat <= 0.0 {
            return 0;
        }
        let b = heat.log2().floor() as i32 + OFFSET;
        b.clamp(0, BUCKETS as i32 - 1) as usize
    }

    /// Lower heat bound of a bucket.
    pub fn floor_of(bucket: usize) -> f64 {
        if bucket == 0 {
            0.0
        } else {
            2f64.powi(bucket as i32 - OFFSET)
        }
    }

    pub fn add(&mut self, heat: f64, bytes: u64) {
        if self.bytes.is_empty() {
            self.bytes = vec![0; BUCKETS];
        }
        self.bytes[Self::bucket_of(heat)] += bytes;
    }

    /// The lowest heat floor such that everything at or above it fits in `capacity`
    /// bytes: promote what fits, hottest first.
    pub fn threshold_for(&self, capacity: u64) -> f64 {
        let mut total = 0u64;
        for b in (1..self.bytes.len()).rev() {
            total += self.bytes[b];
            if total > capacity {
                return Self::floor_of(b + 1);
            }
        }
        Self::floor_of(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_fits_capacity() {
        let mut h = Histogram::new();
        h.add(8.0, 100); // hottest
        h.add(2.0, 100);
        h.add(0.5, 100);
        h.add(0.0, 1000);
        // Everything at or above the returned floor fits.
        assert_eq!(h.threshold_for(150), 4.0);
        assert_eq!(h.threshold_for(250), 1.0);
        assert_eq!(h.threshold_for(10_000), Histogram::floor_of(1));
        assert_eq!(
            h.threshold_for(50),
            Histogram::floor_of(Histogram::bucket_of(8.0) + 1)
        );
    }
}
