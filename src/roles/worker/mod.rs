//! The worker (`docs/parquet.md`, `docs/delivery.md`): subscribes to its own channel `<WORKER_CHANNEL>-<worker id>` and turns
//! each finished game into two Parquet files, exactly once across all workers.
//!
//! For every record: parse it ([`crate::pipeline::record::parse`]); a record that is not a `Cleaning Game
//! Records` of the game's host needs nothing but an acknowledgement; for a host record the game
//! is claimed ([`claim`]), read ([`etl::load_game`]), turned into rows ([`etl::rows`]) and
//! written ([`crate::pipeline::sink::write_game`]), then marked done, cleaned (CLEAN_ROUTINE) and
//! acknowledged (XACK of its log entry, [`crate::pipeline::delivery::ack`]). A host record whose game is
//! unknown or unfinished, or whose handling failed, is not acknowledged: the fanout routes it
//! again and, after MAX_DELIVERIES, dead-letters it with the reason noted here. Records are
//! handled concurrently (up to [`MAX_IN_FLIGHT`]); on shutdown the worker stops reading and
//! finishes the games in hand.
//!
//! The worker beats a heartbeat while its loop makes progress (no write stuck past
//! WRITE_TIMEOUT), which is what keeps it in the fanout's rotation. At start it removes its own
//! leftovers from OUTPUT_DIR ([`leftovers`]). OUTPUT_DIR is a folder or an object store
//! ([`sink::Output`]); the steps are the same for both.

pub mod claim;
pub mod etl;
pub mod leftovers;
mod metrics;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use redis::aio::ConnectionManager;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::Settings;
use crate::metrics::SharedRegistry;
use crate::pipeline::delivery;
use crate::pipeline::keys;
use crate::pipeline::record::SkipLog;
use crate::pipeline::record::{self, Event, Record, RecordError};
use crate::pipeline::redis_conn::{self, Backoff, Outage, Redis, SubEvent};
use crate::pipeline::sink;
use crate::shutdown::Shutdown;
use claim::{Claim, Finish};
pub use metrics::{ReasonLabel, WorkerMetrics};

/// Records handled at the same time: enough to hide Redis and disk latency.
pub const MAX_IN_FLIGHT: usize = 16;

/// How long a record of a game another worker is writing waits for that worker to finish.
const BUSY_WAIT: Duration = Duration::from_secs(2);

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
    /// Stopped before the record was finished (shutdown during a Redis outage, a file error,
    /// a write past WRITE_TIMEOUT); not acknowledged, so it is routed again.
    Abandoned,
}

/// State shared by the record handlers.
struct Worker {
    id: String,
    lobby: String,
    output: sink::Output,
    clean_routine: bool,
    redis_expiry: Duration,
    write_timeout: Duration,
    /// Writes that ran past WRITE_TIMEOUT and have not returned yet: while any is stuck the
    /// worker stops beating, so the fanout gives it nothing new.
    stuck_writes: Arc<AtomicUsize>,
    conn: ConnectionManager,
    metrics: WorkerMetrics,
    skips: Mutex<SkipLog>,
    outage: Mutex<Outage>,
    shutdown: Shutdown,
}

/// Runs a worker until shutdown, then finishes the records in hand and reports.
pub async fn run(settings: &Settings, redis: Redis, shutdown: Shutdown) -> Result<WorkerReport> {
    let registry = crate::metrics::registry("worker");
    let worker_metrics = WorkerMetrics::register(&registry);
    run_with_metrics(settings, redis, shutdown, worker_metrics, &registry).await
}

