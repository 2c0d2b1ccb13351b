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

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{LoggerModule, Settings};
use crate::heroes::Hero;
use crate::logging::{self, Console};
use crate::ops::{build_db, report};
use crate::pipeline::redis_conn::Redis;
use crate::pipeline::{keys, sink};
use crate::roles::player::{
    self, BoardSeat, BotBoard, BotState, GameReport, Outcome, PlayerOptions,
};
use crate::roles::{fanout, server, worker};
use crate::shutdown::{self, Shutdown};
use crate::testkit::private_redis::{self, PrivateRedis};

/// The demo's log file, in the output folder (overwritten by each run).
pub const LOG_FILE: &str = "superhero-demo.log";
/// Heroes of the leaderboard in the summary.
const TOP_HEROES: usize = 5;

/// How the demo shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Plain lines only: not a terminal, `--quiet`, or `--progress never`.
    Plain,
    /// Progress bars on stderr, a terminal.
    Terminal,
    /// Progress bars on stderr although it is not a terminal (`--progress always`, for tests).
    Forced,
}

impl Display {
    /// `Some(true)`: bars always; `Some(false)`: never; `None`: when stderr is a terminal.
    pub fn choose(bars: Option<bool>) -> Self {
        let terminal =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        match (bars, terminal) {
            (Some(false), _) | (None, false) => Display::Plain,
            (_, true) => Display::Terminal,
            (Some(true), false) => Display::Forced,
        }
    }

    fn shows_bars(self) -> bool {
        self != Display::Plain
    }
}

/// Options of `superhero demo`.
#[derive(Clone, Default)]
pub struct DemoOptions {
    pub players: usize,
    pub workers: usize,
    pub games: u64,
    pub output_dir: Option<crate::pipeline::sink::OutputDir>,
    /// Game size for every bot; random 2–3 when unset.
    pub participants: Option<u8>,
    /// Progress bars or plain lines.
    pub display: Option<Display>,
    /// The terminal side of the log (from [`start_logging`]), to put the bars under.
    pub console: Option<Console>,
    /// The log file (from [`start_logging`]), named in the summary.
    pub log_file: Option<PathBuf>,
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

/// What the demo did and found on disk.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub redis: String,
    pub private_redis: bool,
    pub games_played: usize,
    pub games_timed_out: usize,
    /// Of the lobbies timed out, those the demo ended at once: no bot left could fill them.
    pub lobbies_ended_early: usize,
    pub games_processed: usize,
    /// Files (META and PODIUM together) per worker id, for this run's games.
    pub files_per_worker: BTreeMap<String, usize>,
    pub duplicated_games: Vec<String>,
    pub missing_games: Vec<String>,
    pub seconds: f64,
    pub games_per_second: f64,
    /// `<OUTPUT_DIR>/superhero`: a folder or a URL.
    pub output_dir: String,
    /// The hero leaderboard of this run's games, best first.
    pub top_heroes: Vec<TopHero>,
    pub log_file: Option<PathBuf>,
}

