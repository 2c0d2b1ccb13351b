//! The fanout's router loop and its upkeep: create the consumer group, follow the live workers
//! and what each holds unacknowledged, sample the gauges, read new entries, claim expired ones
//! and trim the log. Handing entries to workers is in [`super::route`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{RedisResult, Value};

use super::{
    inspect, Entry, FanoutMetrics, CLAIM_BATCH, CLAIM_EXPIRED, FORGET_CONSUMERS, FORGET_FANOUT,
    FORGET_WORKER, GAUGE_REFRESH, LIVE_WORKERS, READ_BLOCK, ROUTE_BATCH, SATURATED_PAUSE, TRIM,
    TRIM_EVERY, WORKER_REFRESH,
};
use crate::pipeline::delivery::{self, MAX_UNACKED_PER_WORKER};
use crate::pipeline::keys;
use crate::pipeline::redis_conn::{self, Backoff, Outage};
use crate::shutdown::Shutdown;

/// The router loop's state: what it knows of the workers, what it holds, and when each upkeep task
/// is due next.
pub(super) struct Router {
    pub(super) lobby: String,
    pub(super) stream: String,
    pub(super) group: String,
    pub(super) consumer: String,
    /// This loop's own connection: XREADGROUP BLOCK would stall a shared one.
    pub(super) conn: ConnectionManager,
    pub(super) ack_timeout: Duration,
    pub(super) max_deliveries: u32,
    pub(super) dead_letters_max: usize,
    pub(super) retention: Duration,
    pub(super) group_ready: bool,
    /// Live workers, in a stable order for the rotation.
    pub(super) workers: Vec<String>,
    /// Unacknowledged entries per worker (from XPENDING, plus what was routed since).
    pub(super) unacked: HashMap<String, u64>,
    pub(super) next: usize,
    /// The worker each recent game's records went to.
    pub(super) games: HashMap<String, String>,
    /// Entries read while no worker could take them; kept claimed by this fanout.
    pub(super) held: Vec<Entry>,
    /// Redis clock minus local clock, for latency from entry ids without comparing clocks.
    pub(super) redis_offset_ms: i64,
    pub(super) next_refresh: Instant,
    pub(super) next_gauges: Instant,
    pub(super) next_claim: Instant,
    pub(super) next_trim: Instant,
    pub(super) metrics: FanoutMetrics,
    pub(super) outage: Outage,
}

impl Router {
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
    pub(super) async fn step(&mut self) -> RedisResult<Duration> {
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

    pub(super) async fn create_group(&mut self) -> RedisResult<()> {
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
    pub(super) async fn refresh_workers(&mut self) -> RedisResult<()> {
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

    pub(super) async fn refresh_unacked(&mut self) -> RedisResult<()> {
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

    pub(super) async fn sample_gauges(&mut self) -> RedisResult<()> {
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
    pub(super) fn room(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| MAX_UNACKED_PER_WORKER.saturating_sub(self.unacked(w)))
            .sum()
    }

    pub(super) fn unacked(&self, worker: &str) -> u64 {
        self.unacked.get(worker).copied().unwrap_or(0)
    }

    pub(super) async fn read(&mut self, count: usize) -> RedisResult<Vec<Entry>> {
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
    pub(super) async fn claim_expired(&mut self) -> RedisResult<()> {
        // Keep what we hold from looking abandoned to the other fanouts.
        self.keep_held().await?;
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

    /// Trims the log to LOG_RETENTION and deletes the group's consumers of workers and
    /// fanouts that are gone and hold nothing.
    pub(super) async fn trim(&mut self) -> RedisResult<()> {
        let removed: u64 = TRIM
            .key(&self.stream)
            .arg(self.retention.as_millis() as u64)
            .invoke_async(&mut self.conn)
            .await?;
        if removed > 0 {
            tracing::debug!("trimmed {removed} acknowledged record(s) from the log");
        }
        let forgotten: u64 = FORGET_CONSUMERS
            .key(&self.stream)
            .key(keys::worker_heartbeats(&self.lobby))
            .arg(&self.group)
            .arg(delivery::HEARTBEAT_STALE.as_millis() as u64)
            .arg(FORGET_FANOUT.as_millis() as u64)
            .arg(delivery::fanout_consumer(""))
            .invoke_async(&mut self.conn)
            .await?;
        if forgotten > 0 {
            tracing::debug!("deleted {forgotten} consumer(s) of workers or fanouts gone");
        }
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
