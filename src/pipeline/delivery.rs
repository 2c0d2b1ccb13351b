//! The delivery protocol between the fanout and the workers, on a Redis Streams consumer group.
//!
//! The server appends every lifecycle record to the log stream `<lobby>:log` in the same Lua
//! script that commits the state change it reports. The fanouts read it as one consumer group
//! (`<lobby>:fanouts`): an entry read by a fanout is in the group's pending list until a worker
//! acknowledges it with XACK. When the fanout routes an entry to worker W it also hands the
//! pending entry over to a consumer named W (XCLAIM … JUSTID), so the group itself says which
//! worker holds what (XPENDING) and for how long. An entry idle for ACK_TIMEOUT is claimed by
//! a fanout and routed again; after MAX_DELIVERIES it goes to `<lobby>:dead`.
//!
//! This module holds what both sides must agree on: the consumer names, the heartbeat, the
//! acknowledgement, the failure notes and a stopping worker's retirement from the group.

use std::sync::LazyLock;
use std::time::Duration;

use crate::pipeline::redis_conn::Conn;
use redis::{RedisResult, Script};

use crate::pipeline::keys;

/// A live worker beats this often.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A worker whose last beat is older than this gets no new records.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(3);
/// Records a worker may hold unacknowledged before the fanout stops giving it more.
pub const MAX_UNACKED_PER_WORKER: u64 = 256;
/// Field of a stream entry that holds the record's text.
pub const RECORD_FIELD: &str = "record";
/// Field the server adds to the records it PUBLISHes: the id of the record's log entry, so a
/// fanout can tell the record is in the log already.
pub const ENTRY_ID_FIELD: &str = "entry_id";

/// Consumer-name prefix of the fanouts; worker ids cannot contain ':', so the two never clash.
const FANOUT_PREFIX: &str = "fanout:";

/// The consumer name of a fanout.
pub fn fanout_consumer(id: &str) -> String {
    format!("{FANOUT_PREFIX}{id}")
}

/// Whether a consumer of the group is a fanout (entries read, not yet routed) or a worker.
pub fn is_fanout_consumer(name: &str) -> bool {
    name.starts_with(FANOUT_PREFIX)
}

/// Milliseconds of a stream entry id (`<ms>-<seq>`): when Redis appended it.
pub fn entry_ms(id: &str) -> Option<u64> {
    id.split('-').next().and_then(|ms| ms.parse().ok())
}

static BEAT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("beat.lua")));
static RETIRE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("retire.lua")));
static NOTE_FAILURE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("note_failure.lua")));

/// Records that worker `id` is alive and making progress, by Redis's clock.
pub async fn heartbeat(conn: &mut Conn, lobby: &str, id: &str) -> RedisResult<()> {
    let _: i64 = BEAT
        .key(keys::worker_heartbeats(lobby))
        .arg(id)
        .invoke_async(conn)
        .await?;
    Ok(())
}

/// Takes worker `id` out of rotation at once (a clean stop).
pub async fn leave(conn: &mut Conn, lobby: &str, id: &str) -> RedisResult<()> {
    redis::cmd("ZREM")
        .arg(keys::worker_heartbeats(lobby))
        .arg(id)
        .query_async(conn)
        .await
}

/// Deletes worker `id`'s consumer of the group once it stops, unless it still holds pending
/// entries (those stay until a fanout routes them again). True when deleted.
pub async fn retire(conn: &mut Conn, lobby: &str, id: &str) -> RedisResult<bool> {
    let deleted: i64 = RETIRE
        .key(keys::log_stream(lobby))
        .arg(keys::fanout_group(lobby))
        .arg(id)
        .invoke_async(conn)
        .await?;
    Ok(deleted == 1)
}

/// WAIT: blocks until `replicas` replicas have acknowledged every write sent so far on this
/// connection, or `timeout` passes; the number that did. Only the connection that wrote counts
/// (a reconnection in between makes it vacuous), and it blocks that connection meanwhile.
pub async fn wait_replicas(conn: &mut Conn, replicas: u32, timeout: Duration) -> RedisResult<u32> {
    redis::cmd("WAIT")
        .arg(replicas)
        .arg(timeout.as_millis() as u64)
        .query_async(conn)
        .await
}

/// Acknowledges delivered entries: they leave the group's pending list for good, with what the
/// fanout noted about earlier attempts.
pub async fn ack(conn: &mut Conn, lobby: &str, ids: &[String]) -> RedisResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let _: () = redis::pipe()
        .cmd("XACK")
        .arg(keys::log_stream(lobby))
        .arg(keys::fanout_group(lobby))
        .arg(ids)
        .ignore()
        .hdel(keys::delivery_tries(lobby), ids)
        .ignore()
        .hdel(keys::delivery_failures(lobby), ids)
        .ignore()
        .query_async(conn)
        .await?;
    Ok(())
}

/// Notes why worker `worker` could not handle entry `id`, while the entry is still pending;
/// the dead letter carries the last one. True when noted.
pub async fn note_failure(
    conn: &mut Conn,
    lobby: &str,
    id: &str,
    worker: &str,
    reason: &str,
) -> RedisResult<bool> {
    let noted: i64 = NOTE_FAILURE
        .key(keys::log_stream(lobby))
        .key(keys::delivery_failures(lobby))
        .arg(keys::fanout_group(lobby))
        .arg(id)
        .arg(format!("{worker}: {reason}"))
        .invoke_async(conn)
        .await?;
    Ok(noted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_are_told_apart() {
        assert!(is_fanout_consumer(&fanout_consumer("abc")));
        assert!(!is_fanout_consumer("worker-1"));
        assert!(crate::config::validate_worker_id("fanout:x").is_err());
    }

    #[test]
    fn entry_ids_carry_their_time() {
        assert_eq!(entry_ms("1732700000000-3"), Some(1_732_700_000_000));
        assert_eq!(entry_ms("x"), None);
    }
}
