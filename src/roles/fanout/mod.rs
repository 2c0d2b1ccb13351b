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
//!   ([`CLAIM_EXPIRED`]);
//! - trims acknowledged history older than LOG_RETENTION ([`TRIM`]).
//!
//! A worker is live while its heartbeat (`<lobby>:workers`, by Redis time) is fresh: it beats
//! only while it makes progress, so a paused or stuck worker drops out of rotation.
//!
//! The fanout holds nothing that exists only in its memory: killed at any instant, what it had
//! read is in the group's pending list and is claimed by the next fanout after ACK_TIMEOUT.
//! It also listens on the lobby channel for records of other publishers (the original server:
//! no entry id) and appends those to the log ([`APPEND_FOREIGN`]); records carrying an
//! `entry_id` are in the log already and are ignored there.

pub mod bench;
mod inspect;
mod metrics;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::Settings;
use crate::pipeline::delivery::{self, MAX_UNACKED_PER_WORKER};
use crate::pipeline::keys;
use crate::pipeline::record::{self, RecordError, SkipLog, DELIVERY_ID_FIELD};
use crate::pipeline::redis_conn::{self, Backoff, Outage, Redis, SubEvent};
use crate::shutdown::Shutdown;
pub use inspect::{inspect, PipelineState};
pub use metrics::FanoutMetrics;

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
/// How long a foreign record's digest is remembered, so several fanouts append it once.
const FOREIGN_SEEN_SECS: u64 = 3600;

static CLAIM_EXPIRED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("claim_expired.lua")));
static LIVE_WORKERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("live_workers.lua")));
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
    let lobby = settings.worker_channel.clone();
    let consumer = delivery::fanout_consumer(&settings.worker_id);
    tracing::info!(
        "fanout {consumer} routing {} to {}, ack timeout {:?}, {} deliveries at most",
        keys::log_stream(&lobby),
        keys::worker_channel_pattern(&lobby),
        settings.ack_timeout,
        settings.max_deliveries
    );
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
    let now = Instant::now();
    let mut router = Router {
        stream: keys::log_stream(&lobby),
        group: keys::fanout_group(&lobby),
        lobby,
        consumer,
        conn: redis.own_conn()?,
        ack_timeout: settings.ack_timeout,
        max_deliveries: settings.max_deliveries,
        retention: settings.log_retention,
        group_ready: false,
        workers: Vec::new(),
        unacked: HashMap::new(),
        next: 0,
        held: Vec::new(),
        redis_offset_ms: 0,
        next_refresh: now,
        next_gauges: now,
        next_claim: now,
        next_trim: now,
        metrics,
        outage: Outage::new("fanout"),
    };
    router.run(&shutdown).await;
    match foreign.await {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("fanout listener task failed: {e}")),
    }
}

/// One log entry on its way to a worker.
#[derive(Debug)]
struct Entry {
    id: String,
    record: Vec<u8>,
    /// The worker that held it last (a re-route prefers another).
    avoid: Option<String>,
    rerouted: bool,
}

struct Router {
    lobby: String,
    stream: String,
    group: String,
    consumer: String,
    /// This loop's own connection: XREADGROUP BLOCK would stall a shared one.
    conn: ConnectionManager,
    ack_timeout: Duration,
    max_deliveries: u32,
    retention: Duration,
    group_ready: bool,
    /// Live workers, in a stable order for round-robin.
    workers: Vec<String>,
    /// Unacknowledged entries per worker (from XPENDING, plus what was routed since).
    unacked: HashMap<String, u64>,
    next: usize,
    /// Entries read while no worker could take them; kept claimed by this fanout.
    held: Vec<Entry>,
    /// Redis clock minus local clock, for latency from entry ids without comparing clocks.
    redis_offset_ms: i64,
    next_refresh: Instant,
    next_gauges: Instant,
    next_claim: Instant,
    next_trim: Instant,
    metrics: FanoutMetrics,
    outage: Outage,
}

