//! The fanout's Prometheus metrics: what it routed, rerouted and dead-lettered, the state of the
//! log it reads (length, group lag, unacknowledged entries, dead letters) and how long a record
//! waits between its append and its PUBLISH to a worker.

use crate::metrics::{latency_buckets, register_all, Counter, Gauge, Histogram, SharedRegistry};

/// The fanout's Prometheus metrics.
#[derive(Clone)]
pub struct FanoutMetrics {
    /// Records of other publishers (no entry id) appended to the log.
    pub records_received: Counter,
    pub records_routed: Counter,
    pub records_rerouted: Counter,
    pub records_dead_lettered: Counter,
    /// Entries this fanout had read or held that another fanout re-claimed while it was paused.
    pub records_left_to_another_fanout: Counter,
    /// Dead letters dropped to keep `<lobby>:dead` within DEAD_LETTERS_MAX.
    pub dead_letters_dropped: Counter,
    pub stream_length: Gauge,
    /// Entries of the log no fanout has read yet.
    pub group_lag: Gauge,
    /// Entries read and not yet acknowledged by a worker.
    pub unacked: Gauge,
    pub dead_letters: Gauge,
    pub routing_latency: Histogram,
}

impl FanoutMetrics {
    pub fn register(registry: &SharedRegistry) -> Self {
        let m = FanoutMetrics {
            records_received: Counter::default(),
            records_routed: Counter::default(),
            records_rerouted: Counter::default(),
            records_dead_lettered: Counter::default(),
            records_left_to_another_fanout: Counter::default(),
            dead_letters_dropped: Counter::default(),
            stream_length: Gauge::default(),
            group_lag: Gauge::default(),
            unacked: Gauge::default(),
            dead_letters: Gauge::default(),
            routing_latency: Histogram::new(latency_buckets()),
        };
        register_all(
            registry,
            &[
                (
                    "records_received",
                    "Records of other publishers (no entry id) appended to the log",
                    &m.records_received,
                ),
                (
                    "records_routed",
                    "Log entries published to a worker channel for the first time",
                    &m.records_routed,
                ),
                (
                    "records_rerouted",
                    "Log entries routed again after their acknowledgement timed out",
                    &m.records_rerouted,
                ),
                (
                    "records_dead_lettered",
                    "Log entries moved to the dead-letter stream by this fanout",
                    &m.records_dead_lettered,
                ),
                (
                    "records_left_to_another_fanout",
                    "Entries this fanout held that another fanout re-claimed while it was paused",
                    &m.records_left_to_another_fanout,
                ),
                (
                    "dead_letters_dropped",
                    "Dead letters dropped to keep the dead-letter stream within DEAD_LETTERS_MAX",
                    &m.dead_letters_dropped,
                ),
                (
                    "stream_length",
                    "Entries in the log stream (on shards: in the logs of the shards this fanout reads)",
                    &m.stream_length,
                ),
                (
                    "group_lag",
                    "Entries of the log(s) it reads that no fanout has read yet",
                    &m.group_lag,
                ),
                (
                    "unacked",
                    "Entries of the log(s) it reads, read and not yet acknowledged",
                    &m.unacked,
                ),
                (
                    "dead_letters",
                    "Entries in the dead-letter stream (on shards: those of the shards it reads)",
                    &m.dead_letters,
                ),
                (
                    "routing_latency_seconds",
                    "Time from a record's append to the log to its PUBLISH to a worker",
                    &m.routing_latency,
                ),
            ],
        );
        m
    }
}
