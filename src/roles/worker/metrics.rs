//! The worker's Prometheus metrics: records received and skipped (by reason), games and files
//! written, how long a game takes from its claim to both of its files being in place, and the
//! WAITs for WAIT_REPLICAS that timed out.

use prometheus_client::encoding::EncodeLabelSet;

use crate::metrics::{latency_buckets, register_all, Counter, Family, Histogram, SharedRegistry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// The worker's Prometheus metrics.
#[derive(Clone)]
pub struct WorkerMetrics {
    pub records_received: Counter,
    pub games_written: Counter,
    pub records_skipped: Family<ReasonLabel, Counter>,
    pub etl_duration: Histogram,
    pub files_written: Counter,
    pub replica_waits_timed_out: Counter,
}

impl WorkerMetrics {
    pub fn register(registry: &SharedRegistry) -> Self {
        let m = WorkerMetrics {
            records_received: Counter::default(),
            games_written: Counter::default(),
            records_skipped: Family::default(),
            etl_duration: Histogram::new(latency_buckets()),
            files_written: Counter::default(),
            replica_waits_timed_out: Counter::default(),
        };
        register_all(
            registry,
            &[
                (
                    "records_received",
                    "Records received on this worker's channel",
                    &m.records_received,
                ),
                (
                    "games_written",
                    "Games whose two Parquet files this worker wrote",
                    &m.games_written,
                ),
                (
                    "records_skipped",
                    "Records skipped, by reason",
                    &m.records_skipped,
                ),
                (
                    "etl_duration_seconds",
                    "Time from claiming a game to both of its files being in place",
                    &m.etl_duration,
                ),
                (
                    "files_written",
                    "Parquet files this worker put in place",
                    &m.files_written,
                ),
                (
                    "replica_waits_timed_out",
                    "Games written whose record was left unacknowledged: fewer than \
                     WAIT_REPLICAS replicas acknowledged within WAIT_MS",
                    &m.replica_waits_timed_out,
                ),
            ],
        );
        m
    }

    pub(super) fn skipped(&self, reason: &str) {
        self.records_skipped
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
}
