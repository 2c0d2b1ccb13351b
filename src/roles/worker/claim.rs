//! The exactly-once claim on a game's ETL, and the acknowledgement of a routed record.
//!
//! Three keys per game (see `docs/redis-keys.md`):
//! - `games:<g>:etl:lease` — `<worker id>:<nonce>` with a TTL of [`LEASE`], renewed while the
//!   holder works. Only the holder may write the game; a dead holder loses it when the TTL runs out.
//! - `games:<g>:etl:writer` — the worker that last *started* writing files for the game. The
//!   output directory is shared, so a worker that takes over an expired lease looks at the
//!   previous writer's files: a complete pair is kept, anything less is removed.
//! - `games:<g>:etl:done` — the worker whose pair of files is the game's output. Set by a Lua
//!   script only while the lease is still the caller's, so it is set once per game.
//!
//! Every step that decides something is one Lua script, so two workers never both believe they
//! hold the game. The order of the steps of a host record:
//! `claim` (which also checks the host, and records us as writer when nobody wrote before) →
//! if there was a previous writer: its pair complete? `finish` with it; else `start_writing` and
//! remove its files → write both files (temporary name, then rename) → `finish` → clean
//! routine → ack.
//!
//! A worker killed at any of these points loses and duplicates nothing: the record's log entry
//! stays pending and another worker judges what is left by these keys. The step-by-step crash
//! analysis for a shared OUTPUT_DIR, and what a merely slow worker does, is in
//! `docs/delivery.md` ("Crash analysis: a shared OUTPUT_DIR"); for one folder per worker see
//! [`super::leftovers`].

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};

use crate::pipeline::keys;

/// How long a claim lasts without renewal. A holder renews it every third of this.
pub const LEASE: Duration = Duration::from_secs(5);

/// The answer of [`claim`].
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The game has no host key: it does not exist (or was already cleaned).
    UnknownGame,
    /// The record's user is not the game's host: nothing to do.
    NotHost,
    /// The game's files are already in place, written by this worker id.
    Done(String),
    /// Another worker holds a live lease (its `<worker id>:<nonce>`).
    Busy(String),
    /// The lease is ours. `None`: nobody wrote before, and we are recorded as the writer
    /// already. `Some(w)`: worker `w` started writing before us and may have left files.
    Claimed { previous_writer: Option<String> },
}

/// The answer of [`finish`].
#[derive(Debug, PartialEq, Eq)]
pub enum Finish {
    /// The game's output is the pair written by this worker id (ours or the one we asked for).
    Done(String),
    /// Someone else holds the lease; `writer` is the last worker that started writing.
    Lost { writer: Option<String> },
}

/// A lease token: unique per attempt, so a worker never mistakes an old lease for its own.
pub fn lease_token(worker_id: &str) -> String {
    format!("{worker_id}:{}", uuid::Uuid::new_v4().simple())
}

/// For the record of `user` in game `g`: checks that `user` is the game's host, then takes the
/// lease unless the game is done or someone else holds it; when nobody has written the game
/// before, also records `worker_id` as its writer (one round trip for the common case). Taking
/// it again with the same token (a retry after a Redis error) succeeds.
pub async fn claim(
    conn: &mut ConnectionManager,
    g: &str,
    user: &str,
    token: &str,
    worker_id: &str,
) -> RedisResult<Claim> {
    let (answer, who): (String, String) = CLAIM
        .key(keys::etl_lease(g))
        .key(keys::etl_done(g))
        .key(keys::etl_writer(g))
        .key(keys::game_host(g))
        .arg(token)
        .arg(LEASE.as_millis() as u64)
        .arg(user)
        .arg(worker_id)
        .invoke_async(conn)
        .await?;
    Ok(match answer.as_str() {
        "unknown" => Claim::UnknownGame,
        "not_host" => Claim::NotHost,
        "done" => Claim::Done(who),
        "busy" => Claim::Busy(who),
        "fresh" => Claim::Claimed {
            previous_writer: None,
        },
        _ => Claim::Claimed {
            previous_writer: Some(who),
        },
    })
}

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("claim.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("renew.lua")));
static START_WRITING: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("start_writing.lua")));
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("finish.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("release.lua")));

/// Extends the lease if it is still ours; false when it was lost.
pub async fn renew(conn: &mut ConnectionManager, g: &str, token: &str) -> RedisResult<bool> {
    let renewed: i64 = RENEW
        .key(keys::etl_lease(g))
        .arg(token)
        .arg(LEASE.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(renewed == 1)
}

/// Records `worker_id` as the game's writer if the lease is still ours; false when it was lost.
pub async fn start_writing(
    conn: &mut ConnectionManager,
    g: &str,
    token: &str,
    worker_id: &str,
) -> RedisResult<bool> {
    let started: i64 = START_WRITING
        .key(keys::etl_lease(g))
        .key(keys::etl_writer(g))
        .arg(token)
        .arg(worker_id)
        .invoke_async(conn)
        .await?;
    Ok(started == 1)
}

/// Marks the game done with `files_of`'s pair of files, if the lease is still ours (or expired
/// with nobody else having started since: the writer is still `files_of`), and drops the lease.
pub async fn finish(
    conn: &mut ConnectionManager,
    g: &str,
    token: &str,
    files_of: &str,
) -> RedisResult<Finish> {
    let (answer, who): (String, String) = FINISH
        .key(keys::etl_lease(g))
        .key(keys::etl_done(g))
        .key(keys::etl_writer(g))
        .arg(token)
        .arg(files_of)
        .invoke_async(conn)
        .await?;
    Ok(if answer == "done" {
        Finish::Done(who)
    } else {
        Finish::Lost {
            writer: (!who.is_empty()).then_some(who),
        }
    })
}

/// Gives the lease back if it is ours (the game turned out to have nothing to write).
pub async fn release(conn: &mut ConnectionManager, g: &str, token: &str) -> RedisResult<()> {
    let _: i64 = RELEASE
        .key(keys::etl_lease(g))
        .arg(token)
        .invoke_async(conn)
        .await?;
    Ok(())
}
