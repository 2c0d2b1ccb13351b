//! Configuration: every setting (docs/settings.md lists them), layered with figment.
//!
//! Each setting is declared once in `vars.rs` (variable, flag, default, help, type); the command
//! line, `--help`, the layers and the generated table of docs/settings.md all read that
//! declaration. Precedence, lowest first: built-in default, `--config FILE` (TOML), `.env` in the
//! working directory, the process environment, command-line flags (`layers.rs`). figment merges
//! the layers and extracts them into typed fields (`types.rs`); a bad value is one error naming
//! the variable and the layer it came from, before any network I/O.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;

mod layers;
mod output_dir;
mod types;
mod vars;
pub use layers::{read_dotenv, Layers};
pub use output_dir::OutputDir;
pub use vars::{Var, VARS};

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
}

impl RedisSettings {
    /// `host:port` (or the URL without its credentials) for messages: never the password.
    pub fn display_addr(&self) -> String {
        match &self.url {
            Some(url) => redact_url(url),
            None => format!("{}:{}", self.host, self.port),
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

/// The effective configuration shared by every role.
#[derive(Clone, Debug)]
pub struct Settings {
    pub redis: RedisSettings,
    pub redis_expiry: Duration,
    pub worker_channel: String,
    pub clean_routine: bool,
    pub logger_module: LoggerModule,
    pub log_level: tracing::Level,
    pub websocket_host: String,
    pub websocket_port: u16,
    pub server_sleep: Duration,
    pub lobby_timeout: Duration,
    pub turn_timeout: Duration,
    pub max_turns: u32,
    /// `None`: play forever.
    pub client_games: Option<u64>,
    pub client_sleep: Duration,
    /// A folder, or an object store URL (`s3://bucket/prefix`).
    pub output_dir: OutputDir,
    pub worker_id: String,
    pub ack_timeout: Duration,
    pub max_deliveries: u32,
    /// The most entries `<lobby>:dead` keeps.
    pub dead_letters_max: usize,
    pub log_retention: Duration,
    pub write_timeout: Duration,
    pub metrics_addr: Option<SocketAddr>,
    /// Open WebSocket connections one server process allows.
    pub max_connections: usize,
    /// How long the server waits for a socket's next request (never zero).
    pub idle_timeout: Duration,
    pub user_expiry: Duration,
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
        Checked(&figment).settings(raw)
    }

    /// The settings as docs/settings.md lists them, password masked, for a DEBUG log line.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// The rules that span more than one value's type, checked after extraction; an error names the
/// variable and the layer its value came from.
struct Checked<'a>(&'a Figment);

impl Checked<'_> {
    fn invalid(&self, var: &str, why: impl fmt::Display) -> ConfigError {
        let from = self
            .0
            .find_metadata(var)
            .map(|md| format!(" (from {})", layers::describe_source(md, var)))
            .unwrap_or_default();
        ConfigError(format!("{var}: {why}{from}"))
    }

    fn settings(&self, raw: vars::RawSettings) -> Result<Settings, ConfigError> {
        let redis = RedisSettings {
            host: raw.redis_host.0,
            port: raw.redis_port.0,
            db: raw.redis_db.0,
            password: raw.redis_password.0,
            url: raw.redis_url.0,
        };
        if redis.db < 0 {
            return Err(self.invalid(
                "REDIS_DB",
                format!(
                    "invalid value {}, expected a database index from 0",
                    redis.db
                ),
            ));
        }
        if let Some(url) = &redis.url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(self.invalid(
                    "REDIS_URL",
                    format!(
                        "invalid value {:?}, expected a redis:// or rediss:// URL",
                        redact_url(url)
                    ),
                ));
            }
        }
        let worker_id = match raw.worker_id.0 {
            Some(id) => {
                validate_worker_id(&id).map_err(|why| self.invalid("HOSTNAME", why))?;
                id
            }
            None => random_worker_id(),
        };
        let ack_timeout = raw.ack_timeout.0;
        // A write that may run past ACK_TIMEOUT would see its record routed again while it
        // still holds the game: each such delivery only waits and counts towards the limit.
        let write_timeout = match raw.write_timeout.0 {
            Some(w) if w >= ack_timeout => {
                return Err(self.invalid(
                    "WRITE_TIMEOUT",
                    format!(
                        "invalid value {}, expected less than ACK_TIMEOUT ({})",
                        w.as_secs_f64(),
                        ack_timeout.as_secs_f64()
                    ),
                ))
            }
            Some(w) => w,
            None => ack_timeout / 2,
        };
        Ok(Settings {
            redis,
            redis_expiry: raw.redis_expiry.0,
            worker_channel: raw.worker_channel.0,
            clean_routine: raw.clean_routine.0,
            logger_module: raw.logger_module.0,
            log_level: raw.log_level.0,
            websocket_host: raw.websocket_host.0,
            websocket_port: raw.websocket_port.0,
            server_sleep: raw.server_sleep.0,
            lobby_timeout: raw.lobby_timeout.0,
            turn_timeout: raw.turn_timeout.0,
            max_turns: raw.max_turns.0,
            client_games: raw.client_games.0,
            client_sleep: raw.client_sleep.0,
            output_dir: raw.output_dir.0,
            worker_id,
            ack_timeout,
            max_deliveries: raw.max_deliveries.0,
            dead_letters_max: raw.dead_letters_max.0,
            log_retention: raw.log_retention.0,
            write_timeout,
            metrics_addr: raw.metrics_addr.0,
            max_connections: raw.max_connections.0,
            idle_timeout: raw.idle_timeout.0,
            user_expiry: raw.user_expiry.0,
        })
    }
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
