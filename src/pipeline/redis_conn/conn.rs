//! [`Conn`]: the command connection every role holds, to one Redis or to a Redis Cluster.
//!
//! It implements the redis crate's `ConnectionLike`, so `query_async`, pipelines and
//! `Script::invoke_async` work the same on either. On a cluster each command goes to the primary
//! of its key's slot; the cluster client follows MOVED/ASK and, after a failover, the new
//! primary. A plain (non-MULTI) pipeline whose commands fall on several slots is sent one
//! command after the other, in order: a pipeline was never atomic, so only the number of round
//! trips changes. A MULTI or a script still needs its keys in one slot.

use std::collections::BTreeSet;

use futures_util::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

use crate::config::NodeAddr;

/// A self-healing command connection; cheap to clone (clones share the sockets).
#[derive(Clone)]
pub enum Conn {
    /// One Redis, reconnecting by itself.
    Single(ConnectionManager),
    /// A Redis Cluster, routed by key slot.
    Cluster(ClusterConnection),
    /// One node of a cluster ([`Conn::primaries`]), for the commands that act on one node's
    /// keyspace (SCAN, DBSIZE, FLUSHDB); it shares the cluster connection's sockets.
    Node(ClusterConnection, NodeAddr),
}

impl Conn {
    /// Whether the commands go to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        !matches!(self, Conn::Single(_))
    }

    /// One connection per primary, from the cluster's CLUSTER SLOTS; itself for one Redis (or
    /// one node).
    pub async fn primaries(&self) -> RedisResult<Vec<Conn>> {
        let Conn::Cluster(cluster) = self else {
            return Ok(vec![self.clone()]);
        };
        Ok(self
            .primary_addrs()
            .await?
            .into_iter()
            .map(|node| Conn::Node(cluster.clone(), node))
            .collect())
    }

    /// The addresses of the primaries, from the cluster's CLUSTER SLOTS; none for one Redis.
    pub async fn primary_addrs(&self) -> RedisResult<Vec<NodeAddr>> {
        let Conn::Cluster(cluster) = self else {
            return Ok(Vec::new());
        };
        let slots: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut cluster.clone())
            .await?;
        Ok(primaries_of(&slots))
    }

    /// The primary that serves `key`'s slot now, by CLUSTER KEYSLOT and CLUSTER SLOTS; None on
    /// one Redis.
    pub async fn owner_of(&self, key: &str) -> RedisResult<Option<NodeAddr>> {
        let Conn::Cluster(cluster) = self else {
            return Ok(None);
        };
        let mut cluster = cluster.clone();
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut cluster)
            .await?;
        let slots: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut cluster)
            .await?;
        Ok(ranges_of(&slots)
            .into_iter()
            .find(|(from, to, _)| (*from..=*to).contains(&slot))
            .map(|(_, _, node)| node))
    }
}

impl Conn {
    /// Sends `cmd`, which names no key, to the primary of `key`'s slot on a cluster (to Redis
    /// itself when single): WAIT must go to the node the writes it waits for went to, and the
    /// cluster client would send it to every primary.
    pub async fn query_on_primary_of<T: redis::FromRedisValue>(
        &mut self,
        key: &str,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        let Conn::Cluster(conn) = self else {
            return cmd.query_async(self).await;
        };
        let route = Route::with_key(key, SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let value = conn.route_command(cmd.clone(), routing).await?;
        Ok(redis::from_redis_value(value)?)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
            Conn::Node(conn, node) => {
                let route = RoutingInfo::SingleNode(address(node));
                conn.route_command(cmd.clone(), route).boxed()
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => by_slot(conn, pipeline, offset, count).boxed(),
            Conn::Node(conn, node) => conn
                .route_pipeline(pipeline.clone(), offset, count, address(node))
                .boxed(),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            // A cluster has database 0 only.
            Conn::Cluster(_) | Conn::Node(..) => 0,
        }
    }
}

fn address(node: &NodeAddr) -> SingleNodeRoutingInfo {
    SingleNodeRoutingInfo::ByAddress {
        host: node.host.clone(),
        port: node.port,
    }
}

/// Sends a pipeline as the cluster client does, or, when its commands fall on several slots
/// (which the client refuses before sending anything), one command after the other, in order.
/// A MULTI goes whole: the cluster refuses it unless its keys share a slot.
async fn by_slot(
    conn: &mut ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> RedisResult<Vec<Value>> {
    match conn.req_packed_commands(pipeline, offset, count).await {
        Err(e) if is_cross_slot_pipeline(&e) && !pipeline.is_transaction() => {
            let mut replies = Vec::with_capacity(count);
            for cmd in pipeline.cmd_iter() {
                replies.push(conn.req_packed_command(cmd).await?);
            }
            Ok(replies)
        }
        other => other,
    }
}

/// The cluster client's refusal of a pipeline across slots, made before anything was sent
/// (not a server's CROSSSLOT reply to a command that ran).
fn is_cross_slot_pipeline(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::CrossSlot)
        && e.to_string().contains("crossed slots")
}

/// The primaries of a CLUSTER SLOTS reply: the first node of each slot range, once each.
fn primaries_of(slots: &Value) -> Vec<NodeAddr> {
    let primaries: BTreeSet<NodeAddr> = ranges_of(slots)
        .into_iter()
        .map(|(_, _, node)| node)
        .collect();
    primaries.into_iter().collect()
}

/// The slot ranges of a CLUSTER SLOTS reply, each with its primary (the first node).
fn ranges_of(slots: &Value) -> Vec<(i64, i64, NodeAddr)> {
    let Value::Array(ranges) = slots else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else { continue };
        let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(primary))) =
            (range.first(), range.get(1), range.get(2))
        else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).to_string(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let port = match primary.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        };
        // "" or "?": a node whose address its peers do not know yet.
        if let (Some(port), false) = (port, host.is_empty() || host == "?") {
            out.push((*from, *to, NodeAddr { host, port }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![bulk(host), Value::Int(port), bulk("id")])
    }

    #[test]
    fn primaries_are_the_first_node_of_each_range_once() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("127.0.0.1", 7001),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(12000),
                node("127.0.0.1", 7000),
            ]),
            Value::Array(vec![Value::Int(12001), Value::Int(16383), node("?", 7002)]),
        ]);
        let found: Vec<String> = primaries_of(&reply).iter().map(|n| n.to_string()).collect();
        assert_eq!(found, ["127.0.0.1:7000", "127.0.0.1:7001"]);
        let owner = |slot: i64| {
            ranges_of(&reply)
                .into_iter()
                .find(|(from, to, _)| (*from..=*to).contains(&slot))
                .map(|(_, _, node)| node.to_string())
        };
        assert_eq!(owner(6000).as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(owner(11000).as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(
            owner(16000),
            None,
            "a range whose primary's address is unknown"
        );
        assert!(primaries_of(&Value::Nil).is_empty());
    }
}
