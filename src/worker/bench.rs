//! The worker benchmark: N synthetic finished games stored in Redis, their host records
//! published straight to one real worker's channel, timed until every game's files are in place.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::SeedableRng;

use super::WorkerMetrics;
use crate::config::Settings;
use crate::metrics::{self, histogram_quantile};
use crate::redis_conn::{self, Redis};
use crate::{keys, shutdown, synth};

/// What one run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkerBenchReport {
    pub games: usize,
    /// From the first PUBLISH to the last game's files being in place.
    pub elapsed: Duration,
    pub games_per_sec: f64,
    /// Claim-to-files time per game, seconds.
    pub etl_p50: Option<f64>,
    pub etl_p99: Option<f64>,
}

/// Runs one worker (the real [`super::run`]) over `games` synthetic games of `players` players
/// and about `attacks` attacks, writing under `output_dir`.
pub async fn run(
    settings: &Settings,
    redis: &Redis,
    games: usize,
    players: usize,
    attacks: usize,
    output_dir: &Path,
    timeout: Duration,
) -> Result<WorkerBenchReport> {
    let mut settings = settings.clone();
    settings.worker_id = format!("bench-{}", crate::config::random_worker_id());
    settings.output_dir = output_dir.to_path_buf();
    settings.metrics_addr = None;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let synthetic: Vec<synth::SynthGame> = (0..games)
        .map(|_| synth::random_game(&mut rng, players, attacks, 1000))
        .collect();
    let mut conn = redis.conn();
    synth::seed(&mut conn, &synthetic).await?;
    let records: Vec<String> = synthetic
        .iter()
        .map(|g| synth::host_record(&settings.worker_channel, g))
        .collect();

    let registry = metrics::registry("worker");
    let worker_metrics = WorkerMetrics::register(&registry);
    let written = worker_metrics.games_written.clone();
    let (trigger, stop) = shutdown::channel();
    let channel = keys::worker_channel(&settings.worker_channel, &settings.worker_id);
    let worker = {
        let (redis, registry) = (redis.clone(), registry.clone());
        tokio::spawn(async move {
            super::run_with_metrics(&settings, redis, stop, worker_metrics, &registry).await
        })
    };
    let ready_by = Instant::now() + Duration::from_secs(10);
    while redis_conn::numsub(&mut conn, std::slice::from_ref(&channel))
        .await?
        .iter()
        .all(|(_, n)| *n == 0)
    {
        if Instant::now() > ready_by {
            bail!("worker benchmark: the worker did not subscribe within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    synth::publish_all(&mut conn, &channel, &records, 500).await?;
    let give_up = started + timeout;
    while (written.get() as usize) < games && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let done = written.get() as usize;
    let text = metrics::render(&registry);
    trigger.fire();
    let _ = worker.await;
    if done < games {
        bail!("worker benchmark: only {done} of {games} games written within {timeout:?}");
    }
    Ok(WorkerBenchReport {
        games,
        elapsed,
        games_per_sec: games as f64 / elapsed.as_secs_f64().max(1e-9),
        etl_p50: histogram_quantile(&text, "superhero_worker_etl_duration_seconds", 0.5),
        etl_p99: histogram_quantile(&text, "superhero_worker_etl_duration_seconds", 0.99),
    })
}
