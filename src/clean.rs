//! `superhero clean`: removes the state of finished games, or with `--all` every key this
//! project owns. It walks the keyspace with SCAN (never KEYS, never FLUSHDB), so it is safe on a
//! busy Redis and leaves other applications' keys in the same database alone.

use std::collections::BTreeSet;

use anyhow::Result;
use redis::aio::ConnectionManager;

use crate::keys;
use crate::redis_conn::Redis;

/// Keys deleted per round trip.
const DELETE_BATCH: usize = 500;

/// What a clean removed (or, with `dry_run`, would remove).
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Finished games removed: token and status.
    pub games: Vec<(String, String)>,
    pub keys: Vec<String>,
}

/// Every key matching `pattern`, by SCAN.
pub async fn scan(conn: &mut ConnectionManager, pattern: &str) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        found.extend(batch);
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

async fn delete(conn: &mut ConnectionManager, keys: &[String]) -> Result<()> {
    for chunk in keys.chunks(DELETE_BATCH) {
        redis::cmd("UNLINK")
            .arg(chunk)
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

/// Removes every Completed or Timed Out game; games still being played are left alone.
pub async fn finished_games(redis: &Redis, dry_run: bool) -> Result<Cleaned> {
    let mut conn = redis.conn();
    let mut cleaned = Cleaned::default();
    for status_key in scan(&mut conn, "games:*:status").await? {
        let Some(g) = status_key
            .strip_prefix("games:")
            .and_then(|rest| rest.strip_suffix(":status"))
            .filter(|g| !g.contains(':'))
        else {
            continue;
        };
        let status: Option<String> = redis::cmd("GET")
            .arg(&status_key)
            .query_async(&mut conn)
            .await?;
        let Some(status) = status.filter(|s| keys::status::FINISHED.contains(&s.as_str())) else {
            continue;
        };
        let mut game_keys: Vec<String> = scan(&mut conn, &keys::game_key_pattern(g))
            .await?
            .into_iter()
            .collect();
        game_keys.push(keys::game(g));
        let n: Option<u8> = redis::cmd("GET")
            .arg(keys::game_participants(g))
            .query_async(&mut conn)
            .await
            .ok()
            .flatten();
        if !dry_run {
            let mut pipe = redis::pipe();
            pipe.zrem(keys::GAMES_PARTICIPANTS, g).ignore();
            if let Some(n) = n {
                pipe.lrem(keys::games_players(n), 0, g).ignore();
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
        games: Vec::new(),
        keys: found,
    })
}

/// Removes the keys under a lobby channel (a demo's or benchmark's private one), best effort.
pub async fn remove_channel_keys(redis: &Redis, lobby: &str) {
    let mut conn = redis.conn();
    let pattern = format!("{}:*", keys::escape_glob(lobby));
    if let Ok(found) = scan(&mut conn, &pattern).await {
        let found: Vec<String> = found.into_iter().collect();
        let _ = delete(&mut conn, &found).await;
    }
}

/// The `clean` command, printing what it removed.
pub async fn run(redis: &Redis, lobby: &str, all: bool, dry_run: bool) -> Result<Cleaned> {
    let cleaned = if all {
        everything(redis, lobby, dry_run).await?
    } else {
        finished_games(redis, dry_run).await?
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
    Ok(cleaned)
}
