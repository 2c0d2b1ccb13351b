//! The state the record handlers share ([`Worker`]) and the handling of one record: parse it,
//! claim its game (or wait for the worker that holds it), write it (its files through
//! [`super::write::Writer`]), then clean, wait for WAIT_REPLICAS replicas and acknowledge; a
//! Redis error retries the whole record, any other failure leaves it unacknowledged with the
//! reason noted for the dead letter.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pipeline::redis_conn::Conn;
use anyhow::Result;
use tracing::Instrument;

use super::claim::{self, Claim, Finish};
use super::etl::{self, EtlError};
use super::write::Writer;
use super::{Outcome, WorkerMetrics, BUSY_WAIT};
use crate::config::Settings;
use crate::pipeline::delivery;
use crate::pipeline::keys::Keys;
use crate::pipeline::record::{self, Event, Record, RecordError, SkipLog};
use crate::pipeline::redis_conn::{self, Backoff, Outage};
use crate::pipeline::shard::Layout;
use crate::pipeline::sink;
use crate::shutdown::Shutdown;

/// How long a stopping worker waits for Redis to answer a PING before it gives up on the
/// games in hand.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the handling of one record stopped early.
pub(super) enum Failure {
    /// Redis is unreachable or passingly unable to answer: retry the whole record (every step
    /// can be repeated).
    Redis(redis::RedisError),
    /// The write overran WRITE_TIMEOUT and goes on in the background, holding the game's lease
    /// until it returns and its files are judged: give up on this delivery without releasing.
    Overran(anyhow::Error),
    /// Anything else (a file error, malformed game state, an error Redis will repeat such as
    /// WRONGTYPE): give up on this delivery; it ends in the dead letters with this reason.
    Other(anyhow::Error),
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        if redis_conn::is_transient(&e) {
            Failure::Redis(e)
        } else {
            Failure::Other(e.into())
        }
    }
}

/// An ETL step's Redis error follows the Redis rule above, exactly as a worker's own command;
/// a bad token or malformed game state is final for this delivery.
impl From<EtlError> for Failure {
    fn from(e: EtlError) -> Self {
        let transient = e.is_transient();
        match e {
            EtlError::Redis { source, .. } if transient => Failure::Redis(source),
            EtlError::Redis { source, .. } => Failure::Other(source.into()),
            other => Failure::Other(other.into()),
        }
    }
}

/// State shared by the record handlers.
pub(super) struct Worker {
    id: String,
    lobby: String,
    /// How the games' keys are named, and which logs records come from.
    layout: Layout,
    clean_routine: bool,
    redis_expiry: Duration,
    /// How long `etl:done` outlives the clean routine: a record queued at a worker that died
    /// comes back up to ACK_TIMEOUT × MAX_DELIVERIES later and must still find the game done,
    /// whatever REDIS_EXPIRY did to the rest of the game's keys.
    done_expiry: Duration,
    /// How long a claim lasts without renewal ([`claim::lease_for`] ACK_TIMEOUT).
    lease: Duration,
    writer: Writer,
    pub(super) conn: Conn,
    /// Where a record's own commands go, from its claim to its XACK: `conn`, or with
    /// WAIT_REPLICAS a connection of their own, which WAIT may block.
    records_conn: Conn,
    /// WAIT_REPLICAS and WAIT_MS; `None` when WAIT_REPLICAS is 0.
    replicas: Option<(u32, Duration)>,
    pub(super) metrics: WorkerMetrics,
    skips: Mutex<SkipLog>,
    outage: Mutex<Outage>,
    shutdown: Shutdown,
}

impl Worker {
    pub(super) fn new(
        settings: &Settings,
        layout: Layout,
        output: sink::Output,
        conn: Conn,
        records_conn: Conn,
        metrics: WorkerMetrics,
        shutdown: Shutdown,
    ) -> Worker {
        let id = settings.worker_id.clone();
        let lease = claim::lease_for(settings.ack_timeout);
        Worker {
            writer: Writer::new(&id, output, settings.write_timeout, lease, conn.clone()),
            id,
            lobby: settings.worker_channel.clone(),
            layout,
            clean_routine: settings.clean_routine,
            redis_expiry: settings.redis_expiry,
            done_expiry: super::done_expiry(settings),
            lease,
            conn,
            records_conn,
            replicas: (settings.wait_replicas > 0)
                .then_some((settings.wait_replicas, settings.wait_ms)),
            metrics,
            skips: Mutex::new(SkipLog::default()),
            outage: Mutex::new(Outage::new("worker")),
            shutdown,
        }
    }

