//! The command line: subcommands and their setting flags.
//!
//! Each subcommand takes the setting flags that concern it ([`Var::concerns`]), before or after
//! its name; another setting flag is refused with one line naming it ([`SettingsArgs::check`]).
//! Setting flags carry no clap default and do not read the environment themselves: a flag that
//! was not given leaves the variable to the lower layers of [`crate::config`], which is what lets
//! `.env` and `--config` work underneath the environment.

// The doc comments below are `--help` text, where <WORKER_CHANNEL>-<worker id> is plain text.
#![allow(rustdoc::invalid_html_tags)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

use crate::config::{Var, VARS};
#[cfg(test)]
use crate::config::{COMMANDS, RUN_THE_ROLES};

/// Super Hero Combat Simulator and its Redis Stream -> Parquet data pipeline.
#[derive(Debug, Parser)]
#[command(name = "superhero", version, about, long_about = None, propagate_version = true)]
#[command(
    mut_subcommands = SettingsArgs::augment_subcommand,
    after_help = "Each command takes the setting flags that concern it: `superhero <COMMAND> --help` lists them."
)]
pub struct Cli {
    /// Before `command`: reading the subcommand takes its matches away, and the settings need
    /// its name.
    #[command(flatten)]
    pub settings: SettingsArgs,

    #[command(subcommand)]
    pub command: Command,
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
    /// Run on a private Redis Cluster of N primaries (N >= 3) with a replica each, started from
    /// the redis-server on PATH on free ports and stopped at the end; the summary shows what
    /// each primary held.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(3..=64))]
    pub cluster: Option<u16>,
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
    /// Measure on a private Redis Cluster of N primaries (3 or more, no replicas, so Redis's CPU
    /// summed over the primaries is all the work cost) started from `redis-server` on PATH and
    /// stopped on exit; keys in 4 tagged shards per primary.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(3..=64))]
    pub cluster: Option<u16>,
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

/// Every setting of [`VARS`] as a flag (`--redis-port` for REDIS_PORT, `--worker-id` for
/// HOSTNAME), built from the declaration: no field per setting. Each one overrides its
/// environment variable; `--help` shows the variable and the default beside each.
#[derive(Clone, Debug, Default)]
pub struct SettingsArgs {
    /// TOML file of settings (keys are the variable names); below .env and the environment.
    pub config: Option<PathBuf>,
    /// The setting flags that were given, keyed by their variable name.
    pub given: BTreeMap<String, String>,
    /// The subcommand they were given to.
    pub command: Option<String>,
}

/// A setting flag given to a command that does not read it (`report --turn-timeout 3`).
#[derive(Debug, thiserror::Error)]
#[error("--{flag} does not apply to '{command}'")]
pub struct FlagNotApplicable {
    pub flag: &'static str,
    pub command: String,
}

impl FlagNotApplicable {
    /// The status the binary exits with: 2, as for a command line clap refuses.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// The id of the `--config` argument.
const CONFIG: &str = "config";

impl SettingsArgs {
    /// The flags that were given, keyed by their variable name.
    pub fn flags(&self) -> BTreeMap<String, String> {
        self.given.clone()
    }

