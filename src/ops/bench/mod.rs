//! `superhero bench etl|fanout|game`: the project's own load generator, like redis-benchmark for
//! this pipeline.
//!
//! Each benchmark runs the real role under test as a child process of this same binary (so its
//! CPU time and peak RSS are its own and measured from /proc), feeds it through Redis, and reads
//! its latency histograms from its Prometheus endpoint (the fanout runs in this process, see
//! [`fanout`]). Numbers are reported, never asserted.
//!
//! This file holds what the three share: the report, the child process, the waits and the
//! quantiles; `etl.rs`, [`fanout`] and `game.rs` each drive one benchmark, and [`redis_cpu`]
//! measures what Redis spent on each.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

mod etl;
pub mod fanout;
mod game;
pub mod redis_cpu;
pub mod synth;

use crate::config::Settings;
use crate::metrics;
use crate::ops::demo::{connect_or_start, start_private_cluster};
use crate::ops::private_cluster::PrivateCluster;
use crate::ops::private_redis::PrivateRedis;
use crate::pipeline::redis_conn::{numsub, Redis};
use crate::pipeline::shard::{Agreement, Layout};
use crate::pipeline::sink;
use crate::shutdown::Shutdown;
use redis_cpu::RedisCost;

/// What to measure.
#[derive(Clone, Debug)]
pub enum BenchKind {
    /// N synthetic finished games → one worker.
    Etl {
        games: usize,
        players: usize,
        attacks: usize,
        /// Where the worker writes; `None`: a scratch folder on tmpfs.
        output_dir: Option<crate::config::OutputDir>,
    },
    /// R records → fanout → K workers' channels.
    Fanout { records: usize, workers: usize },
    /// B bots playing G games each against one server.
    Game {
        bots: usize,
        seconds: f64,
        participants: u8,
    },
}

/// Where the role binary is (the CLI passes its own executable; tests pass the built binary).
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub binary: PathBuf,
    pub kind: BenchKind,
    /// `--cluster N`: measure on a private cluster of N primaries (no replicas) started for
    /// the run; None: the configured Redis (or cluster), or a private `redis-server`.
    pub cluster: Option<u16>,
}

/// The private Redis or cluster a benchmark started, if any: dropping it stops it.
struct Private {
    _redis: Option<PrivateRedis>,
    _cluster: Option<PrivateCluster>,
}

/// A benchmark's figures, in the order they were measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub bench: String,
    pub redis: String,
    pub figures: BTreeMap<String, Value>,
    /// What Redis spent in the measured phase.
    pub redis_cost: RedisCost,
}

impl BenchReport {
    fn new(bench: &str, redis: &Redis, redis_cost: RedisCost) -> Self {
        BenchReport {
            bench: bench.to_string(),
            redis: redis.addr().to_string(),
            figures: BTreeMap::new(),
            redis_cost,
        }
    }

    fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.figures.insert(name.to_string(), value.into());
    }

    pub fn render_table(&self) -> String {
        let mut out = format!("bench {} (redis {})\n", self.bench, self.redis);
        for (k, v) in &self.figures {
            let v = match v {
                Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or_default()),
                other => other.to_string(),
            };
            out.push_str(&format!("  {k:<28} {v}\n"));
        }
        out.push_str(&self.redis_cost.render());
        out
    }
}

/// Runs one benchmark.
pub async fn run(
    settings: &Settings,
    options: &BenchOptions,
    shutdown: Shutdown,
) -> Result<BenchReport> {
    let (redis, mut settings, private) = match options.cluster {
        Some(primaries) => {
            let (cluster, settings) =
                start_private_cluster(settings, primaries, CLUSTER_REPLICAS).await?;
            let redis = Redis::connect(&settings.redis).await?;
            let private = Private {
                _redis: None,
                _cluster: Some(cluster),
            };
            (redis, settings, private)
        }
        None => {
            let demo_redis = connect_or_start(settings).await?;
            let redis = demo_redis.redis.clone();
            let settings = demo_redis.settings.clone();
            let private = Private {
                _redis: demo_redis.private,
                _cluster: None,
            };
            (redis, settings, private)
        }
    };
    // A lobby of its own, so a pipeline already running on the same Redis is not disturbed.
    settings.worker_channel = format!(
        "{}.bench-{}",
        settings.worker_channel,
        &crate::config::random_worker_id()[..6]
    );
    let result = match &options.kind {
        BenchKind::Etl {
            games,
            players,
            attacks,
            output_dir,
        } => {
            etl::bench(
                &settings,
                &redis,
                &options.binary,
                *games,
                *players,
                *attacks,
                output_dir.as_ref(),
            )
            .await
        }
        BenchKind::Fanout { records, workers } => {
            fanout::bench(&settings, &redis, *records, *workers).await
        }
        BenchKind::Game {
            bots,
            seconds,
            participants,
        } => {
            game::bench(
                &settings,
                &redis,
                &options.binary,
                *bots,
                *seconds,
                *participants,
                shutdown,
            )
            .await
        }
    };
    crate::ops::clean::remove_channel_keys(&redis, &settings.worker_channel).await;
    drop(redis);
    // A private cluster's nodes are killed here, on this thread: it takes milliseconds.
    drop(private);
    result
}

