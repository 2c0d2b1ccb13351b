//! Configuration: every setting (docs/settings.md lists them), layered with figment.
//!
//! Each setting is declared once in `vars.rs` (variable, flag, the commands that take it,
//! default, help, type); the command line, `--help`, the layers, [`Settings`] and the generated
//! table of docs/settings.md all read that declaration. Precedence, lowest first: built-in
//! default, `--config FILE` (TOML), `.env` in the working directory, the process environment,
//! command-line flags (`layers.rs`). figment merges the layers and extracts them into typed
//! fields (`types.rs`), each type with its own checks; a bad value is one error naming the
//! variable and the layer it came from, before any network I/O.

use std::fmt;
use std::time::Duration;

use figment::Figment;

mod layers;
mod output_dir;
mod types;
mod vars;
pub use layers::{read_dotenv, Layers};
pub use output_dir::OutputDir;
pub use types::MAX_SHARDS;
pub use vars::{Settings, Var, COMMANDS, RUN_THE_ROLES, VARS};

/// A setting that could not be parsed: one line naming the variable (and the layer it came
/// from), never a retry, and its own exit code so a script can tell it from a failed run.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// The status the binary exits with: 2, as for a command line clap refuses.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// Where Redis lives and how to log in.
#[derive(Clone)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub password: Option<String>,
    pub url: Option<String>,
    /// Seeds of a Redis Cluster; empty: the one Redis above. In cluster mode the password and
    /// TLS still come from REDIS_PASSWORD or REDIS_URL, the addresses from the seeds.
    pub cluster_nodes: Vec<NodeAddr>,
}

impl RedisSettings {
    /// `host:port` (or the URL without its credentials, or the cluster's seeds) for messages:
    /// never the password.
    pub fn display_addr(&self) -> String {
        if !self.cluster_nodes.is_empty() {
            let seeds: Vec<String> = self.cluster_nodes.iter().map(|n| n.to_string()).collect();
            return format!("cluster {}", seeds.join(","));
        }
        match &self.url {
            Some(url) => redact_url(url),
            None => format!("{}:{}", self.host, self.port),
        }
    }

    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }
}

/// One node's `host:port` (a cluster seed, a primary).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    /// `host:port`, `[v6]:port` too; `None` when either part is missing or the port is 0.
    pub fn parse(text: &str) -> Option<NodeAddr> {
        let (host, port) = text.rsplit_once(':')?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        let plain = |c: char| !c.is_whitespace() && !matches!(c, '/' | '@' | ',' | '[' | ']');
        (!host.is_empty() && host.chars().all(plain)).then(|| NodeAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("url", &self.url.as_deref().map(redact_url))
            .field("cluster_nodes", &self.cluster_nodes)
            .finish()
    }
}

/// `redis://user:secret@host:6379/0` → `redis://user:********@host:6379/0`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "********".to_string();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://********@{host}"),
        None => url.to_string(),
    }
}

/// Whether the server publishes lifecycle records (`docs/records.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoggerModule {
    Default,
    Redis,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_layers(Layers::default()).expect("built-in defaults are valid")
    }
}

impl Settings {
    /// Merges the layers in precedence order and extracts every setting.
    pub fn from_layers(layers: Layers) -> Result<Self, ConfigError> {
        let figment = layers.figment()?;
        let raw: vars::RawSettings = figment.extract().map_err(layers::describe_error)?;
        cluster_db(&figment, &raw)?;
        let computed = vars::Computed {
            redis: RedisSettings {
                host: raw.redis_host.0.clone(),
                port: raw.redis_port.0,
                db: raw.redis_db.0,
                password: raw.redis_password.0.clone(),
                url: raw.redis_url.0.clone(),
                cluster_nodes: raw.redis_cluster_nodes.0.clone(),
            },
            worker_id: raw.worker_id.0.clone().unwrap_or_else(random_worker_id),
            write_timeout: write_timeout(&figment, &raw)?,
            wait_ms: wait_ms(&figment, &raw)?,
        };
        Ok(Settings::assemble(raw, computed))
    }