    /// Holds the claim for the steps after [`claim::claim`]; `None` when another worker took the
    /// game over meanwhile.
    async fn write(
        &self,
        conn: &mut Conn,
        k: &Keys,
        game: &str,
        token: &str,
        previous_writer: Option<String>,
    ) -> Result<Option<Outcome>, Failure> {
        let started = Instant::now();
        // The previous writer's files are named by its worker id; its token is what the keys hold.
        let previous_writer = previous_writer.map(|t| claim::writer_id(&t).to_string());
        if let Some(previous) = &previous_writer {
            if self.writer.has_pair(game, previous).await? {
                // A writer died between its renames and `finish`: its pair is the output.
                tracing::info!("game {game}: taking over the complete files of worker {previous}");
                return match claim::finish(conn, k, game, token, previous).await? {
                    Finish::Done(_) => {
                        self.clean(conn, k, game).await?;
                        Ok(Some(Outcome::AlreadyDone))
                    }
                    Finish::Lost { .. } => Ok(None),
                };
            }
        }
        let loaded = match etl::load_game(conn, k, game).await.map_err(Failure::from) {
            Ok(loaded) => loaded,
            Err(Failure::Other(e)) => {
                // Malformed game state will not get better: no retry here; the fanout's
                // delivery limit sends it to the dead letters with this reason.
                claim::release(conn, k, game, token).await?;
                let why = format!("game {game}: {e:#}");
                self.skip_game("malformed_game", &why);
                return Ok(Some(Outcome::Unwritable(why)));
            }
            Err(e) => return Err(e),
        };
        let Some(data) = loaded else {
            claim::release(conn, k, game, token).await?;
            let why = format!("game {game} does not exist or is not finished");
            self.skip_game("game_not_finished", &why);
            return Ok(Some(Outcome::Unwritable(why)));
        };
        if let Some(previous) = previous_writer {
            if !claim::start_writing(conn, k, game, token).await? {
                return Ok(None);
            }
            // We are the writer now: whatever the previous one left is not the output, and our
            // pair must not be written beside files we could not remove.
            tracing::info!("game {game}: removing the incomplete files of worker {previous}");
            if let Err(e) = self.writer.remove_pair(game, &previous).await {
                // Their judgement goes back to whoever claims the game next.
                claim::hand_back(conn, k, game, token, &previous).await?;
                return Err(Failure::Other(e.context(format!(
                    "game {game}: cannot remove the incomplete files of worker {previous}, so \
                     its pair is not written"
                ))));
            }
        }
        self.writer.write_files(k, game, token, &data).await?;
        match claim::finish(conn, k, game, token, &self.id).await? {
            Finish::Done(by) if by == self.id => {
                self.metrics
                    .etl_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.files_written.inc_by(2);
                self.metrics.games_written.inc();
                self.clean(conn, k, game).await?;
                Ok(Some(Outcome::Written))
            }
            Finish::Done(by) => {
                tracing::info!("game {game} was finished by {by} meanwhile; removing our files");
                self.writer.remove_own_files(game).await;
                self.clean(conn, k, game).await?;
                Ok(Some(Outcome::AlreadyDone))
            }
            Finish::Lost { writer: None } => {
                // No lease, no writer, no done: Redis lost the game's claim keys while we wrote
                // (restarted without persistence, or failed over with lag). Its game keys went
                // with them, so nobody can write the game again: our pair is the only copy.
                tracing::warn!(
                    "game {game}: Redis no longer knows this game's claim (restarted or failed \
                     over?); keeping our files as its output"
                );
                Ok(None)
            }
            lost => {
                if lost.supersedes(&self.id) {
                    tracing::info!("game {game}: lease lost to another writer; removing our files");
                    self.writer.remove_own_files(game).await;
                }
                Ok(None)
            }
        }
    }

