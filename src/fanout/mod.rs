//! The fanout (SPEC §8): the one subscriber of the lobby channel, routing each lifecycle record to
//! exactly one live worker channel, with acknowledgements.
//!
//! Two tasks, so a burst never backs up into Redis's pub/sub output buffer:
//! - the *mover* takes records off the subscription (read as fast as Redis sends them, see
//!   [`redis_conn::subscribe`]) and stores them in Redis in batches, one Lua call per batch:
//!   each gets a delivery id (`<lobby>:delivery-seq`), its text goes to `<lobby>:pending` and its
//!   id to the end of `<lobby>:waiting`;
//! - the *router* takes ids from the head of `<lobby>:waiting` (atomically giving each a deadline
//!   in `<lobby>:deadlines`), adds the delivery id to the record and PUBLISHes it round-robin to
//!   the live worker channels. A PUBLISH that reaches nobody is tried on the next worker; with no
//!   worker left the ids go back to the head of the queue, in order, until one appears. It also
//!   moves the server's backlog (`<lobby>:backlog`) into the queue, oldest first, and routes
//!   again, to another worker, every record whose deadline passed without an acknowledgement.
//!
//! Every step that moves a record between lists is one Lua script, so several fanouts can share
//! the keys: a record in Redis is taken by one of them only. (Every fanout hears every lobby
//! record, so with two fanouts each record is routed twice; the workers' claim keeps the output
//! exactly once.) The key layout is in the README, "Redis keys and channels".

pub mod bench;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use tokio::sync::{mpsc, Notify};

use crate::config::Settings;
use crate::keys;
use crate::metrics::{self, latency_buckets, Counter, Gauge, Histogram, SharedRegistry};
use crate::record::{self, RecordError, SkipLog, DELIVERY_ID_FIELD, MAX_RECORD_BYTES};
use crate::redis_conn::{self, Backoff, Outage, Redis, SubEvent};
use crate::shutdown::Shutdown;

/// Records stored in Redis per round trip by the mover.
const INGEST_BATCH: usize = 1000;
/// Records taken from the queue per round trip by the router.
const ROUTE_BATCH: usize = 500;
/// How often the worker list is refreshed when nothing prompts it.
const WORKER_REFRESH: Duration = Duration::from_secs(1);
/// How often the server's backlog is checked when nothing prompts it.
const BACKLOG_POLL: Duration = Duration::from_secs(1);
/// The router's idle tick: records left by other fanouts and expired deadlines are found by it.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// A shutting-down fanout keeps trying this long to store records still in memory.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The fanout's Prometheus metrics.
#[derive(Clone)]
pub struct FanoutMetrics {
    pub records_received: Counter,
    pub records_routed: Counter,
    pub records_rerouted: Counter,
    /// Records in Redis not yet routed: the server's backlog plus the waiting queue.
    pub backlog_depth: Gauge,
    pub routing_latency: Histogram,
}

impl FanoutMetrics {
    pub fn register(registry: &SharedRegistry) -> Self {
        let m = FanoutMetrics {
            records_received: Counter::default(),
            records_routed: Counter::default(),
            records_rerouted: Counter::default(),
            backlog_depth: Gauge::default(),
            routing_latency: Histogram::new(latency_buckets()),
        };
        let mut r = registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        r.register(
            "records_received",
            "Records received on the lobby channel",
            m.records_received.clone(),
        );
        r.register(
            "records_routed",
            "Records published to a worker channel for the first time",
            m.records_routed.clone(),
        );
        r.register(
            "records_rerouted",
            "Records routed again after their acknowledgement timed out",
            m.records_rerouted.clone(),
        );
        r.register(
            "backlog_depth",
            "Records in Redis not yet routed (server backlog plus waiting queue)",
            m.backlog_depth.clone(),
        );
        r.register(
            "routing_latency_seconds",
            "Time from a record's arrival on the lobby channel to its PUBLISH to a worker",
            m.routing_latency.clone(),
        );
        drop(r);
        m
    }
}

/// What `superhero status` shows of the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PipelineState {
    /// Records the server could not publish, not yet taken by a fanout.
    pub backlog: u64,
    /// Records received by a fanout and not yet routed.
    pub waiting: u64,
    /// Records routed and not yet acknowledged.
    pub unacked: u64,
    /// Time since the oldest unacknowledged record was last routed.
    pub oldest_unacked_age: Option<Duration>,
    /// Games with an ETL lease but no done marker.
    pub claimed_unfinished: u64,
}

