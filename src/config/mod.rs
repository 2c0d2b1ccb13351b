//! Configuration: every setting of the README's settings table, layered with figment.
//!
//! Precedence, lowest first: built-in default, `--config FILE` (TOML), `.env` in the working
//! directory, the process environment, command-line flags. Every layer is a map from the
//! upper-case variable name to its text; figment merges them and this module parses the winner
//! of each variable once, so a bad value is reported with the variable's name whatever layer it
//! came from, before any network I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;

mod vars;
pub use vars::{Var, VARS};

/// Largest MAX_CONNECTIONS accepted: tokio's semaphore holds at most about 2^61 permits, and
/// a cap beyond any process's file descriptors is a typo.
const MAX_CONNECTIONS_LIMIT: usize = 1 << 24;

/// A setting that could not be parsed. The binary exits with code 2 on it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

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
    pub output_dir: crate::pipeline::sink::OutputDir,
    pub worker_id: String,
    pub ack_timeout: Duration,
    pub max_deliveries: u32,
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

/// The raw text of each layer, before merging.
#[derive(Default)]
pub struct Layers {
    /// `--config FILE`, a TOML file whose keys are the variable names (either case).
    pub config_file: Option<PathBuf>,
    /// Contents of `.env` in the working directory.
    pub dotenv: BTreeMap<String, String>,
    /// The process environment, only the variables of [`VARS`].
    pub env: BTreeMap<String, String>,
    /// Settings given as command-line flags.
    pub flags: BTreeMap<String, String>,
}

impl Layers {
    /// The layers of a real process: `.env` of the working directory and the environment.
    pub fn from_process(
        config_file: Option<PathBuf>,
        flags: BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        Ok(Layers {
            config_file,
            dotenv: read_dotenv(Path::new(".env"))?,
            env: std::env::vars()
                .filter(|(k, _)| VARS.iter().any(|v| v.name == k))
                .collect(),
            flags,
        })
    }
}

/// Reads a `.env` file into a map; a missing file is an empty map.
pub fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let mut map = BTreeMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        if VARS.iter().any(|var| var.name == k) {
            map.insert(k, v);
        }
    }
    Ok(map)
}

impl Settings {
    /// Merges the layers in precedence order and parses every variable.
    pub fn from_layers(layers: Layers) -> Result<Self, ConfigError> {
        let defaults: BTreeMap<String, String> = VARS
            .iter()
            .filter_map(|v| v.default.map(|d| (v.name.to_string(), d.to_string())))
            .collect();
        let mut figment = Figment::new().merge(Serialized::defaults(defaults));
        if let Some(path) = &layers.config_file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(UpperKeys(Toml::file(path)));
        }
        let figment = figment
            .merge(Serialized::defaults(layers.dotenv))
            .merge(Serialized::defaults(layers.env))
            .merge(Serialized::defaults(layers.flags));
        let merged: BTreeMap<String, Value> = figment
            .extract()
            .map_err(|e| ConfigError(format!("cannot merge configuration: {e}")))?;
        let raw: BTreeMap<String, String> = merged
            .into_iter()
            .filter_map(|(k, v)| value_text(&v).map(|t| (k, t)))
            .collect();
        Raw(raw).parse()
    }

    /// The settings as the README lists them, password masked, for a DEBUG log line.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Makes TOML keys case-insensitive by upper-casing them, so `redis_port = 1` works too.
struct UpperKeys<P>(P);

impl<P: figment::Provider> figment::Provider for UpperKeys<P> {
    fn metadata(&self) -> figment::Metadata {
        self.0.metadata()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            *dict = std::mem::take(dict)
                .into_iter()
                .map(|(k, v)| (k.to_uppercase(), v))
                .collect();
        }
        Ok(data)
    }
}

/// A scalar value as text; tables and arrays are not settings.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(_, s) => Some(s.clone()),
        Value::Char(_, c) => Some(c.to_string()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(_, n) => n
            .to_u128()
            .map(|v| v.to_string())
            .or_else(|| n.to_i128().map(|v| v.to_string()))
            .or_else(|| n.to_f64().map(|v| v.to_string())),
        Value::Empty(_, _) => Some(String::new()),
        Value::Dict(..) | Value::Array(..) => None,
    }
}

/// The merged text of every variable, parsed one at a time with the variable's name in errors.
struct Raw(BTreeMap<String, String>);

