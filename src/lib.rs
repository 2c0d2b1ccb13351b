//! `superhero`: a Super Hero Combat Simulator and the Redis pub/sub -> Parquet pipeline behind it.
//!
//! Data flows source → route → transform → sink:
//! - the game server (`server`) is the source: it keeps game state in Redis and publishes
//!   lifecycle records on the lobby channel;
//! - the fanout (`fanout`) routes each record to exactly one worker channel, with acknowledgements;
//! - the worker (`worker`) turns each finished game into rows;
//! - the Parquet sink (`sink`) writes them as gzip-compressed Parquet files.
//!
//! Shared pieces: [`config`] (settings), [`redis_conn`] (the one Redis connection layer),
//! [`keys`] (every key and channel name), [`shutdown`], [`heroes`], [`connections`] (the cap,
//! idle timeout and accept backoff of the server's and the metrics endpoint's listeners).

pub mod bench;
pub mod build_db;
pub mod clean;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod delivery;
pub mod demo;
pub mod fanout;
pub mod heroes;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod player;
pub mod private_redis;
pub mod record;
pub mod redis_conn;
pub mod report;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod status;
pub mod synth;
pub mod worker;
