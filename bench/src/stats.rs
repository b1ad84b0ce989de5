//! Small summaries: mean, median/percentiles, and a time-weighted average for values
//! sampled at irregular instants.

/// Arithmetic mean (0 for no values).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The `p`-th percentile (0..=100) by nearest rank (0 for no values).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// Integrates a sampled value over time: each sample holds from the previous sample's
/// instant to its own.
#[derive(Debug, Default, Clone)]
pub struct TimeWeighted {
    last_t: Option<f64>,
    area: f64,
    span: f64,
}

impl TimeWeighted {
    /// Adds the value observed at `t` seconds.
    pub fn add(&mut self, t: f64, value: f64) {
        if let Some(l) = self.last_t {
            let dt = (t - l).max(0.0);
            self.area += value * dt;
            self.span += dt;
        }
        self.last_t = Some(t);
    }

    /// Starts the clock at `t` without a value.
    pub fn start(&mut self, t: f64) {
        self.last_t = Some(t);
    }

    pub fn average(&self) -> f64 {
        if self.span > 0.0 {
            self.area / self.span
        } else {
            0.0
        }
    }

    pub fn span_s(&self) -> f64 {
        self.span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(mean(&[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 100.0), 4.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn time_weighted() {
        let mut t = TimeWeighted::default();
        t.start(0.0);
        t.add(1.0, 0.0);
        t.add(4.0, 1.0);
        assert!((t.average() - 0.75).abs() < 1e-9);
        assert_eq!(t.span_s(), 4.0);
    }
}
