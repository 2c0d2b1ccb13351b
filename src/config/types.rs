//! The value types of the settings, each with its own `Deserialize`.
//!
//! Every layer but the TOML file hands figment text, and the TOML file may hold a number, a
//! boolean or a string for the same setting (`REDIS_PORT = 6379` or `REDIS_PORT = "6379"`). So
//! each type takes any scalar as its text and parses that text with the setting's own rules:
//! a password or host name of digits stays a string, `False` is a boolean, `-1` games is no
//! limit. An error says what was expected; figment adds which key and which layer.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{
    parse_bool, parse_level, redact_url, validate_worker_id, LoggerModule, NodeAddr, OutputDir,
};

/// Any scalar as text (trimmed); tables and arrays are not settings.
struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.trim().to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

/// A setting type read from its text.
trait FromText: Sized {
    fn from_text(text: &str) -> Result<Self, String>;
}

/// `Deserialize` for each [`FromText`] type: the value's text, then the type's own parser.
macro_rules! deserialize_from_text {
    ($($ty:ty),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = d.deserialize_any(TextVisitor)?;
                <$ty as FromText>::from_text(&text).map_err(de::Error::custom)
            }
        }
    )*};
}

deserialize_from_text!(
    Text,
    OptText,
    DbIndex,
    RedisUrl,
    WorkerId,
    Seconds,
    PositiveSeconds,
    AckTimeout,
    ConnectionCap,
    OptSeconds,
    Switch,
    LogLevel,
    Module,
    ClientGames,
    OutDir,
    OptAddr,
    ClusterNodes,
    Replicas,
    WaitMs,
    ShardCount
);

impl<'de, T: WholeKind> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(TextVisitor)?;
        Whole::from_text(&text).map_err(de::Error::custom)
    }
}

impl<'de, T: WholeKind + PartialEq + Default> Deserialize<'de> for Positive<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(TextVisitor)?;
        Positive::from_text(&text).map_err(de::Error::custom)
    }
}

fn not_empty(text: &str) -> Result<&str, String> {
    if text.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(text)
    }
}

/// Text that must not be empty (a host name, a channel name).
#[derive(Debug)]
pub struct Text(pub String);

impl FromText for Text {
    fn from_text(text: &str) -> Result<Self, String> {
        not_empty(text).map(|t| Text(t.to_string()))
    }
}

/// Text that may be unset; empty is unset, so an empty variable overrides a lower layer's value.
#[derive(Debug)]
pub struct OptText(pub Option<String>);

impl FromText for OptText {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(OptText((!text.is_empty()).then(|| text.to_string())))
    }
}

/// REDIS_DB: a database index, from 0.
#[derive(Debug)]
pub struct DbIndex(pub i64);

impl FromText for DbIndex {
    fn from_text(text: &str) -> Result<Self, String> {
        match not_empty(text)?.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(DbIndex(n)),
            _ => Err(format!(
                "invalid value {text:?}, expected a database index from 0"
            )),
        }
    }
}

/// REDIS_URL: a `redis://` or `rediss://` URL, or unset when empty. An error shows the URL
/// without its password.
#[derive(Debug)]
pub struct RedisUrl(pub Option<String>);

impl FromText for RedisUrl {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(RedisUrl(None));
        }
        if !(text.starts_with("redis://") || text.starts_with("rediss://")) {
            return Err(format!(
                "invalid value {:?}, expected a redis:// or rediss:// URL",
                redact_url(text)
            ));
        }
        Ok(RedisUrl(Some(text.to_string())))
    }
}

/// HOSTNAME: a worker id ([`validate_worker_id`]), or unset when empty.
#[derive(Debug)]
pub struct WorkerId(pub Option<String>);

impl FromText for WorkerId {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(WorkerId(None));
        }
        validate_worker_id(text)?;
        Ok(WorkerId(Some(text.to_string())))
    }
}

/// What a whole number setting is called in an error.
pub trait WholeKind: FromStr {
    const EXPECTED: &'static str;
}

impl WholeKind for u16 {
    const EXPECTED: &'static str = "a port number 0-65535";
}

impl WholeKind for u32 {
    const EXPECTED: &'static str = "a positive whole number";
}

impl WholeKind for usize {
    const EXPECTED: &'static str = "a positive whole number";
}

/// A whole number (a port, a count).
#[derive(Debug)]
pub struct Whole<T>(pub T);

