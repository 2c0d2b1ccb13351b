//! `superhero demo`: the whole system in one process.
//!
//! build-db, a game server, a fanout, M workers and N player bots, each the same role function the
//! CLI runs, against the configured Redis or — when none answers — a private `redis-server` it
//! starts itself. It shows live progress, then checks the output on disk: exit 0 only when every
//! finished game was written exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{LoggerModule, Settings};
use crate::player::{self, GameReport, Outcome, PlayerOptions};
use crate::private_redis::{self, PrivateRedis};
use crate::redis_conn::Redis;
use crate::shutdown::{self, Shutdown};
use crate::{build_db, fanout, keys, server, sink, worker};

/// Options of `superhero demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub players: usize,
    pub workers: usize,
    pub games: u64,
    pub output_dir: Option<PathBuf>,
    /// Game size for every bot; random 2–3 when unset.
    pub participants: Option<u8>,
    /// Draw progress bars (off in tests and with --quiet).
    pub progress: bool,
}

/// What the demo did and found on disk.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub redis: String,
    pub private_redis: bool,
    pub games_played: usize,
    pub games_timed_out: usize,
    pub games_processed: usize,
    /// Files (META and PODIUM together) per worker id, for this run's games.
    pub files_per_worker: BTreeMap<String, usize>,
    pub duplicated_games: Vec<String>,
    pub missing_games: Vec<String>,
    pub seconds: f64,
    pub games_per_second: f64,
    pub output_dir: PathBuf,
}

impl DemoSummary {
    /// Every finished game processed exactly once.
    pub fn exactly_once(&self) -> bool {
        self.duplicated_games.is_empty()
            && self.missing_games.is_empty()
            && self.games_processed == self.games_played
    }
}

/// The Redis the demo runs on: the configured one, or a private one it owns.
pub struct DemoRedis {
    pub redis: Redis,
    pub settings: Settings,
    /// Kept alive for the demo's lifetime; dropping it stops the server.
    pub private: Option<PrivateRedis>,
}

/// Connects to the configured Redis, or starts a private `redis-server` when none answers.
pub async fn connect_or_start(settings: &Settings) -> Result<DemoRedis> {
    match Redis::connect(&settings.redis).await {
        Ok(redis) => Ok(DemoRedis { redis, settings: settings.clone(), private: None }),
        Err(e) if private_redis::available() => {
            tracing::info!("{e:#}; starting a private redis-server instead");
            let private = PrivateRedis::start(&[])?;
            let mut settings = settings.clone();
            settings.redis.url = None;
            settings.redis.password = None;
            settings.redis.host = "127.0.0.1".into();
            settings.redis.port = private.port();
            settings.redis.db = 0;
            let redis = Redis::connect(&settings.redis).await?;
            Ok(DemoRedis { redis, settings, private: Some(private) })
        }
        Err(e) => bail!(
            "{e:#}, and no redis-server on PATH to start a private one. Install Redis \
             (e.g. `apt-get install redis-server` or `brew install redis`), point REDIS_HOST/REDIS_PORT \
             at a running one, or run the pipeline with docker compose \
             (docker-compose --env-file .env -f compose/docker-compose.fanout.yml up)"
        ),
    }
}

