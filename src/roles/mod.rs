//! The processes of the data flow, each with an entry point that takes its settings, a Redis
//! handle and a shutdown signal: the game server (the source), the fanout (the router), the
//! worker (the transform, writing through [`crate::pipeline::sink`]) and the player bot.

pub mod fanout;
pub mod player;
pub mod server;
pub mod worker;
