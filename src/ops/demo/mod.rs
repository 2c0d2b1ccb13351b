//! `superhero demo`: the whole system in one process.
//!
//! build-db, a game server, a fanout, M workers and N player bots, each the same role function the
//! CLI runs, against the configured Redis or — when none answers — a private `redis-server` it
//! starts itself. It shows live progress, then checks the output on disk: exit 0 only when every
//! finished game was written exactly once.
//!
//! On a terminal it draws progress bars and prints only warnings and errors above them; every
//! log line goes to a log file in the output folder. Off a terminal it prints plain lines.
//! Because it runs every bot itself, it knows when the bots still playing all wait in lobbies
//! none of them can fill, and times those lobbies out at once instead of waiting LOBBY_TIMEOUT.
//!
//! This file starts and stops the roles; `progress.rs` draws the bars, `summary.rs` checks the
//! output and renders what was found.

use crate::pipeline::shard::{Agreement, Layout};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;

use crate::config::{LoggerModule, NodeAddr, Settings};
use crate::logging::{self, Console};
use crate::ops::private_cluster::PrivateCluster;
use crate::ops::private_redis::{self, PrivateRedis};
use crate::pipeline::redis_conn::Redis;
use crate::pipeline::{keys, sink};
use crate::roles::player::{
    self, BoardSeat, BotBoard, BotState, GameReport, Outcome, PlayerOptions,
};
use crate::roles::{fanout, server, worker};
use crate::shutdown::{self, Shutdown};

mod progress;
mod summary;

pub use progress::Display;
use progress::Progress;
use summary::{completed_games, on_disk, spread_over_primaries, top_heroes};
pub use summary::{inspect_output, render_summary, DemoSummary, PrimarySpread, TopHero};

/// The demo's log file, in the output folder (overwritten by each run).
pub const LOG_FILE: &str = "superhero-demo.log";
/// Heroes of the leaderboard in the summary.
const TOP_HEROES: usize = 5;

/// Options of `superhero demo`.
#[derive(Clone, Default)]
pub struct DemoOptions {
    pub players: usize,
    pub workers: usize,
    pub games: u64,
    pub output_dir: Option<crate::config::OutputDir>,
    /// Game size for every bot; random 2–3 when unset.
    pub participants: Option<u8>,
    /// Progress bars or plain lines.
    pub display: Option<Display>,
    /// The terminal side of the log (from [`start_logging`]), to put the bars under.
    pub console: Option<Console>,
    /// The log file (from [`start_logging`]), named in the summary.
    pub log_file: Option<PathBuf>,
    /// Run on a private Redis Cluster of this many primaries (a replica each) instead.
    pub cluster: Option<u16>,
}

