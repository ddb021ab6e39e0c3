//! Medians and spreads of repeated measurements.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    pub n: usize,
}

pub fn summarize(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Summary { median: f64::NAN, min: f64::NAN, max: f64::NAN, p99: f64::NAN, n: 0 };
    }
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { f64::midpoint(v[v.len() / 2 - 1], v[v.len() / 2]) };
    let rank = ((0.99 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Summary { median, min: v[0], max: v[v.len() - 1], p99: v[rank - 1], n: v.len() }
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    #[expect(clippy::float_cmp, reason = "the inputs are small integers and halves, exact in f64")]
    fn median_spread_and_p99() {
        let s = summarize(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max, s.p99, s.n), (2.5, 1.0, 10.0, 10.0, 4));
        let many: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(summarize(&many).p99, 198.0);
    }
}