/// Runs the fanout until shutdown. Records still in memory are stored in Redis before it returns;
/// records in Redis stay there for the next fanout.
pub async fn run(settings: &Settings, redis: Redis, shutdown: Shutdown) -> Result<()> {
    let registry = metrics::registry("fanout");
    let fanout_metrics = FanoutMetrics::register(&registry);
    metrics::maybe_serve(settings.metrics_addr, &registry, &shutdown).await?;
    run_with_metrics(settings, redis, shutdown, fanout_metrics).await
}

/// [`run`] with metrics the caller registered (benchmarks read them).
pub async fn run_with_metrics(
    settings: &Settings,
    redis: Redis,
    shutdown: Shutdown,
    metrics: FanoutMetrics,
) -> Result<()> {
    let lobby = settings.worker_channel.clone();
    tracing::info!(
        "fanout routing {lobby} to {}, ack timeout {:?}",
        keys::worker_channel_pattern(&lobby),
        settings.ack_timeout
    );
    let arrivals = Arc::new(Arrivals::default());
    let wake = Arc::new(Notify::new());
    let events = redis_conn::subscribe(&redis, vec![lobby.clone()], Vec::new(), shutdown.clone());
    let mover = tokio::spawn(move_records(
        lobby.clone(),
        redis.conn(),
        events,
        metrics.clone(),
        arrivals.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    let mut router = Router {
        lobby,
        conn: redis.conn(),
        ack_timeout: settings.ack_timeout,
        workers: Vec::new(),
        next: 0,
        metrics,
        arrivals,
        skips: SkipLog::default(),
        outage: Outage::new("fanout"),
    };
    router.run(&wake, &shutdown).await;
    match mover.await {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("fanout mover task failed: {e}")),
    }
}

/// Ingest: every record gets a delivery id, its text in `pending` and its id in `waiting`.
static INGEST: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
        local n = #ARGV
        if n == 0 then return 0 end
        local last = redis.call('INCRBY', KEYS[3], n)
        local fields, ids = {}, {}
        for i = 1, n do
            local id = tostring(last - n + i)
            fields[#fields + 1] = id
            fields[#fields + 1] = ARGV[i]
            ids[i] = id
        end
        redis.call('HSET', KEYS[1], unpack(fields))
        redis.call('RPUSH', KEYS[2], unpack(ids))
        return last
        ",
    )
});

/// The server's backlog, oldest first, into the queue, the same way as [`INGEST`].
static DRAIN_BACKLOG: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
        local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
        local n = #items
        if n == 0 then return 0 end
        redis.call('LTRIM', KEYS[1], n, -1)
        local last = redis.call('INCRBY', KEYS[4], n)
        local fields, ids = {}, {}
        for i = 1, n do
            local id = tostring(last - n + i)
            fields[#fields + 1] = id
            fields[#fields + 1] = items[i]
            ids[i] = id
        end
        redis.call('HSET', KEYS[2], unpack(fields))
        redis.call('RPUSH', KEYS[3], unpack(ids))
        return n
        ",
    )
});

/// Takes ids from the head of the queue and gives each a deadline; returns id, record pairs.
static TAKE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
        local ids = redis.call('LPOP', KEYS[1], ARGV[1])
        if not ids then return {} end
        local t = redis.call('TIME')
        local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
        local recs = redis.call('HMGET', KEYS[2], unpack(ids))
        local out, scored = {}, {}
        for i, id in ipairs(ids) do
            if recs[i] then
                scored[#scored + 1] = deadline
                scored[#scored + 1] = id
                out[#out + 1] = id
                out[#out + 1] = recs[i]
            end
        end
        if #scored > 0 then redis.call('ZADD', KEYS[3], unpack(scored)) end
        return out
        ",
    )
});

/// Puts ids that reached no worker back at the head of the queue, in their order, unless another
/// fanout already took them over.
static UNTAKE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
        for i = #ARGV, 1, -1 do
            if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
                redis.call('LPUSH', KEYS[2], ARGV[i])
            end
        end
        return 0
        ",
    )
});

/// Claims routed records whose deadline passed (a new deadline makes them this fanout's);
/// returns id, record, last route triples. Orphans (already acknowledged) are tidied up.
static CLAIM_EXPIRED: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
        local out = {}
        for _, id in ipairs(ids) do
            local rec = redis.call('HGET', KEYS[2], id)
            if rec then
                redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
                out[#out + 1] = id
                out[#out + 1] = rec
                out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
            else
                redis.call('ZREM', KEYS[1], id)
                redis.call('HDEL', KEYS[3], id)
            end
        end
        return out
        ",
    )
});