    /// The settings as docs/settings.md lists them, password masked, for a DEBUG log line.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// WRITE_TIMEOUT, the one rule across two settings: below ACK_TIMEOUT, half of it when unset.
/// A write that may run past ACK_TIMEOUT would see its record routed again while it still holds
/// the game: each such delivery only waits and counts towards the limit.
fn write_timeout(figment: &Figment, raw: &vars::RawSettings) -> Result<Duration, ConfigError> {
    let ack_timeout = raw.ack_timeout.0;
    match raw.write_timeout.0 {
        Some(w) if w >= ack_timeout => {
            let from = figment
                .find_metadata("WRITE_TIMEOUT")
                .map(|md| format!(" (from {})", layers::describe_source(md, "WRITE_TIMEOUT")))
                .unwrap_or_default();
            Err(ConfigError(format!(
                "WRITE_TIMEOUT: invalid value {}, expected less than ACK_TIMEOUT ({}){from}",
                w.as_secs_f64(),
                ack_timeout.as_secs_f64()
            )))
        }
        Some(w) => Ok(w),
        None => Ok(ack_timeout / 2),
    }
}

/// How long a worker's claim on a game lasts without renewal. A holder renews it every third of
/// this.
pub const LEASE: Duration = Duration::from_secs(5);

/// The lease a worker takes: [`LEASE`], or half of ACK_TIMEOUT when that is shorter. The record
/// of a worker that died holding a game comes back after ACK_TIMEOUT; by then its lease must
/// have run out, or each delivery only finds the game busy and counts towards MAX_DELIVERIES.
pub fn lease_for(ack_timeout: Duration) -> Duration {
    LEASE.min(ack_timeout / 2)
}

/// WAIT_MS, below the lease: a WAIT as long as the lease would leave the record unacknowledged
/// until about when ACK_TIMEOUT routes it again, and the next delivery acknowledges a done game
/// without waiting.
fn wait_ms(figment: &Figment, raw: &vars::RawSettings) -> Result<Duration, ConfigError> {
    let wait = raw.wait_ms.0;
    let lease = lease_for(raw.ack_timeout.0);
    if wait < lease {
        return Ok(wait);
    }
    let from = figment
        .find_metadata("WAIT_MS")
        .map(|md| format!(" (from {})", layers::describe_source(md, "WAIT_MS")))
        .unwrap_or_default();
    Err(ConfigError(format!(
        "WAIT_MS: invalid value {}, expected less than the claim lease ({} ms: 5 s, or \
         ACK_TIMEOUT / 2 when shorter){from}",
        wait.as_millis(),
        lease.as_millis()
    )))
}

/// A Redis Cluster has database 0 only: a REDIS_DB beside REDIS_CLUSTER_NODES is a mistake to
/// report, not to ignore.
fn cluster_db(figment: &Figment, raw: &vars::RawSettings) -> Result<(), ConfigError> {
    if raw.redis_cluster_nodes.0.is_empty() || raw.redis_db.0 == 0 {
        return Ok(());
    }
    let from = figment
        .find_metadata("REDIS_DB")
        .map(|md| format!(" (from {})", layers::describe_source(md, "REDIS_DB")))
        .unwrap_or_default();
    Err(ConfigError(format!(
        "REDIS_DB: invalid value {}, expected 0: a Redis Cluster (REDIS_CLUSTER_NODES) has \
         database 0 only{from}",
        raw.redis_db.0
    )))
}

/// true/false/1/0/yes/no in any case (Python-era env files say `False`).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// LOG_LEVEL with the Python names mapped: WARNING → WARN, CRITICAL → ERROR.
pub fn parse_level(text: &str) -> Option<tracing::Level> {
    match text.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some(tracing::Level::TRACE),
        "DEBUG" => Some(tracing::Level::DEBUG),
        "INFO" => Some(tracing::Level::INFO),
        "WARN" | "WARNING" => Some(tracing::Level::WARN),
        "ERROR" | "CRITICAL" | "FATAL" => Some(tracing::Level::ERROR),
        _ => None,
    }
}

/// A worker id becomes part of a channel name and of file names: keep it to a safe alphabet.
/// The one declaration of the rule: the Parquet sink checks file names with it too.
pub fn validate_worker_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid worker id {id:?}: use 1-64 letters, digits, '.', '_' or '-', not starting with '.'"
        ))
    }
}

/// Twelve random hex characters, like a container's short id.
pub fn random_worker_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

#[cfg(test)]
mod tests;
