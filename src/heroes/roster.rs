//! The roster in Redis: reading a hero collection (a file or the built-in roster) and loading it
//! into the `superheros` hash of every shard atomically (one copy per shard, so a find's script
//! touches one slot).
//!
//! The heroes are written to a fresh temporary hash and RENAMEd over `superheros` in one step,
//! so readers see either the old collection or the new one, never a half-loaded hash. Any error
//! before the RENAME deletes the temporary hash and leaves the old collection untouched.
//!
//! Both the `build-db` command and the game server load through here: the server puts the
//! built-in roster back by itself ([`reload_if_missing`]) when Redis lost its data (a restart
//! without persistence), instead of refusing every find.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{parse_collection, Hero, BUILTIN_ROSTER};
use crate::pipeline::keys::Keys;
use crate::pipeline::redis_conn::{Conn, Redis};
use crate::pipeline::shard::Layout;

/// Heroes written per pipeline round trip.
const BATCH: usize = 500;
/// A load that has not finished after this long gets a progress bar.
const PROGRESS_AFTER: Duration = Duration::from_millis(300);

/// Reads and validates the collection: the file given, or the built-in roster.
pub fn load_source(source: Option<&Path>) -> Result<Vec<Hero>> {
    match source {
        None => parse_collection(BUILTIN_ROSTER).context("built-in roster is invalid"),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse_collection(&text)
                .with_context(|| format!("{} is not a hero collection", path.display()))
        }
    }
}

/// Replaces `superheros` of every shard with `heroes`; returns how many were loaded.
pub async fn store(redis: &Redis, layout: &Layout, heroes: &[Hero]) -> Result<usize> {
    for keys in layout.all_keys() {
        store_in(redis, &keys, heroes).await?;
    }
    Ok(heroes.len())
}

/// Replaces the `superheros` of one shard with `heroes`.
async fn store_in(redis: &Redis, keys: &Keys, heroes: &[Hero]) -> Result<()> {
    let mut conn = redis.conn();
    let staging = keys.superheros_loading(&uuid::Uuid::new_v4().to_string());
    let started = Instant::now();
    let bar =
        ProgressBar::with_draw_target(Some(heroes.len() as u64), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("loading heroes {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = async {
        for chunk in heroes.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for hero in chunk {
                pipe.hset(&staging, hero.id, hero.document.to_string())
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
            bar.inc(chunk.len() as u64);
            if bar.is_hidden() && started.elapsed() > PROGRESS_AFTER {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
        redis::cmd("RENAME")
            .arg(&staging)
            .arg(keys.superheros())
            .query_async::<()>(&mut conn)
            .await
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = result {
        let _: Result<(), _> = redis::cmd("DEL").arg(&staging).query_async(&mut conn).await;
        return Err(e).context("loading heroes failed; the previous collection is unchanged");
    }
    Ok(())
}

/// Serialises reloads within a process, so finds that all saw an empty collection load it and log
/// it once.
static RELOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Loads the built-in roster into every shard whose `superheros` is missing (Redis lost its
/// data), with one warning. Returns whether one was missing, i.e. whether a find refused for
/// lack of heroes is worth retrying. Servers in other processes may reload at the same moment:
/// each load is atomic and the data identical, so the race is harmless.
pub async fn reload_if_missing(redis: &Redis, layout: &Layout) -> Result<bool> {
    let mut conn = redis.conn();
    let mut missing = Vec::new();
    for keys in layout.all_keys() {
        if hero_count(&mut conn, &keys).await? == 0 {
            missing.push(keys);
        }
    }
    if missing.is_empty() {
        return Ok(false);
    }
    let _one_at_a_time = RELOADING.lock().await;
    let roster = load_source(None)?;
    for keys in &missing {
        // Another task of this process may have reloaded while this one waited.
        if hero_count(&mut conn, keys).await? > 0 {
            continue;
        }
        store_in(redis, keys, &roster).await?;
        tracing::warn!(
            "no heroes in '{}' (a new Redis, or one that lost its data): loaded the built-in roster of {} heroes",
            keys.superheros(),
            roster.len()
        );
    }
    Ok(true)
}

async fn hero_count(conn: &mut Conn, keys: &Keys) -> Result<u64> {
    Ok(redis::cmd("HLEN")
        .arg(keys.superheros())
        .query_async(conn)
        .await?)
}
