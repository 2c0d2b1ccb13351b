//! `superhero build-db`: loads a hero collection into the `superheros` hash of every shard
//! atomically.
//!
//! The loading itself lives with the heroes ([`crate::heroes::store`]): the game server reloads
//! the roster through it too, and a role must not reach up into an operator command.

use std::path::Path;

use anyhow::Result;

use crate::heroes;
use crate::pipeline::redis_conn::Redis;
use crate::pipeline::shard::{Layout, Shard};

/// The `build-db` command: validate first (no Redis touched on a bad file), then load.
pub async fn run(redis: &Redis, layout: &Layout, source: Option<&Path>) -> Result<usize> {
    let heroes = heroes::load_source(source)?;
    let n = heroes::store(redis, layout, &heroes).await?;
    let what = source
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the built-in roster".to_string());
    let into = match layout.count() {
        1 => format!("'{}'", layout.keys(Shard(0)).superheros()),
        shards => format!("each of {shards} shards"),
    };
    println!("loaded {n} heroes from {what} into {into}");
    Ok(n)
}
