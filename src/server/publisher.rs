//! The lifecycle-record publisher (SPEC §5): a task fed by an unbounded channel, so game code
//! never waits on Redis to log, and the only place records reach WORKER_CHANNEL.
//!
//! A record whose PUBLISH reaches no subscriber is RPUSHed to the backlog list instead, for the
//! fanout to deliver when it starts. While Redis is down the task retries the same record with
//! backoff, so nothing is dropped while Redis comes back.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::ServerMetrics;
use crate::config::{LoggerModule, Settings};
use crate::keys;
use crate::record::LifecycleRecord;
use crate::redis_conn::{Backoff, Outage, Redis};
use crate::shutdown::Shutdown;

/// How long a shutting-down server keeps trying to hand its last records to a Redis that is down.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Cheap handle game code uses to queue records; a no-op when publishing is off.
#[derive(Clone)]
pub struct Publisher {
    tx: Option<mpsc::UnboundedSender<LifecycleRecord>>,
    name: String,
}

impl Publisher {
    /// Queues an INFO record with this message and task.
    pub fn publish(&self, log_message: &str, task: Value) {
        if let Some(tx) = &self.tx {
            let record = LifecycleRecord::info(&self.name, log_message, task);
            if tx.send(record).is_err() {
                tracing::error!("lifecycle publisher has stopped; record {log_message} lost");
            }
        }
    }
}

/// PUBLISHes one record on the lobby channel, or RPUSHes it to the backlog when nobody listens;
/// true when a subscriber received it.
async fn deliver(
    conn: &mut ConnectionManager,
    channel: &str,
    backlog: &str,
    text: &str,
) -> redis::RedisResult<bool> {
    let receivers: u64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(text)
        .query_async(conn)
        .await?;
    if receivers > 0 {
        return Ok(true);
    }
    redis::cmd("RPUSH")
        .arg(backlog)
        .arg(text)
        .query_async::<u64>(conn)
        .await?;
    Ok(false)
}

/// Sends one INFO record at once, outside any server's publisher task (for `demo`, which times
/// out lobbies itself); a no-op unless LOGGER_MODULE=redis. One attempt: the error is the caller's.
pub async fn publish_now(
    settings: &Settings,
    redis: &Redis,
    log_message: &str,
    task: Value,
) -> anyhow::Result<()> {
    if settings.logger_module != LoggerModule::Redis {
        return Ok(());
    }
    let channel = &settings.worker_channel;
    let record = LifecycleRecord::info(channel, log_message, task);
    let text = serde_json::to_string(&record)?;
    deliver(&mut redis.conn(), channel, &keys::backlog(channel), &text).await?;
    Ok(())
}

/// Starts the publisher task when LOGGER_MODULE=redis. The task ends once every [`Publisher`]
/// clone is dropped and the queue is empty.
pub fn spawn(
    settings: &Settings,
    redis: &Redis,
    metrics: ServerMetrics,
    shutdown: Shutdown,
) -> (Publisher, Option<JoinHandle<()>>) {
    let name = settings.worker_channel.clone();
    if settings.logger_module != LoggerModule::Redis {
        tracing::warn!(
            "LOGGER_MODULE is not 'redis': no lifecycle records are published, workers will receive nothing"
        );
        return (Publisher { tx: None, name }, None);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<LifecycleRecord>();
    let mut conn = redis.conn();
    let channel = settings.worker_channel.clone();
    let backlog = keys::backlog(&channel);
    let task = tokio::spawn(async move {
        let mut backoff = Backoff::default();
        let mut outage = Outage::new("lifecycle publisher");
        while let Some(record) = rx.recv().await {
            let text = match serde_json::to_string(&record) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("cannot encode lifecycle record: {e}");
                    continue;
                }
            };
            let mut giving_up_at = None;
            loop {
                match deliver(&mut conn, &channel, &backlog, &text).await {
                    Ok(published) => {
                        outage.recovered();
                        backoff.reset();
                        if published {
                            metrics.records_published.inc();
                        } else {
                            metrics.records_backlogged.inc();
                        }
                        tracing::debug!(
                            "lifecycle record {} {}",
                            record.log_message,
                            if published { "published" } else { "backlogged" }
                        );
                        break;
                    }
                    Err(e) => {
                        outage.failed(&crate::redis_conn::describe(&e));
                        if shutdown.is_triggered() {
                            let deadline = *giving_up_at.get_or_insert_with(|| {
                                tokio::time::Instant::now() + DRAIN_DEADLINE
                            });
                            if tokio::time::Instant::now() >= deadline {
                                tracing::error!(
                                    "shutting down with Redis unreachable: lifecycle record {} and {} more lost",
                                    record.log_message,
                                    rx.len()
                                );
                                return;
                            }
                            tokio::time::sleep(backoff.next_delay()).await;
                        } else {
                            backoff.wait(&shutdown).await;
                        }
                    }
                }
            }
        }
    });
    (Publisher { tx: Some(tx), name }, Some(task))
}
