//! The fanout benchmark: one burst of records through the real fanout to fake workers that
//! acknowledge. Uses a private redis-server (so the figures do not depend on a shared one).
//!
//! ```sh
//! cargo run --release --example fanout_bench -- [RECORDS] [WORKERS]   # default 20000 4
//! ```

use std::time::Duration;

use superhero::config::{Layers, Settings};
use superhero::fanout::bench;
use superhero::private_redis::PrivateRedis;
use superhero::redis_conn::Redis;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let workers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
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
        records,
        workers,
        Duration::from_secs(120),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "routed {} records to {} workers in {:.3} s: {:.0} records/s; lost {}, duplicated {}; spread {:?}",
        report.records,
        report.workers,
        report.elapsed.as_secs_f64(),
        report.records_per_sec,
        report.lost,
        report.duplicated,
        report
            .spread()
            .iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
    );
    Ok(())
}
