//! `superhero bench etl`: N synthetic finished games seeded in Redis, their host records
//! published straight to one real worker (a child process), timed until the worker's own
//! `games_written` counter reaches N.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::redis_cpu::RedisSample;
use super::{count_files, quantiles, wait_for_subscriber, BenchReport, Child};
use crate::config::Settings;
use crate::metrics;
use crate::ops::bench::synth;
use crate::pipeline::redis_conn::Redis;
use crate::pipeline::shard::Shard;
use crate::pipeline::{keys, sink};

#[allow(clippy::too_many_arguments)]
pub(super) async fn bench(
    settings: &Settings,
    redis: &Redis,
    binary: &Path,
    games: usize,
    players: usize,
    attacks: usize,
    output_dir: Option<&crate::config::OutputDir>,
) -> Result<BenchReport> {
    // Output on tmpfs when there is one: the benchmark measures the worker, not the disk.
    let scratch = match output_dir {
        Some(_) => None,
        None => Some(if Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")?
        } else {
            tempfile::tempdir()?
        }),
    };
    let out = output_dir.cloned().unwrap_or_else(|| {
        crate::config::OutputDir::Folder(
            scratch
                .as_ref()
                .map(|d| d.path().to_path_buf())
                .unwrap_or_default(),
        )
    });
    let mut settings = settings.clone();
    settings.output_dir = out.clone();

    // On a cluster the games are spread evenly over the shards, each stored under its shard's
    // hash tag as the server stores it.
    let layout = super::layout(&settings, redis).await?;
    let mut rng = rand::rng();
    let synthetic: Vec<synth::SynthGame> = (0..games)
        .map(|i| {
            let shard = Shard((i % usize::from(layout.count())) as u16);
            synth::random_game_in(&mut rng, &layout, shard, players, attacks, 1000)
        })
        .collect();
    let mut conn = redis.conn();
    synth::seed_in(&mut conn, &layout, &synthetic).await?;
    let records: Vec<String> = synthetic
        .iter()
        .map(|g| synth::host_record(&settings.worker_channel, g))
        .collect();

    let worker_id = "bench-etl";
    let child = Child::spawn(binary, &settings, &["worker", "--worker-id", worker_id]).await?;
    let channel = keys::worker_channel(&settings.worker_channel, worker_id);
    wait_for_subscriber(redis, &channel).await?;
    let (cpu_before, _) = child.usage();
    let redis_before = RedisSample::take(redis).await?;
    let started = Instant::now();
    synth::publish_all(&mut conn, &channel, &records, 500).await?;
    // Watch the worker's own counter: listing thousands of files in a loop would steal the CPU
    // the worker is being measured on.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let written = metrics::scrape(child.metrics)
            .await
            .ok()
            .and_then(|t| metrics::sample_value(&t, "superhero_worker_games_written_total"))
            .unwrap_or(0.0) as usize;
        if written >= games {
            break;
        }
        if Instant::now() > deadline {
            bail!("the worker wrote {written} of {games} games in 600s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let redis_after = RedisSample::take(redis).await?;
    let (cpu_after, rss) = child.usage();
    let text = metrics::scrape(child.metrics).await.unwrap_or_default();
    child.stop().await?;

    let cost = redis_before.cost_until(&redis_after, "game", games as u64);
    let mut report = BenchReport::new("etl", redis, cost);
    report.set("games", games);
    report.set("players_per_game", players);
    report.set("attacks_per_game", attacks);
    report.set("output_dir", out.to_string());
    report.set("seconds", elapsed);
    report.set("games_per_second", games as f64 / elapsed);
    quantiles(
        &mut report,
        &text,
        "superhero_worker_etl_duration_seconds",
        "etl",
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        report.set("worker_cpu_seconds", b - a);
    }
    if let Some(rss) = rss {
        report.set("worker_peak_rss_mib", rss);
    }
    let output = sink::Output::open(&out)?;
    report.set("files_meta", count_files(&output, sink::META_TABLE).await);
    report.set(
        "files_podium",
        count_files(&output, sink::PODIUM_TABLE).await,
    );
    Ok(report)
}
