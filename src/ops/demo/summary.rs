//! What the demo found: which games were played, which were written (and by which worker, how
//! often), the hero leaderboard of this run's games, and the summary printed at the end.

use crate::pipeline::shard::Layout;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::heroes::Hero;
use crate::ops::report;
use crate::pipeline::redis_conn::Redis;
use crate::pipeline::{keys, sink};

use super::TOP_HEROES;

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
    /// On a Redis Cluster: what each primary held at the end of the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub primaries: Vec<PrimarySpread>,
}

/// What one primary of a cluster held at the end of a demo, before its log was removed.
#[derive(Debug, Serialize)]
pub struct PrimarySpread {
    /// Keys of any kind (DBSIZE).
    pub keys: u64,
    /// Entries in the log streams of the shards it serves.
    pub log_entries: u64,
}

/// What each primary holds: its keys, and the entries of the logs of `lobby`'s shards on it.
pub(super) async fn spread_over_primaries(
    redis: &Redis,
    lobby: &str,
) -> Result<Vec<PrimarySpread>> {
    let pattern = format!("{{{}:*}}:log", keys::escape_glob(lobby));
    let mut out = Vec::new();
    for mut node in redis.primaries().await? {
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut node).await?;
        let mut log_entries = 0;
        for log in crate::pipeline::redis_conn::scan(&mut node, &pattern).await? {
            let n: u64 = redis::cmd("XLEN").arg(&log).query_async(&mut node).await?;
            log_entries += n;
        }
        out.push(PrimarySpread { keys, log_entries });
    }
    Ok(out)
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

/// Keeps only the games Redis says are Completed (a bot may have lost its connection mid-game).
pub(super) async fn completed_games(
    redis: &Redis,
    layout: &Layout,
    seen: BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let mut conn = redis.conn();
    let mut completed = BTreeSet::new();
    for g in seen {
        let status: Option<String> = redis::cmd("GET")
            .arg(layout.keys_of(&g).game_status(&g))
            .query_async(&mut conn)
            .await?;
        if status.as_deref() == Some(keys::status::COMPLETED) {
            completed.insert(g);
        }
    }
    Ok(completed)
}

/// Files of one table by game token, for the given games: token → worker ids.
pub(super) async fn files_by_game(
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
        if let Some((game, worker)) = sink::parse_file_name(name) {
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
pub(super) struct OnDisk {
    /// Games with both files in place.
    pub(super) games: usize,
    /// Files of these games, both tables.
    pub(super) files: usize,
}

pub(super) async fn on_disk(output: &sink::Output, games: &BTreeSet<String>) -> OnDisk {
    let meta = files_by_game(output, sink::META_TABLE, games).await;
    let podium = files_by_game(output, sink::PODIUM_TABLE, games).await;
    OnDisk {
        games: meta.keys().filter(|g| podium.contains_key(*g)).count(),
        files: meta.values().chain(podium.values()).map(Vec::len).sum(),
    }
}

/// The hero leaderboard of the given games (the report's, over this run's files only).
pub(super) async fn top_heroes(
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
                let name = sink::file_name(&game, &worker);
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
        primaries: Vec::new(),
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
    for (i, p) in s.primaries.iter().enumerate() {
        line(
            &format!("  primary {}", i + 1),
            format!("{} keys, {} log entries", p.keys, p.log_entries),
        );
    }
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