/// [`run`] with metrics the caller registered (benchmarks and tests read them).
#[tracing::instrument(name = "worker", skip_all, fields(id = %settings.worker_id))]
pub async fn run_with_metrics(
    settings: &Settings,
    redis: Redis,
    shutdown: Shutdown,
    worker_metrics: WorkerMetrics,
    registry: &SharedRegistry,
) -> Result<WorkerReport> {
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
    leftovers::remove(&mut conn.clone(), &output, &id).await?;
    let worker = Arc::new(Worker {
        id: id.clone(),
        lobby: lobby.clone(),
        output,
        clean_routine: settings.clean_routine,
        redis_expiry: settings.redis_expiry,
        write_timeout: settings.write_timeout,
        stuck_writes: Arc::new(AtomicUsize::new(0)),
        conn,
        metrics: worker_metrics,
        skips: Mutex::new(SkipLog::default()),
        outage: Mutex::new(Outage::new("worker")),
        shutdown: shutdown.clone(),
    });
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
    // Shutdown: out of rotation at once; the games in hand are finished; records not yet
    // started stay unacknowledged and are routed again by the fanout.
    let mut conn = worker.conn.clone();
    let left = delivery::leave(&mut conn, &lobby, &id);
    let _ = tokio::time::timeout(Duration::from_secs(1), left).await;
    while let Some(done) = jobs.join_next().await {
        tally(&mut report, done);
    }
    tracing::info!(
        "worker {id} stopped: {} record(s) received, {} game(s) written, {} skipped",
        report.records_received,
        report.games_written,
        report.skipped
    );
    Ok(report)
}

fn tally(report: &mut WorkerReport, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Written) => report.games_written += 1,
        Ok(Outcome::AlreadyDone) => report.already_done += 1,
        Ok(Outcome::Skipped | Outcome::Unwritable(_)) => report.skipped += 1,
        Ok(Outcome::Busy) => report.busy += 1,
        Ok(Outcome::NothingToDo | Outcome::Abandoned) => {}
        Err(e) => tracing::error!("record handler failed: {e}"),
    }
}

/// Why the handling of one record stopped early.
enum Failure {
    /// Redis is unreachable: retry the whole record (every step can be repeated).
    Redis(redis::RedisError),
    /// Anything else (a file error, malformed game state): give up on this delivery.
    Other(anyhow::Error),
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        let transient = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || matches!(e.kind(), redis::ErrorKind::Server(_));
        if transient {
            Failure::Redis(e)
        } else {
            Failure::Other(e.into())
        }
    }
}

impl Worker {
    async fn handle(&self, payload: &[u8]) -> Outcome {
        let record = match record::parse(payload) {
            Ok(record) => record,
            Err(e) => {
                self.skip(&e);
                // A routed record carries its delivery id even when the rest is bad.
                if let Some(id) = delivery_id_of(payload) {
                    self.ack_until_done(&id).await;
                }
                return Outcome::Skipped;
            }
        };
        // One lease token per record, so a retry after a Redis error is the same claimant.
        let token = claim::lease_token(&self.id);
        let mut backoff = Backoff::default();
        let span = game_span(&record);
        loop {
            match self.process(&record, &token).instrument(span.clone()).await {
                Ok(outcome) => {
                    self.outage().recovered();
                    return outcome;
                }
                Err(Failure::Redis(e)) => {
                    self.outage().failed(&redis_conn::describe(&e));
                    if !backoff.wait(&self.shutdown).await {
                        return Outcome::Abandoned;
                    }
                }
                Err(Failure::Other(e)) => {
                    tracing::error!("worker {}: {e:#}; the record will be routed again", self.id);
                    if let Event::CleaningGameRecords { game_token, .. } = &record.event {
                        let _ =
                            claim::release(&mut self.conn.clone(), &game_token.to_string(), &token)
                                .await;
                    }
                    self.note_failure(&record, &format!("{e:#}")).await;
                    return Outcome::Abandoned;
                }
            }
        }
    }

