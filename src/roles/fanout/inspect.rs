//! Reading the delivery state back from Redis: the replies of the stream commands, and the
//! pipeline summary `superhero status` shows.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::pipeline::redis_conn::Conn;
use anyhow::Result;
use redis::{RedisResult, Value};

use crate::pipeline::delivery::{self, Log};
use crate::pipeline::keys;
use crate::pipeline::redis_conn::scan;
use crate::pipeline::shard::Layout;

/// What `superhero status` shows of the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PipelineState {
    /// Entries in the log stream (in flight plus the retention window).
    pub stream_length: u64,
    /// Entries no fanout has read yet (the group's lag).
    pub undelivered: u64,
    /// Entries read and not yet acknowledged.
    pub unacked: u64,
    /// Unacknowledged entries per worker id; entries a fanout read but has not routed are
    /// under `fanout:<id>`.
    pub unacked_per_consumer: BTreeMap<String, u64>,
    /// Age of the oldest unacknowledged entry (since the server appended it).
    pub oldest_unacked_age: Option<Duration>,
    /// Entries given up on after MAX_DELIVERIES.
    pub dead_letters: u64,
    /// Workers whose heartbeat is fresh.
    pub live_workers: Vec<String>,
    /// Fanouts whose beat is fresh (on shards only: on one log the fanouts do not beat).
    pub live_fanouts: Vec<String>,
    /// Games with an ETL lease but no done marker.
    pub claimed_unfinished: u64,
}

/// The summary form of XPENDING.
#[derive(Debug, Default)]
pub(crate) struct PendingSummary {
    pub count: u64,
    pub oldest: Option<String>,
    pub per_consumer: Vec<(String, u64)>,
}

impl PendingSummary {
    pub fn parse(reply: &Value) -> Self {
        let Value::Array(parts) = reply else {
            return Self::default();
        };
        let mut summary = PendingSummary {
            count: parts.first().and_then(int).unwrap_or(0),
            oldest: parts.get(1).and_then(text),
            per_consumer: Vec::new(),
        };
        if let Some(Value::Array(consumers)) = parts.get(3) {
            for pair in consumers {
                if let Value::Array(pair) = pair {
                    if let (Some(name), Some(n)) =
                        (pair.first().and_then(text), pair.get(1).and_then(int))
                    {
                        summary.per_consumer.push((name, n));
                    }
                }
            }
        }
        summary
    }
}

/// `(id, record)` of each entry of an XREADGROUP reply (entries without a record field are
/// left out).
pub(crate) fn stream_entries(reply: Value) -> Vec<(String, Vec<u8>)> {
    // [[stream, entries]] (RESP2) or {stream: entries} (RESP3).
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(map) => map.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    streams.into_iter().flat_map(entries).collect()
}

/// `(id, record)` of each entry of a list of stream entries, as XRANGE gives them (entries
/// without a record field are left out).
pub(crate) fn entries(list: Value) -> Vec<(String, Vec<u8>)> {
    let Value::Array(list) = list else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let Value::Array(mut entry) = entry else {
            continue;
        };
        let (Some(Value::Array(fields)), Some(id)) = (entry.pop(), entry.first().and_then(text))
        else {
            continue;
        };
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            if let Value::BulkString(value) = value {
                if text(&name).as_deref() == Some(delivery::RECORD_FIELD) {
                    out.push((id, value));
                    break;
                }
            }
        }
    }
    out
}

