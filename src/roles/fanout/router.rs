//! The fanout's router: its loop and upkeep (create the consumer group, follow the live workers
//! and what each holds unacknowledged, sample the gauges, read new entries, claim expired ones
//! and trim the log) and the handing of entries to workers: each goes to one live worker with
//! room (the worker its game's records went to, else the least loaded, ties broken by
//! rotation), as that worker's pending entry (XCLAIM … JUSTID) and as a PUBLISH on its channel
//! in the routed form of [`super::route`]; what nobody can take is held, and what is no record
//! at all goes to the dead letters.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::pipeline::redis_conn::Conn;
use redis::{RedisResult, Value};

use super::route::routed;
use super::workers::{kept, Workers};
use super::{
    inspect, Entry, FanoutMetrics, CLAIM_BATCH, CLAIM_EXPIRED, FORGET_CONSUMERS, FORGET_FANOUT,
    FORGET_WORKER, GAUGE_REFRESH, KEEP_OWN, LIVE_WORKERS, READ_BLOCK, ROUTE, ROUTE_BATCH,
    SATURATED_PAUSE, TRIM, TRIM_EVERY, WORKER_REFRESH,
};
use crate::config::Settings;
use crate::metrics::Gauge;
use crate::pipeline::delivery::{self, Log, MAX_UNACKED_PER_WORKER};
use crate::pipeline::keys;
use crate::pipeline::redis_conn::{self, Backoff, Outage};
use crate::shutdown::Shutdown;

/// The router loop's state: what it knows of the workers, what it holds, and when each upkeep task
/// is due next.
pub(super) struct Router {
    lobby: String,
    /// The log this router reads: the single layout's, or one shard's.
    log: Log,
    consumer: String,
    /// This loop's own connection: XREADGROUP BLOCK would stall a shared one.
    conn: Conn,
    ack_timeout: Duration,
    max_deliveries: u32,
    dead_letters_max: usize,
    retention: Duration,
    group_ready: bool,
    workers: Workers,
    /// Entries read while no worker could take them; kept claimed by this fanout.
    held: Vec<Entry>,
    /// The last read was full: more entries wait, and are read straight into the workers'
    /// pending lists ([`Self::read_for_workers`]).
    backlog: bool,
    /// Redis clock minus local clock, for latency from entry ids without comparing clocks.
    redis_offset_ms: i64,
    next_refresh: Instant,
    next_gauges: Instant,
    next_claim: Instant,
    next_trim: Instant,
    metrics: FanoutMetrics,
    /// This log's part of the fanout's gauges.
    shares: GaugeShares,
    outage: Outage,
}

/// The gauges each log adds its part to.
#[derive(Clone, Copy)]
enum Gauged {
    Length,
    Lag,
    Unacked,
    Dead,
}

/// One log's last contribution to each gauge of the fanout: a fanout that reads several logs
/// (one per shard) reports their sum, each router adding the change of its own part.
#[derive(Default)]
struct GaugeShares([i64; 4]);

impl GaugeShares {
    fn set(&mut self, gauge: &Gauge, which: Gauged, value: i64) {
        let last = &mut self.0[which as usize];
        gauge.inc_by(value - *last);
        *last = value;
    }

    /// Takes this log's parts out of the gauges (its router stops).
    fn withdraw(&mut self, metrics: &FanoutMetrics) {
        self.set(&metrics.stream_length, Gauged::Length, 0);
        self.set(&metrics.group_lag, Gauged::Lag, 0);
        self.set(&metrics.unacked, Gauged::Unacked, 0);
        self.set(&metrics.dead_letters, Gauged::Dead, 0);
    }
}

impl Router {
    /// A router of `log`, for the lobby of `settings`, reading as `consumer` on `conn`, a
    /// connection of its own.
    pub(super) fn new(
        settings: &Settings,
        log: Log,
        consumer: String,
        conn: Conn,
        metrics: FanoutMetrics,
    ) -> Router {
        let lobby = settings.worker_channel.clone();
        let now = Instant::now();
        Router {
            log,
            lobby,
            consumer,
            conn,
            ack_timeout: settings.ack_timeout,
            max_deliveries: settings.max_deliveries,
            dead_letters_max: settings.dead_letters_max,
            retention: settings.log_retention,
            group_ready: false,
            workers: Workers::new(),
            held: Vec::new(),
            backlog: false,
            redis_offset_ms: 0,
            next_refresh: now,
            next_gauges: now,
            next_claim: now,
            next_trim: now,
            metrics,
            shares: GaugeShares::default(),
            outage: Outage::new("fanout"),
        }
    }