    pub(super) async fn handle(&self, payload: &[u8]) -> Outcome {
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
                Err(Failure::Overran(e)) => {
                    tracing::error!("worker {}: {e:#}; the record will be routed again", self.id);
                    self.note_failure(&record, &format!("{e:#}")).await;
                    return Outcome::Abandoned;
                }
                Err(Failure::Other(e)) => {
                    tracing::error!("worker {}: {e:#}; the record will be routed again", self.id);
                    if let Event::CleaningGameRecords { game_token, .. } = &record.event {
                        let game = game_token.to_string();
                        let k = self.layout.keys_of(&game);
                        let _ = claim::release(&mut self.conn.clone(), &k, &game, &token).await;
                    }
                    self.note_failure(&record, &format!("{e:#}")).await;
                    return Outcome::Abandoned;
                }
            }
        }
    }

    async fn process(&self, record: &Record, token: &str) -> Result<Outcome, Failure> {
        let mut conn = self.records_conn.clone();
        let (game, user) = match &record.event {
            Event::CleaningGameRecords {
                game_token,
                user_token,
            } => (game_token.to_string(), user_token.to_string()),
            Event::GameTimedOut { game_token } => {
                // A lobby that never played: no files, but its keys must not stay forever.
                self.clean_timed_out(&mut conn, &game_token.to_string())
                    .await?;
                self.ack(&mut conn, record).await?;
                return Ok(Outcome::NothingToDo);
            }
            Event::Other => {
                self.ack(&mut conn, record).await?;
                return Ok(Outcome::NothingToDo);
            }
        };
        // The game's key names, once for every step below.
        let k = &self.layout.keys_of(&game);
        let outcome = match self
            .claim_or_wait(&mut conn, k, &game, &user, token)
            .await?
        {
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
                self.clean(&mut conn, k, &game).await?;
                Outcome::AlreadyDone
            }
            Claim::Busy(holder) => {
                tracing::debug!(
                    "game {game} is being written by {holder}; leaving the record for later"
                );
                return Ok(Outcome::Busy);
            }
            Claim::Claimed { previous_writer } => {
                let renewer = self.writer.keep_lease(k, &game, token);
                let written = self
                    .write(&mut conn, k, &game, token, previous_writer)
                    .await;
                renewer.abort();
                match written? {
                    Some(Outcome::Unwritable(why)) => {
                        // Unfinished or malformed: not acknowledged, so it is tried again and
                        // ends in the dead letters with this reason if it never gets better.
                        self.note_failure(record, &why).await;
                        return Ok(Outcome::Skipped);
                    }
                    Some(outcome) => {
                        if !self.replicated(&mut conn, k, &game).await? {
                            let written = outcome == Outcome::Written;
                            return Ok(Outcome::Unreplicated { written });
                        }
                        outcome
                    }
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
        conn: &mut Conn,
        k: &Keys,
        game: &str,
        user: &str,
        token: &str,
    ) -> Result<Claim, Failure> {
        let give_up = Instant::now() + BUSY_WAIT;
        loop {
            let answer = claim::claim(conn, k, game, user, token, self.lease).await?;
            if !matches!(answer, Claim::Busy(_))
                || Instant::now() >= give_up
                || self.shutdown.is_triggered()
            {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// CLEAN_ROUTINE: only ever called once the game's files are in place (done is set).
    async fn clean(&self, conn: &mut Conn, k: &Keys, game: &str) -> Result<(), Failure> {
        if !self.clean_routine {
            return Ok(());
        }
        etl::expire_game(conn, k, game, self.redis_expiry, self.done_expiry).await?;
        Ok(())
    }

    /// CLEAN_ROUTINE for a `Game Timed Out` record: expires the game only if its status says
    /// it timed out, never a game that plays or completed whatever the record claims.
    async fn clean_timed_out(&self, conn: &mut Conn, game: &str) -> Result<(), Failure> {
        if !self.clean_routine {
            return Ok(());
        }
        let expired =
            etl::expire_timed_out(conn, &self.layout.keys_of(game), game, self.redis_expiry)
                .await?;
        if !expired {
            tracing::warn!(
                "game {game}: a Game Timed Out record for a game that did not time out; its keys are left as they are"
            );
        }
        Ok(())
    }

    /// WAIT_REPLICAS: whether that many replicas acknowledged what this connection wrote, the
    /// game's done marker among it. If not, the record stays unacknowledged; the fanout routes
    /// it again after ACK_TIMEOUT and that delivery, finding the game done, acknowledges it.
    async fn replicated(&self, conn: &mut Conn, k: &Keys, game: &str) -> Result<bool, Failure> {
        let Some((replicas, timeout)) = self.replicas else {
            return Ok(true);
        };
        let done = k.etl_done(game);
        let acknowledged = delivery::wait_replicas(conn, &done, replicas, timeout).await?;
        if acknowledged >= replicas {
            return Ok(true);
        }
        self.metrics.replica_waits_timed_out.inc();
        tracing::warn!(
            "game {game}: {acknowledged} of {replicas} replica(s) acknowledged its done marker \
             within {} ms; its record is left unacknowledged, to be routed again",
            timeout.as_millis()
        );
        Ok(false)
    }

    async fn ack(&self, conn: &mut Conn, record: &Record) -> Result<(), Failure> {
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

    /// Beats the heartbeat unless a write is stuck past WRITE_TIMEOUT. Returns at shutdown
    /// without waiting for the beat: during an outage a command waits on a reconnection for
    /// as long as Redis stays away.
    pub(super) async fn heartbeat(&self) {
        if self.writer.is_stuck() {
            return;
        }
        let mut conn = self.conn.clone();
        let beat = delivery::heartbeat(&mut conn, &self.lobby, &self.id);
        let beaten = tokio::select! {
            beaten = beat => beaten,
            _ = self.shutdown.recv() => return,
        };
        match beaten {
            Ok(()) => self.outage().recovered(),
            Err(e) => self.outage().failed(&redis_conn::describe(&e)),
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

    /// Completes once Redis is known to be unreachable: a command of this worker found it so
    /// (and it has not answered since), or a PING goes unanswered for [`PROBE_TIMEOUT`] (an
    /// error some step swallowed leaves the others waiting on a reconnection, unflagged).
    pub(super) async fn redis_gone(&self) {
        loop {
            if self.outage().is_down() {
                return;
            }
            let mut conn = self.conn.clone();
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<String>(&mut conn);
            match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
                Err(_) => {
                    self.outage().failed(&"no answer to PING");
                    return;
                }
                Ok(Err(e)) if redis_conn::is_transient(&e) => {
                    self.outage().failed(&redis_conn::describe(&e));
                    return;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
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