impl<T: WholeKind> Whole<T> {
    fn from_text(text: &str) -> Result<Self, String> {
        not_empty(text)?
            .parse()
            .map(Whole)
            .map_err(|_| format!("invalid value {text:?}, expected {}", T::EXPECTED))
    }
}

/// A whole number above zero (a count of turns, of deliveries).
#[derive(Debug)]
pub struct Positive<T>(pub T);

impl<T: WholeKind + PartialEq + Default> Positive<T> {
    fn from_text(text: &str) -> Result<Self, String> {
        let Whole(n) = Whole::<T>::from_text(text)?;
        if n == T::default() {
            return Err(format!(
                "invalid value {text:?}, expected a positive number"
            ));
        }
        Ok(Positive(n))
    }
}

/// MAX_CONNECTIONS: from 1 to [`MAX_CONNECTIONS_LIMIT`].
#[derive(Debug)]
pub struct ConnectionCap(pub usize);

/// Largest MAX_CONNECTIONS accepted: tokio's semaphore holds at most about 2^61 permits, and
/// a cap beyond any process's file descriptors is a typo.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 24;

impl FromText for ConnectionCap {
    fn from_text(text: &str) -> Result<Self, String> {
        match text.parse::<usize>() {
            Ok(n) if (1..=MAX_CONNECTIONS_LIMIT).contains(&n) => Ok(ConnectionCap(n)),
            _ => Err(format!(
                "invalid value {text:?}, expected a number of connections from 1 to \
                 {MAX_CONNECTIONS_LIMIT}"
            )),
        }
    }
}

/// A number of seconds, from 0, fractions allowed.
#[derive(Debug)]
pub struct Seconds(pub Duration);

impl FromText for Seconds {
    fn from_text(text: &str) -> Result<Self, String> {
        let expected = || format!("invalid value {text:?}, expected a number of seconds from 0");
        let secs: f64 = not_empty(text)?.parse().map_err(|_| expected())?;
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(expected());
        }
        Ok(Seconds(Duration::from_secs_f64(secs)))
    }
}

/// A number of seconds above zero.
#[derive(Debug)]
pub struct PositiveSeconds(pub Duration);

impl FromText for PositiveSeconds {
    fn from_text(text: &str) -> Result<Self, String> {
        let Seconds(d) = Seconds::from_text(text)?;
        if d.is_zero() {
            return Err(format!(
                "invalid value {text:?}, expected a positive number of seconds"
            ));
        }
        Ok(PositiveSeconds(d))
    }
}

/// A number of seconds above zero, or unset when empty (the setting then follows another).
#[derive(Debug)]
pub struct OptSeconds(pub Option<Duration>);

impl FromText for OptSeconds {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(OptSeconds(None));
        }
        PositiveSeconds::from_text(text).map(|PositiveSeconds(d)| OptSeconds(Some(d)))
    }
}

/// The shortest ACK_TIMEOUT accepted. Below it the fanouts claim every pending entry back on
/// each sweep and dead-letter it within a second, before any worker could have written it.
pub const MIN_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// ACK_TIMEOUT: at least [`MIN_ACK_TIMEOUT`].
#[derive(Debug)]
pub struct AckTimeout(pub Duration);

impl FromText for AckTimeout {
    fn from_text(text: &str) -> Result<Self, String> {
        let Seconds(d) = Seconds::from_text(text)?;
        if d < MIN_ACK_TIMEOUT {
            return Err(format!(
                "invalid value {text:?}, expected at least {} second(s): a routed record \
                 needs time to be written before it is routed again",
                MIN_ACK_TIMEOUT.as_secs()
            ));
        }
        Ok(AckTimeout(d))
    }
}

/// A boolean: true/false/1/0/yes/no/on/off in any case (Python-era env files say `False`).
#[derive(Debug)]
pub struct Switch(pub bool);

impl FromText for Switch {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_bool(not_empty(text)?)
            .map(Switch)
            .ok_or_else(|| format!("invalid value {text:?}, expected true/false/1/0/yes/no/on/off"))
    }
}

/// LOG_LEVEL, Python's WARNING and CRITICAL included.
#[derive(Debug)]
pub struct LogLevel(pub tracing::Level);

