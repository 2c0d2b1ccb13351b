//! The exactly-once claim on a game's ETL, and the acknowledgement of a routed record.
//!
//! Three keys per game (see `docs/redis-keys.md`):
//! - `games:<g>:etl:lease` — `<worker id>:<nonce>` with a TTL of [`lease_for`] ACK_TIMEOUT, renewed while the
//!   holder works. Only the holder may write the game; a dead holder loses it when the TTL runs out.
//! - `games:<g>:etl:writer` — the lease token of the worker that last *started* writing files
//!   for the game. The output directory is shared, so a worker that takes over an expired lease
//!   looks at the previous writer's files (named by its worker id, [`writer_id`]): a complete
//!   pair is kept, anything less is removed. A token, not a worker id: a paused process whose
//!   id a new process took over is another writer, and cannot finish the game with its files.
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

use crate::pipeline::redis_conn::Conn;
use redis::{RedisResult, Script};

use crate::pipeline::keys::Keys;

pub use crate::config::{lease_for, LEASE};

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
    /// already. `Some(t)`: the writer with lease token `t` started writing before us and may
    /// have left files (named by [`writer_id`]`(t)`).
    Claimed { previous_writer: Option<String> },
}

/// The answer of [`finish`].
#[derive(Debug, PartialEq, Eq)]
pub enum Finish {
    /// The game's output is the pair written by this worker id (ours or the one we asked for).
    Done(String),
    /// Someone else holds the lease; `writer` is the lease token of the last worker that
    /// started writing.
    Lost { writer: Option<String> },
}

impl Finish {
    /// Whether the files worker `id` wrote are not the game's output and are its own to
    /// remove: another worker's pair is the output, or another worker became the writer.
    /// Files of another process of the same id have the same names, so they are left; and with
    /// no writer at all (Redis lost the game's claim) the files may be the only copy.
    pub fn supersedes(&self, id: &str) -> bool {
        match self {
            Finish::Done(by) => by != id,
            Finish::Lost { writer: Some(w) } => writer_id(w) != id,
            Finish::Lost { writer: None } => false,
        }
    }
}

/// A lease token: unique per attempt, so a worker never mistakes an old lease for its own.
pub fn lease_token(worker_id: &str) -> String {
    format!("{worker_id}:{}", uuid::Uuid::new_v4().simple())
}

/// The worker id of a lease token, which names the writer's files. Worker ids hold no ':'; a
/// bare worker id (what the writer key held before it held tokens) is its own.
pub fn writer_id(token: &str) -> &str {
    token.split_once(':').map_or(token, |(id, _)| id)
}

/// For the record of `user` in game `g`: checks that `user` is the game's host, then takes the
/// lease unless the game is done or someone else holds it; when nobody has written the game
/// before, also records `token` as its writer (one round trip for the common case). Taking it
/// again with the same token (a retry after a Redis error) succeeds.
pub async fn claim(
    conn: &mut Conn,
    k: &Keys,
    g: &str,
    user: &str,
    token: &str,
    lease: Duration,
) -> RedisResult<Claim> {
    let (answer, who): (String, String) = CLAIM
        .key(k.etl_lease(g))
        .key(k.etl_done(g))
        .key(k.etl_writer(g))
        .key(k.game_host(g))
        .arg(token)
        .arg(lease.as_millis() as u64)
        .arg(user)
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
static CLAIM_LEFTOVERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("claim_leftovers.lua")));

