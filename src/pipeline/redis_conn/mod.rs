//! The one Redis connection layer every role uses.
//!
//! [`Redis::connect`] turns the settings into a client for one Redis or for a Redis Cluster
//! (REDIS_CLUSTER_NODES), proves it answers (one clear error line otherwise, within seconds)
//! and hands out a [`Conn`] that reconnects by itself and, on a cluster, follows MOVED/ASK and
//! failovers (`conn.rs`). [`subscribe`] keeps a pub/sub subscription alive across outages
//! (`pubsub.rs`). [`Backoff`] is the capped retry delay roles use around their own Redis calls,
//! and [`Outage`] makes sure an outage is logged once, not once per retry. [`scan`] walks the
//! keyspace of every primary.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::config::{NodeAddr, RedisSettings};
use crate::shutdown::Shutdown;

mod conn;
mod pubsub;
pub use conn::Conn;
pub use pubsub::{subscribe, subscribe_on_every_primary, SubEvent};

/// How long the first contact with Redis may take before the role gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A command that takes longer than this is treated as a lost connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// A dedicated cluster connection's reply timeout (a single node's has none): long enough for
/// any pipeline, short enough that a dead node is noticed.
const DEDICATED_RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest pause between two reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connected Redis or Redis Cluster: the clients (for pub/sub and more connections) and a
/// self-healing command connection.
#[derive(Clone)]
pub struct Redis {
    target: Target,
    addr: String,
    conn: Conn,
}

/// What [`Redis`] connects to.
#[derive(Clone)]
// One per process, cloned per role: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Target {
    Single(Client),
    /// The cluster client, and a plain client per seed for pub/sub.
    Cluster {
        client: ClusterClient,
        seeds: Vec<Client>,
    },
}

impl Redis {
    /// Connects, authenticates and PINGs, or fails with "cannot reach Redis at HOST:PORT: …".
    pub async fn connect(settings: &RedisSettings) -> Result<Self> {
        if settings.is_cluster() {
            return Self::connect_cluster(settings).await;
        }
        let client = client(settings)?;
        let addr = settings.display_addr();
        let probe = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        first_contact(
            &addr,
            CONNECT_TIMEOUT + Duration::from_secs(1),
            client.get_multiplexed_async_connection_with_config(&probe),
        )
        .await?;
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
            .with_context(|| format!("cannot reach Redis at {addr}"))?;
        Ok(Redis {
            target: Target::Single(client),
            addr,
            conn: Conn::Single(manager),
        })
    }

