//! The one declaration of every setting: its variable, flag, value name, help heading, the
//! commands that take its flag, default, help text and value type (which carries its checks).
//! From it come [`VARS`] (which the command line, `--help`, the built-in defaults layer and the
//! table in docs/settings.md are made from), `RawSettings`, the typed struct figment extracts the
//! merged layers into, and [`Settings`], whose plain fields are copied from `RawSettings`.

// The help texts are also the doc comments of `Settings`, where <lobby> is plain text.
#![allow(rustdoc::invalid_html_tags)]

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::types::{
    AckTimeout, ClientGames, ClusterNodes, ConnectionCap, DbIndex, LogLevel, Module, OptAddr,
    OptSeconds, OptText, OutDir, Positive, PositiveSeconds, RedisUrl, Replicas, Seconds,
    ShardCount, Switch, Text, WaitMs, Whole, WorkerId,
};
use super::{LoggerModule, OutputDir, RedisSettings};

/// One setting as the command line, the layers and docs/settings.md see it.
#[derive(Debug)]
pub struct Var {
    /// The environment variable, also the key in `.env` and in the `--config` file.
    pub name: &'static str,
    /// The long flag, without its dashes.
    pub flag: &'static str,
    /// The placeholder `--help` shows after the flag.
    pub value_name: &'static str,
    /// The `--help` section the flag is listed under.
    pub heading: &'static str,
    /// The commands whose flags include this one, `demo` and `bench` aside ([`Var::concerns`]).
    pub commands: &'static [&'static str],
    /// The built-in default; `None`: unset unless a layer sets it.
    pub default: Option<&'static str>,
    /// The default as `--help` and docs/settings.md show it (`(none)` where there is no value).
    pub default_text: &'static str,
    /// One line of meaning.
    pub help: &'static str,
}

impl Var {
    /// The help line of its flag: the meaning, then where else it comes from and its default.
    pub fn help_line(&self) -> String {
        format!(
            "{} [env: {}] [default: {}]",
            self.help, self.name, self.default_text
        )
    }

    /// Whether `command` takes this setting as a flag. `demo` and `bench` run the roles, so they
    /// take every setting. The environment, `.env` and `--config` are not restricted: one
    /// compose file sets one environment for every service.
    pub fn concerns(&self, command: &str) -> bool {
        RUN_THE_ROLES.contains(&command) || self.commands.contains(&command)
    }

    /// The declared setting of this variable name.
    pub fn find(name: &str) -> Option<&'static Var> {
        VARS.iter().find(|v| v.name == name)
    }
}

/// Every subcommand but `demo` and `bench`.
pub const COMMANDS: &[&str] = &[
    "build-db", "clean", "server", "player", "worker", "fanout", "report", "status",
];

/// The subcommands that run the roles (in one process, or to measure them): every setting
/// concerns them.
pub const RUN_THE_ROLES: &[&str] = &["demo", "bench"];

/// The commands that talk to Redis, so take its address and credentials.
const REDIS_CLIENTS: &[&str] = &["build-db", "clean", "server", "worker", "fanout", "status"];

/// `default: "x"` is a built-in value; `unset: "(none)"` only names the absence of one.
macro_rules! var_default {
    (default, $text:literal) => {
        Some($text)
    };
    (unset, $text:literal) => {
        None
    };
}

/// The identity. The copy of a plain field names the field's type through it: a macro repeats
/// the copy only for the entries that declare a type (`=> Type`), and only over what it names.
fn plain<T>(value: T) -> T {
    value
}

