//! `superhero bench game`: B player bots against one real game server (a child process) for a
//! fixed window; games finished per second and the server's turn latency.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::redis_cpu::RedisSample;
use super::{quantiles, BenchReport, Child};
use crate::config::Settings;
use crate::metrics;
use crate::pipeline::redis_conn::Redis;
use crate::roles::player::{self, PlayerOptions};
use crate::shutdown::Shutdown;

#[allow(clippy::too_many_arguments)]
pub(super) async fn bench(
    settings: &Settings,
    redis: &Redis,
    binary: &Path,
    bots: usize,
    seconds: f64,
    participants: u8,
    shutdown: Shutdown,
) -> Result<BenchReport> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("bench game needs a positive --seconds");
    }
    let heroes = crate::heroes::load_source(None)?;
    // Every shard's copy of the heroes, in the layout the server will agree on.
    let layout = super::layout(settings, redis).await?;
    crate::heroes::store(redis, &layout, &heroes).await?;
    let port = crate::ops::private_redis::free_port()?;
    let mut settings = settings.clone();
    settings.websocket_host = "127.0.0.1".into();
    settings.websocket_port = port;
    // Bots play until the window closes: the figure is steady-state throughput, not the tail of
    // the last lobbies waiting LOBBY_TIMEOUT for players that have stopped.
    settings.client_games = None;
    let port_text = port.to_string();
    let child = Child::spawn(
        binary,
        &settings,
        &[
            "server",
            "--websocket-host",
            "127.0.0.1",
            "--websocket-port",
            &port_text,
            "--server-sleep",
            "0",
            "--logger-module",
            "default",
        ],
    )
    .await?;
    let (stop_bots, bots_shutdown) = crate::shutdown::channel();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..bots {
        let (s, sd) = (settings.clone(), bots_shutdown.clone());
        let opts = PlayerOptions {
            participants: Some(participants),
            ..PlayerOptions::default()
        };
        tasks.spawn(async move { player::play(&s, &opts, sd).await });
    }
    let completed = |text: &str| {
        metrics::sample_value(text, "superhero_server_games_completed_total").unwrap_or(0.0)
    };
    // Lobbies that waited LOBBY_TIMEOUT in vain: on a cluster two bots that find no lobby at
    // the same moment open one each, in their own shards, and may split the players between
    // them.
    let timed_out = |text: &str| {
        metrics::sample_value(text, "superhero_server_games_timed_out_total").unwrap_or(0.0)
    };
    let window = Duration::from_secs_f64(seconds);
    let warmup = Instant::now();
    warm_up(&child, &shutdown).await;
    let warmup = warmup.elapsed().as_secs_f64();
    let first = metrics::scrape(child.metrics).await.unwrap_or_default();
    let (before, timed_out_before) = (completed(&first), timed_out(&first));
    let redis_before = RedisSample::take(redis).await?;
    let started = Instant::now();
    tokio::select! {
        _ = tokio::time::sleep(window) => {}
        _ = shutdown.recv() => {}
    }
    let elapsed = started.elapsed().as_secs_f64();
    let text = metrics::scrape(child.metrics).await.unwrap_or_default();
    let finished = completed(&text) - before;
    let lobbies_timed_out = timed_out(&text) - timed_out_before;
    let redis_after = RedisSample::take(redis).await?;
    let (cpu, rss) = child.usage();
    stop_bots.fire();
    while tokio::time::timeout(Duration::from_secs(30), tasks.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    child.stop().await?;
    let cost = redis_before.cost_until(&redis_after, "game", finished.max(0.0) as u64);
    let mut report = BenchReport::new("game", redis, cost);
    report.set("bots", bots);
    report.set("participants", participants);
    report.set("games_finished", finished);
    report.set("seconds", elapsed);
    report.set("games_per_second", finished / elapsed);
    report.set("lobbies_timed_out", lobbies_timed_out);
    report.set("warmup_seconds", warmup);
    quantiles(
        &mut report,
        &text,
        "superhero_server_turn_latency_seconds",
        "turn_latency",
    );
    if let Some(cpu) = cpu {
        report.set("server_cpu_seconds", cpu);
    }
    if let Some(rss) = rss {
        report.set("server_peak_rss_mib", rss);
    }
    Ok(report)
}

/// How long the bots may take to finish their first game before the window opens regardless.
const WARMUP_LIMIT: Duration = Duration::from_secs(30);

/// Waits until the server has finished a game (or [`WARMUP_LIMIT`] passes): the window measures
/// the steady state, not the start, where every bot looks for a lobby at the same moment. On a
/// cluster that moment can split them between lobbies opened at once in different shards, which
/// then wait LOBBY_TIMEOUT; later finds are spread out and join the lobbies already open.
async fn warm_up(child: &Child, shutdown: &Shutdown) {
    let deadline = Instant::now() + WARMUP_LIMIT;
    while Instant::now() < deadline && !shutdown.is_triggered() {
        let text = metrics::scrape(child.metrics).await.unwrap_or_default();
        if metrics::sample_value(&text, "superhero_server_games_completed_total").unwrap_or(0.0)
            >= 1.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