    pub(super) async fn run(&mut self, shutdown: &Shutdown) {
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
        let mut room = self.workers.room();
        if room == 0 {
            self.refresh_unacked().await?;
            room = self.workers.room();
            if room == 0 {
                return Ok(SATURATED_PAUSE);
            }
        }
        let count = room.min(ROUTE_BATCH as u64) as usize;
        if self.backlog {
            let read = self.read_for_workers(count).await?;
            self.backlog = read == count;
            if read > 0 {
                return Ok(Duration::ZERO);
            }
        }
        let entries = self.read(count).await?;
        self.backlog = entries.len() == count;
        if !entries.is_empty() {
            self.route(entries).await?;
        }
        Ok(Duration::ZERO)
    }

    async fn create_group(&mut self) -> RedisResult<()> {
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.log.stream)
            .arg(&self.log.group)
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
        if self.workers.set_live(live) {
            tracing::info!("live workers: {}", describe_workers(self.workers.live()));
        }
        self.refresh_unacked().await
    }

    async fn refresh_unacked(&mut self) -> RedisResult<()> {
        let summary: Value = redis::cmd("XPENDING")
            .arg(&self.log.stream)
            .arg(&self.log.group)
            .query_async(&mut self.conn)
            .await?;
        let summary = inspect::PendingSummary::parse(&summary);
        self.shares
            .set(&self.metrics.unacked, Gauged::Unacked, summary.count as i64);
        self.workers.set_unacked(summary.per_consumer);
        Ok(())
    }

    async fn sample_gauges(&mut self) -> RedisResult<()> {
        let (length, dead): (i64, i64) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.log.stream)
            .cmd("XLEN")
            .arg(&self.log.dead)
            .query_async(&mut self.conn)
            .await?;
        let shares = &mut self.shares;
        shares.set(&self.metrics.stream_length, Gauged::Length, length);
        shares.set(&self.metrics.dead_letters, Gauged::Dead, dead);
        if let Some(lag) =
            inspect::group_lag(&mut self.conn, &self.log.stream, &self.log.group).await?
        {
            (self.shares).set(&self.metrics.group_lag, Gauged::Lag, lag as i64);
        }
        Ok(())
    }

    async fn read(&mut self, count: usize) -> RedisResult<Vec<Entry>> {
        let taken = Instant::now();
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.log.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.log.stream)
            .arg(">")
            .query_async(&mut self.conn)
            .await?;
        Ok(inspect::stream_entries(reply)
            .into_iter()
            .map(|(id, record)| Entry {
                id,
                record,
                avoid: None,
                rerouted: false,
                taken,
            })
            .collect())
    }

    /// Claims expired entries for routing again, or dead-letters them.
    async fn claim_expired(&mut self) -> RedisResult<()> {
        // Keep what we hold from looking abandoned to the other fanouts.
        self.keep_held().await?;
        let taken = Instant::now();
        let reply: Vec<Vec<Vec<u8>>> = CLAIM_EXPIRED
            .key(&self.log.stream)
            .key(&self.log.dead)
            .key(&self.log.tries)
            .key(&self.log.failures)
            .arg(&self.log.group)
            .arg(&self.consumer)
            .arg(self.ack_timeout.as_millis() as u64)
            .arg(self.max_deliveries)
            .arg(CLAIM_BATCH)
            .arg(self.dead_letters_max)
            .invoke_async(&mut self.conn)
            .await?;
        let mut again = Vec::new();
        for row in reply {
            let text =
                |i: usize| String::from_utf8_lossy(row.get(i).map_or(&[][..], |v| v)).to_string();
            match text(1).as_str() {
                "dead" => {
                    self.metrics.records_dead_lettered.inc();
                    let dropped: u64 = text(3).parse().unwrap_or(0);
                    self.metrics.dead_letters_dropped.inc_by(dropped);
                    tracing::error!(
                        "record {} moved to {} after {} deliveries: {}",
                        text(0),
                        &self.log.dead,
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
                        taken,
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

    /// Trims the log to LOG_RETENTION and deletes the group's consumers of workers and
    /// fanouts that are gone and hold nothing.
    async fn trim(&mut self) -> RedisResult<()> {
        let removed: u64 = TRIM
            .key(&self.log.stream)
            .arg(self.retention.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await?;
        if removed > 0 {
            tracing::debug!("trimmed {removed} acknowledged record(s) from the log");
        }
        let mut forget = FORGET_CONSUMERS.key(&self.log.stream);
        forget
            .arg(&self.log.group)
            .arg(FORGET_FANOUT.as_millis() as u64)
            .arg(delivery::fanout_consumer(""))
            .arg(self.workers.live());
        let forgotten: u64 = forget.invoke_async(&mut self.conn).await?;
        if forgotten > 0 {
            tracing::debug!("deleted {forgotten} consumer(s) of workers or fanouts gone");
        }
        Ok(())
    }

    /// Hands entries to workers: each goes to one live worker with room, as its pending entry
    /// (`route.lua`, which keeps every worker within its limit counted over all fanouts), then
    /// as a PUBLISH on its channel. Entries this fanout took long enough
    /// ago that another fanout may have re-claimed them are checked first
    /// ([`Self::keep_own`]). Entries whose PUBLISH reached nobody go to the next worker; with
    /// none left they are held until one appears.
    async fn route(&mut self, entries: Vec<Entry>) -> RedisResult<()> {
        let mut queue: VecDeque<Entry> = self.keep_own(entries, false).await?.into();
        while !queue.is_empty() {
            let mut batch: Vec<(Entry, String, String)> = Vec::new();
            let mut invalid = Vec::new();
            while let Some(entry) = queue.pop_front() {
                let (payload, game) = match routed(&entry.record, &self.log.delivery_id(&entry.id))
                {
                    Ok(p) => p,
                    Err(e) => {
                        invalid.push((entry, e));
                        continue;
                    }
                };
                match self.workers.pick(entry.avoid.as_deref(), game.as_deref()) {
                    Some(worker) => batch.push((entry, worker, payload)),
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
            // Claim by worker (each worker's entries one section of the script's arguments),
            // then PUBLISH what each was given.
            batch.sort_by(|a, b| a.1.cmp(&b.1));
            let mut invocation = ROUTE.key(&self.log.stream);
            invocation.arg(&self.log.group).arg(MAX_UNACKED_PER_WORKER);
            for section in batch.chunk_by(|a, b| a.1 == b.1) {
                invocation.arg(&section[0].1).arg(section.len());
                for (entry, _, _) in section {
                    invocation.arg(&entry.id);
                }
                invocation.arg("JUSTID");
            }
            let given: Vec<usize> = invocation.invoke_async(&mut self.conn).await?;
            let mut claimed = Vec::with_capacity(batch.len());
            let mut refused = Vec::new();
            let mut batch = batch.into_iter().peekable();
            for allowed in given {
                let Some((_, worker, _)) = batch.peek() else {
                    break;
                };
                let worker = worker.clone();
                let mut i = 0;
                while let Some(item) = batch.next_if(|item| item.1 == worker) {
                    if i < allowed {
                        claimed.push(item);
                    } else {
                        refused.push(item);
                    }
                    i += 1;
                }
            }
            for (entry, worker, _) in refused.into_iter().chain(batch) {
                // Full by the count of every fanout's deliveries: none more this round.
                self.workers.mark_full(worker);
                queue.push_back(entry);
            }
            let unheard = self.publish(claimed).await?;
            queue.extend(unheard);
        }
        Ok(())
    }

    /// Under a backlog: up to `count` new entries read straight into the pending lists of the
    /// workers with room (XREADGROUP as each worker, its share within its limit, least loaded
    /// first), rather than read by this fanout and then claimed for each worker. The group's
    /// count of each worker's entries, read right after, catches what another fanout routed
    /// meanwhile: entries past the limit are taken back before anything is PUBLISHed (so a
    /// worker is never sent more than its limit, counted over all fanouts) and routed like
    /// any other. The rest are PUBLISHed. The number of entries read.
    async fn read_for_workers(&mut self, count: usize) -> RedisResult<usize> {
        let shares = self.workers.shares(count as u64);
        let mut pipe = redis::pipe();
        for (worker, share) in &shares {
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.log.group)
                .arg(worker)
                .arg("COUNT")
                .arg(share)
                .arg("STREAMS")
                .arg(&self.log.stream)
                .arg(">");
        }
        pipe.cmd("XPENDING")
            .arg(&self.log.stream)
            .arg(&self.log.group);
        let taken = Instant::now();
        let mut replies: Vec<Value> = pipe.query_async(&mut self.conn).await?;
        let summary = inspect::PendingSummary::parse(&replies.pop().unwrap_or(Value::Nil));
        self.shares
            .set(&self.metrics.unacked, Gauged::Unacked, summary.count as i64);
        let held: HashMap<String, u64> = summary.per_consumer.into_iter().collect();
        // The group's count is this fanout's from now on (what is taken back below leaves
        // its worker at the limit).
        self.workers.set_unacked(
            held.iter()
                .map(|(w, n)| (w.clone(), (*n).min(MAX_UNACKED_PER_WORKER))),
        );
        let mut read = 0;
        let mut sent = Vec::new();
        let mut back = Vec::new();
        let mut invalid = Vec::new();
        for ((worker, _), reply) in shares.into_iter().zip(replies) {
            let entries = inspect::stream_entries(reply);
            read += entries.len();
            let keep = kept(entries.len(), held.get(&worker).copied().unwrap_or(0));
            for (i, (id, record)) in entries.into_iter().enumerate() {
                let entry = Entry {
                    id,
                    record,
                    avoid: None,
                    rerouted: false,
                    taken,
                };
                if i >= keep {
                    back.push(entry);
                    continue;
                }
                match routed(&entry.record, &self.log.delivery_id(&entry.id)) {
                    Ok((payload, game)) => {
                        if let Some(g) = game {
                            self.workers.remember(&g, &worker);
                        }
                        sent.push((entry, worker.clone(), payload));
                    }
                    Err(e) => invalid.push((entry, e)),
                }
            }
        }
        if !back.is_empty() {
            self.claim_for_self(&back).await?;
        }
        for (entry, reason) in invalid {
            self.dead_letter_now(&entry, &reason.to_string()).await?;
        }
        back.extend(self.publish(sent).await?);
        if !back.is_empty() {
            self.route(back).await?;
        }
        Ok(read)
    }

    /// PUBLISHes each entry, already pending at its worker, on that worker's channel. Entries
    /// heard by nobody are taken back by this fanout and returned, to go to another worker;
    /// their worker is out of the rotation until its heartbeat says otherwise.
    async fn publish(&mut self, sent: Vec<(Entry, String, String)>) -> RedisResult<Vec<Entry>> {
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (_, worker, payload) in &sent {
            pipe.publish(keys::worker_channel(&self.lobby, worker), payload);
        }
        let mut heard: Vec<u64> = pipe.query_async(&mut self.conn).await?;
        if self.conn.is_cluster() && heard.contains(&0) {
            self.recount_on_every_node(&sent, &mut heard).await?;
        }
        let local_now = crate::clock::now_ms() as i64;
        let mut gone = BTreeSet::new();
        let mut unheard = Vec::new();
        for ((entry, worker, _), listeners) in sent.into_iter().zip(heard) {
            if listeners > 0 {
                self.delivered(&entry, local_now);
            } else {
                gone.insert(worker);
                unheard.push(Entry {
                    avoid: None,
                    ..entry
                });
            }
        }
        if !unheard.is_empty() {
            self.claim_for_self(&unheard).await?;
        }
        for worker in gone {
            tracing::info!("worker {worker} no longer listens; routing its records elsewhere");
            self.workers.remove(&worker);
        }
        Ok(unheard)
    }

    /// On a cluster a PUBLISH reaches every node's subscribers but counts only those of the
    /// node that ran it (the owner of the channel's slot), while a worker subscribes through
    /// whichever node it reached: a 0 there does not mean nobody listens. The channels that
    /// counted 0 are asked about on every node (PUBSUB NUMSUB), and those with a subscriber
    /// anywhere count as heard.
    async fn recount_on_every_node(
        &mut self,
        sent: &[(Entry, String, String)],
        heard: &mut [u64],
    ) -> RedisResult<()> {
        let channels: Vec<String> = sent
            .iter()
            .zip(heard.iter())
            .filter(|(_, n)| **n == 0)
            .map(|((_, worker, _), _)| keys::worker_channel(&self.lobby, worker))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let counts = redis_conn::numsub(&mut self.conn, &channels)
            .await
            .map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::Io, "PUBSUB NUMSUB", format!("{e:#}")))
            })?;
        let listening: HashSet<String> = counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(channel, _)| channel)
            .collect();
        for ((_, worker, _), n) in sent.iter().zip(heard.iter_mut()) {
            if *n == 0 && listening.contains(&keys::worker_channel(&self.lobby, worker)) {
                *n = 1;
            }
        }
        Ok(())
    }

    /// Makes `entries` this fanout's pending entries again (XCLAIM … JUSTID: no new delivery).
    async fn claim_for_self(&mut self, entries: &[Entry]) -> RedisResult<()> {
        redis::cmd("XCLAIM")
            .arg(&self.log.stream)
            .arg(&self.log.group)
            .arg(&self.consumer)
            .arg(0)
            .arg(entries.iter().map(|e| &e.id).collect::<Vec<_>>())
            .arg("JUSTID")
            .exec_async(&mut self.conn)
            .await
    }

    /// The entries that are still this fanout's. Those it took less than half an ACK_TIMEOUT
    /// ago cannot have been re-claimed by another fanout; the older ones (held while no worker
    /// could take them, or this fanout was paused) are looked up, and kept (idle time reset)
    /// only where they are still its own: a paused fanout must not take back what another
    /// routed meanwhile. With `all`, every entry is looked up (and its idle time reset).
    async fn keep_own(&mut self, entries: Vec<Entry>, all: bool) -> RedisResult<Vec<Entry>> {
        let (fresh, old): (Vec<Entry>, Vec<Entry>) = entries
            .into_iter()
            .partition(|e| !all && e.taken.elapsed() < self.ack_timeout / 2);
        if old.is_empty() {
            return Ok(fresh);
        }
        let mut invocation = KEEP_OWN.key(&self.log.stream);
        invocation.arg(&self.log.group).arg(&self.consumer);
        for entry in &old {
            invocation.arg(&entry.id);
        }
        let kept = Instant::now();
        let mine: HashSet<String> = invocation.invoke_async(&mut self.conn).await?;
        let before = old.len();
        let mut own: Vec<Entry> = old.into_iter().filter(|e| mine.contains(&e.id)).collect();
        let taken = before - own.len();
        if taken > 0 {
            self.metrics
                .records_left_to_another_fanout
                .inc_by(taken as u64);
            tracing::info!("{taken} record(s) were taken by another fanout");
        }
        for entry in &mut own {
            entry.taken = kept;
        }
        own.extend(fresh);
        Ok(own)
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

    /// Keeps entries no worker can take, claimed by this fanout so they do not count as
    /// abandoned; they are routed as soon as a worker is live.
    async fn hold(&mut self, entries: Vec<Entry>) -> RedisResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.held.extend(entries);
        self.keep_held().await
    }

    /// Resets the idle time of the held entries still this fanout's; drops the others, which
    /// another fanout re-claimed while this one was paused.
    async fn keep_held(&mut self) -> RedisResult<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        // Every held entry is looked up and its idle time reset, however recently taken.
        let held = std::mem::take(&mut self.held);
        self.held = self.keep_own(held, true).await?;
        Ok(())
    }

    /// An entry no worker could ever handle (not a valid record) goes straight to the dead
    /// letters.
    async fn dead_letter_now(&mut self, entry: &Entry, reason: &str) -> RedisResult<()> {
        tracing::warn!("record {} is not routable: {reason}", entry.id);
        let dead = self.log.dead.clone();
        let (before, after): (u64, u64) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(&dead)
            .cmd("XADD")
            .arg(&dead)
            .arg("MAXLEN")
            .arg(self.dead_letters_max)
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
            .cmd("XLEN")
            .arg(&dead)
            .cmd("XACK")
            .arg(&self.log.stream)
            .arg(&self.log.group)
            .arg(&entry.id)
            .ignore()
            .query_async(&mut self.conn)
            .await?;
        self.metrics.records_dead_lettered.inc();
        self.metrics
            .dead_letters_dropped
            .inc_by((before + 1).saturating_sub(after));
        Ok(())
    }
}

fn describe_workers(workers: &[String]) -> String {
    if workers.is_empty() {
        "none".to_string()
    } else {
        workers.join(", ")
    }
}

impl Drop for Router {
    /// A router that stops (its shard handed over, or shutdown) takes its log's part out of
    /// the fanout's gauges.
    fn drop(&mut self) {
        self.shares.withdraw(&self.metrics);
    }
}