impl FromText for LogLevel {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_level(not_empty(text)?).map(LogLevel).ok_or_else(|| {
            format!(
                "invalid value {text:?}, expected TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        })
    }
}

/// LOGGER_MODULE.
#[derive(Debug)]
pub struct Module(pub LoggerModule);

impl FromText for Module {
    fn from_text(text: &str) -> Result<Self, String> {
        match not_empty(text)?.to_ascii_lowercase().as_str() {
            "default" => Ok(Module(LoggerModule::Default)),
            "redis" => Ok(Module(LoggerModule::Redis)),
            _ => Err(format!("invalid value {text:?}, expected default or redis")),
        }
    }
}

/// CLIENT_GAMES: a number of games, or -1 for no limit (`None`).
#[derive(Debug)]
pub struct ClientGames(pub Option<u64>);

impl FromText for ClientGames {
    fn from_text(text: &str) -> Result<Self, String> {
        match not_empty(text)?.parse::<i64>() {
            Ok(-1) => Ok(ClientGames(None)),
            Ok(n) if n >= 0 => Ok(ClientGames(Some(n as u64))),
            _ => Err(format!(
                "invalid value {text:?}, expected a number of games, or -1"
            )),
        }
    }
}

/// OUTPUT_DIR: a folder or an object store URL.
#[derive(Debug)]
pub struct OutDir(pub OutputDir);

impl FromText for OutDir {
    fn from_text(text: &str) -> Result<Self, String> {
        OutputDir::parse(not_empty(text)?).map(OutDir)
    }
}

/// METRICS_ADDR: `HOST:PORT`, or unset when empty.
#[derive(Debug)]
pub struct OptAddr(pub Option<SocketAddr>);

impl FromText for OptAddr {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(OptAddr(None));
        }
        text.parse().map(|a| OptAddr(Some(a))).map_err(|_| {
            format!("invalid value {text:?}, expected HOST:PORT such as 127.0.0.1:9100")
        })
    }
}

/// REDIS_CLUSTER_NODES: comma-separated `host:port` seeds of a Redis Cluster, or none (a single
/// Redis) when empty.
#[derive(Debug)]
pub struct ClusterNodes(pub Vec<NodeAddr>);

impl FromText for ClusterNodes {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(ClusterNodes(Vec::new()));
        }
        text.split(',')
            .map(|seed| NodeAddr::parse(seed.trim()))
            .collect::<Option<Vec<_>>>()
            .map(ClusterNodes)
            .ok_or_else(|| {
                format!(
                    "invalid value {text:?}, expected comma-separated HOST:PORT seeds such as \
                     10.0.0.1:7000,10.0.0.2:7000"
                )
            })
    }
}

/// WAIT_REPLICAS: how many replicas must hold a written game's done marker before its record is
/// acknowledged; 0 is off.
#[derive(Debug)]
pub struct Replicas(pub u32);

impl FromText for Replicas {
    fn from_text(text: &str) -> Result<Self, String> {
        not_empty(text)?
            .parse()
            .map(Replicas)
            .map_err(|_| format!("invalid value {text:?}, expected a number of replicas from 0"))
    }
}

/// The longest WAIT_MS accepted, whatever the lease (see `super::wait_ms`).
pub const MAX_WAIT_MS: u64 = 60_000;

/// WAIT_MS: whole milliseconds from 1 to [`MAX_WAIT_MS`]. WAIT 0 would block for ever.
#[derive(Debug)]
pub struct WaitMs(pub Duration);

impl FromText for WaitMs {
    fn from_text(text: &str) -> Result<Self, String> {
        match not_empty(text)?.parse::<u64>() {
            Ok(ms) if (1..=MAX_WAIT_MS).contains(&ms) => Ok(WaitMs(Duration::from_millis(ms))),
            _ => Err(format!(
                "invalid value {text:?}, expected milliseconds from 1 to {MAX_WAIT_MS}"
            )),
        }
    }
}

/// The most shards REDIS_SHARDS accepts: far more than any cluster has primaries, and every
/// shard costs each sweep one round trip.
pub const MAX_SHARDS: u16 = 1024;

/// REDIS_SHARDS: from 1 to [`MAX_SHARDS`], or unset when empty (the single layout on one
/// Redis, 4 per primary on a cluster).
#[derive(Debug)]
pub struct ShardCount(pub Option<u16>);

impl FromText for ShardCount {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(ShardCount(None));
        }
        match text.parse::<u16>() {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(ShardCount(Some(n))),
            _ => Err(format!(
                "invalid value {text:?}, expected a number of shards from 1 to {MAX_SHARDS}"
            )),
        }
    }
}
