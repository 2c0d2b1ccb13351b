//! The settings table: every variable this program reads, its built-in default and its meaning,
//! in the README's order (a test in the parent module keeps the two in step).

/// One configurable variable: its name, built-in default and one-line meaning.
pub struct Var {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// Every variable this program reads, in the order the README documents them.
pub const VARS: &[Var] = &[
    Var {
        name: "REDIS_HOST",
        default: Some("localhost"),
        help: "Redis host",
    },
    Var {
        name: "REDIS_PORT",
        default: Some("6379"),
        help: "Redis port",
    },
    Var {
        name: "REDIS_DB",
        default: Some("0"),
        help: "Redis database index",
    },
    Var {
        name: "REDIS_PASSWORD",
        default: None,
        help: "Redis AUTH password (never logged)",
    },
    Var {
        name: "REDIS_URL",
        default: None,
        help: "full redis:// URL; overrides host, port, db and password",
    },
    Var {
        name: "REDIS_EXPIRY",
        default: Some("30"),
        help: "seconds of TTL the clean routine puts on finished-game keys",
    },
    Var {
        name: "WORKER_CHANNEL",
        default: Some("redis.lib.server.lobby"),
        help: "lobby channel; worker channels are <WORKER_CHANNEL>-<worker id>",
    },
    Var {
        name: "CLEAN_ROUTINE",
        default: Some("true"),
        help: "worker also expires a game's keys after writing its files",
    },
    Var {
        name: "LOGGER_MODULE",
        default: Some("default"),
        help: "default: log to stderr only; redis: also publish lifecycle records",
    },
    Var {
        name: "LOG_LEVEL",
        default: Some("INFO"),
        help: "TRACE, DEBUG, INFO, WARNING/WARN, ERROR, CRITICAL",
    },
    Var {
        name: "WEBSOCKET_HOST",
        default: Some("localhost"),
        help: "server bind address / player target host",
    },
    Var {
        name: "WEBSOCKET_PORT",
        default: Some("5678"),
        help: "server port / player target port",
    },
    Var {
        name: "SERVER_SLEEP",
        default: Some("0"),
        help: "pacing pause in seconds before each turn is announced",
    },
    Var {
        name: "LOBBY_TIMEOUT",
        default: Some("5"),
        help: "seconds a lobby waits to fill before it times out",
    },
    Var {
        name: "TURN_TIMEOUT",
        default: Some("10"),
        help: "seconds a player may take to act before it is eliminated",
    },
    Var {
        name: "MAX_TURNS",
        default: Some("1000"),
        help: "turn cap: a game always ends",
    },
    Var {
        name: "CLIENT_GAMES",
        default: Some("10"),
        help: "games a player bot plays (-1: no limit)",
    },
    Var {
        name: "CLIENT_SLEEP",
        default: Some("1"),
        help: "seconds a player waits before retrying after an error",
    },
    Var {
        name: "OUTPUT_DIR",
        default: Some("./data"),
        help: "where workers write Parquet: a folder, file:///path or s3://bucket/prefix",
    },
    Var {
        name: "HOSTNAME",
        default: None,
        help: "worker id used in its channel and file names (default: 12 random hex chars)",
    },
    Var {
        name: "ACK_TIMEOUT",
        default: Some("30"),
        help: "seconds a routed record may stay unacknowledged before it is routed again",
    },
    Var {
        name: "MAX_DELIVERIES",
        default: Some("5"),
        help: "routings of one record before it goes to the dead-letter stream",
    },
    Var {
        name: "LOG_RETENTION",
        default: Some("3600"),
        help: "seconds acknowledged records stay in the log stream before they are trimmed",
    },
    Var {
        name: "WRITE_TIMEOUT",
        default: Some("60"),
        help: "seconds a worker may spend writing one game before it gives the game up",
    },
    Var {
        name: "METRICS_ADDR",
        default: None,
        help: "HOST:PORT of a Prometheus metrics endpoint (off when unset)",
    },
    Var {
        name: "MAX_CONNECTIONS",
        default: Some("1024"),
        help: "open WebSocket connections one server process allows; at the cap the longest-idle one makes room",
    },
    Var {
        name: "IDLE_TIMEOUT",
        default: Some("30"),
        help: "seconds the server keeps a socket that owes it a request (not a lobby socket in a game) before closing it",
    },
    Var {
        name: "USER_EXPIRY",
        default: Some("86400"),
        help: "seconds after its last login or find that a user and its token are forgotten",
    },
];