/// A hero's line in the summary's leaderboard.
#[derive(Debug, Serialize)]
pub struct TopHero {
    pub superhero_id: u16,
    pub name: String,
    pub games: u64,
    pub wins: u64,
    pub win_rate: f64,
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
    if let Some(folder) = settings.output_dir.folder() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    let output = sink::Output::open(&settings.output_dir)?;

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
                match end_stuck_lobbies(&settings, &redis, &board).await {
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
    let played = completed_games(&redis, played).await?;
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
    // The fanout's bookkeeping keys of the demo's private channel are of no use after it.
    crate::ops::clean::remove_channel_keys(&redis, &settings.worker_channel).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = inspect_output(&output, &played).await;
    summary.redis = redis.addr().to_string();
    summary.private_redis = demo_redis.private.is_some();
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
async fn end_stuck_lobbies(settings: &Settings, redis: &Redis, board: &BotBoard) -> Result<usize> {
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
            .get(keys::game_status(g))
            .zscore(keys::games_lobbies(*n), *g)
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
async fn files_by_game(
    output: &sink::Output,
    table: &str,
    games: &BTreeSet<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let names = match output.list(table).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!("{e:#}");
            return found;
        }
    };
    for name in &names {
        if let Some((game, worker)) = crate::ops::report::parse_file_name(name) {
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

/// What the workers have written so far for the given games.
#[derive(Clone, Copy, Debug, Default)]
struct OnDisk {
    /// Games with both files in place.
    games: usize,
    /// Files of these games, both tables.
    files: usize,
}

async fn on_disk(output: &sink::Output, games: &BTreeSet<String>) -> OnDisk {
    let meta = files_by_game(output, sink::META_TABLE, games).await;
    let podium = files_by_game(output, sink::PODIUM_TABLE, games).await;
    OnDisk {
        games: meta.keys().filter(|g| podium.contains_key(*g)).count(),
        files: meta.values().chain(podium.values()).map(Vec::len).sum(),
    }
}

/// The hero leaderboard of the given games (the report's, over this run's files only).
async fn top_heroes(
    output: &sink::Output,
    games: &BTreeSet<String>,
    heroes: &[Hero],
) -> Vec<TopHero> {
    async fn rows<R>(
        output: &sink::Output,
        table: &str,
        games: &BTreeSet<String>,
        parse: impl Fn(Vec<u8>) -> Result<Vec<R>>,
    ) -> Vec<R> {
        let mut rows = Vec::new();
        for (game, workers) in files_by_game(output, table, games).await {
            for worker in workers {
                let name = sink::store::file_name(&game, &worker);
                match output.read(table, &name).await.and_then(&parse) {
                    Ok(r) => rows.extend(r),
                    Err(e) => tracing::warn!("cannot read {name}: {e:#}"),
                }
            }
        }
        rows
    }
    let meta = rows(output, sink::META_TABLE, games, sink::meta_from_bytes).await;
    let podium = rows(output, sink::PODIUM_TABLE, games, sink::podium_from_bytes).await;
    report::leaderboard(&meta, &podium)
        .into_iter()
        .take(TOP_HEROES)
        .map(|h| TopHero {
            superhero_id: h.superhero_id,
            name: heroes
                .iter()
                .find(|hero| hero.id == u32::from(h.superhero_id))
                .map(|hero| hero.name.clone())
                .unwrap_or_default(),
            games: h.games,
            wins: h.wins,
            win_rate: h.win_rate,
        })
        .collect()
}

/// Compares the files on disk with the games played.
pub async fn inspect_output(output: &sink::Output, played: &BTreeSet<String>) -> DemoSummary {
    let meta = files_by_game(output, sink::META_TABLE, played).await;
    let podium = files_by_game(output, sink::PODIUM_TABLE, played).await;
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
        lobbies_ended_early: 0,
        games_processed: meta.keys().filter(|g| podium.contains_key(*g)).count(),
        files_per_worker,
        duplicated_games,
        missing_games,
        seconds: 0.0,
        games_per_second: 0.0,
        output_dir: output.dataset_location(),
        top_heroes: Vec::new(),
        log_file: None,
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
    line(
        "lobbies timed out",
        if s.lobbies_ended_early > 0 {
            format!(
                "{} ({} ended at once: no bot left to fill them)",
                s.games_timed_out, s.lobbies_ended_early
            )
        } else {
            s.games_timed_out.to_string()
        },
    );
    line("games processed", s.games_processed.to_string());
    for (worker, files) in &s.files_per_worker {
        line(&format!("  files by {worker}"), files.to_string());
    }
    line("duplicated games", s.duplicated_games.len().to_string());
    line("missing games", s.missing_games.len().to_string());
    line("elapsed", format!("{:.2}s", s.seconds));
    line("games per second", format!("{:.1}", s.games_per_second));
    line("output", s.output_dir.clone());
    line(
        "open it with",
        format!(
            "duckdb -c \"SELECT * FROM read_parquet('{}/{}/*.gz') LIMIT 10\"",
            s.output_dir,
            sink::PODIUM_TABLE
        ),
    );
    if let Some(log) = &s.log_file {
        line("log", log.display().to_string());
    }
    for (place, h) in s.top_heroes.iter().enumerate() {
        let key = if place == 0 { "top heroes" } else { "" };
        line(
            key,
            format!(
                "{}. {} (#{}): won {} of {} games ({:.0}%)",
                place + 1,
                h.name,
                h.superhero_id,
                h.wins,
                h.games,
                h.win_rate * 100.0
            ),
        );
    }
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

/// Three bars: games played (of the expected number), games processed and files written (of
/// what the games played so far call for). Hidden in [`Display::Plain`].
struct Progress {
    _multi: MultiProgress,
    played: ProgressBar,
    processed: ProgressBar,
    files: ProgressBar,
    console: Option<Console>,
    shown: bool,
}

impl Progress {
    fn new(display: Display, expected_games: u64, console: Option<&Console>) -> Self {
        let target = match display {
            Display::Plain => ProgressDrawTarget::hidden(),
            Display::Terminal => ProgressDrawTarget::stderr(),
            Display::Forced => ProgressDrawTarget::term_like_with_hz(Box::new(ForcedStderr), 10),
        };
        let multi = MultiProgress::with_draw_target(target);
        let style = ProgressStyle::with_template(
            "{prefix:>15} [{bar:30}] {pos:>4}/{len:<4} {msg:7} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = |prefix: &'static str, unit: &'static str, len: u64| {
            let bar = multi.add(
                ProgressBar::new(len)
                    .with_style(style.clone())
                    .with_prefix(prefix)
                    .with_message(unit),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        };
        let played = bar("games played", "games", expected_games);
        let processed = bar("games processed", "games", 0);
        let files = bar("files written", "files", 0);
        let console = console.filter(|_| display.shows_bars()).cloned();
        if let Some(console) = &console {
            console.above(&multi);
        }
        Progress {
            _multi: multi,
            played,
            processed,
            files,
            console,
            shown: display.shows_bars(),
        }
    }

    /// `n` games played so far; what is to be processed grows with them.
    fn played(&self, n: usize) {
        let n = n as u64;
        if n > self.played.length().unwrap_or(0) {
            self.played.set_length(n);
        }
        self.played.set_position(n);
        self.processed.set_length(n);
        self.files.set_length(2 * n);
    }

    /// Every bot is done: `n` games were played in all.
    fn all_played(&self, n: usize) {
        self.played(n);
        self.played.set_length(n as u64);
    }

    fn on_disk(&self, done: OnDisk) {
        self.processed.set_position(done.games as u64);
        self.files.set_position(done.files as u64);
    }

    fn finish(&self) {
        for bar in [&self.played, &self.processed, &self.files] {
            bar.finish();
        }
        // The finished bars stay on screen above the summary; later lines go below them (the
        // cursor is still at the end of the last bar).
        if self.shown {
            eprintln!();
        }
        if let Some(console) = &self.console {
            console.plain();
        }
    }
}

/// stderr as a terminal whether or not it is one (`--progress always`): indicatif's own stderr
/// target draws nothing off a terminal.
#[derive(Debug)]
struct ForcedStderr;

impl ForcedStderr {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().write_all(s.as_bytes())
    }

    fn moved(&self, n: usize, code: char) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}{code}"))
    }
}

impl TermLike for ForcedStderr {
    fn width(&self) -> u16 {
        100
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
