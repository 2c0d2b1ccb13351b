//! The one Redis connection layer every role uses.
//!
//! [`Redis::connect`] turns the settings into a client, proves the server answers (one clear
//! error line otherwise, within seconds) and hands out a [`ConnectionManager`] that reconnects by
//! itself. [`subscribe`] keeps a pub/sub subscription alive across outages and forwards messages
//! into a channel, so a slow consumer never makes Redis drop the subscriber. [`Backoff`] is the
//! capped retry delay roles use around their own Redis calls, and [`Outage`] makes sure an outage
//! is logged once, not once per retry.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use tokio::sync::mpsc;

use crate::config::RedisSettings;
use crate::shutdown::Shutdown;

/// How long the first contact with Redis may take before the role gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A command that takes longer than this is treated as a lost connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connected Redis: the client (for pub/sub connections) and a self-healing command connection.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    addr: String,
    manager: ConnectionManager,
}

impl Redis {
    /// Connects, authenticates and PINGs, or fails with "cannot reach Redis at HOST:PORT: …".
    pub async fn connect(settings: &RedisSettings) -> Result<Self> {
        let client = client(settings)?;
        let addr = settings.display_addr();
        let probe = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        let first = tokio::time::timeout(
            CONNECT_TIMEOUT + Duration::from_secs(1),
            client.get_multiplexed_async_connection_with_config(&probe),
        )
        .await;
        let mut conn = match first {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => anyhow::bail!("cannot reach Redis at {addr}: {}", describe(&e)),
            Err(_) => anyhow::bail!("cannot reach Redis at {addr}: timed out"),
        };
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach Redis at {addr}: {}", describe(&e)))?;
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
            .with_context(|| format!("cannot reach Redis at {addr}"))?;
        Ok(Redis {
            client,
            addr,
            manager,
        })
    }

    /// A handle for commands; cheap to clone, shares one multiplexed connection.
    pub fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// A self-healing command connection of its own (not shared with [`Redis::conn`]), for a
    /// loop that issues blocking reads (XREADGROUP BLOCK) without stalling everyone else.
    pub fn own_conn(&self) -> Result<ConnectionManager> {
        ConnectionManager::new_lazy_with_config(self.client.clone(), manager_config())
            .with_context(|| format!("cannot reach Redis at {}", self.addr))
    }

    /// A fresh connection of its own, for blocking commands or heavy pipelines.
    pub async fn dedicated(&self) -> Result<redis::aio::MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach Redis at {}: {}", self.addr, describe(&e)))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `host:port` for messages; never carries the password.
    pub fn addr(&self) -> &str {
        &self.addr
    }
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

/// Builds the client from REDIS_URL, or from host, port, db and password.
pub fn client(settings: &RedisSettings) -> Result<Client> {
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
    Client::open(info).map_err(|e| anyhow::anyhow!("invalid Redis settings: {}", describe(&e)))
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

/// What a subscription hands its consumer.
#[derive(Debug)]
pub enum SubEvent {
    /// The subscription is (re)established: anything published while it was down was missed,
    /// so consumers resynchronise from Redis state here (backlogs, pending records).
    Subscribed,
    /// A message on one of the channels or patterns.
    Message { channel: String, payload: Vec<u8> },
}

/// Subscribes to `channels` and `patterns` and keeps the subscription alive until `shutdown`,
/// reconnecting with capped backoff. Messages are read as fast as Redis sends them and queued
/// in memory, so a burst never overflows Redis's pub/sub output buffer.
pub fn subscribe(
    redis: &Redis,
    channels: Vec<String>,
    patterns: Vec<String>,
    shutdown: Shutdown,
) -> mpsc::UnboundedReceiver<SubEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = redis.client.clone();
    // In the caller's span: the outage lines say whose subscription it is.
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let mut backoff = Backoff::default();
        let mut outage = Outage::new("subscriber");
        loop {
            if shutdown.is_triggered() || tx.is_closed() {
                return;
            }
            let pubsub = async {
                let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
                    .await
                    .map_err(|_| anyhow::anyhow!("connection timed out"))??;
                for ch in &channels {
                    pubsub.subscribe(ch).await?;
                }
                for p in &patterns {
                    pubsub.psubscribe(p).await?;
                }
                anyhow::Ok(pubsub)
            };
            // A Redis that accepts and then stalls must not hold up a shutdown.
            let pubsub = tokio::select! {
                pubsub = pubsub => pubsub,
                _ = shutdown.recv() => return,
            };
            let pubsub = match pubsub {
                Ok(p) => p,
                Err(e) => {
                    outage.failed(&e);
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            outage.recovered();
            backoff.reset();
            if tx.send(SubEvent::Subscribed).is_err() {
                return;
            }
            let mut stream = pubsub.into_on_message();
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(msg) => {
                            let event = SubEvent::Message {
                                channel: msg.get_channel_name().to_string(),
                                payload: msg.get_payload_bytes().to_vec(),
                            };
                            if tx.send(event).is_err() {
                                return;
                            }
                        }
                        None => {
                            outage.failed(&"subscription closed");
                            break;
                        }
                    },
                    _ = shutdown.recv() => return,
                }
            }
        }
    }));
    rx
}

/// Number of subscribers of each channel (PUBSUB NUMSUB).
pub async fn numsub(
    conn: &mut ConnectionManager,
    channels: &[String],
) -> Result<Vec<(String, u64)>> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("NUMSUB");
    for ch in channels {
        cmd.arg(ch);
    }
    let flat: Vec<redis::Value> = cmd.query_async(conn).await?;
    let mut out = Vec::new();
    for pair in flat.chunks(2) {
        if let [name, count] = pair {
            let name: String = redis::from_redis_value_ref(name)?;
            let count: u64 = redis::from_redis_value_ref(count)?;
            out.push((name, count));
        }
    }
    Ok(out)
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