/// Extends the lease if it is still ours; false when it was lost.
pub async fn renew(
    conn: &mut Conn,
    k: &Keys,
    g: &str,
    token: &str,
    lease: Duration,
) -> RedisResult<bool> {
    let renewed: i64 = RENEW
        .key(k.etl_lease(g))
        .arg(token)
        .arg(lease.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(renewed == 1)
}

/// Records our lease token as the game's writer if the lease is still ours; false when it was
/// lost.
pub async fn start_writing(conn: &mut Conn, k: &Keys, g: &str, token: &str) -> RedisResult<bool> {
    record_writer(conn, k, g, token, token).await
}

/// Names worker `previous`'s files as the game's to judge again, if the lease is still ours
/// (we became the writer but could not remove them): the next claimant tries again rather than
/// writing its pair beside them. The token recorded is a fresh one that no process holds, so a
/// slow `previous` cannot finish the game with files we may have removed in part.
pub async fn hand_back(
    conn: &mut Conn,
    k: &Keys,
    g: &str,
    token: &str,
    previous: &str,
) -> RedisResult<bool> {
    record_writer(conn, k, g, token, &lease_token(previous)).await
}

async fn record_writer(
    conn: &mut Conn,
    k: &Keys,
    g: &str,
    token: &str,
    writer: &str,
) -> RedisResult<bool> {
    let recorded: i64 = START_WRITING
        .key(k.etl_lease(g))
        .key(k.etl_writer(g))
        .arg(token)
        .arg(writer)
        .invoke_async(conn)
        .await?;
    Ok(recorded == 1)
}

/// Marks the game done with `files_of`'s pair of files, if the lease is still ours (or expired
/// with nobody else having started since: the writer is still our token), and drops the lease.
pub async fn finish(
    conn: &mut Conn,
    k: &Keys,
    g: &str,
    token: &str,
    files_of: &str,
) -> RedisResult<Finish> {
    let (answer, who): (String, String) = FINISH
        .key(k.etl_lease(g))
        .key(k.etl_done(g))
        .key(k.etl_writer(g))
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
pub async fn release(conn: &mut Conn, k: &Keys, g: &str, token: &str) -> RedisResult<()> {
    let _: i64 = RELEASE
        .key(k.etl_lease(g))
        .arg(token)
        .invoke_async(conn)
        .await?;
    Ok(())
}

/// The answer of [`claim_leftovers`].
#[derive(Debug, PartialEq, Eq)]
pub enum Leftovers {
    /// The game's output is the pair of this worker id.
    Done(String),
    /// The game's keys are gone (expired after it was written, or `clean --force`).
    UnknownGame,
    /// Another worker holds a live lease (its token).
    Busy(String),
    /// Another worker (this writer token) took the game over; the lease is ours until
    /// [`release`].
    OtherWriter(String),
    /// The lease and the writer key are ours: nothing of a previous process of our worker id
    /// can finish the game any more.
    Ours,
}

/// For the start-up sweep of `worker_id`, which found files of its own for game `g`: takes the
/// lease (unless another worker holds it) and, when the last writer was a process of the same
/// worker id, the writer key too, both as `token`.
pub async fn claim_leftovers(
    conn: &mut Conn,
    k: &Keys,
    g: &str,
    token: &str,
    worker_id: &str,
) -> RedisResult<Leftovers> {
    let (answer, who): (String, String) = CLAIM_LEFTOVERS
        .key(k.etl_lease(g))
        .key(k.etl_done(g))
        .key(k.etl_writer(g))
        .key(k.game_host(g))
        .arg(token)
        .arg(worker_id)
        .arg(LEASE.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(match answer.as_str() {
        "done" => Leftovers::Done(who),
        "unknown" => Leftovers::UnknownGame,
        "busy" => Leftovers::Busy(who),
        "other" => Leftovers::OtherWriter(who),
        _ => Leftovers::Ours,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_token_names_its_workers_files() {
        let token = lease_token("worker-7");
        assert_eq!(writer_id(&token), "worker-7");
        assert_eq!(writer_id("worker-7"), "worker-7");
    }

    #[test]
    fn a_lease_runs_out_before_its_record_comes_back() {
        assert_eq!(lease_for(Duration::from_secs(30)), LEASE);
        assert_eq!(lease_for(Duration::from_secs(2)), Duration::from_secs(1));
        assert!(lease_for(Duration::from_secs(1)) < Duration::from_secs(1));
    }
}