impl Raw {
    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.text(name)
            .ok_or_else(|| ConfigError(format!("{name} must not be empty")))
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str, expected: &str) -> Result<T, ConfigError> {
        let text = self.required(name)?;
        text.parse().map_err(|_| {
            ConfigError(format!(
                "{name}: invalid value {text:?}, expected {expected}"
            ))
        })
    }

    fn seconds(&self, name: &str) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parsed(name, "a number of seconds")?;
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(ConfigError(format!(
                "{name}: invalid value {secs}, expected a number of seconds from 0"
            )));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
        let text = self.required(name)?;
        parse_bool(text).ok_or_else(|| {
            ConfigError(format!(
                "{name}: invalid value {text:?}, expected true/false/1/0/yes/no"
            ))
        })
    }

    fn parse(self) -> Result<Settings, ConfigError> {
        let redis = RedisSettings {
            host: self.required("REDIS_HOST")?.to_string(),
            port: self.parsed("REDIS_PORT", "a port number 0-65535")?,
            db: self.parsed("REDIS_DB", "a database index")?,
            password: self.text("REDIS_PASSWORD").map(str::to_string),
            url: self.text("REDIS_URL").map(str::to_string),
        };
        if redis.db < 0 {
            return Err(ConfigError(format!(
                "REDIS_DB: invalid value {}, expected a database index from 0",
                redis.db
            )));
        }
        if let Some(url) = &redis.url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError(format!(
                    "REDIS_URL: invalid value {:?}, expected a redis:// or rediss:// URL",
                    redact_url(url)
                )));
            }
        }
        let worker_channel = self.required("WORKER_CHANNEL")?.to_string();
        let logger_module = match self
            .required("LOGGER_MODULE")?
            .to_ascii_lowercase()
            .as_str()
        {
            "default" => LoggerModule::Default,
            "redis" => LoggerModule::Redis,
            other => {
                return Err(ConfigError(format!(
                    "LOGGER_MODULE: invalid value {other:?}, expected default or redis"
                )))
            }
        };
        let log_level = parse_level(self.required("LOG_LEVEL")?).ok_or_else(|| {
            ConfigError(format!(
                "LOG_LEVEL: invalid value {:?}, expected TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL",
                self.text("LOG_LEVEL").unwrap_or_default()
            ))
        })?;
        let client_games: i64 = self.parsed("CLIENT_GAMES", "a number of games, or -1")?;
        let client_games = match client_games {
            -1 => None,
            n if n >= 0 => Some(n as u64),
            n => {
                return Err(ConfigError(format!(
                    "CLIENT_GAMES: invalid value {n}, expected a number of games, or -1"
                )))
            }
        };
        let worker_id = match self.text("HOSTNAME") {
            Some(id) => {
                validate_worker_id(id).map_err(|why| ConfigError(format!("HOSTNAME: {why}")))?;
                id.to_string()
            }
            None => random_worker_id(),
        };
        let metrics_addr = match self.text("METRICS_ADDR") {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| {
                ConfigError(format!(
                    "METRICS_ADDR: invalid value {text:?}, expected HOST:PORT such as 127.0.0.1:9100"
                ))
            })?),
        };
        let max_turns: u32 = self.parsed("MAX_TURNS", "a positive number of turns")?;
        let max_deliveries: u32 = self.parsed("MAX_DELIVERIES", "a positive number")?;
        if max_deliveries == 0 {
            return Err(ConfigError(
                "MAX_DELIVERIES: invalid value 0, expected a positive number".into(),
            ));
        }
        let write_timeout = self.seconds("WRITE_TIMEOUT")?;
        if write_timeout.is_zero() {
            return Err(ConfigError(
                "WRITE_TIMEOUT: invalid value 0, expected a positive number of seconds".into(),
            ));
        }
        if max_turns == 0 {
            return Err(ConfigError(
                "MAX_TURNS: invalid value 0, expected a positive number of turns".into(),
            ));
        }
        let max_connections: usize =
            self.parsed("MAX_CONNECTIONS", "a positive number of connections")?;
        if max_connections == 0 || max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ConfigError(format!(
                "MAX_CONNECTIONS: invalid value {max_connections}, expected a number of connections from 1 to {MAX_CONNECTIONS_LIMIT}"
            )));
        }
        let idle_timeout = self.seconds("IDLE_TIMEOUT")?;
        if idle_timeout.is_zero() {
            return Err(ConfigError(
                "IDLE_TIMEOUT: invalid value 0, expected a positive number of seconds".into(),
            ));
        }
        Ok(Settings {
            redis,
            redis_expiry: self.seconds("REDIS_EXPIRY")?,
            worker_channel,
            clean_routine: self.boolean("CLEAN_ROUTINE")?,
            logger_module,
            log_level,
            websocket_host: self.required("WEBSOCKET_HOST")?.to_string(),
            websocket_port: self.parsed("WEBSOCKET_PORT", "a port number 0-65535")?,
            server_sleep: self.seconds("SERVER_SLEEP")?,
            lobby_timeout: self.seconds("LOBBY_TIMEOUT")?,
            turn_timeout: self.seconds("TURN_TIMEOUT")?,
            max_turns,
            client_games,
            client_sleep: self.seconds("CLIENT_SLEEP")?,
            output_dir: crate::pipeline::sink::OutputDir::parse(self.required("OUTPUT_DIR")?)
                .map_err(|why| ConfigError(format!("OUTPUT_DIR: {why}")))?,
            worker_id,
            ack_timeout: self.seconds("ACK_TIMEOUT")?,
            max_deliveries,
            log_retention: self.seconds("LOG_RETENTION")?,
            write_timeout,
            metrics_addr,
            max_connections,
            idle_timeout,
            user_expiry: self.seconds("USER_EXPIRY")?,
        })
    }
}