    /// [`Redis::connect`] for REDIS_CLUSTER_NODES: the first seed that answers gives the
    /// cluster's map of slots; the same password and TLS apply to every node.
    async fn connect_cluster(settings: &RedisSettings) -> Result<Self> {
        let addr = settings.display_addr();
        let template = connection_info(settings)?;
        let seeds: Vec<ConnectionInfo> = settings
            .cluster_nodes
            .iter()
            .map(|node| node_info(&template, node))
            .collect();
        let client = ClusterClient::builder(seeds.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            // Per command: about 8 s of retries with 50 ms to 2 s between them, then the
            // role's own backoff takes over.
            .retries(8)
            .min_retry_wait(50)
            .max_retry_wait(MAX_BACKOFF.as_millis() as u64)
            .build()
            .map_err(|e| anyhow::anyhow!("invalid Redis Cluster settings: {}", describe(&e)))?;
        let seeds = seeds
            .into_iter()
            .map(Client::open)
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(|e| anyhow::anyhow!("invalid Redis Cluster settings: {}", describe(&e)))?;
        let conn = first_contact(
            &addr,
            CONNECT_TIMEOUT * 2,
            client.get_async_connection_with_config(cluster_config(RESPONSE_TIMEOUT)),
        )
        .await?;
        Ok(Redis {
            target: Target::Cluster { client, seeds },
            addr,
            conn: Conn::Cluster(conn),
        })
    }

    /// A handle for commands; cheap to clone, shares one multiplexed connection (per node).
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// A self-healing command connection of its own (not shared with [`Redis::conn`]), for a
    /// loop that issues blocking reads (XREADGROUP BLOCK) without stalling everyone else.
    pub fn own_conn(&self) -> Result<Conn> {
        match &self.target {
            Target::Single(client) => {
                ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
                    .map(Conn::Single)
                    .with_context(|| format!("cannot reach Redis at {}", self.addr))
            }
            Target::Cluster { client, .. } => Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(cluster_config(RESPONSE_TIMEOUT)),
            )),
        }
    }

    /// A fresh connection of its own, for blocking commands or heavy pipelines.
    pub async fn dedicated(&self) -> Result<Conn> {
        let conn = match &self.target {
            Target::Single(client) => {
                let config = manager_config().set_response_timeout(None);
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Conn::Single)
            }
            Target::Cluster { client, .. } => client
                .get_async_connection_with_config(cluster_config(DEDICATED_RESPONSE_TIMEOUT))
                .await
                .map(Conn::Cluster),
        };
        conn.map_err(|e| anyhow::anyhow!("cannot reach Redis at {}: {}", self.addr, describe(&e)))
    }

    /// Whether this is a Redis Cluster (REDIS_CLUSTER_NODES), where a SCAN or a DBSIZE must
    /// visit every primary ([`Conn::primaries`]).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// One connection per primary (the one Redis itself when single), for the commands that
    /// act on one node's keyspace: SCAN, DBSIZE, FLUSHDB.
    pub async fn primaries(&self) -> Result<Vec<Conn>> {
        self.conn().primaries().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot list the primaries of {}: {}",
                self.addr,
                describe(&e)
            )
        })
    }

    /// The plain clients a subscription may use: the one Redis, or each cluster seed in turn.
    fn subscription_clients(&self) -> Vec<Client> {
        match &self.target {
            Target::Single(client) => vec![client.clone()],
            Target::Cluster { seeds, .. } => seeds.clone(),
        }
    }

    /// On a cluster, a plain client of the primary that serves `channel`'s slot now: a PUBLISH
    /// there (the cluster client sends it to that primary) counts the subscribers of that node
    /// only, so a worker subscribed through it is counted, and the fanout need not ask every
    /// node whether anyone listens. None on one Redis, or when the owner is not known.
    async fn owner_client(&self, channel: &str) -> Option<Client> {
        let Target::Cluster { seeds, .. } = &self.target else {
            return None;
        };
        let owner = self.conn.owner_of(channel).await.ok()??;
        let template = seeds.first()?.get_connection_info();
        Client::open(node_info(template, &owner)).ok()
    }

    /// On a cluster, a plain client of each primary now; None on one Redis or when CLUSTER
    /// SLOTS cannot be read.
    async fn primary_clients(&self) -> Option<Vec<Client>> {
        let Target::Cluster { seeds, .. } = &self.target else {
            return None;
        };
        let template = seeds.first()?.get_connection_info();
        let primaries = self.conn.primary_addrs().await.ok()?;
        primaries
            .iter()
            .map(|node| Client::open(node_info(template, node)).ok())
            .collect()
    }

    /// `host:port` (or `cluster <seeds>`) for messages; never carries the password.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// The first connection, made within `limit` and PINGed, or one line saying why Redis at
/// `addr` cannot be reached.
async fn first_contact<C: redis::aio::ConnectionLike>(
    addr: &str,
    limit: Duration,
    connecting: impl std::future::Future<Output = redis::RedisResult<C>>,
) -> Result<C> {
    let mut conn = match tokio::time::timeout(limit, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => anyhow::bail!("cannot reach Redis at {addr}: {}", describe(&e)),
        Err(_) => anyhow::bail!("cannot reach Redis at {addr}: timed out"),
    };
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Redis at {addr}: {}", describe(&e)))?;
    Ok(conn)
}

/// Reconnects forever with capped backoff; a reply slower than [`RESPONSE_TIMEOUT`] counts as a
/// lost connection.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(MAX_BACKOFF)
        .set_number_of_retries(usize::MAX / 2)
}

/// A cluster connection's timeouts: connecting as a single Redis does, replies within `response`.
fn cluster_config(response: Duration) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(response)
}

/// The connection settings of one cluster node: `template`'s credentials and TLS, `node`'s
/// address, database 0.
fn node_info(template: &ConnectionInfo, node: &NodeAddr) -> ConnectionInfo {
    let (host, port) = (node.host.clone(), node.port);
    let addr = match template.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: None,
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    let redis = template.redis_settings().clone().set_db(0);
    template.clone().set_addr(addr).set_redis_settings(redis)
}

/// Builds the client from REDIS_URL, or from host, port, db and password.
pub fn client(settings: &RedisSettings) -> Result<Client> {
    let info = connection_info(settings)?;
    Client::open(info).map_err(|e| anyhow::anyhow!("invalid Redis settings: {}", describe(&e)))
}