/// Replicas per primary of `bench --cluster`: none, so Redis's CPU (summed over the primaries)
/// is all of what the work cost, and no replica competes with the primaries for the cores.
pub const CLUSTER_REPLICAS: usize = 0;

/// The layout a benchmark writes in: the single layout on one Redis, [`SHARDS_PER_PRIMARY`]
/// tagged shards per primary on a cluster (or REDIS_SHARDS), agreed with what Redis holds, as
/// the game server agrees on it before it writes.
///
/// [`SHARDS_PER_PRIMARY`]: crate::pipeline::shard::SHARDS_PER_PRIMARY
async fn layout(settings: &Settings, redis: &Redis) -> Result<Layout> {
    Layout::for_role(settings, redis, Agreement::Store).await
}

/// A role running as a child process, stopped with SIGTERM.
struct Child {
    child: tokio::process::Child,
    metrics: SocketAddr,
}

impl Child {
    async fn spawn(binary: &Path, settings: &Settings, args: &[&str]) -> Result<Child> {
        let port = crate::ops::private_redis::free_port()?;
        let metrics: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(args)
            .env("REDIS_HOST", &settings.redis.host)
            .env("REDIS_PORT", settings.redis.port.to_string())
            .env("REDIS_DB", settings.redis.db.to_string())
            .env("WORKER_CHANNEL", &settings.worker_channel)
            .env("METRICS_ADDR", metrics.to_string())
            .env("LOG_LEVEL", "WARN")
            .env(
                "ACK_TIMEOUT",
                settings.ack_timeout.as_secs_f64().to_string(),
            )
            .env("OUTPUT_DIR", settings.output_dir.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match &settings.redis.url {
            Some(url) => cmd.env("REDIS_URL", url),
            None => cmd.env_remove("REDIS_URL"),
        };
        match settings.redis.is_cluster() {
            true => {
                let nodes: Vec<String> = settings
                    .redis
                    .cluster_nodes
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                cmd.env("REDIS_CLUSTER_NODES", nodes.join(","))
            }
            false => cmd.env_remove("REDIS_CLUSTER_NODES"),
        };
        match settings.redis_shards {
            Some(count) => cmd.env("REDIS_SHARDS", count.to_string()),
            None => cmd.env_remove("REDIS_SHARDS"),
        };
        match &settings.redis.password {
            Some(pw) => cmd.env("REDIS_PASSWORD", pw),
            None => cmd.env_remove("REDIS_PASSWORD"),
        };
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let me = Child { child, metrics };
        let deadline = Instant::now() + Duration::from_secs(20);
        while metrics::scrape(metrics).await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "{} {} did not start within 20s",
                    binary.display(),
                    args.join(" ")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(me)
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// CPU seconds (user + system) and peak RSS in MiB, from /proc.
    fn usage(&self) -> (Option<f64>, Option<f64>) {
        let Some(pid) = self.pid() else {
            return (None, None);
        };
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
                let rest = stat.rsplit_once(") ")?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks: f64 =
                    fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
                Some(ticks / 100.0)
            });
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib / 1024.0)
            });
        (cpu, rss)
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    tracing::warn!("bench child exited with {status}");
                }
            }
            Err(_) => {
                let _ = self.child.kill().await;
            }
        }
        Ok(())
    }
}

async fn wait_for_subscriber(redis: &Redis, channel: &str) -> Result<()> {
    let mut conn = redis.conn();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let subs = numsub(&mut conn, &[channel.to_string()]).await?;
        if subs.first().is_some_and(|(_, n)| *n > 0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nobody subscribed to {channel} within 20s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count_files(output: &sink::Output, table: &str) -> usize {
    crate::ops::report::table_files(output, table)
        .await
        .map(|names| names.len())
        .unwrap_or(0)
}

fn quantiles(report: &mut BenchReport, text: &str, metric: &str, label: &str) {
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        if let Some(v) = metrics::histogram_quantile(text, metric, q) {
            report.set(&format!("{label}_{name}_ms"), v * 1000.0);
        }
    }
}
