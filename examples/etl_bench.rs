//! ETL benchmark: load_game + rows + write_game over N synthetic finished games stored in a
//! private redis-server, output on tmpfs.
//!
//! ```text
//! cargo run --release --example etl_bench -- [games=2000] [tasks=1] [players=3] [attacks=30] [out=/dev/shm]
//! ```
//!
//! `tasks` runs that many ETL loops concurrently on a multi-threaded runtime (the worker uses
//! both cores the same way). Prints games/s, p50/p99 latency per game and the peak RSS.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::SeedableRng;
use superhero::private_redis::PrivateRedis;
use superhero::worker::etl;
use superhero::{sink, synth};

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let games: usize = arg(1, 2000);
    let tasks: usize = arg(2, 1).max(1);
    let players: usize = arg(3, 3);
    let attacks: usize = arg(4, 30);
    let out_root: PathBuf = arg(5, PathBuf::from("/dev/shm"));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(tasks.max(2))
        .enable_all()
        .build()?
        .block_on(run(games, tasks, players, attacks, out_root))
}

async fn run(
    games: usize,
    tasks: usize,
    players: usize,
    attacks: usize,
    out_root: PathBuf,
) -> Result<()> {
    let redis = PrivateRedis::start(&[])?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port()))?;
    let mut conn = redis::aio::ConnectionManager::new(client.clone()).await?;
    let out = tempfile::Builder::new()
        .prefix("etl_bench-")
        .tempdir_in(&out_root)
        .with_context(|| format!("cannot create a directory in {}", out_root.display()))?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let all: Vec<synth::SynthGame> = (0..games)
        .map(|_| synth::random_game(&mut rng, players, attacks, 1000))
        .collect();
    let mean_attacks = all.iter().map(|g| g.attacks()).sum::<usize>() as f64 / games as f64;
    synth::seed(&mut conn, &all).await?;
    let tokens: Vec<String> = all.into_iter().map(|g| g.token).collect();

    let started = Instant::now();
    let mut handles = Vec::new();
    for part in 0..tasks {
        let mine: Vec<String> = tokens.iter().skip(part).step_by(tasks).cloned().collect();
        // One connection per task, as one worker process would have.
        let mut conn = redis::aio::ConnectionManager::new(client.clone()).await?;
        let dir = out.path().to_path_buf();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(mine.len());
            let mut stages = [Duration::ZERO; 3];
            for game in &mine {
                let t0 = Instant::now();
                let data = etl::load_game(&mut conn, game)
                    .await?
                    .context("seeded game not found")?;
                let t1 = Instant::now();
                let (meta, podium) = etl::rows(game, &data);
                let t2 = Instant::now();
                sink::write_game(&dir, "bench", game, &meta, &podium)?;
                let t3 = Instant::now();
                stages[0] += t1 - t0;
                stages[1] += t2 - t1;
                stages[2] += t3 - t2;
                latencies.push(t3 - t0);
            }
            anyhow::Ok((latencies, stages))
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(games);
    let mut stages = [Duration::ZERO; 3];
    for handle in handles {
        let (mine, times) = handle.await??;
        latencies.extend(mine);
        for (total, t) in stages.iter_mut().zip(times) {
            *total += t;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let written = std::fs::read_dir(sink::table_dir(out.path(), sink::PODIUM_TABLE))?.count();
    anyhow::ensure!(written == games, "{written} podium files for {games} games");
    println!(
        "{games} games ({players} players, {mean_attacks:.1} attacks on average), {tasks} task(s): \
         {:.0} games/s, p50 {:?}, p99 {:?}, peak RSS {} KiB",
        games as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        peak_rss_kib().unwrap_or(0),
    );
    let per_game = |d: Duration| d / games as u32;
    println!(
        "mean per game: load_game {:?}, rows {:?}, write_game {:?}",
        per_game(stages[0]),
        per_game(stages[1]),
        per_game(stages[2]),
    );
    Ok(())
}

/// VmHWM of this process from /proc (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
