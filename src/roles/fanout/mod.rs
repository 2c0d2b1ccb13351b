//! The fanout (`docs/delivery.md`): reads the lifecycle log as a member of a Redis Streams consumer group
//! and routes each entry to exactly one live worker channel.
//!
//! The server appends every record to `<lobby>:log` in the script that commits the game state
//! the record reports ([`crate::roles::server::game::Rules`]). The fanout's router loop:
//! - reads new entries with XREADGROUP (group `<lobby>:fanouts`, consumer `fanout:<id>`), only
//!   as many as the live workers can take (each holds at most
//!   [`delivery::MAX_UNACKED_PER_WORKER`] unacknowledged records);
//! - hands each to one worker: XCLAIM … JUSTID moves the pending entry to a consumer named after
//!   the worker, then PUBLISH sends the record, with `delivery_id` = the entry id, on
//!   `<lobby>-<worker id>`. A PUBLISH that reaches nobody is routed to another worker at once;
//! - claims entries left unacknowledged for ACK_TIMEOUT (any fanout's, any worker's) and routes
//!   them again, preferably to another worker; after MAX_DELIVERIES they go to `<lobby>:dead`
//!   (`claim_expired.lua`);
//! - trims acknowledged history older than LOG_RETENTION (`trim.lua`).
//!
//! A worker is live while its heartbeat (`<lobby>:workers`, by Redis time) is fresh: it beats
//! only while it makes progress, so a paused or stuck worker drops out of rotation.
//!
//! The fanout holds nothing that exists only in its memory: killed at any instant, what it had
//! read is in the group's pending list and is claimed by the next fanout after ACK_TIMEOUT.
//! It also listens on the lobby channel for records of other publishers (the Python reference
//! server: no entry id) and appends those to the log (`append_foreign.lua`); records carrying
//! an `entry_id` are in the log already and are ignored there.
//!
//! This file starts the fanout; `router.rs` is the router (its loop, its upkeep, and the handing
//! of entries to workers), `route.rs` the form a routed entry takes, `foreign.rs` appends other
//! publishers' records, `inspect.rs` reads the log's state for `status`.

mod foreign;
mod inspect;
mod metrics;
mod route;
mod router;
mod shards;
mod workers;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use redis::Script;
use tracing::Instrument;

use crate::config::Settings;
use crate::pipeline::delivery;
use crate::pipeline::keys;
use crate::pipeline::redis_conn::{self, Redis};
use crate::pipeline::shard::{Agreement, Layout, Shard};
use crate::shutdown::Shutdown;
use foreign::append_foreign;
pub use inspect::{inspect, inspect_logs, PipelineState};
pub use metrics::FanoutMetrics;
pub use route::with_delivery_id;
use router::Router;

/// Entries read or routed per round trip.
const ROUTE_BATCH: usize = 500;
/// Expired entries claimed per round trip.
const CLAIM_BATCH: usize = 200;
/// How often the list of live workers is read.
const WORKER_REFRESH: Duration = Duration::from_millis(250);
/// How often the gauges (stream length, lag, dead letters) are sampled.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);
/// How often the log is trimmed.
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// How long one XREADGROUP waits for new entries.
const READ_BLOCK: Duration = Duration::from_millis(100);
/// Pause while every live worker is at its limit of unacknowledged records.
const SATURATED_PAUSE: Duration = Duration::from_millis(5);
/// A worker without a heartbeat for this long is forgotten (no longer listed by `status`).
const FORGET_WORKER: Duration = Duration::from_secs(600);
/// How long a fanout's consumer may go without reading before another fanout deletes it
/// (when it holds nothing): a live fanout reads every READ_BLOCK.
const FORGET_FANOUT: Duration = Duration::from_secs(60);
/// How many games' workers the router remembers, so a game's records go to one worker.
const GAMES_REMEMBERED: usize = 10_000;
/// How long a foreign record's digest is remembered, so several fanouts append it once.
const FOREIGN_SEEN_SECS: u64 = 3600;

static CLAIM_EXPIRED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("claim_expired.lua")));
static LIVE_WORKERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("live_workers.lua")));
static ROUTE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("route.lua")));
static KEEP_OWN: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("keep_own.lua")));
static FORGET_CONSUMERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("forget_consumers.lua")));
static TRIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("trim.lua")));
static APPEND_FOREIGN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("append_foreign.lua")));

/// Runs the fanout until shutdown. It keeps nothing in memory that Redis does not also hold,
/// so it stops at once.
pub async fn run(settings: &Settings, redis: Redis, shutdown: Shutdown) -> Result<()> {
    let registry = crate::metrics::registry("fanout");
    let fanout_metrics = FanoutMetrics::register(&registry);
    crate::metrics::maybe_serve(settings.metrics_addr, &registry, &shutdown).await?;
    run_with_metrics(settings, redis, shutdown, fanout_metrics).await
}

/// [`run`] with metrics the caller registered (benchmarks read them).
#[tracing::instrument(name = "fanout", skip_all, fields(id = %settings.worker_id))]
pub async fn run_with_metrics(
    settings: &Settings,
    redis: Redis,
    shutdown: Shutdown,
    metrics: FanoutMetrics,
) -> Result<()> {
    let layout = Layout::for_role(settings, &redis, Agreement::Read).await?;
    let lobby = settings.worker_channel.clone();
    let consumer = delivery::fanout_consumer(&settings.worker_id);
    tracing::info!(
        "fanout {consumer} routing {} to {}, ack timeout {:?}, {} deliveries at most",
        describe_logs(&layout, &lobby),
        keys::worker_channel_pattern(&lobby),
        settings.ack_timeout,
        settings.max_deliveries
    );
    if layout.is_tagged() {
        // Records of other publishers are appended to the single layout's log only: the
        // original server, which sends them, runs on one Redis with today's key names.
        shards::keep(settings, &layout, &consumer, &redis, &metrics, &shutdown).await;
        return Ok(());
    }
    let events = redis_conn::subscribe(&redis, vec![lobby.clone()], Vec::new(), shutdown.clone());
    let foreign = tokio::spawn(
        append_foreign(
            lobby.clone(),
            redis.conn(),
            events,
            metrics.clone(),
            shutdown.clone(),
        )
        .in_current_span(),
    );
    let log = delivery::Log::of(&layout, &lobby, Shard(0));
    let mut router = Router::new(settings, log, consumer, redis.own_conn()?, metrics);
    router.run(&shutdown).await;
    match foreign.await {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("fanout listener task failed: {e}")),
    }
}

/// The log(s) a fanout reads, for its first line.
fn describe_logs(layout: &Layout, lobby: &str) -> String {
    match layout.is_tagged() {
        false => keys::log_stream(lobby),
        true => format!(
            "the logs of {} shards ({} … {})",
            layout.count(),
            layout.keys(Shard(0)).log_stream(lobby),
            layout.keys(Shard(layout.count() - 1)).log_stream(lobby)
        ),
    }
}

/// One log entry on its way to a worker.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) record: Vec<u8>,
    /// The worker that held it last (a re-route prefers another).
    pub(super) avoid: Option<String>,
    pub(super) rerouted: bool,
    /// When this fanout last took it (read, claimed or kept it), by its own clock: until
    /// ACK_TIMEOUT has passed since, no other fanout can have re-claimed it.
    pub(super) taken: Instant,
}