/// The connection settings of REDIS_URL, or of host, port, db and password.
fn connection_info(settings: &RedisSettings) -> Result<ConnectionInfo> {
    if settings
        .url
        .as_deref()
        .is_some_and(|u| u.starts_with("rediss://"))
    {
        // rustls needs a process-wide crypto provider; a second install is harmlessly refused.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let info = match &settings.url {
        Some(url) => url
            .as_str()
            .into_connection_info()
            .map_err(|e| crate::config::ConfigError(format!("REDIS_URL: {}", describe(&e))))?,
        None => {
            let info = redis::ConnectionAddr::Tcp(settings.host.clone(), settings.port)
                .into_connection_info()
                .context("invalid Redis address")?;
            let mut redis_info = info.redis_settings().clone().set_db(settings.db);
            if let Some(password) = &settings.password {
                redis_info = redis_info.set_password(password);
            }
            info.set_redis_settings(redis_info)
        }
    };
    Ok(info)
}

/// A Redis error in one line, with nothing of the credentials in it.
pub fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or("unknown error").to_string()
}

/// Server error codes that say "not now" rather than "never": the server is loading, busy
/// with a script, failing over or out of memory. Retrying the same command can succeed.
const TRANSIENT_CODES: [&str; 8] = [
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "READONLY",
    "MASTERDOWN",
    "OOM",
    "CLUSTERDOWN",
    "NOREPLICAS",
];

/// Whether retrying after `e` can succeed: the connection failed or timed out, or the server
/// answered with one of the passing conditions of [`TRANSIENT_CODES`]. Anything else
/// (WRONGTYPE, a script error, a parse error) will fail the same way however often it is
/// retried, so a caller that retries it forever holds its work for ever.
pub fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code().is_some_and(|code| TRANSIENT_CODES.contains(&code))
}

/// Capped exponential backoff: 50 ms, 100 ms, … up to [`MAX_BACKOFF`].
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = Duration::from_millis(50u64.saturating_mul(1 << self.attempt.min(8)));
        self.attempt = self.attempt.saturating_add(1);
        delay.min(MAX_BACKOFF)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Sleeps for the next delay, or returns early (false) when shutdown fires.
    pub async fn wait(&mut self, shutdown: &Shutdown) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.recv() => false,
        }
    }
}

/// Logs the start and end of an outage once each, however many retries happen in between.
#[derive(Debug)]
pub struct Outage {
    what: &'static str,
    down: Option<std::time::Instant>,
}

impl Outage {
    pub fn new(what: &'static str) -> Self {
        Outage { what, down: None }
    }

    pub fn failed(&mut self, error: &dyn std::fmt::Display) {
        if self.down.is_none() {
            tracing::warn!("{}: lost Redis ({error}); retrying with backoff", self.what);
            self.down = Some(std::time::Instant::now());
        }
    }

    pub fn recovered(&mut self) {
        if let Some(since) = self.down.take() {
            tracing::info!(
                "{}: Redis is back after {:.1}s",
                self.what,
                since.elapsed().as_secs_f64()
            );
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.is_some()
    }
}

/// Number of subscribers of each channel (PUBSUB NUMSUB), in the order asked; on a cluster,
/// summed over every node.
pub async fn numsub(conn: &mut Conn, channels: &[String]) -> Result<Vec<(String, u64)>> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("NUMSUB");
    for ch in channels {
        cmd.arg(ch);
    }
    // A flat array from one node; a map from the cluster client, which asks them all.
    let reply: redis::Value = cmd.query_async(conn).await?;
    let pairs: Vec<(redis::Value, redis::Value)> = match reply {
        redis::Value::Map(pairs) => pairs,
        redis::Value::Array(flat) => flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [name, count] => Some((name.clone(), count.clone())),
                _ => None,
            })
            .collect(),
        other => anyhow::bail!("unexpected PUBSUB NUMSUB reply {other:?}"),
    };
    let mut counts = std::collections::HashMap::new();
    for (name, count) in &pairs {
        let name: String = redis::from_redis_value_ref(name)?;
        let count: u64 = redis::from_redis_value_ref(count)?;
        *counts.entry(name).or_insert(0) += count;
    }
    Ok(channels
        .iter()
        .map(|ch| (ch.clone(), counts.get(ch).copied().unwrap_or(0)))
        .collect())
}

/// Every key matching `pattern`, by SCAN; on a cluster, on every primary.
pub async fn scan(conn: &mut Conn, pattern: &str) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    for mut node in conn.primaries().await? {
        scan_node(&mut node, pattern, &mut found).await?;
    }
    Ok(found)
}

/// SCAN on one node: its cursor means nothing to another.
async fn scan_node(node: &mut Conn, pattern: &str, found: &mut BTreeSet<String>) -> Result<()> {
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(node)
            .await?;
        found.extend(batch);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
