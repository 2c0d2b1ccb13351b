//! Lifecycle records (SPEC §5): what the server publishes on WORKER_CHANNEL and the pipeline
//! consumes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `log_message` of the record published when a game starts (task: the START message).
pub const STARTING_MATCH: &str = "Starting Match";
/// `log_message` of the record published when a lobby did not fill in time.
pub const GAME_TIMED_OUT: &str = "Game Timed Out";
/// `log_message` of the per-participant records published once a game is over.
pub const CLEANING_GAME_RECORDS: &str = "Cleaning Game Records";

/// One lifecycle record, published as a single JSON object.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct LifecycleRecord {
    pub level: String,
    pub timestamp: String,
    pub name: String,
    pub log_message: String,
    pub task: Value,
}

impl LifecycleRecord {
    /// An INFO record stamped now, named after the channel it goes to.
    pub fn info(name: &str, log_message: &str, task: Value) -> Self {
        LifecycleRecord {
            level: "INFO".to_string(),
            timestamp: crate::clock::record_timestamp(),
            name: name.to_string(),
            log_message: log_message.to_string(),
            task,
        }
    }
}
