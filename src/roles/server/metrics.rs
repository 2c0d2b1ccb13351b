//! The game server's Prometheus metrics (served when METRICS_ADDR is set).

use crate::metrics::{latency_buckets, register_all, Counter, Gauge, Histogram, SharedRegistry};

/// Metric handles; clones share the same values.
#[derive(Clone)]
pub struct ServerMetrics {
    pub connected_players: Gauge,
    pub games_started: Counter,
    pub games_completed: Counter,
    pub games_timed_out: Counter,
    pub attacks: Counter,
    pub turn_latency: Histogram,
    pub records_published: Counter,
}

impl ServerMetrics {
    /// New metrics registered in `registry`.
    pub fn register(registry: &SharedRegistry) -> Self {
        let m = ServerMetrics {
            connected_players: Gauge::default(),
            games_started: Counter::default(),
            games_completed: Counter::default(),
            games_timed_out: Counter::default(),
            attacks: Counter::default(),
            turn_latency: Histogram::new(latency_buckets()),
            records_published: Counter::default(),
        };
        register_all(
            registry,
            &[
                (
                    "connected_players",
                    "Lobby sockets connected to this process",
                    &m.connected_players,
                ),
                (
                    "games_started",
                    "Games this process started",
                    &m.games_started,
                ),
                (
                    "games_completed",
                    "Games this process completed",
                    &m.games_completed,
                ),
                (
                    "games_timed_out",
                    "Lobbies this process timed out",
                    &m.games_timed_out,
                ),
                (
                    "attacks",
                    "Attacks stored",
                    &m.attacks,
                ),
                (
                    "turn_latency_seconds",
                    "Time from a stored turn change to the USER'S TURN push",
                    &m.turn_latency,
                ),
                (
                    "records_published",
                    "Lifecycle records appended to the log stream (and published on the lobby channel)",
                    &m.records_published,
                ),
            ],
        );
        m
    }
}