/// Declares every setting once: builds [`VARS`], `RawSettings` and [`Settings`] from one list.
/// `field: ValueType => Type` is a plain setting: `Settings` has `field: Type`, the value's
/// copy. The fields under `computed` are made in mod.rs from more than one value, or with a
/// default that is no text.
macro_rules! settings {
    (
        computed {$(
            $(#[$doc:meta])*
            $computed:ident: $computed_ty:ty,
        )*}
        $(
            $field:ident: $ty:ty $(=> $plain:ty)? {
                var: $var:literal,
                flag: $flag:literal,
                value: $value:literal,
                heading: $heading:literal,
                commands: $commands:expr,
                $kind:ident: $default:literal,
                help: $help:literal $(,)?
            }
        )*
    ) => {
        /// Every setting, in the order docs/settings.md lists them.
        pub const VARS: &[Var] = &[$(Var {
            name: $var,
            flag: $flag,
            value_name: $value,
            heading: $heading,
            commands: $commands,
            default: var_default!($kind, $default),
            default_text: $default,
            help: $help,
        }),*];

        /// Every setting with its type, as figment extracts the merged layers. Every key is
        /// present: the defaults layer holds an empty text for a setting without a default.
        #[derive(Debug, Deserialize)]
        pub(super) struct RawSettings {
            $(#[serde(rename = $var)] pub $field: $ty,)*
        }

        /// The effective configuration shared by every role.
        #[derive(Clone, Debug)]
        pub struct Settings {
            $($(#[$doc])* pub $computed: $computed_ty,)*
            $($(#[doc = $help] pub $field: $plain,)?)*
        }

        /// The fields of [`Settings`] that are not the copy of one value.
        pub(super) struct Computed {
            $(pub $computed: $computed_ty,)*
        }

        impl Settings {
            /// The computed fields, and every plain one copied from its value.
            pub(super) fn assemble(raw: RawSettings, computed: Computed) -> Settings {
                Settings {
                    $($computed: computed.$computed,)*
                    $($($field: plain::<$plain>(raw.$field.0),)?)*
                }
            }
        }
    };
}

settings! {
    computed {
        /// Where Redis lives and how to log in: REDIS_HOST, REDIS_PORT, REDIS_DB,
        /// REDIS_PASSWORD, REDIS_URL and REDIS_CLUSTER_NODES.
        redis: RedisSettings,
        /// HOSTNAME, or a random id when unset.
        worker_id: String,
        /// WRITE_TIMEOUT, below ACK_TIMEOUT; half of it when unset.
        write_timeout: Duration,
        /// WAIT_MS, below the worker's claim lease ([`super::lease_for`] ACK_TIMEOUT).
        wait_ms: Duration,
    }
    redis_host: Text {
        var: "REDIS_HOST", flag: "redis-host", value: "HOST", heading: "Redis",
        commands: REDIS_CLIENTS,
        default: "localhost", help: "Redis host",
    }
    redis_port: Whole<u16> {
        var: "REDIS_PORT", flag: "redis-port", value: "PORT", heading: "Redis",
        commands: REDIS_CLIENTS,
        default: "6379", help: "Redis port",
    }
    redis_db: DbIndex {
        var: "REDIS_DB", flag: "redis-db", value: "N", heading: "Redis",
        commands: REDIS_CLIENTS,
        default: "0", help: "Redis database index",
    }
    redis_password: OptText {
        var: "REDIS_PASSWORD", flag: "redis-password", value: "PASSWORD", heading: "Redis",
        commands: REDIS_CLIENTS,
        unset: "(none)",
        help: "Redis AUTH password, never logged; prefer the environment variable",
    }
    redis_url: RedisUrl {
        var: "REDIS_URL", flag: "redis-url", value: "URL", heading: "Redis",
        commands: REDIS_CLIENTS,
        unset: "(none)",
        help: "full redis:// or rediss:// URL; overrides host, port, db and password",
    }
    redis_cluster_nodes: ClusterNodes {
        var: "REDIS_CLUSTER_NODES", flag: "redis-cluster-nodes", value: "HOST:PORT,...",
        heading: "Redis", commands: REDIS_CLIENTS,
        unset: "(single Redis)",
        help: "seed nodes of a Redis Cluster, comma-separated; password and TLS still come from \
               REDIS_PASSWORD or REDIS_URL; unset: one Redis at REDIS_HOST:REDIS_PORT",
    }
    redis_shards: ShardCount => Option<u16> {
        var: "REDIS_SHARDS", flag: "redis-shards", value: "N", heading: "Redis",
        commands: REDIS_CLIENTS,
        unset: "single layout; on a cluster 4 per primary",
        help: "shards of the game's keys, each with its own hash tag (1 to 1024); every role on \
               one Redis must agree (stored in superhero:shards); unset: today's key names on \
               one Redis, 4 shards per primary on a cluster",
    }
    redis_expiry: Seconds => Duration {
        var: "REDIS_EXPIRY", flag: "redis-expiry", value: "SECS", heading: "Redis",
        commands: &["server", "worker"],
        default: "30", help: "seconds of TTL the clean routine puts on finished-game keys",
    }
    worker_channel: Text => String {
        var: "WORKER_CHANNEL", flag: "worker-channel", value: "NAME", heading: "Pipeline",
        commands: &["clean", "server", "worker", "fanout", "status"],
        default: "redis.lib.server.lobby",
        help: "lobby channel; worker channels are <WORKER_CHANNEL>-<worker id>",
    }
    clean_routine: Switch => bool {
        var: "CLEAN_ROUTINE", flag: "clean-routine", value: "BOOL", heading: "Pipeline",
        commands: &["server", "worker"],
        default: "true",
        help: "expire a finished game's keys: by the worker after writing its files, or by the \
               server when the game ends if LOGGER_MODULE is default",
    }
    logger_module: Module => LoggerModule {
        var: "LOGGER_MODULE", flag: "logger-module", value: "MODULE", heading: "Pipeline",
        commands: &["server"],
        default: "default",
        help: "default: log to stderr only; redis: also publish lifecycle records",
    }
    log_level: LogLevel => tracing::Level {
        var: "LOG_LEVEL", flag: "log-level", value: "LEVEL", heading: "Settings",
        commands: COMMANDS,
        default: "INFO", help: "TRACE, DEBUG, INFO, WARNING/WARN, ERROR, CRITICAL",
    }
    websocket_host: Text => String {
        var: "WEBSOCKET_HOST", flag: "websocket-host", value: "HOST", heading: "Game",
        commands: &["server", "player"],
        default: "localhost", help: "server bind address / player target host",
    }
    websocket_port: Whole<u16> => u16 {
        var: "WEBSOCKET_PORT", flag: "websocket-port", value: "PORT", heading: "Game",
        commands: &["server", "player"],
        default: "5678", help: "server port / player target port",
    }
    server_sleep: Seconds => Duration {
        var: "SERVER_SLEEP", flag: "server-sleep", value: "SECS", heading: "Game",
        commands: &["server", "player"],
        default: "0", help: "pacing pause in seconds before each turn is announced",
    }
    lobby_timeout: Seconds => Duration {
        var: "LOBBY_TIMEOUT", flag: "lobby-timeout", value: "SECS", heading: "Game",
        commands: &["server", "player"],
        default: "5", help: "seconds a lobby waits to fill before it times out",
    }
    turn_timeout: Seconds => Duration {
        var: "TURN_TIMEOUT", flag: "turn-timeout", value: "SECS", heading: "Game",
        commands: &["server", "player"],
        default: "10", help: "seconds a player may take to act before it is eliminated",
    }
    max_turns: Positive<u32> => u32 {
        var: "MAX_TURNS", flag: "max-turns", value: "N", heading: "Game",
        commands: &["server"],
        default: "1000", help: "turn cap: a game always ends",
    }
    client_games: ClientGames => Option<u64> {
        var: "CLIENT_GAMES", flag: "client-games", value: "N", heading: "Game",
        commands: &["player"],
        default: "10", help: "games a player bot plays (-1: no limit)",
    }
    client_sleep: Seconds => Duration {
        var: "CLIENT_SLEEP", flag: "client-sleep", value: "SECS", heading: "Game",
        commands: &["player"],
        default: "1", help: "seconds a player waits before retrying after an error",
    }
    output_dir: OutDir => OutputDir {
        var: "OUTPUT_DIR", flag: "output-dir", value: "DIR", heading: "Pipeline",
        commands: &["worker", "report"],
        default: "./data",
        help: "where workers write Parquet: a folder, file:///path or s3://bucket/prefix",
    }
    worker_id: WorkerId {
        var: "HOSTNAME", flag: "worker-id", value: "ID", heading: "Pipeline",
        commands: &["worker", "fanout"],
        unset: "12 random hex chars",
        help: "worker id used in its channel and file names; a fanout's consumer id",
    }
    ack_timeout: AckTimeout => Duration {
        var: "ACK_TIMEOUT", flag: "ack-timeout", value: "SECS", heading: "Pipeline",
        commands: &["worker", "fanout"],
        default: "30",
        help: "seconds a routed record may stay unacknowledged before it is routed again",
    }
    max_deliveries: Positive<u32> => u32 {
        var: "MAX_DELIVERIES", flag: "max-deliveries", value: "N", heading: "Pipeline",
        commands: &["worker", "fanout"],
        default: "5", help: "routings of one record before it goes to the dead-letter stream",
    }
    dead_letters_max: Positive<usize> => usize {
        var: "DEAD_LETTERS_MAX", flag: "dead-letters-max", value: "N", heading: "Pipeline",
        commands: &["fanout"],
        default: "10000",
        help: "dead letters kept in <lobby>:dead; the oldest beyond it are dropped and counted",
    }
    log_retention: Seconds => Duration {
        var: "LOG_RETENTION", flag: "log-retention", value: "SECS", heading: "Pipeline",
        commands: &["fanout"],
        default: "3600",
        help: "seconds acknowledged records stay in the log stream before they are trimmed",
    }
    write_timeout: OptSeconds {
        var: "WRITE_TIMEOUT", flag: "write-timeout", value: "SECS", heading: "Pipeline",
        commands: &["worker"],
        unset: "ACK_TIMEOUT / 2",
        help: "seconds a worker may spend writing one game before it gives the delivery up; \
               below ACK_TIMEOUT",
    }
    wait_replicas: Replicas => u32 {
        var: "WAIT_REPLICAS", flag: "wait-replicas", value: "N", heading: "Pipeline",
        commands: &["worker"],
        default: "0",
        help: "replicas that must acknowledge a written game's done marker (Redis WAIT) before \
               its record is acknowledged; 0: no WAIT",
    }
    wait_ms: WaitMs {
        var: "WAIT_MS", flag: "wait-ms", value: "MS", heading: "Pipeline",
        commands: &["worker"],
        default: "100",
        help: "milliseconds WAIT_REPLICAS may take before the record is left for its next \
               delivery; 1 to 60000, and below the claim lease (5 s, or ACK_TIMEOUT / 2 when \
               shorter)",
    }
    metrics_addr: OptAddr => Option<SocketAddr> {
        var: "METRICS_ADDR", flag: "metrics-addr", value: "HOST:PORT", heading: "Pipeline",
        commands: &["server", "worker", "fanout"],
        unset: "(off)", help: "HOST:PORT of a Prometheus metrics endpoint; off when unset",
    }
    max_connections: ConnectionCap => usize {
        var: "MAX_CONNECTIONS", flag: "max-connections", value: "N", heading: "Game",
        commands: &["server"],
        default: "1024",
        help: "open WebSocket connections one server process allows; at the cap the \
               longest-idle one makes room",
    }
    user_expiry: Seconds => Duration {
        var: "USER_EXPIRY", flag: "user-expiry", value: "SECS", heading: "Game",
        commands: &["server"],
        default: "86400",
        help: "seconds after its last login, find, lobby registration or attack that a user and its token are forgotten",
    }
    idle_timeout: PositiveSeconds => Duration {
        var: "IDLE_TIMEOUT", flag: "idle-timeout", value: "SECS", heading: "Game",
        commands: &["server"],
        default: "30",
        help: "seconds the server keeps a socket that owes it a request (not a lobby socket \
               in a game) before closing it",
    }
}