/// true/false/1/0/yes/no in any case (the original shipped `False`).
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
mod tests {
    use super::*;

    fn layers(env: &[(&str, &str)]) -> Layers {
        Layers {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Layers::default()
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::default();
        assert_eq!(s.redis.host, "localhost");
        assert_eq!(s.redis.port, 6379);
        assert_eq!(s.worker_channel, "redis.lib.server.lobby");
        assert!(s.clean_routine);
        assert_eq!(s.logger_module, LoggerModule::Default);
        assert_eq!(s.websocket_port, 5678);
        assert_eq!(s.lobby_timeout, Duration::from_secs(5));
        assert_eq!(s.turn_timeout, Duration::from_secs(10));
        assert_eq!(s.max_turns, 1000);
        assert_eq!(s.client_games, Some(10));
        assert_eq!(
            s.output_dir,
            crate::pipeline::sink::OutputDir::Folder(PathBuf::from("./data"))
        );
        assert_eq!(s.ack_timeout, Duration::from_secs(30));
        assert_eq!(s.worker_id.len(), 12);
        assert!(s.metrics_addr.is_none());
        assert_eq!(s.max_connections, 1024);
        assert_eq!(s.idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn connection_limits_must_be_positive() {
        let s = Settings::from_layers(layers(&[
            ("MAX_CONNECTIONS", "50"),
            ("IDLE_TIMEOUT", "1.5"),
        ]))
        .unwrap();
        assert_eq!(s.max_connections, 50);
        assert_eq!(s.idle_timeout, Duration::from_millis(1500));
        for (name, bad) in [
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "-1"),
            ("MAX_CONNECTIONS", "many"),
            ("MAX_CONNECTIONS", "99999999999"),
            ("IDLE_TIMEOUT", "0"),
            ("IDLE_TIMEOUT", "-1"),
            ("IDLE_TIMEOUT", "soon"),
        ] {
            let err = Settings::from_layers(layers(&[(name, bad)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn the_readme_settings_table_lists_every_variable_with_its_default() {
        let readme = include_str!("../../README.md");
        for var in VARS {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| {} |", var.name)))
                .unwrap_or_else(|| panic!("README settings table lacks {}", var.name));
            if let Some(default) = var.default {
                assert!(
                    row.starts_with(&format!("| {} | {default} |", var.name)),
                    "README gives another default for {}: {row}",
                    var.name
                );
            }
        }
    }

    #[test]
    fn bad_port_names_the_variable() {
        let err = Settings::from_layers(layers(&[("REDIS_PORT", "abc")])).unwrap_err();
        assert!(err.to_string().contains("REDIS_PORT"), "{err}");
    }

    #[test]
    fn booleans_accept_python_spellings() {
        for (text, want) in [("False", false), ("TRUE", true), ("1", true), ("no", false)] {
            let s = Settings::from_layers(layers(&[("CLEAN_ROUTINE", text)])).unwrap();
            assert_eq!(s.clean_routine, want, "{text}");
        }
        assert!(Settings::from_layers(layers(&[("CLEAN_ROUTINE", "maybe")])).is_err());
    }

    #[test]
    fn levels_map_python_names() {
        assert_eq!(parse_level("warning"), Some(tracing::Level::WARN));
        assert_eq!(parse_level("CRITICAL"), Some(tracing::Level::ERROR));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn precedence_is_file_dotenv_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "redis_host = \"from-file\"\nREDIS_PORT = 1111\nREDIS_DB = 3\nMAX_TURNS = 7\n",
        )
        .unwrap();
        let mut l = layers(&[("REDIS_PORT", "3333"), ("MAX_TURNS", "9")]);
        l.config_file = Some(file);
        l.dotenv.insert("REDIS_PORT".into(), "2222".into());
        l.dotenv.insert("REDIS_DB".into(), "4".into());
        l.flags.insert("MAX_TURNS".into(), "11".into());
        let s = Settings::from_layers(l).unwrap();
        assert_eq!(s.redis.host, "from-file");
        assert_eq!(s.redis.db, 4);
        assert_eq!(s.redis.port, 3333);
        assert_eq!(s.max_turns, 11);
    }

    #[test]
    fn client_games_minus_one_is_unlimited() {
        let s = Settings::from_layers(layers(&[("CLIENT_GAMES", "-1")])).unwrap();
        assert_eq!(s.client_games, None);
        assert!(Settings::from_layers(layers(&[("CLIENT_GAMES", "-2")])).is_err());
    }

    #[test]
    fn password_is_masked_in_the_description() {
        let s = Settings::from_layers(layers(&[
            ("REDIS_PASSWORD", "hunter2"),
            ("REDIS_URL", "redis://:hunter2@example:6379/0"),
        ]))
        .unwrap();
        assert!(!s.describe().contains("hunter2"), "{}", s.describe());
        assert!(!s.redis.display_addr().contains("hunter2"));
    }

    #[test]
    fn worker_ids_are_restricted() {
        assert!(validate_worker_id("worker-1.a_b").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(validate_worker_id(bad).is_err(), "{bad}");
        }
    }
}