/// When this process received the records of each ingested id range (for the latency histogram).
#[derive(Default)]
struct Arrivals {
    ranges: Mutex<VecDeque<(u64, u64, Instant)>>,
}

impl Arrivals {
    const MAX_RANGES: usize = 10_000;

    fn record(&self, first: u64, last: u64, at: Instant) {
        let mut ranges = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
        if ranges.len() >= Self::MAX_RANGES {
            ranges.pop_front();
        }
        ranges.push_back((first, last, at));
    }

    /// The arrival time of `id`, forgetting ranges entirely below it.
    fn arrival(&self, id: u64) -> Option<Instant> {
        let mut ranges = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
        while ranges.front().is_some_and(|&(_, last, _)| last < id) {
            ranges.pop_front();
        }
        ranges
            .iter()
            .find(|&&(first, last, _)| first <= id && id <= last)
            .map(|&(_, _, at)| at)
    }
}

/// The mover task: subscription → Redis, in batches. Returns once shutdown fired and the
/// records already received are stored (or Redis stayed unreachable for [`DRAIN_DEADLINE`]).
async fn move_records(
    lobby: String,
    mut conn: ConnectionManager,
    mut events: mpsc::UnboundedReceiver<SubEvent>,
    metrics: FanoutMetrics,
    arrivals: Arc<Arrivals>,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    let mut outage = Outage::new("fanout mover");
    let mut skips = SkipLog::default();
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(INGEST_BATCH);
    loop {
        let first = tokio::select! {
            event = events.recv() => event,
            _ = shutdown.recv() => None,
        };
        let Some(first) = first else {
            break;
        };
        let mut next = Some(first);
        let at = Instant::now();
        while let Some(event) = next.take() {
            match event {
                SubEvent::Subscribed => {
                    tracing::info!("fanout subscribed to {lobby}");
                    wake.notify_one();
                }
                SubEvent::Message { payload, .. } => {
                    metrics.records_received.inc();
                    if payload.len() > MAX_RECORD_BYTES {
                        skips.skip(&RecordError::TooLarge(payload.len()));
                    } else {
                        batch.push(payload);
                    }
                }
            }
            if batch.len() < INGEST_BATCH {
                next = events.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            store(
                &lobby,
                &mut conn,
                &mut batch,
                &arrivals,
                at,
                &mut outage,
                &shutdown,
            )
            .await;
            wake.notify_one();
        }
    }
    // Shutdown: whatever was received but not stored goes to Redis now.
    while let Ok(event) = events.try_recv() {
        if let SubEvent::Message { payload, .. } = event {
            if payload.len() <= MAX_RECORD_BYTES {
                batch.push(payload);
            }
        }
        if batch.len() >= INGEST_BATCH {
            store(
                &lobby,
                &mut conn,
                &mut batch,
                &arrivals,
                Instant::now(),
                &mut outage,
                &shutdown,
            )
            .await;
        }
    }
    store(
        &lobby,
        &mut conn,
        &mut batch,
        &arrivals,
        Instant::now(),
        &mut outage,
        &shutdown,
    )
    .await;
}

/// Stores a batch with [`INGEST`], retrying with backoff while Redis is down.
async fn store(
    lobby: &str,
    conn: &mut ConnectionManager,
    batch: &mut Vec<Vec<u8>>,
    arrivals: &Arrivals,
    at: Instant,
    outage: &mut Outage,
    shutdown: &Shutdown,
) {
    if batch.is_empty() {
        return;
    }
    let mut backoff = Backoff::default();
    let mut giving_up_at = None;
    loop {
        let mut invocation = INGEST.prepare_invoke();
        invocation
            .key(keys::pending(lobby))
            .key(keys::waiting(lobby))
            .key(keys::delivery_seq(lobby));
        for record in batch.iter() {
            invocation.arg(record.as_slice());
        }
        let stored: RedisResult<u64> = invocation.invoke_async(conn).await;
        match stored {
            Ok(last) => {
                outage.recovered();
                let n = batch.len() as u64;
                arrivals.record(last + 1 - n, last, at);
                batch.clear();
                return;
            }
            Err(e) => {
                outage.failed(&redis_conn::describe(&e));
                if shutdown.is_triggered() {
                    let deadline =
                        *giving_up_at.get_or_insert_with(|| Instant::now() + DRAIN_DEADLINE);
                    if Instant::now() >= deadline {
                        tracing::error!(
                            "shutting down with Redis unreachable: {} received records lost",
                            batch.len()
                        );
                        batch.clear();
                        return;
                    }
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// One record taken for routing.
struct Item {
    id: String,
    /// The record with its delivery id, as published.
    payload: String,
    /// The worker it was last routed to: a re-route prefers any other.
    avoid: Option<String>,
    rerouted: bool,
}

struct Router {
    lobby: String,
    conn: ConnectionManager,
    ack_timeout: Duration,
    /// Live worker ids, sorted; refreshed periodically and when a PUBLISH reaches nobody.
    workers: Vec<String>,
    next: usize,
    metrics: FanoutMetrics,
    arrivals: Arc<Arrivals>,
    skips: SkipLog,
    outage: Outage,
}

impl Router {
    async fn run(&mut self, wake: &Notify, shutdown: &Shutdown) {
        let mut backoff = Backoff::default();
        let mut workers_due = Instant::now();
        let mut backlog_due = Instant::now();
        let mut expiry_due = Instant::now();
        let expiry_every =
            (self.ack_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        while !shutdown.is_triggered() {
            let now = Instant::now();
            let step = async {
                if now >= workers_due || self.workers.is_empty() {
                    self.refresh_workers().await?;
                    workers_due = now + WORKER_REFRESH;
                }
                if now >= backlog_due {
                    self.drain_backlog().await?;
                    backlog_due = now + BACKLOG_POLL;
                }
                if now >= expiry_due {
                    expiry_due = now + expiry_every;
                    self.reroute_expired().await?;
                }
                self.route_waiting().await
            }
            .await;
            match step {
                Ok(routed) => {
                    self.outage.recovered();
                    backoff.reset();
                    if routed > 0 {
                        continue;
                    }
                    tokio::select! {
                        _ = wake.notified() => backlog_due = backlog_due.min(Instant::now() + Duration::from_millis(20)),
                        _ = tokio::time::sleep(IDLE_TICK) => {}
                        _ = shutdown.recv() => {}
                    }
                }
                Err(e) => {
                    self.outage.failed(&redis_conn::describe(&e));
                    if !backoff.wait(shutdown).await {
                        break;
                    }
                    // Redis may have restarted: look for workers and the backlog at once.
                    workers_due = Instant::now();
                    backlog_due = Instant::now();
                }
            }
        }
    }

    async fn refresh_workers(&mut self) -> RedisResult<()> {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(keys::worker_channel_pattern(&self.lobby))
            .query_async(&mut self.conn)
            .await?;
        let mut workers: Vec<String> = channels
            .iter()
            .filter_map(|ch| keys::worker_id_of(&self.lobby, ch))
            .map(str::to_string)
            .collect();
        workers.sort();
        if workers != self.workers {
            tracing::info!(
                "fanout: {} live worker(s): {}",
                workers.len(),
                workers.join(", ")
            );
            self.workers = workers;
        }
        Ok(())
    }

    async fn backlog_depth(&mut self) -> RedisResult<()> {
        let (backlog, waiting): (i64, i64) = redis::pipe()
            .llen(keys::backlog(&self.lobby))
            .llen(keys::waiting(&self.lobby))
            .query_async(&mut self.conn)
            .await?;
        self.metrics.backlog_depth.set(backlog + waiting);
        Ok(())
    }

    async fn drain_backlog(&mut self) -> RedisResult<()> {
        loop {
            let moved: u64 = DRAIN_BACKLOG
                .key(keys::backlog(&self.lobby))
                .key(keys::pending(&self.lobby))
                .key(keys::waiting(&self.lobby))
                .key(keys::delivery_seq(&self.lobby))
                .arg(INGEST_BATCH)
                .invoke_async(&mut self.conn)
                .await?;
            if moved > 0 {
                tracing::info!("fanout: took {moved} record(s) from the server's backlog");
            }
            if moved < INGEST_BATCH as u64 {
                break;
            }
        }
        self.backlog_depth().await
    }

    /// Routes one batch from the head of the queue; returns how many records it took.
    async fn route_waiting(&mut self) -> RedisResult<usize> {
        if self.workers.is_empty() {
            return Ok(0);
        }
        let taken: Vec<(String, Vec<u8>)> = TAKE
            .key(keys::waiting(&self.lobby))
            .key(keys::pending(&self.lobby))
            .key(keys::deadlines(&self.lobby))
            .arg(ROUTE_BATCH)
            .arg(self.ack_timeout.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await?;
        let count = taken.len();
        let items = self
            .prepare(taken.into_iter().map(|(id, rec)| (id, rec, None)), false)
            .await?;
        self.route(items).await?;
        Ok(count)
    }

    async fn reroute_expired(&mut self) -> RedisResult<()> {
        if self.workers.is_empty() {
            return Ok(());
        }
        let claimed: Vec<(String, Vec<u8>, String)> = CLAIM_EXPIRED
            .key(keys::deadlines(&self.lobby))
            .key(keys::pending(&self.lobby))
            .key(keys::routes(&self.lobby))
            .arg(ROUTE_BATCH)
            .arg(self.ack_timeout.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await?;
        if claimed.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "fanout: {} record(s) unacknowledged after {:?}, routing them again",
            claimed.len(),
            self.ack_timeout
        );
        let items = claimed.into_iter().map(|(id, rec, route)| {
            let last = route.split_once(' ').map(|(_, worker)| worker.to_string());
            (id, rec, last)
        });
        let items = self.prepare(items, true).await?;
        self.route(items).await
    }

    /// Adds the delivery id to each record; records that are not a valid record are dropped
    /// here, with their reason logged, instead of being routed.
    async fn prepare(
        &mut self,
        taken: impl Iterator<Item = (String, Vec<u8>, Option<String>)>,
        rerouted: bool,
    ) -> RedisResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut dropped = Vec::new();
        for (id, raw, avoid) in taken {
            match with_delivery_id(&raw, &id) {
                Ok(payload) => items.push(Item {
                    id,
                    payload,
                    avoid,
                    rerouted,
                }),
                Err(e) => {
                    self.skips.skip(&e);
                    dropped.push(id);
                }
            }
        }
        crate::worker::claim::ack_many(&mut self.conn, &self.lobby, &dropped).await?;
        Ok(items)
    }

    /// Publishes each item to the next live worker; an item whose PUBLISH reached nobody goes to
    /// the next one, and with no worker left back to the head of the queue.
    async fn route(&mut self, mut items: Vec<Item>) -> RedisResult<()> {
        while !items.is_empty() {
            if self.workers.is_empty() {
                self.refresh_workers().await?;
            }
            if self.workers.is_empty() {
                let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
                let _: i64 = UNTAKE
                    .key(keys::deadlines(&self.lobby))
                    .key(keys::waiting(&self.lobby))
                    .arg(&ids)
                    .invoke_async(&mut self.conn)
                    .await?;
                tracing::info!(
                    "fanout: no worker subscribed; {} record(s) wait in Redis",
                    ids.len()
                );
                return Ok(());
            }
            let now_ms = crate::clock::now_ms();
            let targets: Vec<String> = items
                .iter()
                .map(|item| self.pick(item.avoid.as_deref()))
                .collect();
            let routes: Vec<(&str, String)> = items
                .iter()
                .zip(&targets)
                .map(|(item, worker)| (item.id.as_str(), format!("{now_ms} {worker}")))
                .collect();
            // Where each record went, in one command, then one PUBLISH per record.
            let mut pipe = redis::pipe();
            pipe.hset_multiple(keys::routes(&self.lobby), &routes)
                .ignore();
            for (item, worker) in items.iter().zip(&targets) {
                pipe.publish(keys::worker_channel(&self.lobby, worker), &item.payload);
            }
            let receivers: Vec<u64> = pipe.query_async(&mut self.conn).await?;
            let mut missed = Vec::new();
            let mut gone = Vec::new();
            for ((item, worker), count) in items.into_iter().zip(targets).zip(receivers) {
                if count > 0 {
                    if item.rerouted {
                        self.metrics.records_rerouted.inc();
                    } else {
                        self.metrics.records_routed.inc();
                        if let Some(at) = item
                            .id
                            .parse()
                            .ok()
                            .and_then(|id| self.arrivals.arrival(id))
                        {
                            self.metrics
                                .routing_latency
                                .observe(at.elapsed().as_secs_f64());
                        }
                    }
                } else {
                    gone.push(worker);
                    missed.push(item);
                }
            }
            if !gone.is_empty() {
                self.workers.retain(|w| !gone.contains(w));
                tracing::info!(
                    "fanout: worker(s) {} vanished; trying others",
                    gone.join(", ")
                );
                self.refresh_workers().await?;
                self.workers.retain(|w| !gone.contains(w));
            }
            items = missed;
        }
        Ok(())
    }

    /// The next worker round-robin, skipping `avoid` when another one is live.
    fn pick(&mut self, avoid: Option<&str>) -> String {
        let n = self.workers.len();
        let mut worker = &self.workers[self.next % n];
        self.next = self.next.wrapping_add(1);
        if n > 1 && Some(worker.as_str()) == avoid {
            worker = &self.workers[self.next % n];
            self.next = self.next.wrapping_add(1);
        }
        worker.clone()
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

/// Pipeline state for `superhero status`, read from Redis alone (SCAN, never KEYS).
pub async fn inspect(conn: &mut ConnectionManager, lobby: &str) -> Result<PipelineState> {
    let (backlog, waiting, unacked, oldest, time): (u64, u64, u64, Vec<String>, (u64, u64)) =
        redis::pipe()
            .llen(keys::backlog(lobby))
            .llen(keys::waiting(lobby))
            .zcard(keys::deadlines(lobby))
            .zrange(keys::deadlines(lobby), 0, 0)
            .cmd("TIME")
            .query_async(conn)
            .await?;
    let now_ms = time.0 * 1000 + time.1 / 1000;
    let mut oldest_unacked_age = None;
    if let Some(id) = oldest.first() {
        let route: Option<String> = redis::cmd("HGET")
            .arg(keys::routes(lobby))
            .arg(id)
            .query_async(conn)
            .await?;
        let routed_ms = route
            .as_deref()
            .and_then(|r| r.split(' ').next())
            .and_then(|ms| ms.parse::<u64>().ok());
        oldest_unacked_age = routed_ms.map(|ms| Duration::from_millis(now_ms.saturating_sub(ms)));
    }
    let mut claimed_unfinished = 0;
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys::ETL_LEASE_PATTERN)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        let games: Vec<&str> = found
            .iter()
            .filter_map(|k| keys::game_of_etl_lease(k))
            .collect();
        if !games.is_empty() {
            let mut pipe = redis::pipe();
            for g in &games {
                pipe.exists(keys::etl_done(g));
            }
            let done: Vec<bool> = pipe.query_async(conn).await?;
            claimed_unfinished += done.iter().filter(|d| !**d).count() as u64;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(PipelineState {
        backlog,
        waiting,
        unacked,
        oldest_unacked_age,
        claimed_unfinished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = r#"{"log_message":"Cleaning Game Records","task":{"game_token":"0b8f3a52-8a4b-4c55-9d3e-0123456789ab","user_token":"5d9c1e7a-2f4b-4a8e-b1c2-abcdefabcdef"}}"#;

    #[test]
    fn delivery_id_is_added_to_the_object() {
        let routed = with_delivery_id(REC.as_bytes(), "17").unwrap();
        let parsed = record::parse(routed.as_bytes()).unwrap();
        assert_eq!(parsed.delivery_id.as_deref(), Some("17"));
        assert_eq!(parsed.event, record::parse(REC.as_bytes()).unwrap().event);
    }

    #[test]
    fn double_encoded_records_are_routed_as_objects() {
        let twice = serde_json::to_string(REC).unwrap();
        let routed = with_delivery_id(twice.as_bytes(), "5").unwrap();
        assert!(routed.starts_with('{'));
        assert_eq!(
            record::parse(routed.as_bytes())
                .unwrap()
                .delivery_id
                .as_deref(),
            Some("5")
        );
    }

    #[test]
    fn an_existing_delivery_id_is_replaced() {
        let once = with_delivery_id(REC.as_bytes(), "1").unwrap();
        let twice = with_delivery_id(once.as_bytes(), "2").unwrap();
        assert_eq!(
            record::parse(twice.as_bytes())
                .unwrap()
                .delivery_id
                .as_deref(),
            Some("2")
        );
        assert_eq!(twice.matches(DELIVERY_ID_FIELD).count(), 1);
    }

    #[test]
    fn garbage_is_not_routed() {
        assert!(with_delivery_id(b"garbage", "1").is_err());
        assert!(with_delivery_id(b"[]", "1").is_err());
    }

    #[test]
    fn arrivals_find_their_range() {
        let a = Arrivals::default();
        let t = Instant::now();
        a.record(1, 10, t);
        a.record(11, 20, t);
        assert_eq!(a.arrival(15), Some(t));
        assert_eq!(a.arrival(5), None);
    }
}
