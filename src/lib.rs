//! `superhero`: a Super Hero Combat Simulator and the Redis Stream -> Parquet pipeline behind it.
//!
//! The folder tree reads as the data flow, source → route → transform → sink:
//! - [`roles`]: the processes. The game server (`roles::server`) is the source: it keeps game
//!   state in Redis and its Lua scripts append lifecycle records to the log stream; the fanout
//!   (`roles::fanout`) routes each record to exactly one worker, with acknowledgements; the
//!   worker (`roles::worker`) turns each finished game into rows; `roles::player` is a bot that
//!   plays games against the server.
//! - [`pipeline`]: what the stages share: the record type ([`pipeline::record`]), the delivery
//!   contract between fanout and workers ([`pipeline::delivery`]), every key and channel name
//!   ([`pipeline::keys`]), the one Redis connection layer ([`pipeline::redis_conn`]) and the
//!   Parquet sink ([`pipeline::sink`], a folder or an object store).
//! - [`ops`]: operator commands outside the flow: `demo`, `bench`, `report`, `status`, `clean`,
//!   `build-db`, with what they run on: a throwaway `redis-server` ([`ops::private_redis`], for
//!   `demo` and `bench`) and synthetic finished games ([`ops::bench::synth`], for `bench etl`).
//!   The tests reuse both; there is no test-only code in the library.
//!
//! Shared pieces at the top: [`config`] (settings), [`cli`], [`clock`], [`logging`], [`metrics`],
//! [`shutdown`], [`heroes`], [`connections`] (the cap, idle timeout and accept backoff of the
//! server's and the metrics endpoint's listeners).

pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod heroes;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod roles;
pub mod shutdown;

#[cfg(test)]
mod layering;