/// Runs the demo and returns its summary (the caller prints it and picks the exit code).
pub async fn run(
    settings: &Settings,
    options: &DemoOptions,
    shutdown: Shutdown,
) -> Result<DemoSummary> {
    if options.players == 0 || options.workers == 0 {
        bail!("demo needs at least one player and one worker");
    }
    let started = Instant::now();
    let demo_redis = connect_or_start(settings).await?;
    let redis = demo_redis.redis.clone();
    let mut settings = demo_redis.settings.clone();
    // A channel of its own, so a pipeline already running on the same Redis is not disturbed.
    settings.worker_channel = format!(
        "{}.demo-{}",
        settings.worker_channel,
        &crate::config::random_worker_id()[..6]
    );
    settings.logger_module = LoggerModule::Redis;
    settings.client_games = Some(options.games);
    if let Some(dir) = &options.output_dir {
        settings.output_dir = dir.clone();
    }
    std::fs::create_dir_all(&settings.output_dir)
        .with_context(|| format!("cannot create {}", settings.output_dir.display()))?;

    let heroes = build_db::load_source(None)?;
    build_db::store(&redis, &heroes).await?;

    let (stop_roles, roles_shutdown) = shutdown::channel();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot bind the demo's game server")?;
    settings.websocket_host = "127.0.0.1".into();
    settings.websocket_port = listener.local_addr()?.port();

    let mut roles = tokio::task::JoinSet::new();
    for i in 1..=options.workers {
        let mut s = settings.clone();
        s.worker_id = format!("worker-{i}");
        let (redis, stop) = (redis.clone(), roles_shutdown.clone());
        roles.spawn(async move {
            worker::run(&s, redis, stop)
                .await
                .map(|_| ())
                .context("worker")
        });
    }
    {
        let (s, redis, stop) = (settings.clone(), redis.clone(), roles_shutdown.clone());
        roles.spawn(async move { fanout::run(&s, redis, stop).await.context("fanout") });
    }
    {
        let (s, redis, stop) = (settings.clone(), redis.clone(), roles_shutdown.clone());
        roles.spawn(async move {
            server::run(&s, redis, listener, stop)
                .await
                .context("server")
        });
    }

    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<GameReport>();
    let mut players = tokio::task::JoinSet::new();
    for _ in 0..options.players {
        let s = settings.clone();
        let opts = PlayerOptions {
            participants: options.participants,
            progress: Some(reports_tx.clone()),
            ..PlayerOptions::default()
        };
        let stop = roles_shutdown.clone();
        players.spawn(async move { player::play(&s, &opts, stop).await });
    }
    drop(reports_tx);

    let bars = Progress::new(options.progress);
    let mut played: BTreeSet<String> = BTreeSet::new();
    let mut timed_out: BTreeSet<String> = BTreeSet::new();
    let mut interrupted = false;
    // Collect game results while the bots play, counting processed games on disk as they appear.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            report = reports_rx.recv() => match report {
                Some(r) => match r.outcome {
                    Outcome::TimedOut => { timed_out.insert(r.game_token); }
                    Outcome::Aborted(_) => {}
                    _ => {
                        if played.insert(r.game_token) {
                            bars.played.inc(1);
                        }
                    }
                },
                None => break,
            },
            _ = tick.tick() => bars.processed.set_position(count_processed(&settings.output_dir, &played) as u64),
            _ = shutdown.recv() => { interrupted = true; break; }
        }
    }
    while let Some(result) = players.join_next().await {
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("a player stopped with an error: {e:#}"),
            Err(e) => tracing::warn!("a player task failed: {e}"),
        }
    }
    // Games a bot gave up on may still have finished on the server.
    let played = completed_games(&redis, played).await?;
    bars.played.set_position(played.len() as u64);

    // Wait for the pipeline to write every finished game, or for progress to stall.
    let stall_limit = settings.ack_timeout + Duration::from_secs(15);
    let mut last_progress = (Instant::now(), 0);
    while !interrupted {
        let done = count_processed(&settings.output_dir, &played);
        bars.processed.set_position(done as u64);
        if done >= played.len() {
            break;
        }
        if done > last_progress.1 {
            last_progress = (Instant::now(), done);
        } else if last_progress.0.elapsed() > stall_limit {
            tracing::warn!("no game processed for {stall_limit:?}; giving up waiting");
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.recv() => interrupted = true,
        }
    }
    bars.finish();
    stop_roles.fire();
    while let Some(result) = roles.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{e:#}"),
            Err(e) => tracing::warn!("a role task failed: {e}"),
        }
    }
    // The fanout's bookkeeping keys of the demo's private channel are of no use after it.
    crate::clean::remove_channel_keys(&redis, &settings.worker_channel).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = inspect_output(&settings.output_dir, &played);
    summary.redis = redis.addr().to_string();
    summary.private_redis = demo_redis.private.is_some();
    summary.games_timed_out = timed_out.len();
    summary.seconds = seconds;
    summary.games_per_second = played.len() as f64 / seconds.max(1e-9);
    if interrupted {
        bail!("interrupted after {} games", played.len());
    }
    Ok(summary)
}

