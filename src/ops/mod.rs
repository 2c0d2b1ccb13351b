//! Operator commands beside the flow: run it all at once ([`demo`]), measure it ([`mod@bench`]),
//! read its output ([`report`]), look at its state ([`status`]), clear it ([`clean`]) and load
//! the heroes ([`build_db`]). `demo` and `bench` run on a throwaway `redis-server` when asked
//! ([`private_redis`]), or on a throwaway Redis Cluster ([`private_cluster`]).

pub mod bench;
pub mod build_db;
pub mod clean;
pub mod demo;
pub mod private_cluster;
pub mod private_redis;
pub mod report;
pub mod status;
