//! The command line: subcommands and the setting flags every subcommand shares.
//!
//! Setting flags carry no clap default and do not read the environment themselves: a flag that
//! was not given leaves the variable to the lower layers of [`crate::config`], which is what lets
//! `.env` and `--config` work underneath the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Super Hero Combat Simulator and its Redis pub/sub -> Parquet data pipeline.
#[derive(Debug, Parser)]
#[command(name = "superhero", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the hero collection into Redis (`superheros`), replacing the old one atomically.
    BuildDb(BuildDbArgs),
    /// Remove the Redis state of finished games (Timed Out, and Completed once a worker wrote its
    /// output), or with --all every key this project owns. Live games are left alone.
    Clean(CleanArgs),
    /// Run the game server: WebSocket API v1 on WEBSOCKET_HOST:WEBSOCKET_PORT, state in Redis.
    Server,
    /// Run a player bot that plays CLIENT_GAMES games against the server.
    Player(PlayerArgs),
    /// Run a worker: turn each finished game routed to <WORKER_CHANNEL>-<worker id> into Parquet
    /// files under OUTPUT_DIR (worker id: --worker-id or HOSTNAME; WRITE_TIMEOUT, CLEAN_ROUTINE,
    /// REDIS_EXPIRY and METRICS_ADDR apply).
    Worker,
    /// Run the fanout: read the log stream <WORKER_CHANNEL>:log as a consumer group and route each
    /// record to exactly one live worker, with acknowledgements (ACK_TIMEOUT, MAX_DELIVERIES,
    /// LOG_RETENTION and METRICS_ADDR apply).
    Fanout,
    /// Run the whole system in one process: build-db, server, fanout, workers and player bots.
    Demo(DemoArgs),
    /// Measure one stage of the pipeline under load (like redis-benchmark for this project).
    Bench(BenchArgs),
    /// Summarise the Parquet output: games, files per worker, problems, a hero leaderboard.
    Report(ReportArgs),
    /// One look at a running system through Redis: backlog, workers, unacknowledged records, games.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Player bots to run.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub players: usize,
    /// Workers to run.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub workers: usize,
    /// Games each bot plays.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub games: u64,
    /// Players per game, 2 to 8 (default: 2 or 3 at random, per game).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(2..=8))]
    pub participants: Option<u8>,
    /// No progress bars, only warnings and the summary.
    #[arg(long)]
    pub quiet: bool,
    /// Also print the roles' and bots' routine log lines (they always go to the demo's log file).
    #[arg(short, long)]
    pub verbose: bool,
    /// Progress bars: on a terminal only (auto), or always/never (tests, which have no terminal).
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto, hide = true)]
    pub progress: ProgressArg,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `demo --progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub kind: BenchKindArgs,
    /// Print the figures as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchKindArgs {
    /// N synthetic finished games -> one worker: games/s, p50/p99 per game, CPU seconds, peak RSS.
    Etl {
        /// Synthetic games to process.
        #[arg(long, default_value_t = 2000, value_name = "N")]
        games: usize,
        /// Players per game.
        #[arg(long, default_value_t = 3, value_name = "N")]
        players: usize,
        /// Attacks per game (fewer when a game ends earlier).
        #[arg(long, default_value_t = 30, value_name = "N")]
        attacks: usize,
    },
    /// R records as one burst -> fanout -> K workers' channels: records/s, latency, spread, lost.
    Fanout {
        /// Records to publish.
        #[arg(long, default_value_t = 20000, value_name = "N")]
        records: usize,
        /// Worker channels to spread over.
        #[arg(long, default_value_t = 4, value_name = "N")]
        workers: usize,
    },
    /// B bots playing G games each with SERVER_SLEEP=0: games/s, p50/p99 turn latency.
    Game {
        /// Player bots.
        #[arg(long, default_value_t = 10, value_name = "N")]
        bots: usize,
        /// Length of the measured window; bots play until it closes.
        #[arg(long, default_value_t = 10.0, value_name = "SECS")]
        seconds: f64,
        /// Players per game.
        #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u8).range(2..=8))]
        participants: u8,
    },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Exit non-zero when a file cannot be read or a game was written twice.
    #[arg(long)]
    pub strict: bool,
    /// Heroes shown in the leaderboard.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Refresh in place every SECONDS until Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<f64>,
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PlayerArgs {
    /// Log in under this user name (default: a name unique to this process).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Players per game, 2 to 8 (default: 2 or 3 at random, per game).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(2..=8))]
    pub participants: Option<u8>,
}

#[derive(Debug, Args)]
pub struct BuildDbArgs {
    /// A hero collection in the Super Hero API format (JSON array); default: the built-in roster.
    #[arg(long, value_name = "FILE")]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Remove every key this project owns (a fresh slate), the pipeline's keys under
    /// <WORKER_CHANNEL>:* included; other keys in the database survive.
    #[arg(long)]
    pub all: bool,
    /// Also remove Completed games whose output no worker has written yet (no
    /// games:<g>:etl:done); their Parquet files will never be written.
    #[arg(long)]
    pub force: bool,
    /// After cleaning, load the built-in hero roster again.
    #[arg(long)]
    pub rebuild: bool,
    /// Print what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Every setting of the README's settings table as a flag. Each one overrides its environment
/// variable.
#[derive(Debug, Default, Args)]
pub struct SettingsArgs {
    /// TOML file of settings (keys are the variable names); below .env and the environment.
    #[arg(long, global = true, value_name = "FILE", help_heading = "Settings")]
    pub config: Option<PathBuf>,

    /// Redis host [env: REDIS_HOST] [default: localhost]
    #[arg(long, global = true, value_name = "HOST", help_heading = "Redis")]
    pub redis_host: Option<String>,
    /// Redis port [env: REDIS_PORT] [default: 6379]
    #[arg(long, global = true, value_name = "PORT", help_heading = "Redis")]
    pub redis_port: Option<String>,
    /// Redis database index [env: REDIS_DB] [default: 0]
    #[arg(long, global = true, value_name = "N", help_heading = "Redis")]
    pub redis_db: Option<String>,
    /// Redis AUTH password, never logged; prefer the environment variable [env: REDIS_PASSWORD]
    #[arg(long, global = true, value_name = "PASSWORD", help_heading = "Redis")]
    pub redis_password: Option<String>,
    /// Full redis:// or rediss:// URL, overrides host, port, db and password [env: REDIS_URL]
    #[arg(long, global = true, value_name = "URL", help_heading = "Redis")]
    pub redis_url: Option<String>,
    /// Seconds of TTL the clean routine puts on finished-game keys [env: REDIS_EXPIRY] [default: 30]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Redis")]
    pub redis_expiry: Option<String>,

    /// Lobby channel; worker channels are <WORKER_CHANNEL>-<worker id> [env: WORKER_CHANNEL] [default: redis.lib.server.lobby]
    #[arg(long, global = true, value_name = "NAME", help_heading = "Pipeline")]
    pub worker_channel: Option<String>,
    /// Worker expires a game's keys after writing its files [env: CLEAN_ROUTINE] [default: true]
    #[arg(long, global = true, value_name = "BOOL", help_heading = "Pipeline")]
    pub clean_routine: Option<String>,
    /// default: log to stderr only; redis: also publish lifecycle records [env: LOGGER_MODULE] [default: default]
    #[arg(long, global = true, value_name = "MODULE", help_heading = "Pipeline")]
    pub logger_module: Option<String>,
    /// Where workers write Parquet: a folder, file:///path or s3://bucket/prefix [env: OUTPUT_DIR] [default: ./data]
    #[arg(long, global = true, value_name = "DIR", help_heading = "Pipeline")]
    pub output_dir: Option<String>,
    /// Worker id used in its channel and file names [env: HOSTNAME] [default: 12 random hex chars]
    #[arg(long, global = true, value_name = "ID", help_heading = "Pipeline")]
    pub worker_id: Option<String>,
    /// Seconds a routed record may stay unacknowledged before it is routed again [env: ACK_TIMEOUT] [default: 30]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Pipeline")]
    pub ack_timeout: Option<String>,
    /// Routings of one record before it goes to the dead-letter stream [env: MAX_DELIVERIES] [default: 5]
    #[arg(long, global = true, value_name = "N", help_heading = "Pipeline")]
    pub max_deliveries: Option<String>,
    /// Seconds acknowledged records stay in the log stream before they are trimmed [env: LOG_RETENTION] [default: 3600]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Pipeline")]
    pub log_retention: Option<String>,
    /// Seconds a worker may spend writing one game before it gives the game up [env: WRITE_TIMEOUT] [default: 60]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Pipeline")]
    pub write_timeout: Option<String>,
    /// HOST:PORT of a Prometheus metrics endpoint; off when unset [env: METRICS_ADDR]
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        help_heading = "Pipeline"
    )]
    pub metrics_addr: Option<String>,

    /// Server bind address / player target host [env: WEBSOCKET_HOST] [default: localhost]
    #[arg(long, global = true, value_name = "HOST", help_heading = "Game")]
    pub websocket_host: Option<String>,
    /// Server port / player target port [env: WEBSOCKET_PORT] [default: 5678]
    #[arg(long, global = true, value_name = "PORT", help_heading = "Game")]
    pub websocket_port: Option<String>,
    /// Pacing pause in seconds before each turn is announced [env: SERVER_SLEEP] [default: 0]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Game")]
    pub server_sleep: Option<String>,
    /// Seconds a lobby waits to fill before it times out [env: LOBBY_TIMEOUT] [default: 5]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Game")]
    pub lobby_timeout: Option<String>,
    /// Seconds a player may take to act before it is eliminated [env: TURN_TIMEOUT] [default: 10]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Game")]
    pub turn_timeout: Option<String>,
    /// Turn cap: a game always ends [env: MAX_TURNS] [default: 1000]
    #[arg(long, global = true, value_name = "N", help_heading = "Game")]
    pub max_turns: Option<String>,
    /// Games a player bot plays, -1 for no limit [env: CLIENT_GAMES] [default: 10]
    #[arg(
        long,
        global = true,
        value_name = "N",
        allow_hyphen_values = true,
        help_heading = "Game"
    )]
    pub client_games: Option<String>,
    /// Seconds a player waits before retrying after an error [env: CLIENT_SLEEP] [default: 1]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Game")]
    pub client_sleep: Option<String>,

    /// Open WebSocket connections one server process allows; at the cap the longest-idle one makes room [env: MAX_CONNECTIONS] [default: 1024]
    #[arg(long, global = true, value_name = "N", help_heading = "Game")]
    pub max_connections: Option<String>,
    /// Seconds the server keeps a socket that owes it a request before closing it [env: IDLE_TIMEOUT] [default: 30]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Game")]
    pub idle_timeout: Option<String>,
    /// Seconds after its last login or find that a user and its token are forgotten [env: USER_EXPIRY] [default: 86400]
    #[arg(long, global = true, value_name = "SECS", help_heading = "Game")]
    pub user_expiry: Option<String>,

    /// TRACE, DEBUG, INFO, WARNING/WARN, ERROR, CRITICAL [env: LOG_LEVEL] [default: INFO]
    #[arg(long, global = true, value_name = "LEVEL", help_heading = "Settings")]
    pub log_level: Option<String>,
}

impl SettingsArgs {
    /// The flags that were given, keyed by their variable name.
    pub fn flags(&self) -> BTreeMap<String, String> {
        let given = [
            ("REDIS_HOST", &self.redis_host),
            ("REDIS_PORT", &self.redis_port),
            ("REDIS_DB", &self.redis_db),
            ("REDIS_PASSWORD", &self.redis_password),
            ("REDIS_URL", &self.redis_url),
            ("REDIS_EXPIRY", &self.redis_expiry),
            ("WORKER_CHANNEL", &self.worker_channel),
            ("CLEAN_ROUTINE", &self.clean_routine),
            ("LOGGER_MODULE", &self.logger_module),
            ("OUTPUT_DIR", &self.output_dir),
            ("HOSTNAME", &self.worker_id),
            ("ACK_TIMEOUT", &self.ack_timeout),
            ("MAX_DELIVERIES", &self.max_deliveries),
            ("LOG_RETENTION", &self.log_retention),
            ("WRITE_TIMEOUT", &self.write_timeout),
            ("METRICS_ADDR", &self.metrics_addr),
            ("WEBSOCKET_HOST", &self.websocket_host),
            ("WEBSOCKET_PORT", &self.websocket_port),
            ("SERVER_SLEEP", &self.server_sleep),
            ("LOBBY_TIMEOUT", &self.lobby_timeout),
            ("TURN_TIMEOUT", &self.turn_timeout),
            ("MAX_TURNS", &self.max_turns),
            ("CLIENT_GAMES", &self.client_games),
            ("CLIENT_SLEEP", &self.client_sleep),
            ("MAX_CONNECTIONS", &self.max_connections),
            ("IDLE_TIMEOUT", &self.idle_timeout),
            ("USER_EXPIRY", &self.user_expiry),
            ("LOG_LEVEL", &self.log_level),
        ];
        given
            .into_iter()
            .filter_map(|(name, value)| value.as_ref().map(|v| (name.to_string(), v.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VARS;

    #[test]
    fn every_variable_has_a_flag() {
        let all: SettingsArgs = SettingsArgs {
            redis_host: Some(String::new()),
            redis_port: Some(String::new()),
            redis_db: Some(String::new()),
            redis_password: Some(String::new()),
            redis_url: Some(String::new()),
            redis_expiry: Some(String::new()),
            worker_channel: Some(String::new()),
            clean_routine: Some(String::new()),
            logger_module: Some(String::new()),
            output_dir: Some(String::new()),
            worker_id: Some(String::new()),
            ack_timeout: Some(String::new()),
            max_deliveries: Some(String::new()),
            log_retention: Some(String::new()),
            write_timeout: Some(String::new()),
            metrics_addr: Some(String::new()),
            websocket_host: Some(String::new()),
            websocket_port: Some(String::new()),
            server_sleep: Some(String::new()),
            lobby_timeout: Some(String::new()),
            turn_timeout: Some(String::new()),
            max_turns: Some(String::new()),
            client_games: Some(String::new()),
            client_sleep: Some(String::new()),
            max_connections: Some(String::new()),
            idle_timeout: Some(String::new()),
            user_expiry: Some(String::new()),
            log_level: Some(String::new()),
            config: None,
        };
        let flags = all.flags();
        for var in VARS {
            assert!(flags.contains_key(var.name), "no flag for {}", var.name);
        }
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
