//! `superhero bench fanout`: one burst of records appended to a private lobby's log stream (as
//! the server's scripts append them), the real fanout (in this process, so its metrics are read
//! from its registry), and fake workers that beat their heartbeat, count what they get and
//! acknowledge it in batches.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::redis_cpu::{RedisCost, RedisSample};
use super::BenchReport;
use crate::config::Settings;
use crate::metrics::{self, histogram_quantile};
use crate::pipeline::delivery::{self, Log};
use crate::pipeline::keys;
use crate::pipeline::redis_conn::{self, Redis, SubEvent};
use crate::pipeline::shard::Layout;
use crate::roles::fanout::{self, FanoutMetrics};
use crate::shutdown;

pub(super) async fn bench(
    settings: &Settings,
    redis: &Redis,
    records: usize,
    workers: usize,
) -> Result<BenchReport> {
    let run = run(settings, redis, records, workers, Duration::from_secs(120)).await?;
    let mut report = BenchReport::new("fanout", redis, run.redis.clone());
    let spread = run.spread();
    report.set("records", run.records);
    report.set("workers", run.workers);
    report.set("seconds", run.elapsed.as_secs_f64());
    report.set("records_per_second", run.records_per_sec);
    report.set("lost", run.lost);
    report.set("duplicated", run.duplicated);
    report.set("per_worker", run.per_worker.clone());
    report.set(
        "spread_min_pct",
        spread.iter().copied().fold(f64::INFINITY, f64::min) * 100.0,
    );
    report.set(
        "spread_max_pct",
        spread.iter().copied().fold(0.0, f64::max) * 100.0,
    );
    if let Some(p50) = run.latency_p50 {
        report.set("routing_p50_ms", p50 * 1000.0);
    }
    if let Some(p99) = run.latency_p99 {
        report.set("routing_p99_ms", p99 * 1000.0);
    }
    Ok(report)
}

/// What one run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FanoutBenchReport {
    pub records: usize,
    pub workers: usize,
    /// From the first append of the burst to the last record reaching a worker.
    pub elapsed: Duration,
    pub records_per_sec: f64,
    /// Records that reached no worker.
    pub lost: usize,
    /// Records that reached a worker more than once.
    pub duplicated: usize,
    /// Records each fake worker received, in worker order.
    pub per_worker: Vec<u64>,
    /// Routing latency quantiles (append to the log → PUBLISH to a worker), seconds.
    pub latency_p50: Option<f64>,
    pub latency_p99: Option<f64>,
    /// What Redis spent from the first append to the last acknowledgement, per record
    /// delivered.
    pub redis: RedisCost,
}

impl FanoutBenchReport {
    /// Each worker's share relative to an even split (1.0 = exactly even).
    pub fn spread(&self) -> Vec<f64> {
        let even = self.records as f64 / self.workers.max(1) as f64;
        self.per_worker.iter().map(|&n| n as f64 / even).collect()
    }
}

#[derive(Deserialize)]
struct BenchRecord {
    delivery_id: Option<String>,
    task: BenchTask,
}

#[derive(Deserialize)]
struct BenchTask {
    seq: usize,
}

