//! `superhero bench etl|fanout|game`: the project's own load generator, like redis-benchmark for
//! this pipeline.
//!
//! Each benchmark runs the real role under test as a child process of this same binary (so its
//! CPU time and peak RSS are its own and measured from /proc), feeds it through Redis, and reads
//! its latency histograms from its Prometheus endpoint. Numbers are reported, never asserted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;
use crate::metrics;
use crate::ops::build_db;
use crate::ops::demo::connect_or_start;
use crate::pipeline::redis_conn::{numsub, Redis};
use crate::pipeline::{keys, sink};
use crate::roles::player::{self, PlayerOptions};
use crate::shutdown::Shutdown;
use crate::testkit::synth;

/// What to measure.
#[derive(Clone, Debug)]
pub enum BenchKind {
    /// N synthetic finished games → one worker.
    Etl {
        games: usize,
        players: usize,
        attacks: usize,
        /// Where the worker writes; `None`: a scratch folder on tmpfs.
        output_dir: Option<crate::pipeline::sink::OutputDir>,
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
}

/// A benchmark's figures, in the order they were measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub bench: String,
    pub redis: String,
    pub figures: BTreeMap<String, Value>,
}

impl BenchReport {
    fn new(bench: &str, redis: &Redis) -> Self {
        BenchReport {
            bench: bench.to_string(),
            redis: redis.addr().to_string(),
            figures: BTreeMap::new(),
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
        out
    }
}

/// Runs one benchmark.
pub async fn run(
    settings: &Settings,
    options: &BenchOptions,
    shutdown: Shutdown,
) -> Result<BenchReport> {
    let demo_redis = connect_or_start(settings).await?;
    let mut settings = demo_redis.settings.clone();
    // A lobby of its own, so a pipeline already running on the same Redis is not disturbed.
    settings.worker_channel = format!(
        "{}.bench-{}",
        settings.worker_channel,
        &crate::config::random_worker_id()[..6]
    );
    let redis = demo_redis.redis.clone();
    let result = match &options.kind {
        BenchKind::Etl {
            games,
            players,
            attacks,
            output_dir,
        } => {
            etl(
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
            fanout(&settings, &redis, *records, *workers).await
        }
        BenchKind::Game {
            bots,
            seconds,
            participants,
        } => {
            game(
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
    drop(demo_redis);
    result
}

/// A role running as a child process, stopped with SIGTERM.
struct Child {
    child: tokio::process::Child,
    metrics: SocketAddr,
}

impl Child {
    async fn spawn(binary: &Path, settings: &Settings, args: &[&str]) -> Result<Child> {
        let port = crate::testkit::private_redis::free_port()?;
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

#[allow(clippy::too_many_arguments)]
async fn etl(
    settings: &Settings,
    redis: &Redis,
    binary: &Path,
    games: usize,
    players: usize,
    attacks: usize,
    output_dir: Option<&crate::pipeline::sink::OutputDir>,
) -> Result<BenchReport> {
    let mut report = BenchReport::new("etl", redis);
    // Output on tmpfs when there is one: the benchmark measures the worker, not the disk.
    let scratch = match output_dir {
        Some(_) => None,
        None => Some(if Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")?
        } else {
            tempfile::tempdir()?
        }),
    };
    let out = output_dir.cloned().unwrap_or_else(|| {
        crate::pipeline::sink::OutputDir::Folder(
            scratch
                .as_ref()
                .map(|d| d.path().to_path_buf())
                .unwrap_or_default(),
        )
    });
    let mut settings = settings.clone();
    settings.output_dir = out.clone();

    let mut rng = rand::rng();
    let synthetic: Vec<synth::SynthGame> = (0..games)
        .map(|_| synth::random_game(&mut rng, players, attacks, 1000))
        .collect();
    let mut conn = redis.conn();
    for chunk in synthetic.chunks(200) {
        synth::seed(&mut conn, chunk).await?;
    }
    let records: Vec<String> = synthetic
        .iter()
        .map(|g| synth::host_record(&settings.worker_channel, g))
        .collect();

    let worker_id = "bench-etl";
    let child = Child::spawn(binary, &settings, &["worker", "--worker-id", worker_id]).await?;
    let channel = keys::worker_channel(&settings.worker_channel, worker_id);
    wait_for_subscriber(redis, &channel).await?;
    let (cpu_before, _) = child.usage();
    let started = Instant::now();
    synth::publish_all(&mut conn, &channel, &records, 500).await?;
    // Watch the worker's own counter: listing thousands of files in a loop would steal the CPU
    // the worker is being measured on.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let written = metrics::scrape(child.metrics)
            .await
            .ok()
            .and_then(|t| metrics::sample_value(&t, "superhero_worker_games_written_total"))
            .unwrap_or(0.0) as usize;
        if written >= games {
            break;
        }
        if Instant::now() > deadline {
            bail!("the worker wrote {written} of {games} games in 600s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_after, rss) = child.usage();
    let text = metrics::scrape(child.metrics).await.unwrap_or_default();
    child.stop().await?;

    report.set("games", games);
    report.set("players_per_game", players);
    report.set("attacks_per_game", attacks);
    report.set("output_dir", out.to_string());
    report.set("seconds", elapsed);
    report.set("games_per_second", games as f64 / elapsed);
    quantiles(
        &mut report,
        &text,
        "superhero_worker_etl_duration_seconds",
        "etl",
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        report.set("worker_cpu_seconds", b - a);
    }
    if let Some(rss) = rss {
        report.set("worker_peak_rss_mib", rss);
    }
    let output = sink::Output::open(&out)?;
    report.set("files_meta", count_files(&output, sink::META_TABLE).await);
    report.set(
        "files_podium",
        count_files(&output, sink::PODIUM_TABLE).await,
    );
    Ok(report)
}

async fn fanout(
    settings: &Settings,
    redis: &Redis,
    records: usize,
    workers: usize,
) -> Result<BenchReport> {
    let mut report = BenchReport::new("fanout", redis);
    let run = crate::roles::fanout::bench::run(
        settings,
        redis,
        records,
        workers,
        Duration::from_secs(120),
    )
    .await?;
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

#[allow(clippy::too_many_arguments)]
async fn game(
    settings: &Settings,
    redis: &Redis,
    binary: &Path,
    bots: usize,
    seconds: f64,
    participants: u8,
    shutdown: Shutdown,
) -> Result<BenchReport> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("bench game needs a positive --seconds");
    }
    let mut report = BenchReport::new("game", redis);
    let heroes = build_db::load_source(None)?;
    build_db::store(redis, &heroes).await?;
    let port = crate::testkit::private_redis::free_port()?;
    let mut settings = settings.clone();
    settings.websocket_host = "127.0.0.1".into();
    settings.websocket_port = port;
    // Bots play until the window closes: the figure is steady-state throughput, not the tail of
    // the last lobbies waiting LOBBY_TIMEOUT for players that have stopped.
    settings.client_games = None;
    let port_text = port.to_string();
    let child = Child::spawn(
        binary,
        &settings,
        &[
            "server",
            "--websocket-host",
            "127.0.0.1",
            "--websocket-port",
            &port_text,
            "--server-sleep",
            "0",
            "--logger-module",
            "default",
        ],
    )
    .await?;
    let (stop_bots, bots_shutdown) = crate::shutdown::channel();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..bots {
        let (s, sd) = (settings.clone(), bots_shutdown.clone());
        let opts = PlayerOptions {
            participants: Some(participants),
            ..PlayerOptions::default()
        };
        tasks.spawn(async move { player::play(&s, &opts, sd).await });
    }
    let completed = |text: &str| {
        metrics::sample_value(text, "superhero_server_games_completed_total").unwrap_or(0.0)
    };
    let window = Duration::from_secs_f64(seconds);
    let before = completed(&metrics::scrape(child.metrics).await.unwrap_or_default());
    let started = Instant::now();
    tokio::select! {
        _ = tokio::time::sleep(window) => {}
        _ = shutdown.recv() => {}
    }
    let elapsed = started.elapsed().as_secs_f64();
    let text = metrics::scrape(child.metrics).await.unwrap_or_default();
    let finished = completed(&text) - before;
    let (cpu, rss) = child.usage();
    stop_bots.fire();
    while tokio::time::timeout(Duration::from_secs(30), tasks.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    child.stop().await?;
    report.set("bots", bots);
    report.set("participants", participants);
    report.set("games_finished", finished);
    report.set("seconds", elapsed);
    report.set("games_per_second", finished / elapsed);
    quantiles(
        &mut report,
        &text,
        "superhero_server_turn_latency_seconds",
        "turn_latency",
    );
    if let Some(cpu) = cpu {
        report.set("server_cpu_seconds", cpu);
    }
    if let Some(rss) = rss {
        report.set("server_peak_rss_mib", rss);
    }
    Ok(report)
}