/// Installs the demo's logging: every line to [`LOG_FILE`] in the output folder, warnings and
/// errors (every line with `verbose`) to the terminal. Returns the terminal side and the file.
pub fn start_logging(
    settings: &Settings,
    display: Display,
    verbose: bool,
) -> Result<(Console, PathBuf)> {
    // Beside the output when it is a folder; in the working directory for an object store.
    let folder = settings.output_dir.folder().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let path = folder.join(LOG_FILE);
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create the log file {}", path.display()))?;
    let console = logging::init_demo(
        settings.log_level,
        verbose,
        display.shows_bars(),
        Some(file),
    );
    Ok((console, path))
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

/// A private Redis Cluster of `primaries` primaries with `replicas` replicas each, and
/// `settings` pointed at it; the cluster stops when dropped.
pub async fn start_private_cluster(
    settings: &Settings,
    primaries: u16,
    replicas: usize,
) -> Result<(PrivateCluster, Settings)> {
    let cluster = tokio::task::spawn_blocking(move || {
        PrivateCluster::start(usize::from(primaries), replicas)
    })
    .await
    .context("the private cluster's start failed")??;
    let settings = on_private_cluster(settings, &cluster);
    Ok((cluster, settings))
}

/// `settings` pointed at a private cluster: no password, no URL, database 0.
fn on_private_cluster(settings: &Settings, cluster: &PrivateCluster) -> Settings {
    let mut settings = settings.clone();
    settings.redis.url = None;
    settings.redis.password = None;
    settings.redis.db = 0;
    settings.redis.cluster_nodes = cluster
        .ports()
        .into_iter()
        .map(|port| NodeAddr {
            host: "127.0.0.1".into(),
            port,
        })
        .collect();
    settings
}

/// The id of the demo's `i`th worker (from 1).
fn worker_id(i: usize) -> String {
    format!("worker-{i}")
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
    // Kept until the demo returns; dropping it stops the cluster.
    let cluster = match options.cluster {
        Some(primaries) => Some(start_private_cluster(settings, primaries, 1).await?),
        None => None,
    };
    let settings = cluster.as_ref().map_or(settings, |(_, on_it)| on_it);
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
    if let Some(folder) = settings.output_dir.folder() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    let output = sink::Output::open(&settings.output_dir)?;

    // Its lobby names the shards' tags: the layout follows the channel chosen above.
    let layout = Layout::for_role(&settings, &redis, Agreement::Store).await?;
    let heroes = crate::heroes::load_source(None)?;
    crate::heroes::store(&redis, &layout, &heroes).await?;

    let (stop_roles, roles_shutdown) = shutdown::channel();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot bind the demo's game server")?;
    settings.websocket_host = "127.0.0.1".into();
    settings.websocket_port = listener.local_addr()?.port();

    let mut roles = tokio::task::JoinSet::new();
    for i in 1..=options.workers {
        let mut s = settings.clone();
        s.worker_id = worker_id(i);
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
    let board = BotBoard::new(options.players);
    let mut players = tokio::task::JoinSet::new();
    for bot in 0..options.players {
        let s = settings.clone();
        let opts = PlayerOptions {
            participants: options.participants,
            progress: Some(reports_tx.clone()),
            board: Some(BoardSeat {
                board: board.clone(),
                bot,
            }),
            ..PlayerOptions::default()
        };
        let stop = roles_shutdown.clone();
        players.spawn(async move { player::play(&s, &opts, stop).await });
    }
    drop(reports_tx);

    let bars = Progress::new(
        options.display.unwrap_or(Display::Plain),
        expected_games(options),
        options.console.as_ref(),
    );
    let mut played: BTreeSet<String> = BTreeSet::new();
    let mut timed_out: BTreeSet<String> = BTreeSet::new();
    let mut ended_early = 0;
    let mut interrupted = false;
    // Collect game results while the bots play, counting processed games on disk as they appear
    // and ending the lobbies no bot can fill any more.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            report = reports_rx.recv() => match report {
                Some(r) => match r.outcome {
                    Outcome::TimedOut => { timed_out.insert(r.game_token); }
                    Outcome::Aborted(_) => {}
                    _ => {
                        if played.insert(r.game_token) {
                            bars.played(played.len());
                        }
                    }
                },
                None => break,
            },
            _ = tick.tick() => {
                bars.on_disk(on_disk(&output, &played).await);
                match end_stuck_lobbies(&settings, &redis, &layout, &board).await {
                    Ok(n) => ended_early += n,
                    Err(e) => tracing::warn!("cannot end the lobbies no bot can fill: {e:#}"),
                }
            }
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
    let played = completed_games(&redis, &layout, played).await?;
    bars.all_played(played.len());

    // Wait for the pipeline to write every finished game, or for progress to stall.
    let stall_limit = settings.ack_timeout + Duration::from_secs(15);
    let mut last_progress = (Instant::now(), 0);
    while !interrupted {
        let done = on_disk(&output, &played).await;
        bars.on_disk(done);
        if done.games >= played.len() {
            break;
        }
        if done.games > last_progress.1 {
            last_progress = (Instant::now(), done.games);
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
    // Where the keys and the log entries lay, read before the channel's keys go.
    let primaries = if redis.is_cluster() {
        spread_over_primaries(&redis, &settings.worker_channel).await?
    } else {
        Vec::new()
    };
    // The fanout's bookkeeping keys of the demo's private channel are of no use after it.
    crate::ops::clean::remove_channel_keys(&redis, &settings.worker_channel).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = inspect_output(&output, &played).await;
    // Every worker has its line, those that wrote nothing included.
    for i in 1..=options.workers {
        summary.files_per_worker.entry(worker_id(i)).or_default();
    }
    summary.redis = redis.addr().to_string();
    summary.private_redis = demo_redis.private.is_some() || cluster.is_some();
    summary.primaries = primaries;
    summary.games_timed_out = timed_out.len();
    summary.lobbies_ended_early = ended_early;
    summary.seconds = seconds;
    summary.games_per_second = played.len() as f64 / seconds.max(1e-9);
    summary.top_heroes = top_heroes(&output, &played, &heroes).await;
    summary.log_file = options.log_file.clone();
    if interrupted {
        bail!("interrupted after {} games", played.len());
    }
    Ok(summary)
}

/// Games the bots should play: every bot's games, in games of the chosen size (2.5 on average
/// when the size is random); lobbies that time out make it fewer.
fn expected_games(options: &DemoOptions) -> u64 {
    let seats = options.players as u64 * options.games;
    match options.participants {
        Some(n) => seats / u64::from(n.max(1)),
        None => seats * 2 / 5,
    }
    .max(1)
}

/// Times out, at once, the lobbies of the bots still playing when every one of them waits in a
/// lobby that is still open (so not full, not started) — none of them can fill another's lobby,
/// and the bots that are done join nothing. Holding the board's lock keeps every bot from asking
/// for a game meanwhile, so no lobby gains a player between the look and the time-out; if any
/// bot is between games or in a game that is not an open lobby, nothing is ended. Returns how
/// many lobbies it timed out.
async fn end_stuck_lobbies(
    settings: &Settings,
    redis: &Redis,
    layout: &Layout,
    board: &BotBoard,
) -> Result<usize> {
    let bots = board.lock().await;
    let mut lobbies: BTreeMap<&str, u8> = BTreeMap::new();
    for bot in bots.iter() {
        match bot {
            BotState::Done => {}
            BotState::Searching => return Ok(0),
            BotState::InGame { game, participants } => {
                lobbies.insert(game, *participants);
            }
        }
    }
    let mut conn = redis.conn();
    for (g, n) in &lobbies {
        let (status, created): (Option<String>, Option<f64>) = redis::pipe()
            .get(layout.keys_of(g).game_status(g))
            .zscore(layout.keys_of(g).games_lobbies(*n), *g)
            .query_async(&mut conn)
            .await?;
        // A full lobby leaves the open ones and starts; a started game frees its bots later.
        if status.as_deref() != Some(keys::status::WAITING_LOBBY) || created.is_none() {
            return Ok(0);
        }
    }
    let mut ended = 0;
    for (g, n) in &lobbies {
        if server::time_out_lobby_now(settings, redis, g, *n).await? {
            ended += 1;
        }
    }
    drop(bots);
    Ok(ended)
}