impl Router {
    async fn run(&mut self, shutdown: &Shutdown) {
        let mut backoff = Backoff::default();
        loop {
            // Every step is safe to abandon half-way (Redis holds the state), so a shutdown
            // never waits for a Redis that is down.
            let step = tokio::select! {
                step = self.step() => step,
                _ = shutdown.recv() => return,
            };
            match step {
                Ok(pause) => {
                    self.outage.recovered();
                    backoff.reset();
                    if !pause.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = shutdown.recv() => return,
                        }
                    }
                }
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        // Redis lost the group (a restart without persistence): create it again.
                        self.group_ready = false;
                        continue;
                    }
                    self.outage.failed(&redis_conn::describe(&e));
                    if !backoff.wait(shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// One round: housekeeping that is due, then one batch read and routed. Returns how long
    /// to pause before the next round.
    async fn step(&mut self) -> RedisResult<Duration> {
        if !self.group_ready {
            self.create_group().await?;
            self.group_ready = true;
        }
        let now = Instant::now();
        if now >= self.next_refresh {
            self.refresh_workers().await?;
            self.next_refresh = now + WORKER_REFRESH;
        }
        if now >= self.next_gauges {
            self.sample_gauges().await?;
            self.next_gauges = now + GAUGE_REFRESH;
        }
        if now >= self.next_claim {
            self.claim_expired().await?;
            self.next_claim = now
                + (self.ack_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        }
        if now >= self.next_trim {
            self.trim().await?;
            self.next_trim = now + TRIM_EVERY;
        }
        if !self.held.is_empty() && !self.workers.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.route(held).await?;
        }
        if self.workers.is_empty() {
            return Ok(WORKER_REFRESH);
        }
        let mut room = self.room();
        if room == 0 {
            self.refresh_unacked().await?;
            room = self.room();
            if room == 0 {
                return Ok(SATURATED_PAUSE);
            }
        }
        let entries = self.read(room.min(ROUTE_BATCH as u64) as usize).await?;
        if !entries.is_empty() {
            self.route(entries).await?;
        }
        Ok(Duration::ZERO)
    }

    async fn create_group(&mut self) -> RedisResult<()> {
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
            _ => Ok(()),
        }
    }

    /// Live workers (fresh heartbeat) and what each holds unacknowledged.
    async fn refresh_workers(&mut self) -> RedisResult<()> {
        let sent_at = crate::clock::now_ms() as i64;
        let mut live: Vec<String> = LIVE_WORKERS
            .key(keys::worker_heartbeats(&self.lobby))
            .arg(delivery::HEARTBEAT_STALE.as_millis() as u64)
            .arg(FORGET_WORKER.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await?;
        if !live.is_empty() {
            let redis_now: i64 = live.remove(0).parse().unwrap_or(sent_at);
            let back_at = crate::clock::now_ms() as i64;
            self.redis_offset_ms = redis_now - (sent_at + back_at) / 2;
        }
        live.sort();
        if live != self.workers {
            tracing::info!("live workers: {}", describe_workers(&live));
            self.workers = live;
        }
        self.refresh_unacked().await
    }

    async fn refresh_unacked(&mut self) -> RedisResult<()> {
        let summary: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(&mut self.conn)
            .await?;
        let summary = inspect::PendingSummary::parse(&summary);
        self.metrics.unacked.set(summary.count as i64);
        self.unacked = summary.per_consumer.into_iter().collect();
        Ok(())
    }

    async fn sample_gauges(&mut self) -> RedisResult<()> {
        let (length, dead): (i64, i64) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.stream)
            .cmd("XLEN")
            .arg(keys::dead_stream(&self.lobby))
            .query_async(&mut self.conn)
            .await?;
        self.metrics.stream_length.set(length);
        self.metrics.dead_letters.set(dead);
        if let Some(lag) = inspect::group_lag(&mut self.conn, &self.stream, &self.group).await? {
            self.metrics.group_lag.set(lag as i64);
        }
        Ok(())
    }

