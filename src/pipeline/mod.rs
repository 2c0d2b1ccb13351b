//! What the stages of the flow share: the lifecycle record ([`record`]), the delivery contract
//! between fanout and workers ([`delivery`]), every Redis key and channel name ([`keys`]),
//! how keys are spread over shards ([`shard`]), the one Redis connection layer
//! ([`redis_conn`]) and the Parquet sink ([`sink`]).

pub mod delivery;
pub mod keys;
pub mod record;
pub mod redis_conn;
pub mod shard;
pub mod sink;
