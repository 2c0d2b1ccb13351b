//! Game server benchmark for issue 3's targets: games per second with 10 bots in 3-player games
//! at SERVER_SLEEP=0, the median time from a stored attack to the next USER'S TURN (the server's
//! own `turn_latency_seconds` histogram), and the server's peak RSS with 100 connected players.
//!
//! It starts a private redis-server and the release `superhero server` binary as a child process
//! (so its RSS is its own), and runs the bots in this process.
//!
//! ```text
//! cargo build --release && cargo run --release --example game_bench -- [SECONDS] [BOTS] [CROWD]
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use superhero::config::{Layers, Settings};
use superhero::metrics::{histogram_quantile, sample_value, scrape};
use superhero::player::{self, Outcome, PlayerOptions};
use superhero::private_redis::{free_port, PrivateRedis};
use superhero::redis_conn::Redis;
use superhero::shutdown;

struct ServerChild(Child);

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `VmHWM` (peak RSS) and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Ok((field("VmHWM:").unwrap_or(0), field("VmRSS:").unwrap_or(0)))
}

/// Plays with `bots` bots of `participants`-player games for `window`; returns completed games.
async fn play_for(
    settings: &Settings,
    bots: usize,
    participants: u8,
    window: Duration,
) -> Result<usize> {
    let (stop, shutdown) = shutdown::channel();
    let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for _ in 0..bots {
        let mut s = settings.clone();
        s.client_games = None;
        let options = PlayerOptions {
            participants: Some(participants),
            progress: Some(tx.clone()),
            ..PlayerOptions::default()
        };
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(
            async move { player::play(&s, &options, sd).await },
        ));
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + window;
    let mut completed = HashSet::new();
    loop {
        tokio::select! {
            report = progress.recv() => match report {
                Some(r) if matches!(r.outcome, Outcome::Won | Outcome::Survived | Outcome::Eliminated) => {
                    completed.insert(r.game_token);
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    stop.fire();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    Ok(completed.len())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().map_or(Ok(10), |a| a.parse())?;
    let bots: usize = args.get(1).map_or(Ok(10), |a| a.parse())?;
    let crowd: usize = args.get(2).map_or(Ok(100), |a| a.parse())?;

    let redis_server = PrivateRedis::start(&[])?;
    let ws_port = free_port()?;
    let metrics_port = free_port()?;
    let mut layers = Layers::default();
    for (k, v) in [
        ("REDIS_HOST", "127.0.0.1".to_string()),
        ("REDIS_PORT", redis_server.port().to_string()),
        ("WEBSOCKET_HOST", "127.0.0.1".to_string()),
        ("WEBSOCKET_PORT", ws_port.to_string()),
        ("SERVER_SLEEP", "0".to_string()),
        ("CLIENT_SLEEP", "0.2".to_string()),
    ] {
        layers.flags.insert(k.into(), v);
    }
    let settings = Settings::from_layers(layers)?;
    let redis = Redis::connect(&settings.redis).await?;
    superhero::build_db::run(&redis, None).await?;

    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("superhero"))
        .context("cannot locate the superhero binary")?;
    let metrics_addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse()?;
    let server = ServerChild(
        Command::new(&binary)
            .arg("server")
            .env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", redis_server.port().to_string())
            .env("WEBSOCKET_HOST", "127.0.0.1")
            .env("WEBSOCKET_PORT", ws_port.to_string())
            .env("SERVER_SLEEP", "0")
            .env("METRICS_ADDR", metrics_addr.to_string())
            .env("LOG_LEVEL", "WARN")
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (cargo build --release first)",
                    binary.display()
                )
            })?,
    );
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", ws_port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the server did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = server.0.id();

    let window = Duration::from_secs(seconds);
    let games = play_for(&settings, bots, 3, window).await?;
    let text = scrape(metrics_addr).await?;
    let p50 = histogram_quantile(&text, "superhero_server_turn_latency_seconds", 0.5);
    let p99 = histogram_quantile(&text, "superhero_server_turn_latency_seconds", 0.99);
    let turns = sample_value(&text, "superhero_server_turn_latency_seconds_count").unwrap_or(0.0);
    println!(
        "{bots} bots, 3-player games, SERVER_SLEEP=0, {seconds}s: {games} games completed, {:.1} games/s",
        games as f64 / window.as_secs_f64()
    );
    println!(
        "attack stored -> next USER'S TURN sent ({turns} turns): p50 {:.3} ms, p99 {:.3} ms (histogram estimate)",
        p50.unwrap_or(f64::NAN) * 1e3,
        p99.unwrap_or(f64::NAN) * 1e3
    );

    // The crowd: many bots at once, all connected; the server's peak RSS is read after.
    let crowd_task = {
        let s = settings.clone();
        tokio::spawn(async move { play_for(&s, crowd, 3, Duration::from_secs(5)).await })
    };
    let mut most_connected = 0.0f64;
    while !crowd_task.is_finished() {
        if let Ok(text) = scrape(metrics_addr).await {
            if let Some(c) = sample_value(&text, "superhero_server_connected_players") {
                most_connected = most_connected.max(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let crowd_games = crowd_task.await??;
    let (hwm, rss) = memory_kib(pid)?;
    println!(
        "{crowd} bots (at most {most_connected} lobby sockets connected at once), {crowd_games} games in 5s: server peak RSS {:.1} MiB (now {:.1} MiB)",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    Ok(())
}
