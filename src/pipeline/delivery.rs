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

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use crate::pipeline::redis_conn::Conn;
use redis::{RedisResult, Script};

use crate::pipeline::keys::{self, Keys};
use crate::pipeline::shard::{Layout, Shard};

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
    beat(conn, &keys::worker_heartbeats(lobby), id).await
}

/// Sets `member`'s score in the heartbeat set `key` to Redis's time now (ms).
pub async fn beat(conn: &mut Conn, key: &str, member: &str) -> RedisResult<()> {
    let _: i64 = BEAT.key(key).arg(member).invoke_async(conn).await?;
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

/// One log stream with the keys the fanout's scripts touch beside it (one slot): the single
/// layout's `<lobby>:log`, or shard `s`'s `{<lobby>:<s>}:log`. Every log has the same consumer
/// group, `<lobby>:fanouts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// The shard's index, for a tagged layout's logs; None for the single layout's.
    shard: Option<u16>,
    pub stream: String,
    pub group: String,
    pub dead: String,
    pub tries: String,
    pub failures: String,
}

/// Separates a tagged shard's index from the entry id in a delivery id (`<s>/<entry id>`).
const SHARD_SEPARATOR: char = '/';

impl Log {
    fn of_keys(lobby: &str, keys: &Keys, shard: Option<u16>) -> Log {
        Log {
            shard,
            stream: keys.log_stream(lobby),
            group: keys::fanout_group(lobby),
            dead: keys.dead_stream(lobby),
            tries: keys.delivery_tries(lobby),
            failures: keys.delivery_failures(lobby),
        }
    }

    /// The log of `shard` of `layout`.
    pub fn of(layout: &Layout, lobby: &str, shard: Shard) -> Log {
        let index = layout.is_tagged().then_some(shard.0);
        Log::of_keys(lobby, &layout.keys(shard), index)
    }

    /// Every log of `layout`: one per shard (the one log of the single layout).
    pub fn all(layout: &Layout, lobby: &str) -> Vec<Log> {
        layout.shards().map(|s| Log::of(layout, lobby, s)).collect()
    }

    /// The shard's index (None for the single layout's log).
    pub fn shard(&self) -> Option<u16> {
        self.shard
    }

    /// The `delivery_id` a worker is sent for `entry` of this log: the entry id itself on the
    /// single layout (as the original consumers knew it), `<s>/<entry id>` on a tagged one.
    pub fn delivery_id<'a>(&self, entry: &'a str) -> Cow<'a, str> {
        match self.shard {
            None => Cow::Borrowed(entry),
            Some(s) => Cow::Owned(format!("{s}{SHARD_SEPARATOR}{entry}")),
        }
    }

    /// The log and the entry id a `delivery_id` names (see [`Log::delivery_id`]); None when it
    /// names no shard index.
    pub fn of_delivery<'a>(lobby: &str, delivery_id: &'a str) -> Option<(Log, &'a str)> {
        let (shard, entry) = split_delivery(delivery_id)?;
        Some((Log::of_index(lobby, shard), entry))
    }

    /// The single layout's log (None), or tagged shard `s`'s.
    fn of_index(lobby: &str, shard: Option<u16>) -> Log {
        match shard {
            None => Log::of_keys(lobby, &Keys::single(), None),
            Some(s) => Log::of(&Layout::tagged(lobby, s.saturating_add(1)), lobby, Shard(s)),
        }
    }
}

/// The shard index (None: the single layout) and the entry id of a delivery id; None when its
/// shard index is not a number.
fn split_delivery(delivery_id: &str) -> Option<(Option<u16>, &str)> {
    match delivery_id.split_once(SHARD_SEPARATOR) {
        None => Some((None, delivery_id)),
        Some((shard, entry)) => Some((Some(shard.parse().ok()?), entry)),
    }
}

