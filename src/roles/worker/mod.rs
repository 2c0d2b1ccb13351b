//! The worker (`docs/parquet.md`, `docs/delivery.md`): subscribes to its own channel `<WORKER_CHANNEL>-<worker id>` and turns
//! each finished game into two Parquet files, exactly once across all workers.
//!
//! For every record: parse it ([`crate::pipeline::record::parse`]); a record that is not a `Cleaning Game
//! Records` of the game's host needs nothing but an acknowledgement; for a host record the game
//! is claimed ([`claim`]), read ([`etl::load_game`]), turned into rows ([`etl::rows`]) and
//! written ([`crate::pipeline::sink::Output::write_game`]), then marked done, cleaned (CLEAN_ROUTINE),
//! with WAIT_REPLICAS waited on until that many replicas hold it, and acknowledged (XACK of its
//! log entry, [`crate::pipeline::delivery::ack`]). A host record whose game is
//! unknown or unfinished, or whose handling failed, is not acknowledged: the fanout routes it
//! again and, after MAX_DELIVERIES, dead-letters it with the reason noted here. Records are
//! handled concurrently (up to [`MAX_IN_FLIGHT`]); on shutdown the worker stops reading and
//! finishes the games in hand.
//!
//! The worker beats a heartbeat while its loop makes progress (no write stuck past
//! WRITE_TIMEOUT), which is what keeps it in the fanout's rotation. At start it removes its own
//! leftovers from OUTPUT_DIR ([`leftovers`]). OUTPUT_DIR is a folder or an object store
//! ([`sink::Output`]); the steps are the same for both.
//!
//! This file runs the loop (subscribe, beat, hand records to handlers, tally); `handle.rs` holds
//! the `Worker` the handlers share and takes one record from parse to
//! acknowledgement; `write.rs` holds its `Writer`, which writes a claimed game's files.

pub mod claim;
pub mod etl;
mod handle;
use handle::Worker;
pub mod leftovers;
mod metrics;
mod write;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::Settings;
use crate::metrics::SharedRegistry;
use crate::pipeline::delivery;
use crate::pipeline::keys;
use crate::pipeline::redis_conn::{self, Redis, SubEvent};
use crate::pipeline::shard::{Agreement, Layout};
use crate::pipeline::sink;
use crate::shutdown::Shutdown;
pub use metrics::{ReasonLabel, WorkerMetrics};

/// Records handled at the same time: enough to hide Redis and disk latency.
pub const MAX_IN_FLIGHT: usize = 16;

/// How long a record of a game another worker is writing waits for that worker to finish.
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// How long a stopping worker waits for Redis to take it out of rotation: a stop must not wait
/// for a Redis that is gone (the fanout drops a worker whose beat is stale anyway).
const LEAVE_TIMEOUT: Duration = Duration::from_millis(500);

/// What a worker did, returned when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub records_received: u64,
    /// Games whose output is this worker's pair of files.
    pub games_written: u64,
    /// Records skipped: malformed, unknown game, not finished.
    pub skipped: u64,
    /// Host records of games some worker had already finished.
    pub already_done: u64,
    /// Host records left unacknowledged because another worker held the game.
    pub busy: u64,
}

/// How one record ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Written,
    AlreadyDone,
    /// Not a host record, or not a `Cleaning Game Records`: acknowledged, nothing to do.
    NothingToDo,
    Skipped,
    /// The game cannot be written (not finished, malformed), for this reason.
    Unwritable(String),
    Busy,
    /// Written (or found done), but fewer than WAIT_REPLICAS replicas acknowledged within
    /// WAIT_MS: not acknowledged, so it is routed again and its next delivery finds it done.
    /// `written`: this worker's pair is the game's output.
    Unreplicated {
        written: bool,
    },
    /// Stopped before the record was finished (shutdown during a Redis outage, a file error,
    /// a write past WRITE_TIMEOUT); not acknowledged, so it is routed again.
    Abandoned,
}

/// Runs a worker until shutdown, then finishes the records in hand and reports.
pub async fn run(settings: &Settings, redis: Redis, shutdown: Shutdown) -> Result<WorkerReport> {
    let registry = crate::metrics::registry("worker");
    let worker_metrics = WorkerMetrics::register(&registry);
    run_with_metrics(settings, redis, shutdown, worker_metrics, &registry).await
}

