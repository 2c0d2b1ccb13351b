//! Support for tests and benchmarks, also used at run time by `demo` and `bench`: synthetic
//! games written straight to Redis ([`synth`]) and a private `redis-server` ([`private_redis`]).

pub mod private_redis;
pub mod synth;