/// Appends `records` records as one pipelined burst to the log of a private lobby (derived from
/// WORKER_CHANNEL, so a live system is not disturbed), routed by the real fanout to `workers`
/// fake workers. Gives up waiting after `timeout` and reports what was lost.
pub async fn run(
    settings: &Settings,
    redis: &Redis,
    records: usize,
    workers: usize,
    timeout: Duration,
) -> Result<FanoutBenchReport> {
    if workers == 0 {
        bail!("the fanout benchmark needs at least one worker");
    }
    let lobby = format!(
        "{}.bench-{}",
        settings.worker_channel,
        crate::config::random_worker_id()
    );
    let mut settings = settings.clone();
    settings.worker_channel = lobby.clone();
    // On a cluster, the lobby's records go to one log per shard, as the server appends them:
    // the fanout runs a router per shard.
    let layout = super::layout(&settings, redis).await?;
    let logs = Log::all(&layout, &lobby);
    let (trigger, stop) = shutdown::channel();

    let seen: Arc<Vec<AtomicU32>> = Arc::new((0..records).map(|_| AtomicU32::new(0)).collect());
    let received = Arc::new(AtomicU64::new(0));
    let mut per_worker = Vec::new();
    let mut channels = Vec::new();
    let mut beats = Vec::new();
    for i in 0..workers {
        let id = format!("bench{i}");
        let channel = keys::worker_channel(&lobby, &id);
        let count = Arc::new(AtomicU64::new(0));
        per_worker.push(count.clone());
        let mut events =
            redis_conn::subscribe(redis, vec![channel.clone()], Vec::new(), stop.clone());
        channels.push(channel);
        let (seen, received) = (seen.clone(), received.clone());
        let (mut conn, lobby) = (redis.conn(), lobby.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let SubEvent::Message { payload, .. } = event else {
                    continue;
                };
                let mut acks = Vec::new();
                let mut next = Some(payload);
                while let Some(payload) = next.take() {
                    if let Ok(record) = serde_json::from_slice::<BenchRecord>(&payload) {
                        if let Some(slot) = seen.get(record.task.seq) {
                            slot.fetch_add(1, Ordering::Relaxed);
                        }
                        acks.extend(record.delivery_id);
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    received.fetch_add(1, Ordering::Relaxed);
                    if acks.len() < 1000 {
                        next = match events.try_recv() {
                            Ok(SubEvent::Message { payload, .. }) => Some(payload),
                            _ => None,
                        };
                    }
                }
                let _ = delivery::ack(&mut conn, &lobby, &acks).await;
            }
        });
        beats.push(id);
    }
    // The fake workers beat like real ones, or the fanout would give them nothing.
    let heartbeat = {
        let (mut conn, lobby, stop) = (redis.conn(), lobby.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                for id in &beats {
                    let _ = delivery::heartbeat(&mut conn, &lobby, id).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delivery::HEARTBEAT_EVERY) => {}
                    _ = stop.recv() => return,
                }
            }
        })
    };

    // Everyone must be listening before the burst, or the burst would measure start-up; the
    // workers first, so the fanout's first look at the worker channels finds them all.
    let mut conn = redis.conn();
    wait_subscribed(&mut conn, &channels).await?;
    wait_beating(&mut conn, &lobby, workers).await?;
    let registry = metrics::registry("fanout");
    let fanout_metrics = FanoutMetrics::register(&registry);
    let fanout = {
        let (redis, stop) = (redis.clone(), stop.clone());
        tokio::spawn(async move {
            fanout::run_with_metrics(&settings, redis, stop, fanout_metrics).await
        })
    };
    match layout.is_tagged() {
        // The single layout's fanout listens on the lobby channel once it reads the log.
        false => wait_subscribed(&mut conn, std::slice::from_ref(&lobby)).await?,
        // A sharded one reads every shard's log once it holds every shard's lease.
        true => wait_leased(&mut conn, &layout, &lobby).await?,
    }

    let mut publisher = redis.dedicated().await?;
    let redis_before = RedisSample::take(redis).await?;
    let started = Instant::now();
    // Record `seq` goes to log `seq mod logs`; the pipelines take the logs in turn, so every
    // shard's router has work from the start.
    let per_log: Vec<Vec<usize>> = (0..logs.len())
        .map(|l| (l..records).step_by(logs.len()).collect())
        .collect();
    let chunk = (1000 / logs.len()).max(100);
    let rounds = per_log
        .iter()
        .map(|s| s.len().div_ceil(chunk))
        .max()
        .unwrap_or(0);
    for round in 0..rounds {
        for (log, seqs) in logs.iter().zip(&per_log) {
            let Some(part) = seqs.chunks(chunk).nth(round) else {
                continue;
            };
            let mut pipe = redis::pipe();
            for &seq in part {
                let record = format!(
                    r#"{{"level":"INFO","timestamp":"2026-11-26T16:14:48.123456","name":"{lobby}","log_message":"Bench Record","task":{{"seq":{seq}}}}}"#
                );
                pipe.cmd("XADD")
                    .arg(&log.stream)
                    .arg("*")
                    .arg(delivery::RECORD_FIELD)
                    .arg(record)
                    .ignore();
            }
            let _: () = pipe
                .query_async(&mut publisher)
                .await
                .context("fanout benchmark: publishing the burst")?;
        }
    }
    let give_up = Instant::now() + timeout;
    let mut last_progress = (0, Instant::now());
    while received.load(Ordering::Relaxed) < records as u64 && Instant::now() < give_up {
        let now = received.load(Ordering::Relaxed);
        if now != last_progress.0 {
            last_progress = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    // The fake workers acknowledge in batches after counting: their last XACKs are part of the
    // cost of the records.
    wait_acknowledged(&mut conn, &logs, Instant::now() + Duration::from_secs(10)).await;
    let redis_after = RedisSample::take(redis).await?;
    let text = metrics::render(&registry);
    trigger.fire();
    let _ = fanout.await;
    let _ = heartbeat.await;

    let lost = seen
        .iter()
        .filter(|n| n.load(Ordering::Relaxed) == 0)
        .count();
    let duplicated = seen
        .iter()
        .filter(|n| n.load(Ordering::Relaxed) > 1)
        .count();
    let delivered = records - lost;
    let redis = redis_before.cost_until(&redis_after, "record", delivered as u64);
    // One key per DEL: on a cluster the logs' keys are on several slots.
    let mut leftovers = vec![
        keys::worker_heartbeats(&lobby),
        keys::fanout_heartbeats(&lobby),
    ];
    for log in &logs {
        leftovers.extend([
            log.stream.clone(),
            log.dead.clone(),
            log.tries.clone(),
            log.failures.clone(),
        ]);
    }
    if layout.is_tagged() {
        leftovers.extend(layout.all_keys().iter().map(|k| k.fanout_lease(&lobby)));
    }
    let mut pipe = redis::pipe();
    for key in &leftovers {
        pipe.del(key).ignore();
    }
    let _: () = pipe.query_async(&mut conn).await?;
    Ok(FanoutBenchReport {
        records,
        workers,
        elapsed,
        records_per_sec: delivered as f64 / elapsed.as_secs_f64().max(1e-9),
        lost,
        duplicated,
        per_worker: per_worker
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect(),
        latency_p50: histogram_quantile(&text, "superhero_fanout_routing_latency_seconds", 0.5),
        latency_p99: histogram_quantile(&text, "superhero_fanout_routing_latency_seconds", 0.99),
        redis,
    })
}

/// Waits until no log has an entry pending at any consumer, or until `deadline` (a lost
/// record stays pending; the report counts it as lost either way).
async fn wait_acknowledged(
    conn: &mut crate::pipeline::redis_conn::Conn,
    logs: &[Log],
    deadline: Instant,
) {
    let mut waiting: Vec<&Log> = logs.iter().collect();
    while !waiting.is_empty() && Instant::now() < deadline {
        let log = waiting[0];
        let pending: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
            .arg(&log.stream)
            .arg(&log.group)
            .query_async(conn)
            .await;
        match pending {
            Ok(redis::Value::Array(summary))
                if matches!(summary.first(), Some(redis::Value::Int(0))) =>
            {
                waiting.remove(0);
            }
            // No such log or group: nothing was routed from it.
            Err(_) => {
                waiting.remove(0);
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Waits until the fanout holds the lease of every shard of `layout` (it starts a shard's
/// router as it takes the lease), so the burst does not measure the fanout's start.
async fn wait_leased(
    conn: &mut crate::pipeline::redis_conn::Conn,
    layout: &Layout,
    lobby: &str,
) -> Result<()> {
    let ready_by = Instant::now() + Duration::from_secs(10);
    for keys in layout.all_keys() {
        let lease = keys.fanout_lease(lobby);
        loop {
            let held: bool = redis::cmd("EXISTS").arg(&lease).query_async(conn).await?;
            if held {
                break;
            }
            if Instant::now() > ready_by {
                bail!("fanout benchmark: the fanout did not lease {lease} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

async fn wait_subscribed(
    conn: &mut crate::pipeline::redis_conn::Conn,
    channels: &[String],
) -> Result<()> {
    let ready_by = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = redis_conn::numsub(conn, channels).await?;
        if counts.iter().all(|(_, n)| *n > 0) {
            return Ok(());
        }
        if Instant::now() > ready_by {
            bail!("fanout benchmark: subscribers did not come up within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until all `workers` fake workers have beaten once: a fanout that started before would
/// route the burst among the ones it saw.
async fn wait_beating(
    conn: &mut crate::pipeline::redis_conn::Conn,
    lobby: &str,
    workers: usize,
) -> Result<()> {
    let ready_by = Instant::now() + Duration::from_secs(10);
    loop {
        let beating: usize = redis::cmd("ZCARD")
            .arg(keys::worker_heartbeats(lobby))
            .query_async(conn)
            .await?;
        if beating >= workers {
            return Ok(());
        }
        if Instant::now() > ready_by {
            bail!("fanout benchmark: the fake workers did not beat within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
