//! Request latency: how long the proxy took to start answering each front-end request (to its
//! response head), per origin and status class. Recording is lock-light, on the request path:
//! a read-locked lookup of the origin's histograms (written only the first time an origin is
//! seen), then three relaxed atomic adds. Snapshots are for `/metrics` and `/status`.

use http::StatusCode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (a last `+Inf` bucket follows).
pub const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Status classes, in the order histograms keep them.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Most distinct origin labels kept; further names share [`OTHER`]. Origin names are admitted
/// by tokens and routes, so this is a backstop, not a limit anyone should meet.
pub const MAX_ORIGINS: usize = 1000;
/// The label of requests no origin answered (the proxy answered itself).
pub const NO_ORIGIN: &str = "";
/// The label shared by origins past [`MAX_ORIGINS`].
pub const OTHER: &str = "(other)";

/// One histogram: per-bucket counts (not cumulative), a count and a sum in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS.iter().position(|le| secs <= *le).unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [0; BUCKETS.len() + 1];
        for (n, b) in buckets.iter_mut().zip(&self.buckets) {
            *n = b.load(Ordering::Relaxed);
        }
        // Read after the buckets so that count >= what the buckets hold, never less.
        let count = self.count.load(Ordering::Relaxed).max(buckets.iter().sum());
        HistogramSnapshot { buckets, count, sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6 }
    }
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramSnapshot {
    /// Per bucket (not cumulative), the last one being `+Inf`.
    pub buckets: [u64; BUCKETS.len() + 1],
    pub count: u64,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// The upper bound of the bucket holding the `q` quantile (0 < q <= 1); `None` when empty,
    /// infinity when it lies past the last bound.
    pub fn quantile_at_most(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

impl EncodeMetric for HistogramSnapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().chain([f64::INFINITY]).zip(self.buckets).collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum_seconds,
            self.count,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl TypedMetric for HistogramSnapshot {
    const TYPE: MetricType = MetricType::Histogram;
}

/// Label sets and their values, encoded as one metric family (prometheus-client's `Family`
/// makes its values itself; these are snapshots made elsewhere).
#[derive(Debug)]
pub struct Snapshots<M>(pub Vec<(Vec<(&'static str, String)>, M)>);

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Snapshots<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.0 {
            value.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// The latency histograms as a metric family labelled by origin and status class; classes
/// with no request are left out.
pub fn latency_family(latencies: &Latencies) -> Snapshots<HistogramSnapshot> {
    let mut out = Vec::new();
    for (origin, classes) in latencies.snapshot() {
        for (class, snap) in CLASSES.iter().zip(classes) {
            if snap.count > 0 {
                out.push((vec![("origin", origin.clone()), ("class", (*class).to_owned())], snap));
            }
        }
    }
    Snapshots(out)
}

/// The index of a status's class in [`CLASSES`].
pub fn class_of(status: StatusCode) -> usize {
    (status.as_u16() / 100).clamp(1, 5) as usize - 1
}

type PerClass = [Histogram; CLASSES.len()];

/// Latency histograms per origin and status class.
#[derive(Debug, Default)]
pub struct Latencies {
    by_origin: RwLock<HashMap<String, Arc<PerClass>>>,
}

impl Latencies {
    /// Count one response head given `elapsed` after its request arrived.
    pub fn observe(&self, origin: &str, status: StatusCode, elapsed: Duration) {
        self.of(origin)[class_of(status)].observe(elapsed);
    }

    fn of(&self, origin: &str) -> Arc<PerClass> {
        {
            let map = self.by_origin.read().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = map.get(origin) {
                return h.clone();
            }
            // Past the cap every new origin shares one entry: no write lock per request then.
            if map.len() >= MAX_ORIGINS {
                if let Some(h) = map.get(OTHER) {
                    return h.clone();
                }
            }
        }
        let mut map = self.by_origin.write().unwrap_or_else(|p| p.into_inner());
        let key = if map.len() >= MAX_ORIGINS && !map.contains_key(origin) { OTHER } else { origin };
        map.entry(key.to_owned()).or_default().clone()
    }

    /// Every origin's histograms that saw a request, by origin then class, sorted by origin.
    pub fn snapshot(&self) -> Vec<(String, [HistogramSnapshot; CLASSES.len()])> {
        let map = self.by_origin.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.iter().map(|(o, h)| (o.clone(), std::array::from_fn(|i| h[i].snapshot()))).collect();
        drop(map);
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500)); // <= 0.001
        h.observe(Duration::from_millis(1)); // exactly on a bound: that bucket
        h.observe(Duration::from_millis(30)); // <= 0.05
        h.observe(Duration::from_secs(100)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[5], 1);
        assert_eq!(s.buckets[BUCKETS.len()], 1);
        assert!((s.sum_seconds - 100.0315).abs() < 1e-9, "{}", s.sum_seconds);
        assert_eq!(s.quantile_at_most(0.5), Some(0.001));
        assert_eq!(s.quantile_at_most(0.75), Some(0.05));
        assert_eq!(s.quantile_at_most(1.0), Some(f64::INFINITY));
        assert_eq!(Histogram::default().snapshot().quantile_at_most(0.5), None);
    }

    #[test]
    fn classes_and_origins() {
        assert_eq!(CLASSES[class_of(StatusCode::OK)], "2xx");
        assert_eq!(CLASSES[class_of(StatusCode::SWITCHING_PROTOCOLS)], "1xx");
        assert_eq!(CLASSES[class_of(StatusCode::NOT_MODIFIED)], "3xx");
        assert_eq!(CLASSES[class_of(StatusCode::from_u16(599).unwrap_or_default())], "5xx");
        let l = Latencies::default();
        l.observe("media", StatusCode::OK, Duration::from_millis(3));
        l.observe("media", StatusCode::BAD_GATEWAY, Duration::from_millis(3));
        l.observe(NO_ORIGIN, StatusCode::NOT_FOUND, Duration::from_millis(3));
        let snap = l.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[1].0, "media");
        assert_eq!(snap[1].1[1].count, 1);
        assert_eq!(snap[1].1[4].count, 1);
        assert_eq!(snap[0].1[3].count, 1);
    }

    #[test]
    fn origins_past_the_cap_share_one_label() {
        let l = Latencies::default();
        for i in 0..MAX_ORIGINS + 5 {
            l.observe(&format!("o{i}"), StatusCode::OK, Duration::from_millis(1));
        }
        let snap = l.snapshot();
        assert_eq!(snap.len(), MAX_ORIGINS + 1);
        let other = snap.iter().find(|(o, _)| o == OTHER).map(|(_, h)| h[1].count);
        assert_eq!(other, Some(5));
    }

    #[test]
    fn exposition_is_a_cumulative_prometheus_histogram() {
        let l = Latencies::default();
        l.observe("media", StatusCode::OK, Duration::from_millis(2));
        l.observe("media", StatusCode::NO_CONTENT, Duration::from_millis(200));
        let family = latency_family(&l);
        assert_eq!(family.0.len(), 1, "only the class that saw requests");
        let mut registry = prometheus_client::registry::Registry::with_prefix("revmux");
        registry.register("request_duration_seconds", "Time to the response head", family);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_default();
        assert!(out.contains("# TYPE revmux_request_duration_seconds histogram"), "{out}");
        assert!(out.contains("revmux_request_duration_seconds_count{origin=\"media\",class=\"2xx\"} 2"), "{out}");
        assert!(
            out.contains("revmux_request_duration_seconds_bucket{le=\"0.001\",origin=\"media\",class=\"2xx\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("revmux_request_duration_seconds_bucket{le=\"0.0025\",origin=\"media\",class=\"2xx\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("revmux_request_duration_seconds_bucket{le=\"0.25\",origin=\"media\",class=\"2xx\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("revmux_request_duration_seconds_bucket{le=\"+Inf\",origin=\"media\",class=\"2xx\"} 2"),
            "{out}"
        );
    }
}
