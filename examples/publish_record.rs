//! Publishes one hand-made lifecycle record on the lobby channel, the way another publisher
//! (the original server) does: without an `entry_id`.
//!
//! ```sh
//! cargo run --example publish_record -- <game_token> <user_token>
//! ```
//! A running fanout hears it and appends it to the log stream `<WORKER_CHANNEL>:log` (our game
//! server appends its records there itself), then routes it to a live worker. With game
//! `<game_token>` finished in Redis and `<user_token>` as its host, the worker writes that
//! game's Parquet files; with no fanout running, nobody hears it and it is lost. Uses REDIS_URL
//! (or redis://localhost:6379/0) and WORKER_CHANNEL (or the default lobby).

use anyhow::{bail, Context, Result};
use redis::AsyncCommands;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [game, user] = args.as_slice() else {
        bail!("usage: publish_record <game_token> <user_token>");
    };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://localhost:6379/0".into());
    let lobby = std::env::var("WORKER_CHANNEL").unwrap_or_else(|_| "redis.lib.server.lobby".into());
    let record = serde_json::json!({
        "level": "INFO",
        "timestamp": "2026-11-26T16:14:48.123456",
        "name": lobby,
        "log_message": "Cleaning Game Records",
        "task": {"game_token": game, "user_token": user},
    });
    let mut conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("cannot reach Redis")?;
    let receivers: u64 = conn.publish(&lobby, record.to_string()).await?;
    println!("published to {lobby}: {receivers} subscriber(s) received it");
    Ok(())
}