    /// Refuses a setting flag that does not concern the subcommand it was given to, wherever
    /// it stood on the command line.
    pub fn check(&self) -> Result<(), FlagNotApplicable> {
        let Some(command) = &self.command else {
            return Ok(());
        };
        match VARS
            .iter()
            .find(|var| self.given.contains_key(var.name) && !var.concerns(command))
        {
            Some(var) => Err(FlagNotApplicable {
                flag: var.flag,
                command: command.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Every setting flag on one subcommand: those that concern it listed in its `--help`, the
    /// others hidden, so that one given is refused by [`SettingsArgs::check`] with one line
    /// rather than by clap with its usage. Global within the subcommand, so `bench etl` takes
    /// them too. The program's own copies (`superhero --redis-port 1 server`) are global as
    /// well, but clap gives a subcommand no copy of a flag it already has, hidden or not.
    fn augment_subcommand(cmd: clap::Command) -> clap::Command {
        let name = cmd.get_name().to_string();
        cmd.args(
            VARS.iter()
                .map(|var| SettingsArgs::arg(var).hide(!var.concerns(&name))),
        )
    }

    /// The flag of one declared setting.
    fn arg(var: &'static Var) -> Arg {
        Arg::new(var.name)
            .long(var.flag)
            .value_name(var.value_name)
            .help(var.help_line())
            .help_heading(var.heading)
            .global(true)
            .action(ArgAction::Set)
            .value_parser(clap::value_parser!(String))
            // `--client-games -1`; any other negative number is refused with the variable's name.
            .allow_negative_numbers(true)
    }
}

impl Args for SettingsArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.arg(
            Arg::new(CONFIG)
                .long("config")
                .value_name("FILE")
                .help("TOML file of settings (keys are the variable names); below .env and the environment")
                .help_heading("Settings")
                .global(true)
                .action(ArgAction::Set)
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .args(VARS.iter().map(SettingsArgs::arg))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingsArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = SettingsArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(path) = matches.get_one::<PathBuf>(CONFIG) {
            self.config = Some(path.clone());
        }
        self.command = matches.subcommand_name().map(str::to_string);
        // Given before the subcommand's name or after it: clap copies a global flag's value to
        // every level of the matches, the program's included.
        for var in VARS {
            if let Some(value) = matches.get_one::<String>(var.name) {
                self.given.insert(var.name.to_string(), value.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_has_a_flag() {
        let mut argv = vec!["superhero".to_string(), "demo".to_string()];
        for var in VARS {
            argv.push(format!("--{}", var.flag));
            argv.push(String::new());
        }
        let all = Cli::try_parse_from(argv).expect("every setting flag parses");
        all.settings.check().expect("demo takes every setting");
        let flags = all.settings.flags();
        for var in VARS {
            assert!(flags.contains_key(var.name), "no flag for {}", var.name);
        }
    }

    #[test]
    fn every_command_a_setting_names_exists() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let mut names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        names.sort_unstable();
        let mut declared: Vec<&str> = COMMANDS.iter().chain(RUN_THE_ROLES).copied().collect();
        declared.sort_unstable();
        assert_eq!(names, declared);
        for var in VARS {
            for command in var.commands {
                assert!(COMMANDS.contains(command), "{}: {command}", var.name);
            }
        }
    }

    /// `--help` of the program and of each role, whitespace runs made one space (help wraps).
    fn help_of(args: &[&str]) -> String {
        use clap::CommandFactory;
        let argv = std::iter::once("superhero").chain(args.iter().copied());
        let err = Cli::command()
            .try_get_matches_from(argv)
            .expect_err("--help ends parsing");
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        err.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn help_lists_the_settings_of_its_command_with_their_variable_and_default() {
        let commands = COMMANDS.iter().chain(RUN_THE_ROLES);
        for (args, command) in std::iter::once((vec!["--help"], None))
            .chain(commands.map(|c| (vec![*c, "--help"], Some(*c))))
        {
            let help = help_of(&args);
            assert!(help.contains("--config <FILE>"), "{args:?}: {help}");
            for var in VARS {
                let line = format!(
                    "--{} <{}> {}",
                    var.flag,
                    var.value_name,
                    var.help_line()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let listed = command.is_none_or(|c| var.concerns(c));
                assert_eq!(
                    help.contains(&line),
                    listed,
                    "{args:?} --help, {line:?}: {help}"
                );
                assert_eq!(
                    help.contains(&format!("--{} ", var.flag)),
                    listed,
                    "{args:?}: {}",
                    var.flag
                );
            }
        }
    }

    #[test]
    fn setting_flags_stand_before_or_after_the_command_and_take_negative_numbers() {
        let cli = Cli::try_parse_from([
            "superhero",
            "--websocket-port",
            "6380",
            "player",
            "--client-games",
            "-1",
            "--log-level",
            "debug",
            "--config",
            "c.toml",
        ])
        .unwrap();
        cli.settings.check().unwrap();
        let flags = cli.settings.flags();
        assert_eq!(flags["WEBSOCKET_PORT"], "6380");
        assert_eq!(flags["CLIENT_GAMES"], "-1");
        assert_eq!(flags["LOG_LEVEL"], "debug");
        assert_eq!(flags.len(), 3);
        assert_eq!(cli.settings.config, Some(PathBuf::from("c.toml")));
        let cli = Cli::try_parse_from(["superhero", "bench", "etl", "--worker-id", "w1"]).unwrap();
        cli.settings.check().unwrap();
        assert_eq!(cli.settings.flags()["HOSTNAME"], "w1");
    }

    #[test]
    fn a_setting_flag_another_command_reads_is_refused_naming_it() {
        for argv in [
            &["superhero", "report", "--turn-timeout", "3"][..],
            &["superhero", "--turn-timeout", "3", "report"],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            let err = cli.settings.check().unwrap_err();
            assert_eq!(err.to_string(), "--turn-timeout does not apply to 'report'");
        }
        let cli = Cli::try_parse_from(["superhero", "server", "--turn-timeout", "3"]).unwrap();
        cli.settings.check().unwrap();
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