/// Deletes worker `id`'s consumer of every log's group once it stops, unless it still holds
/// pending entries there (those stay until a fanout routes them again). True when deleted from
/// every log.
pub async fn retire(conn: &mut Conn, logs: &[Log], id: &str) -> RedisResult<bool> {
    let mut all = true;
    for log in logs {
        let deleted: i64 = RETIRE
            .key(&log.stream)
            .arg(&log.group)
            .arg(id)
            .invoke_async(conn)
            .await?;
        all &= deleted == 1;
    }
    Ok(all)
}

/// WAIT: blocks until `replicas` replicas have acknowledged every write sent so far on this
/// connection, or `timeout` passes; the number that did. Only the connection that wrote counts
/// (a reconnection in between makes it vacuous), and it blocks that connection meanwhile. On a
/// cluster it goes to the primary of `key`, the one the writes to wait for went to.
pub async fn wait_replicas(
    conn: &mut Conn,
    key: &str,
    replicas: u32,
    timeout: Duration,
) -> RedisResult<u32> {
    let mut wait = redis::cmd("WAIT");
    wait.arg(replicas).arg(timeout.as_millis() as u64);
    conn.query_on_primary_of(key, &wait).await
}

/// Acknowledges delivered entries, named by their delivery ids: they leave their log's pending
/// list for good, with what the fanout noted about earlier attempts. A delivery id that names
/// no log is ignored.
pub async fn ack(conn: &mut Conn, lobby: &str, delivery_ids: &[String]) -> RedisResult<()> {
    // By shard, in the order first seen (one log on the single layout).
    let mut by_shard: Vec<(Option<u16>, Vec<&str>)> = Vec::new();
    for id in delivery_ids {
        let Some((shard, entry)) = split_delivery(id) else {
            tracing::warn!("delivery id {id:?} names no log; not acknowledged");
            continue;
        };
        match by_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, entries)) => entries.push(entry),
            None => by_shard.push((shard, vec![entry])),
        }
    }
    for (shard, entries) in by_shard {
        let log = Log::of_index(lobby, shard);
        let _: () = redis::pipe()
            .cmd("XACK")
            .arg(&log.stream)
            .arg(&log.group)
            .arg(&entries)
            .ignore()
            .hdel(&log.tries, &entries)
            .ignore()
            .hdel(&log.failures, &entries)
            .ignore()
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// Notes why worker `worker` could not handle the entry of `delivery_id`, while it is still
/// pending; the dead letter carries the last one. True when noted.
pub async fn note_failure(
    conn: &mut Conn,
    lobby: &str,
    delivery_id: &str,
    worker: &str,
    reason: &str,
) -> RedisResult<bool> {
    let Some((log, entry)) = Log::of_delivery(lobby, delivery_id) else {
        return Ok(false);
    };
    let noted: i64 = NOTE_FAILURE
        .key(&log.stream)
        .key(&log.failures)
        .arg(&log.group)
        .arg(entry)
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
    fn a_delivery_id_names_its_log() {
        let lobby = "lobby";
        let single = Log::all(&Layout::single(), lobby).remove(0);
        assert_eq!(single.delivery_id("5-1"), "5-1");
        assert_eq!(single.stream, "lobby:log");
        assert_eq!(single.dead, "lobby:dead");
        assert_eq!(Log::of_delivery(lobby, "5-1"), Some((single, "5-1")));
        let layout = Layout::tagged(lobby, 12);
        for log in Log::all(&layout, lobby) {
            let id = log.delivery_id("7-0");
            assert_eq!(Log::of_delivery(lobby, &id), Some((log.clone(), "7-0")));
        }
        let third = Log::of(&layout, lobby, Shard(3));
        assert_eq!(third.delivery_id("7-0"), "3/7-0");
        assert_eq!(third.stream, "{lobby:3}:log");
        assert_eq!(third.tries, "{lobby:3}:tries");
        assert_eq!(third.group, "lobby:fanouts");
        assert_eq!(Log::of_delivery(lobby, "x/7-0"), None);
    }

    #[test]
    fn entry_ids_carry_their_time() {
        assert_eq!(entry_ms("1732700000000-3"), Some(1_732_700_000_000));
        assert_eq!(entry_ms("x"), None);
    }
}