/// Keeps only the games Redis says are Completed (a bot may have lost its connection mid-game).
async fn completed_games(redis: &Redis, seen: BTreeSet<String>) -> Result<BTreeSet<String>> {
    let mut conn = redis.conn();
    let mut completed = BTreeSet::new();
    for g in seen {
        let status: Option<String> = redis::cmd("GET")
            .arg(keys::game_status(&g))
            .query_async(&mut conn)
            .await?;
        if status.as_deref() == Some(keys::status::COMPLETED) {
            completed.insert(g);
        }
    }
    Ok(completed)
}

/// Files of one table by game token, for the given games: token → worker ids.
fn files_by_game(dir: &Path, games: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((game, worker)) = crate::report::parse_file_name(name) {
            if games.contains(game) {
                found
                    .entry(game.to_string())
                    .or_default()
                    .push(worker.to_string());
            }
        }
    }
    found
}

/// Games with both files in place.
fn count_processed(output_dir: &Path, games: &BTreeSet<String>) -> usize {
    let meta = files_by_game(&sink::table_dir(output_dir, sink::META_TABLE), games);
    let podium = files_by_game(&sink::table_dir(output_dir, sink::PODIUM_TABLE), games);
    meta.keys().filter(|g| podium.contains_key(*g)).count()
}

/// Compares the files on disk with the games played.
pub fn inspect_output(output_dir: &Path, played: &BTreeSet<String>) -> DemoSummary {
    let meta = files_by_game(&sink::table_dir(output_dir, sink::META_TABLE), played);
    let podium = files_by_game(&sink::table_dir(output_dir, sink::PODIUM_TABLE), played);
    let mut files_per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for workers in meta.values().chain(podium.values()) {
        for w in workers {
            *files_per_worker.entry(w.clone()).or_default() += 1;
        }
    }
    let duplicated_games = played
        .iter()
        .filter(|g| meta.get(*g).map_or(0, Vec::len) > 1 || podium.get(*g).map_or(0, Vec::len) > 1)
        .cloned()
        .collect();
    let missing_games = played
        .iter()
        .filter(|g| !meta.contains_key(*g) || !podium.contains_key(*g))
        .cloned()
        .collect();
    DemoSummary {
        redis: String::new(),
        private_redis: false,
        games_played: played.len(),
        games_timed_out: 0,
        games_processed: meta.keys().filter(|g| podium.contains_key(*g)).count(),
        files_per_worker,
        duplicated_games,
        missing_games,
        seconds: 0.0,
        games_per_second: 0.0,
        output_dir: output_dir.join("superhero"),
    }
}

/// The summary table printed at the end.
pub fn render_summary(s: &DemoSummary) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line(
        "redis",
        format!(
            "{}{}",
            s.redis,
            if s.private_redis { " (private)" } else { "" }
        ),
    );
    line("games played", s.games_played.to_string());
    line("lobbies timed out", s.games_timed_out.to_string());
    line("games processed", s.games_processed.to_string());
    for (worker, files) in &s.files_per_worker {
        line(&format!("  files by {worker}"), files.to_string());
    }
    line("duplicated games", s.duplicated_games.len().to_string());
    line("missing games", s.missing_games.len().to_string());
    line("elapsed", format!("{:.2}s", s.seconds));
    line("games per second", format!("{:.1}", s.games_per_second));
    line("output", s.output_dir.display().to_string());
    for g in &s.duplicated_games {
        line("DUPLICATE", g.clone());
    }
    for g in &s.missing_games {
        line("MISSING", g.clone());
    }
    line(
        "result",
        if s.exactly_once() {
            "every finished game processed exactly once".into()
        } else {
            "FAILED: see above".into()
        },
    );
    out
}

/// Two live counters: games played, games processed.
struct Progress {
    _multi: MultiProgress,
    played: ProgressBar,
    processed: ProgressBar,
}

impl Progress {
    fn new(visible: bool) -> Self {
        let multi = if visible {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        };
        let style = ProgressStyle::with_template("{spinner} {prefix:>16} {pos} games  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let played = multi.add(
            ProgressBar::new_spinner()
                .with_style(style.clone())
                .with_prefix("played"),
        );
        let processed = multi.add(
            ProgressBar::new_spinner()
                .with_style(style)
                .with_prefix("processed"),
        );
        played.enable_steady_tick(Duration::from_millis(120));
        processed.enable_steady_tick(Duration::from_millis(120));
        Progress {
            _multi: multi,
            played,
            processed,
        }
    }

    fn finish(&self) {
        self.played.finish();
        self.processed.finish();
    }
}
