//! The worker benchmark: N synthetic finished games, their host records published to one real
//! worker (claim, ETL, Parquet files, done marker), on a private redis-server.
//!
//! ```sh
//! cargo run --release --example worker_bench -- [GAMES] [OUTPUT_DIR]   # default 2000 /dev/shm/…
//! ```

use std::time::Duration;

use superhero::config::{Layers, Settings};
use superhero::private_redis::PrivateRedis;
use superhero::redis_conn::Redis;
use superhero::worker::bench;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let games: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let out = match args.next() {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())?,
    };
    let private = PrivateRedis::start(&[])?;
    let mut layers = Layers::default();
    layers.flags.insert("REDIS_HOST".into(), "127.0.0.1".into());
    layers
        .flags
        .insert("REDIS_PORT".into(), private.port().to_string());
    let settings = Settings::from_layers(layers)?;
    let redis = Redis::connect(&settings.redis).await?;
    let report = bench::run(
        &settings,
        &redis,
        games,
        3,
        30,
        out.path(),
        Duration::from_secs(300),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "one worker wrote {} games in {:.3} s: {:.0} games/s",
        report.games,
        report.elapsed.as_secs_f64(),
        report.games_per_sec
    );
    Ok(())
}