/// The rows of an XINFO GROUPS or XINFO CONSUMERS reply, each as its `(field, value)` pairs.
pub(crate) fn info_rows(reply: Value) -> Vec<Vec<(String, Value)>> {
    let Value::Array(rows) = reply else {
        return Vec::new();
    };
    rows.into_iter()
        .filter_map(|row| match row {
            Value::Array(flat) => Some(
                flat.chunks(2)
                    .filter_map(|p| Some((text(&p[0])?, p.get(1)?.clone())))
                    .collect(),
            ),
            Value::Map(map) => Some(
                map.into_iter()
                    .filter_map(|(k, v)| Some((text(&k)?, v)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The lag of `group` on `stream` (entries not yet read), when Redis knows it.
pub(crate) async fn group_lag(
    conn: &mut Conn,
    stream: &str,
    group: &str,
) -> RedisResult<Option<u64>> {
    let groups: RedisResult<Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await;
    let groups = match groups {
        Ok(g) => g,
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    for fields in info_rows(groups) {
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if field("name").and_then(text).as_deref() == Some(group) {
            return Ok(field("lag").and_then(int));
        }
    }
    Ok(None)
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).to_string()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}

/// [`inspect_logs`] of the single layout's one log.
pub async fn inspect(conn: &mut Conn, lobby: &str) -> Result<PipelineState> {
    inspect_logs(conn, &Log::all(&Layout::single(), lobby), lobby).await
}

/// Pipeline state for `superhero status`, read from Redis alone (SCAN, never KEYS), summed over
/// `logs` (one per shard).
pub async fn inspect_logs(conn: &mut Conn, logs: &[Log], lobby: &str) -> Result<PipelineState> {
    type Beats = Vec<(String, u64)>;
    let ((secs, micros), workers, fanouts): ((u64, u64), Beats, Beats) = redis::pipe()
        .cmd("TIME")
        .zrange_withscores(keys::worker_heartbeats(lobby), 0, -1)
        .zrange_withscores(keys::fanout_heartbeats(lobby), 0, -1)
        .query_async(conn)
        .await?;
    let now_ms = secs * 1000 + micros / 1000;
    let fresh_from = now_ms.saturating_sub(delivery::HEARTBEAT_STALE.as_millis() as u64);
    let fresh = |beats: Beats| -> Vec<String> {
        beats
            .into_iter()
            .filter(|(_, beat)| *beat >= fresh_from)
            .map(|(id, _)| id)
            .collect()
    };
    let mut state = PipelineState {
        live_workers: fresh(workers),
        live_fanouts: fresh(fanouts),
        ..PipelineState::default()
    };
    let mut oldest: Option<u64> = None;
    for log in logs {
        let (stream_length, dead_letters): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&log.stream)
            .cmd("XLEN")
            .arg(&log.dead)
            .query_async(conn)
            .await?;
        state.stream_length += stream_length;
        state.dead_letters += dead_letters;
        // The lag before the pending entries: an entry read after the lag was taken is still
        // counted as undelivered, so "nothing undelivered and nothing pending" is never
        // reported while a fanout is moving entries from the one to the other.
        state.undelivered += match group_lag(conn, &log.stream, &log.group).await? {
            Some(lag) => lag,
            // No group yet: every entry is undelivered.
            None => stream_length,
        };
        let pending: RedisResult<Value> = redis::cmd("XPENDING")
            .arg(&log.stream)
            .arg(&log.group)
            .query_async(conn)
            .await;
        let summary = match pending {
            Ok(v) => PendingSummary::parse(&v),
            // No fanout has created the group yet.
            Err(e) if e.code() == Some("NOGROUP") => PendingSummary::default(),
            Err(e) => return Err(e.into()),
        };
        state.unacked += summary.count;
        for (consumer, n) in summary.per_consumer {
            *state.unacked_per_consumer.entry(consumer).or_default() += n;
        }
        if let Some(ms) = summary.oldest.as_deref().and_then(delivery::entry_ms) {
            oldest = Some(oldest.map_or(ms, |o| o.min(ms)));
        }
    }
    state.oldest_unacked_age = oldest.map(|ms| Duration::from_millis(now_ms.saturating_sub(ms)));
    state.claimed_unfinished = claimed_unfinished(conn).await?;
    Ok(state)
}

/// Games some worker claimed and has not finished (a lease but no done marker).
async fn claimed_unfinished(conn: &mut Conn) -> Result<u64> {
    let leases = scan(conn, keys::ETL_LEASE_PATTERN).await?;
    let games: Vec<_> = leases
        .iter()
        .filter_map(|k| keys::game_of_etl_lease(k))
        .collect();
    if games.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for (k, g) in &games {
        pipe.exists(k.etl_done(g));
    }
    let done: Vec<bool> = pipe.query_async(conn).await?;
    Ok(done.iter().filter(|d| !**d).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn pending_summary_is_read() {
        let reply = Value::Array(vec![
            Value::Int(3),
            bulk("5-0"),
            bulk("9-0"),
            Value::Array(vec![
                Value::Array(vec![bulk("w1"), bulk("2")]),
                Value::Array(vec![bulk("fanout:a"), bulk("1")]),
            ]),
        ]);
        let s = PendingSummary::parse(&reply);
        assert_eq!(s.count, 3);
        assert_eq!(s.oldest.as_deref(), Some("5-0"));
        assert_eq!(
            s.per_consumer,
            vec![("w1".to_string(), 2), ("fanout:a".to_string(), 1)]
        );
        let empty = PendingSummary::parse(&Value::Array(vec![
            Value::Int(0),
            Value::Nil,
            Value::Nil,
            Value::Nil,
        ]));
        assert_eq!(empty.count, 0);
        assert!(empty.oldest.is_none());
    }

    #[test]
    fn stream_entries_are_read() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("lobby:log"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("record"), bulk("{}")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("x"), bulk("y")])]),
            ]),
        ])]);
        assert_eq!(
            stream_entries(reply.clone()),
            vec![("1-0".to_string(), b"{}".to_vec())]
        );
        assert!(stream_entries(Value::Nil).is_empty());
    }
}