/// [`run`] with metrics the caller registered (tests read them).
#[tracing::instrument(name = "worker", skip_all, fields(id = %settings.worker_id))]
pub async fn run_with_metrics(
    settings: &Settings,
    redis: Redis,
    shutdown: Shutdown,
    worker_metrics: WorkerMetrics,
    registry: &SharedRegistry,
) -> Result<WorkerReport> {
    let layout = Layout::for_role(settings, &redis, Agreement::Read).await?;
    let lobby = settings.worker_channel.clone();
    let id = settings.worker_id.clone();
    let channel = keys::worker_channel(&lobby, &id);
    let mut conn = redis.conn();
    let subscribers = redis_conn::numsub(&mut conn, std::slice::from_ref(&channel)).await?;
    if subscribers.iter().any(|(_, n)| *n > 0) {
        bail!(
            "worker id {id:?} is already in use: channel {channel} has a subscriber; \
             give this worker another id (HOSTNAME or --worker-id)"
        );
    }
    crate::metrics::maybe_serve(settings.metrics_addr, registry, &shutdown).await?;
    let output = sink::Output::open(&settings.output_dir)?;
    leftovers::remove(&mut conn.clone(), &layout, &output, &id).await?;
    // WAIT blocks the connection it is sent on: with WAIT_REPLICAS the records' own commands
    // get one of their own, so heartbeats and lease renewals never queue behind a WAIT.
    let records_conn = if settings.wait_replicas > 0 {
        redis.dedicated().await?
    } else {
        conn.clone()
    };
    let logs = delivery::Log::all(&layout, &lobby);
    let worker = Arc::new(Worker::new(
        settings,
        layout,
        output,
        conn,
        records_conn,
        worker_metrics,
        shutdown.clone(),
    ));
    let mut events =
        redis_conn::subscribe(&redis, vec![channel.clone()], Vec::new(), shutdown.clone());
    let mut report = WorkerReport::default();
    let mut jobs: JoinSet<Outcome> = JoinSet::new();
    let mut beat = tokio::time::interval(delivery::HEARTBEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut subscribed = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.recv() => break,
            Some(done) = jobs.join_next(), if !jobs.is_empty() => tally(&mut report, done),
            _ = beat.tick(), if subscribed => worker.heartbeat().await,
            event = events.recv(), if jobs.len() < MAX_IN_FLIGHT => match event {
                None => break,
                Some(SubEvent::Subscribed) => {
                    tracing::info!("worker {id} listening on {channel}");
                    // Only a subscribed worker may be routed to.
                    subscribed = true;
                    worker.heartbeat().await;
                }
                Some(SubEvent::Message { payload, .. }) => {
                    report.records_received += 1;
                    worker.metrics.records_received.inc();
                    let worker = worker.clone();
                    jobs.spawn(async move { worker.handle(&payload).await }.in_current_span());
                }
            },
        }
    }
    // Shutdown: out of rotation at once; the games in hand are finished while Redis answers;
    // records not yet started, and games in hand once Redis is gone, stay unacknowledged and
    // are routed again by the fanout (abandoning a game half-way is a crash the claim survives).
    let mut conn = worker.conn.clone();
    let left = delivery::leave(&mut conn, &lobby, &id);
    let _ = tokio::time::timeout(LEAVE_TIMEOUT, left).await;
    let redis_gone = tokio::select! {
        () = drain(&mut jobs, &mut report) => false,
        () = worker.redis_gone() => true,
    };
    if redis_gone {
        if !jobs.is_empty() {
            tracing::warn!(
                "worker {id}: Redis is unreachable; abandoning {} record(s) in hand (they will \
                 be routed again)",
                jobs.len()
            );
            jobs.abort_all();
        }
    } else {
        // Nothing in hand will be acknowledged any more. An empty consumer left in the group
        // would stay there for ever when this worker id never comes back.
        let retired = delivery::retire(&mut conn, &logs, &id);
        if let Ok(Ok(false)) = tokio::time::timeout(LEAVE_TIMEOUT, retired).await {
            tracing::info!(
                "worker {id}: keeping its consumer of {}: it still holds records, which will be \
                 routed again",
                keys::fanout_group(&lobby)
            );
        }
    }
    tracing::info!(
        "worker {id} stopped: {} record(s) received, {} game(s) written, {} skipped",
        report.records_received,
        report.games_written,
        report.skipped
    );
    Ok(report)
}

async fn drain(jobs: &mut JoinSet<Outcome>, report: &mut WorkerReport) {
    while let Some(done) = jobs.join_next().await {
        tally(report, done);
    }
}

fn tally(report: &mut WorkerReport, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Written | Outcome::Unreplicated { written: true }) => report.games_written += 1,
        Ok(Outcome::AlreadyDone) => report.already_done += 1,
        Ok(Outcome::Skipped | Outcome::Unwritable(_)) => report.skipped += 1,
        Ok(Outcome::Busy) => report.busy += 1,
        Ok(
            Outcome::NothingToDo | Outcome::Abandoned | Outcome::Unreplicated { written: false },
        ) => {}
        Err(e) => tracing::error!("record handler failed: {e}"),
    }
}

/// The TTL of a written game's `etl:done`: REDIS_EXPIRY, but never shorter than the time its
/// record can still come back (every delivery's ACK_TIMEOUT) plus a margin.
fn done_expiry(settings: &Settings) -> Duration {
    let redeliveries = settings.ack_timeout * (settings.max_deliveries + 1);
    settings
        .redis_expiry
        .max(redeliveries + Duration::from_secs(10))
}