    /// Room left across live workers before each reaches its limit of unacknowledged records.
    fn room(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| MAX_UNACKED_PER_WORKER.saturating_sub(self.unacked(w)))
            .sum()
    }

    fn unacked(&self, worker: &str) -> u64 {
        self.unacked.get(worker).copied().unwrap_or(0)
    }

    async fn read(&mut self, count: usize) -> RedisResult<Vec<Entry>> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut self.conn)
            .await?;
        Ok(inspect::stream_entries(&reply)
            .into_iter()
            .map(|(id, record)| Entry {
                id,
                record,
                avoid: None,
                rerouted: false,
            })
            .collect())
    }

    /// Claims expired entries for routing again, or dead-letters them.
    async fn claim_expired(&mut self) -> RedisResult<()> {
        if !self.held.is_empty() {
            // Keep what we hold from looking abandoned to the other fanouts.
            let ids: Vec<String> = self.held.iter().map(|e| e.id.clone()).collect();
            self.claim_for_self(&ids).await?;
        }
        let reply: Vec<Vec<Vec<u8>>> = CLAIM_EXPIRED
            .key(&self.stream)
            .key(keys::dead_stream(&self.lobby))
            .key(keys::delivery_tries(&self.lobby))
            .key(keys::delivery_failures(&self.lobby))
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.ack_timeout.as_millis() as u64)
            .arg(self.max_deliveries)
            .arg(CLAIM_BATCH)
            .invoke_async(&mut self.conn)
            .await?;
        let mut again = Vec::new();
        for row in reply {
            let text =
                |i: usize| String::from_utf8_lossy(row.get(i).map_or(&[][..], |v| v)).to_string();
            match text(1).as_str() {
                "dead" => {
                    self.metrics.records_dead_lettered.inc();
                    tracing::error!(
                        "record {} moved to {} after {} deliveries: {}",
                        text(0),
                        keys::dead_stream(&self.lobby),
                        self.max_deliveries,
                        text(2)
                    );
                }
                "retry" => {
                    let previous = text(3);
                    again.push(Entry {
                        id: text(0),
                        record: row.get(2).cloned().unwrap_or_default(),
                        avoid: (!delivery::is_fanout_consumer(&previous)).then_some(previous),
                        rerouted: true,
                    });
                }
                _ => {}
            }
        }
        if !again.is_empty() {
            tracing::debug!("routing {} unacknowledged record(s) again", again.len());
            self.route(again).await?;
        }
        Ok(())
    }

    async fn trim(&mut self) -> RedisResult<()> {
        let removed: u64 = TRIM
            .key(&self.stream)
            .arg(&self.group)
            .arg(self.retention.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await?;
        if removed > 0 {
            tracing::debug!("trimmed {removed} acknowledged record(s) from the log");
        }
        Ok(())
    }

    /// Hands entries to workers: each goes to one live worker with room, as its pending entry
    /// and as a PUBLISH on its channel. Entries whose PUBLISH reached nobody go to the next
    /// worker; with none left they are held until one appears.
    async fn route(&mut self, entries: Vec<Entry>) -> RedisResult<()> {
        let mut queue: VecDeque<Entry> = entries.into();
        while !queue.is_empty() {
            let mut batch: BTreeMap<String, Vec<(Entry, String)>> = BTreeMap::new();
            let mut invalid = Vec::new();
            while let Some(entry) = queue.pop_front() {
                let payload = match with_delivery_id(&entry.record, &entry.id) {
                    Ok(p) => p,
                    Err(e) => {
                        invalid.push((entry, e));
                        continue;
                    }
                };
                match self.pick(entry.avoid.as_deref()) {
                    Some(worker) => batch.entry(worker).or_default().push((entry, payload)),
                    None => {
                        queue.push_front(entry);
                        break;
                    }
                }
            }
            for (entry, reason) in invalid {
                self.dead_letter_now(&entry, &reason.to_string()).await?;
            }
            if batch.is_empty() {
                // Nobody can take these now.
                let rest: Vec<Entry> = queue.drain(..).collect();
                return self.hold(rest).await;
            }
            let mut pipe = redis::pipe();
            for (worker, items) in &batch {
                let ids: Vec<&String> = items.iter().map(|(e, _)| &e.id).collect();
                claim_cmd(&mut pipe, &self.stream, &self.group, worker, &ids).ignore();
                let channel = keys::worker_channel(&self.lobby, worker);
                for (_, payload) in items {
                    pipe.publish(&channel, payload);
                }
            }
            let receivers: Vec<u64> = pipe.query_async(&mut self.conn).await?;
            let local_now = crate::clock::now_ms() as i64;
            let mut answers = receivers.into_iter();
            for (worker, items) in batch {
                let mut gone = false;
                for (entry, _) in items {
                    if answers.next().unwrap_or(0) > 0 {
                        self.delivered(&entry, local_now);
                    } else {
                        gone = true;
                        queue.push_back(Entry {
                            avoid: None,
                            ..entry
                        });
                    }
                }
                if gone {
                    tracing::info!(
                        "worker {worker} no longer listens; routing its records elsewhere"
                    );
                    self.workers.retain(|w| *w != worker);
                    self.unacked.remove(&worker);
                }
            }
        }
        Ok(())
    }

    fn delivered(&mut self, entry: &Entry, local_now_ms: i64) {
        if entry.rerouted {
            self.metrics.records_rerouted.inc();
        } else {
            self.metrics.records_routed.inc();
        }
        if let Some(appended) = delivery::entry_ms(&entry.id) {
            let age_ms = local_now_ms + self.redis_offset_ms - appended as i64;
            self.metrics
                .routing_latency
                .observe(age_ms.max(0) as f64 / 1000.0);
        }
    }

    /// Round-robin over live workers with room, avoiding `avoid` when another can take it.
    fn pick(&mut self, avoid: Option<&str>) -> Option<String> {
        let n = self.workers.len();
        let mut fallback = None;
        for step in 0..n {
            let i = (self.next + step) % n;
            let worker = &self.workers[i];
            if self.unacked(worker) >= MAX_UNACKED_PER_WORKER {
                continue;
            }
            if Some(worker.as_str()) == avoid && n > 1 {
                fallback.get_or_insert(i);
                continue;
            }
            return Some(self.take_slot(i));
        }
        fallback.map(|i| self.take_slot(i))
    }

    fn take_slot(&mut self, i: usize) -> String {
        self.next = i + 1;
        let worker = self.workers[i].clone();
        *self.unacked.entry(worker.clone()).or_default() += 1;
        worker
    }

    /// Keeps entries no worker can take, claimed by this fanout so they do not count as
    /// abandoned; they are routed as soon as a worker is live.
    async fn hold(&mut self, entries: Vec<Entry>) -> RedisResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        self.claim_for_self(&ids).await?;
        self.held.extend(entries);
        Ok(())
    }

    async fn claim_for_self(&mut self, ids: &[String]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        claim_cmd(&mut pipe, &self.stream, &self.group, &self.consumer, ids).ignore();
        pipe.query_async(&mut self.conn).await
    }

    /// An entry no worker could ever handle (not a valid record) goes straight to the dead
    /// letters.
    async fn dead_letter_now(&mut self, entry: &Entry, reason: &str) -> RedisResult<()> {
        tracing::warn!("record {} is not routable: {reason}", entry.id);
        let _: () = redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(keys::dead_stream(&self.lobby))
            .arg("*")
            .arg("entry")
            .arg(&entry.id)
            .arg("record")
            .arg(&entry.record)
            .arg("reason")
            .arg(format!("not a valid record: {reason}"))
            .arg("workers")
            .arg("")
            .arg("deliveries")
            .arg(0)
            .ignore()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&entry.id)
            .ignore()
            .query_async(&mut self.conn)
            .await?;
        self.metrics.records_dead_lettered.inc();
        Ok(())
    }
}