    async fn process(&self, record: &Record, token: &str) -> Result<Outcome, Failure> {
        let mut conn = self.conn.clone();
        let (game, user) = match &record.event {
            Event::CleaningGameRecords {
                game_token,
                user_token,
            } => (game_token.to_string(), user_token.to_string()),
            Event::GameTimedOut { game_token } => {
                // A lobby that never played: no files, but its keys must not stay forever.
                self.clean(&mut conn, &game_token.to_string()).await?;
                self.ack(&mut conn, record).await?;
                return Ok(Outcome::NothingToDo);
            }
            Event::Other => {
                self.ack(&mut conn, record).await?;
                return Ok(Outcome::NothingToDo);
            }
        };
        let outcome = match self.claim_or_wait(&mut conn, &game, &user, token).await? {
            // (the outcomes below that return early leave the record unacknowledged)
            Claim::UnknownGame => {
                // Not acknowledged: it may be a record that overtook its game (another
                // publisher), and it must not vanish silently; it ends in the dead letters.
                let why = format!("unknown game {game}");
                self.skip_game("unknown_game", &why);
                self.note_failure(record, &why).await;
                return Ok(Outcome::Skipped);
            }
            Claim::NotHost => {
                self.ack(&mut conn, record).await?;
                return Ok(Outcome::NothingToDo);
            }
            Claim::Done(_) => {
                self.clean(&mut conn, &game).await?;
                Outcome::AlreadyDone
            }
            Claim::Busy(holder) => {
                tracing::debug!(
                    "game {game} is being written by {holder}; leaving the record for later"
                );
                return Ok(Outcome::Busy);
            }
            Claim::Claimed { previous_writer } => {
                let renewer = self.keep_lease(&game, token);
                let written = self.write(&mut conn, &game, token, previous_writer).await;
                renewer.abort();
                match written? {
                    Some(Outcome::Unwritable(why)) => {
                        // Unfinished or malformed: not acknowledged, so it is tried again and
                        // ends in the dead letters with this reason if it never gets better.
                        self.note_failure(record, &why).await;
                        return Ok(Outcome::Skipped);
                    }
                    Some(outcome) => outcome,
                    // Lost the game to another worker: it acknowledges once the game is done.
                    None => return Ok(Outcome::Busy),
                }
            }
        };
        self.ack(&mut conn, record).await?;
        Ok(outcome)
    }

