//! The integration tests, one binary: every module drives the real `superhero` binary or its
//! role functions against a private `redis-server` (see `common`). One binary instead of one per
//! file: linking each against the whole dependency tree dominated `cargo test` on two cores.

mod common;

mod bad_input;
mod bench;
mod cluster;
mod connection_limits;
mod delivery;
mod demo;
mod docs;
mod faults;
mod foundation;
mod game;
mod game_timers;
mod impersonation;
mod metrics;
mod object_store;
mod ops;
mod pipeline;
mod protocol_props;
mod report;
mod security;
mod server_metrics;
mod sharded;
mod status;
mod worker;
mod worker_etl;
