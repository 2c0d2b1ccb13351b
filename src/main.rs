//! The `superhero` binary: parse the command line, load the settings, dispatch to a role.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use superhero::cli::{BenchKindArgs, Cli, Command, Format, ProgressArg};
use superhero::config::{ConfigError, Layers, Settings};
use superhero::logging;
use superhero::ops::{bench, build_db, clean, demo, report, status};
use superhero::pipeline::redis_conn::Redis;
use superhero::pipeline::shard::{Agreement, Layout};
use superhero::roles::{fanout, player, server, worker};
use superhero::shutdown::Shutdown;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.settings.check() {
        eprintln!("error: {e}");
        return ExitCode::from(e.exit_code());
    }
    let settings = match Layers::from_process(cli.settings.config.clone(), cli.settings.flags())
        .and_then(Settings::from_layers)
    {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    // `demo` installs its own logging: a log file beside its output, the terminal under its bars.
    if !matches!(cli.command, Command::Demo(_)) {
        logging::init(settings.log_level);
        tracing::debug!("effective settings: {}", settings.describe());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(code) => code,
        Err(e) => {
            // A bad setting found late (REDIS_URL is parsed when Redis is reached) is still
            // one line and its own exit code.
            if let Some(config) = e.downcast_ref::<ConfigError>() {
                eprintln!("error: {config}");
                return ExitCode::from(config.exit_code());
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::on_signals();
    match command {
        Command::BuildDb(args) => {
            // Validate the file before touching Redis, so a bad file fails fast and offline.
            superhero::heroes::load_source(args.source.as_deref())?;
            let redis = Redis::connect(&settings.redis).await?;
            let layout = Layout::for_role(&settings, &redis, Agreement::Store).await?;
            build_db::run(&redis, &layout, args.source.as_deref()).await?;
        }
        Command::Clean(args) => {
            let redis = Redis::connect(&settings.redis).await?;
            let options = clean::Options {
                all: args.all,
                force: args.force,
                dry_run: args.dry_run,
            };
            clean::run(&redis, &settings.worker_channel, options).await?;
            if args.rebuild && !args.dry_run {
                let layout = Layout::for_role(&settings, &redis, Agreement::Store).await?;
                build_db::run(&redis, &layout, None).await?;
            }
        }
        Command::Server => {
            let redis = Redis::connect(&settings.redis).await?;
            let addr = (settings.websocket_host.as_str(), settings.websocket_port);
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "cannot listen on {}:{}",
                    settings.websocket_host, settings.websocket_port
                )
            })?;
            server::run(&settings, redis, listener, shutdown).await?;
        }
        Command::Player(args) => {
            let options = player::PlayerOptions {
                user: args.user,
                participants: args.participants,
                ..player::PlayerOptions::default()
            };
            player::run(&settings, &options, shutdown).await?;
        }
        Command::Worker => {
            let redis = Redis::connect(&settings.redis).await?;
            worker::run(&settings, redis, shutdown).await?;
        }
        Command::Fanout => {
            let redis = Redis::connect(&settings.redis).await?;
            fanout::run(&settings, redis, shutdown).await?;
        }
        Command::Demo(args) => {
            let display = demo::Display::choose(match args.progress {
                _ if args.quiet => Some(false),
                ProgressArg::Auto => None,
                ProgressArg::Always => Some(true),
                ProgressArg::Never => Some(false),
            });
            let (console, log_file) = demo::start_logging(&settings, display, args.verbose)?;
            tracing::debug!("effective settings: {}", settings.describe());
            let options = demo::DemoOptions {
                players: args.players,
                workers: args.workers,
                games: args.games,
                output_dir: None,
                participants: args.participants,
                display: Some(display),
                console: Some(console),
                log_file: Some(log_file),
                cluster: args.cluster,
            };
            let summary = demo::run(&settings, &options, shutdown).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", demo::render_summary(&summary));
            }
            if !summary.exactly_once() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Bench(args) => {
            let kind = match args.kind {
                BenchKindArgs::Etl {
                    games,
                    players,
                    attacks,
                } => bench::BenchKind::Etl {
                    games,
                    players,
                    attacks,
                    // A store URL is always explicit; a folder benchmark keeps to tmpfs.
                    output_dir: settings
                        .output_dir
                        .folder()
                        .is_none()
                        .then(|| settings.output_dir.clone()),
                },
                BenchKindArgs::Fanout { records, workers } => {
                    bench::BenchKind::Fanout { records, workers }
                }
                BenchKindArgs::Game {
                    bots,
                    seconds,
                    participants,
                } => bench::BenchKind::Game {
                    bots,
                    seconds,
                    participants,
                },
            };
            let binary = std::env::current_exe().context("cannot find this executable")?;
            let options = bench::BenchOptions {
                binary,
                kind,
                cluster: args.cluster,
            };
            let report = bench::run(&settings, &options, shutdown).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_table());
            }
        }
        Command::Report(args) => {
            let output = superhero::pipeline::sink::Output::open(&settings.output_dir)?;
            let report = report::build(&output).await?;
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => print!("{}", report::render_table(&report, args.top)),
            }
            if args.strict && report.has_problems() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Status(args) => {
            let redis = superhero::pipeline::redis_conn::Redis::connect(&settings.redis).await?;
            let watch = match args.watch {
                Some(secs) if secs.is_finite() && secs > 0.0 => {
                    Some(std::time::Duration::from_secs_f64(secs))
                }
                Some(_) => anyhow::bail!("--watch needs a positive number of seconds"),
                None => None,
            };
            let json = args.format == Format::Json;
            let layout = Layout::for_role(&settings, &redis, Agreement::Read).await?;
            let lobby = &settings.worker_channel;
            status::run(&redis, &layout, lobby, json, watch, shutdown).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