    /// Claims the game; while another worker holds it (a second delivery of the same record),
    /// waits up to [`BUSY_WAIT`] for that worker to finish, so the duplicate is acknowledged at
    /// once instead of coming back after ACK_TIMEOUT.
    async fn claim_or_wait(
        &self,
        conn: &mut ConnectionManager,
        game: &str,
        user: &str,
        token: &str,
    ) -> Result<Claim, Failure> {
        let give_up = Instant::now() + BUSY_WAIT;
        loop {
            let answer = claim::claim(conn, game, user, token, &self.id).await?;
            if !matches!(answer, Claim::Busy(_))
                || Instant::now() >= give_up
                || self.shutdown.is_triggered()
            {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Holds the claim for the steps after [`claim::claim`]; `None` when another worker took the
    /// game over meanwhile.
    async fn write(
        &self,
        conn: &mut ConnectionManager,
        game: &str,
        token: &str,
        previous_writer: Option<String>,
    ) -> Result<Option<Outcome>, Failure> {
        let started = Instant::now();
        if let Some(previous) = &previous_writer {
            if self.pair_in_place(game, previous).await? {
                // A writer died between its renames and `finish`: its pair is the output.
                tracing::info!("game {game}: taking over the complete files of worker {previous}");
                return match claim::finish(conn, game, token, previous).await? {
                    Finish::Done(_) => {
                        self.clean(conn, game).await?;
                        Ok(Some(Outcome::AlreadyDone))
                    }
                    Finish::Lost { .. } => Ok(None),
                };
            }
        }
        let loaded = match etl::load_game(conn, game).await.map_err(anyhow_failure) {
            Ok(loaded) => loaded,
            Err(Failure::Other(e)) => {
                // Malformed game state will not get better: no retry here; the fanout's
                // delivery limit sends it to the dead letters with this reason.
                claim::release(conn, game, token).await?;
                let why = format!("game {game}: {e:#}");
                self.skip_game("malformed_game", &why);
                return Ok(Some(Outcome::Unwritable(why)));
            }
            Err(e) => return Err(e),
        };
        let Some(data) = loaded else {
            claim::release(conn, game, token).await?;
            let why = format!("game {game} does not exist or is not finished");
            self.skip_game("game_not_finished", &why);
            return Ok(Some(Outcome::Unwritable(why)));
        };
        if let Some(previous) = previous_writer {
            if !claim::start_writing(conn, game, token, &self.id).await? {
                return Ok(None);
            }
            // We are the writer now: whatever the previous one left is not the output.
            tracing::info!("game {game}: removing the incomplete files of worker {previous}");
            self.remove_files(game, &previous).await;
        }
        self.write_files(game, &data).await?;
        match claim::finish(conn, game, token, &self.id).await? {
            Finish::Done(by) if by == self.id => {
                self.metrics
                    .etl_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.files_written.inc_by(2);
                self.metrics.games_written.inc();
                self.clean(conn, game).await?;
                Ok(Some(Outcome::Written))
            }
            Finish::Done(by) => {
                tracing::info!("game {game} was finished by {by} meanwhile; removing our files");
                self.remove_files(game, &self.id).await;
                self.clean(conn, game).await?;
                Ok(Some(Outcome::AlreadyDone))
            }
            Finish::Lost { writer } => {
                if writer.as_deref() != Some(self.id.as_str()) {
                    tracing::info!("game {game}: lease lost to another writer; removing our files");
                    self.remove_files(game, &self.id).await;
                }
                Ok(None)
            }
        }
    }

    /// Renews the lease every third of its length until aborted.
    fn keep_lease(&self, game: &str, token: &str) -> tokio::task::JoinHandle<()> {
        let (mut conn, game, token) = (self.conn.clone(), game.to_string(), token.to_string());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(claim::LEASE / 3).await;
                match claim::renew(&mut conn, &game, &token).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(_) => {} // Redis is down: keep trying, the lease may survive it.
                }
            }
        })
    }

    /// Whether `worker`'s pair of `game` is complete. A store that cannot answer (after the
    /// client's retries) fails this delivery: it comes back later.
    async fn pair_in_place(&self, game: &str, worker: &str) -> Result<bool, Failure> {
        self.output
            .has_pair(game, worker)
            .await
            .map_err(Failure::Other)
    }

    /// Removes `worker`'s files of `game`, final and temporary.
    async fn remove_files(&self, game: &str, worker: &str) {
        self.output.remove_pair(game, worker).await;
    }

    /// CLEAN_ROUTINE: only ever called once the game's files are in place (done is set).
    async fn clean(&self, conn: &mut ConnectionManager, game: &str) -> Result<(), Failure> {
        if !self.clean_routine {
            return Ok(());
        }
        etl::expire_game(conn, game, self.redis_expiry)
            .await
            .map_err(anyhow_failure)?;
        let seconds = self.redis_expiry.as_secs().max(1) as i64;
        let _: () = redis::pipe()
            .expire(keys::etl_done(game), seconds)
            .ignore()
            .expire(keys::etl_writer(game), seconds)
            .ignore()
            .query_async(conn)
            .await?;
        Ok(())
    }

    async fn ack(&self, conn: &mut ConnectionManager, record: &Record) -> Result<(), Failure> {
        if let Some(id) = &record.delivery_id {
            delivery::ack(conn, &self.lobby, std::slice::from_ref(id)).await?;
        }
        Ok(())
    }

    /// Acknowledges a bad record, retrying while Redis is down (until shutdown).
    async fn ack_until_done(&self, id: &str) {
        let mut conn = self.conn.clone();
        let mut backoff = Backoff::default();
        let ids = [id.to_string()];
        while let Err(e) = delivery::ack(&mut conn, &self.lobby, &ids).await {
            self.outage().failed(&redis_conn::describe(&e));
            if !backoff.wait(&self.shutdown).await {
                return;
            }
        }
    }

    /// Leaves the reason a routed record could not be handled where the fanout's dead letter
    /// will find it (best effort: the record comes back either way).
    async fn note_failure(&self, record: &Record, reason: &str) {
        if let Some(id) = &record.delivery_id {
            let mut conn = self.conn.clone();
            let _ = delivery::note_failure(&mut conn, &self.lobby, id, &self.id, reason).await;
        }
    }

    /// Beats the heartbeat unless a write is stuck past WRITE_TIMEOUT.
    async fn heartbeat(&self) {
        if self.stuck_writes.load(Ordering::Relaxed) > 0 {
            return;
        }
        let mut conn = self.conn.clone();
        if let Err(e) = delivery::heartbeat(&mut conn, &self.lobby, &self.id).await {
            self.outage().failed(&redis_conn::describe(&e));
        }
    }

    /// Writes the game's pair of files, giving up after WRITE_TIMEOUT. A write that overruns
    /// keeps its thread (it cannot be cancelled); when it does return, its files are removed
    /// unless they became the game's output meanwhile.
    async fn write_files(&self, game: &str, data: &etl::GameData) -> Result<(), Failure> {
        let (meta, podium) = etl::rows(game, data);
        let (output, id, g) = (self.output.clone(), self.id.clone(), game.to_string());
        // Spawned, so a write past WRITE_TIMEOUT runs on and is cleaned up when it returns.
        let mut write = tokio::spawn(async move { output.write_game(&id, &g, meta, podium).await });
        match tokio::time::timeout(self.write_timeout, &mut write).await {
            Ok(joined) => joined
                .map_err(|e| Failure::Other(anyhow::anyhow!("writing game {game}: {e}")))?
                .map_err(Failure::Other),
            Err(_) => {
                self.stuck_writes.fetch_add(1, Ordering::Relaxed);
                let (stuck, mut conn) = (self.stuck_writes.clone(), self.conn.clone());
                let (output, id, g) = (self.output.clone(), self.id.clone(), game.to_string());
                tokio::spawn(async move {
                    let _ = write.await;
                    stuck.fetch_sub(1, Ordering::Relaxed);
                    let done: Option<String> = redis::cmd("GET")
                        .arg(keys::etl_done(&g))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or(None);
                    if done.as_deref() != Some(id.as_str()) {
                        tracing::warn!(
                            "game {g}: a write that overran WRITE_TIMEOUT returned; removing its files"
                        );
                        output.remove_pair(&g, &id).await;
                    }
                }.in_current_span());
                Err(Failure::Other(anyhow::anyhow!(
                    "writing game {game} took longer than WRITE_TIMEOUT ({:?}); gave it up",
                    self.write_timeout
                )))
            }
        }
    }

    fn skip(&self, e: &RecordError) {
        self.metrics.skipped(e.label());
        self.skips.lock().unwrap_or_else(|p| p.into_inner()).skip(e);
    }

    fn skip_game(&self, label: &'static str, message: &str) {
        self.metrics.skipped(label);
        self.skips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .skip_with(label, message);
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The span of a record's game, so concurrent games' lines can be told apart.
fn game_span(record: &Record) -> tracing::Span {
    match &record.event {
        Event::CleaningGameRecords { game_token, .. } | Event::GameTimedOut { game_token } => {
            tracing::info_span!("game", game = %game_token)
        }
        Event::Other => tracing::Span::none(),
    }
}

/// A Redis error inside an ETL step stays retryable; anything else is final for this delivery.
fn anyhow_failure(e: anyhow::Error) -> Failure {
    match e.downcast::<redis::RedisError>() {
        Ok(e) => e.into(),
        Err(e) => Failure::Other(e),
    }
}

/// The delivery id of a record that did not parse, if it is at least a JSON object carrying one.
fn delivery_id_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        delivery_id: Option<String>,
    }
    if payload.len() > record::MAX_RECORD_BYTES {
        return None;
    }
    serde_json::from_slice::<IdOnly>(payload)
        .ok()
        .and_then(|r| r.delivery_id)
}
