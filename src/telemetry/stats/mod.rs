//! Recent history for people: a fixed-size, in-memory time series of
//! requests/s, latency percentiles, status mix and refusals, sampled every
//! second and served on the admin listener (`/stats/series`, the dashboard).
//! Prometheus keeps the long history; this keeps the last few minutes so a
//! dashboard works without one.

pub(crate) mod latency;
mod sampler;
mod series;

pub use latency::LatencyHistogram;
pub use sampler::{SampleStats, Stats};
pub use series::{Sample, Series, CAPACITY};
