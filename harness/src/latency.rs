//! Latency figures of a run: nearest-rank percentiles per endpoint from the samples every step
//! records, and the `--slo` gates they miss.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::options::Slo;

/// Latency percentiles of one endpoint.
#[derive(Debug, Clone)]
pub struct Latency {
    /// `GET /v1/api-keys/{id}`.
    pub endpoint: String,
    /// Samples.
    pub count: usize,
    /// p50.
    pub p50: Duration,
    /// p95.
    pub p95: Duration,
    /// p99.
    pub p99: Duration,
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: u8) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p as f64 / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The `--slo` gates each endpoint misses.
pub fn slo_violations(slos: &[Slo], samples: &BTreeMap<String, Vec<Duration>>) -> Vec<String> {
    let mut out = Vec::new();
    for slo in slos {
        for (endpoint, v) in samples {
            let mut sorted = v.clone();
            sorted.sort();
            let got = percentile(&sorted, slo.percentile);
            if !slo.met_by(got) {
                out.push(format!(
                    "{endpoint}: p{} = {:.1} ms, gate {}",
                    slo.percentile,
                    got.as_secs_f64() * 1000.0,
                    slo.text
                ));
            }
        }
    }
    out
}

/// Per-endpoint latency figures.
pub fn latencies(samples: &BTreeMap<String, Vec<Duration>>) -> Vec<Latency> {
    samples
        .iter()
        .map(|(e, v)| {
            let mut s = v.clone();
            s.sort();
            Latency {
                endpoint: e.clone(),
                count: s.len(),
                p50: percentile(&s, 50),
                p95: percentile(&s, 95),
                p99: percentile(&s, 99),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 99), Duration::ZERO);
    }
}