/// `XCLAIM <stream> <group> <consumer> 0 <ids…> JUSTID`: the entries become `consumer`'s
/// without counting as a new delivery.
fn claim_cmd<'a, I: redis::ToRedisArgs>(
    pipe: &'a mut redis::Pipeline,
    stream: &str,
    group: &str,
    consumer: &str,
    ids: &[I],
) -> &'a mut redis::Pipeline {
    pipe.cmd("XCLAIM")
        .arg(stream)
        .arg(group)
        .arg(consumer)
        .arg(0)
        .arg(ids)
        .arg("JUSTID")
}

fn describe_workers(workers: &[String]) -> String {
    if workers.is_empty() {
        "none".to_string()
    } else {
        workers.join(", ")
    }
}

/// Appends records of other publishers (no entry id) to the log; skips the rest.
async fn append_foreign(
    lobby: String,
    mut conn: ConnectionManager,
    mut events: mpsc::UnboundedReceiver<SubEvent>,
    metrics: FanoutMetrics,
    shutdown: Shutdown,
) {
    let stream = keys::log_stream(&lobby);
    let seen_prefix = keys::foreign_seen(&lobby, "");
    let mut skips = SkipLog::default();
    let mut outage = Outage::new("fanout listener");
    let mut backoff = Backoff::default();
    while let Some(event) = events.recv().await {
        let SubEvent::Message { payload, .. } = event else {
            continue;
        };
        let mut batch = Vec::new();
        let mut next = Some(payload);
        while let Some(payload) = next.take() {
            match record::parse(&payload) {
                Ok(r) if r.entry_id.is_some() => {} // in the log already
                Ok(_) => batch.push(payload),
                Err(e) => skips.skip(&e),
            }
            if batch.len() < ROUTE_BATCH {
                if let Ok(SubEvent::Message { payload, .. }) = events.try_recv() {
                    next = Some(payload);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        loop {
            let appended: RedisResult<u64> = APPEND_FOREIGN
                .key(&stream)
                .arg(&seen_prefix)
                .arg(FOREIGN_SEEN_SECS)
                .arg(&batch)
                .invoke_async(&mut conn)
                .await;
            match appended {
                Ok(n) => {
                    outage.recovered();
                    backoff.reset();
                    metrics.records_received.inc_by(n);
                    break;
                }
                Err(e) => {
                    outage.failed(&redis_conn::describe(&e));
                    if !backoff.wait(&shutdown).await {
                        tracing::error!(
                            "stopping with Redis unreachable: {} record(s) of another publisher not appended",
                            batch.len()
                        );
                        return;
                    }
                }
            }
        }
    }
}

/// The record as routed: the same JSON object (decoded once if it came double-encoded) with the
/// delivery id as an extra field. Fails with the reason a worker would skip it for.
pub fn with_delivery_id(raw: &[u8], id: &str) -> Result<String, RecordError> {
    let parsed = record::parse(raw)?;
    let text =
        std::str::from_utf8(raw).map_err(|_| RecordError::NotJson("invalid UTF-8".into()))?;
    let trimmed = text.trim();
    let object: std::borrow::Cow<str> = if trimmed.starts_with('"') {
        serde_json::from_str::<String>(trimmed)
            .map_err(|e| RecordError::NotJson(e.to_string()))?
            .into()
    } else {
        trimmed.into()
    };
    if parsed.delivery_id.is_some() {
        // Already carries an id (another fanout's, say): replace it rather than duplicate the key.
        let mut map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&object).map_err(|e| RecordError::NotJson(e.to_string()))?;
        map.insert(DELIVERY_ID_FIELD.into(), id.into());
        return Ok(serde_json::Value::Object(map).to_string());
    }
    // A valid record is an object with at least log_message: `{` is followed by a field.
    let body = object
        .trim_start()
        .strip_prefix('{')
        .ok_or(RecordError::NotObject)?;
    let id = serde_json::to_string(id).map_err(|e| RecordError::NotJson(e.to_string()))?;
    Ok(format!("{{\"{DELIVERY_ID_FIELD}\":{id},{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = r#"{"log_message":"Cleaning Game Records","task":{"game_token":"0b8f3a52-8a4b-4c55-9d3e-0123456789ab","user_token":"5d9c1e7a-2f4b-4a8e-b1c2-abcdefabcdef"}}"#;

    #[test]
    fn delivery_id_is_added_to_the_object() {
        let routed = with_delivery_id(REC.as_bytes(), "1700000000000-0").unwrap();
        let value: serde_json::Value = serde_json::from_str(&routed).unwrap();
        assert_eq!(value["delivery_id"], "1700000000000-0");
        assert_eq!(value["log_message"], "Cleaning Game Records");
    }

    #[test]
    fn double_encoded_records_are_routed_as_objects() {
        let double = serde_json::to_string(REC).unwrap();
        let routed = with_delivery_id(double.as_bytes(), "5-0").unwrap();
        let value: serde_json::Value = serde_json::from_str(&routed).unwrap();
        assert_eq!(value["delivery_id"], "5-0");
        assert_eq!(
            value["task"]["game_token"],
            "0b8f3a52-8a4b-4c55-9d3e-0123456789ab"
        );
    }

    #[test]
    fn an_existing_delivery_id_is_replaced() {
        let with_id = REC.replacen('{', r#"{"delivery_id":"old","#, 1);
        let routed = with_delivery_id(with_id.as_bytes(), "9-1").unwrap();
        let value: serde_json::Value = serde_json::from_str(&routed).unwrap();
        assert_eq!(value["delivery_id"], "9-1");
        assert_eq!(routed.matches("delivery_id").count(), 1);
    }

    #[test]
    fn garbage_is_not_routed() {
        assert!(with_delivery_id(b"not json", "1-0").is_err());
        assert!(with_delivery_id(b"[1,2]", "1-0").is_err());
    }
}
