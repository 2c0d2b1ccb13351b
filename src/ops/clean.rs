//! `superhero clean`: removes the state of finished games, or with `--all` every key this
//! project owns. It walks the keyspace with SCAN (never KEYS, never FLUSHDB), so it is safe on a
//! busy Redis and leaves other applications' keys in the same database alone.
//!
//! A Completed game is removed only once a worker has written its output (`games:<g>:etl:done`):
//! a worker that later receives the game's records would otherwise find no game and skip it, and
//! the game would be lost without a word. `--force` removes such games anyway.

use std::collections::BTreeSet;

use crate::pipeline::redis_conn::Conn;
use anyhow::Result;

use crate::pipeline::keys;
use crate::pipeline::redis_conn::{scan, Redis};

/// Keys deleted per round trip.
const DELETE_BATCH: usize = 500;

/// What the `clean` command was asked to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Every key this project owns, not only finished games.
    pub all: bool,
    /// Also Completed games whose output no worker has written yet.
    pub force: bool,
    /// Report, remove nothing.
    pub dry_run: bool,
}

/// What a clean removed (or, with `dry_run`, would remove).
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Finished games removed: token and status.
    pub games: Vec<(String, String)>,
    pub keys: Vec<String>,
    /// Completed games left in place because their output is not written yet.
    pub kept_unwritten: Vec<String>,
}

async fn delete(conn: &mut Conn, keys: &[String]) -> Result<()> {
    for chunk in keys.chunks(DELETE_BATCH) {
        redis::cmd("UNLINK")
            .arg(chunk)
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

/// Removes every Timed Out game and every Completed game whose output is written (any Completed
/// game with `force`); games still being played are left alone.
pub async fn finished_games(redis: &Redis, force: bool, dry_run: bool) -> Result<Cleaned> {
    let mut conn = redis.conn();
    let mut cleaned = Cleaned::default();
    for status_key in scan(&mut conn, "games:*:status").await? {
        // The status key names the game's shard (its tag) as well as the game.
        let Some((k, g)) = keys::parse_game_key(&status_key, ":status") else {
            continue;
        };
        let status: Option<String> = redis::cmd("GET")
            .arg(&status_key)
            .query_async(&mut conn)
            .await?;
        let Some(status) = status.filter(|s| keys::status::FINISHED.contains(&s.as_str())) else {
            continue;
        };
        if status == keys::status::COMPLETED && !force {
            let written: bool = redis::cmd("EXISTS")
                .arg(k.etl_done(g))
                .query_async(&mut conn)
                .await?;
            if !written {
                cleaned.kept_unwritten.push(g.to_string());
                continue;
            }
        }
        let mut game_keys: Vec<String> = scan(&mut conn, &k.game_key_pattern(g))
            .await?
            .into_iter()
            .collect();
        game_keys.push(k.game(g));
        let n: Option<u8> = redis::cmd("GET")
            .arg(k.game_participants(g))
            .query_async(&mut conn)
            .await
            .ok()
            .flatten();
        if !dry_run {
            let mut pipe = redis::pipe();
            pipe.zrem(k.games_participants(), g).ignore();
            if let Some(n) = n {
                pipe.lrem(k.games_players(n), 0, g).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
            delete(&mut conn, &game_keys).await?;
        }
        cleaned.games.push((g.to_string(), status));
        cleaned.keys.extend(game_keys);
    }
    Ok(cleaned)
}

/// Removes every key this project owns under the lobby channel `lobby`; nothing else.
pub async fn everything(redis: &Redis, lobby: &str, dry_run: bool) -> Result<Cleaned> {
    let mut conn = redis.conn();
    let mut found = BTreeSet::new();
    for pattern in keys::owned_patterns(lobby) {
        found.extend(scan(&mut conn, &pattern).await?);
    }
    let found: Vec<String> = found.into_iter().collect();
    if !dry_run {
        delete(&mut conn, &found).await?;
    }
    Ok(Cleaned {
        keys: found,
        ..Cleaned::default()
    })
}

/// Removes the keys under a lobby channel (a demo's or benchmark's private one), best effort.
pub async fn remove_channel_keys(redis: &Redis, lobby: &str) {
    let mut conn = redis.conn();
    let lobby = keys::escape_glob(lobby);
    for pattern in [format!("{lobby}:*"), format!("{{{lobby}:*")] {
        if let Ok(found) = scan(&mut conn, &pattern).await {
            let found: Vec<String> = found.into_iter().collect();
            let _ = delete(&mut conn, &found).await;
        }
    }
}

/// The `clean` command, printing what it removed and what it kept.
pub async fn run(redis: &Redis, lobby: &str, options: Options) -> Result<Cleaned> {
    let Options {
        all,
        force,
        dry_run,
    } = options;
    let cleaned = if all {
        everything(redis, lobby, dry_run).await?
    } else {
        finished_games(redis, force, dry_run).await?
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    for (g, status) in &cleaned.games {
        println!("{verb} game {g} ({status})");
    }
    if dry_run || all {
        for key in &cleaned.keys {
            println!("{verb} key {key}");
        }
    }
    if all {
        println!("{verb} {} keys", cleaned.keys.len());
    } else {
        println!(
            "{verb} {} finished games ({} keys); live games left alone",
            cleaned.games.len(),
            cleaned.keys.len()
        );
    }
    if !cleaned.kept_unwritten.is_empty() {
        for g in &cleaned.kept_unwritten {
            println!("kept game {g} (Completed, output not written yet)");
        }
        println!(
            "kept {} finished games whose output is not written yet (use --force to remove them)",
            cleaned.kept_unwritten.len()
        );
    }
    Ok(cleaned)
}
