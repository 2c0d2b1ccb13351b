//! Records of other publishers: the fanout also listens on the lobby channel and appends what
//! another publisher (the original server) sent there, without an entry id, to the log, once
//! across all fanouts ([`super::APPEND_FOREIGN`]). Records that carry an `entry_id` are in the
//! log already and are ignored.

use redis::aio::ConnectionManager;
use redis::RedisResult;
use tokio::sync::mpsc;

use super::{FanoutMetrics, APPEND_FOREIGN, FOREIGN_SEEN_SECS, ROUTE_BATCH};
use crate::pipeline::keys;
use crate::pipeline::record::{self, SkipLog};
use crate::pipeline::redis_conn::{self, Backoff, Outage, SubEvent};
use crate::shutdown::Shutdown;

/// Appends records of other publishers (no entry id) to the log; skips the rest.
pub(super) async fn append_foreign(
    lobby: String,
    mut conn: ConnectionManager,
    mut events: mpsc::UnboundedReceiver<SubEvent>,
    metrics: FanoutMetrics,
    shutdown: Shutdown,
) {
    let stream = keys::log_stream(&lobby);
    let seen_prefix = keys::foreign_seen(&lobby, "");
    let mut skips = SkipLog::default();
    let mut outage = Outage::new("fanout listener");
    let mut backoff = Backoff::default();
    while let Some(event) = events.recv().await {
        let SubEvent::Message { payload, .. } = event else {
            continue;
        };
        let mut batch = Vec::new();
        let mut next = Some(payload);
        while let Some(payload) = next.take() {
            match record::parse(&payload) {
                Ok(r) if r.entry_id.is_some() => {} // in the log already
                Ok(_) => batch.push(payload),
                Err(e) => skips.skip(&e),
            }
            if batch.len() < ROUTE_BATCH {
                if let Ok(SubEvent::Message { payload, .. }) = events.try_recv() {
                    next = Some(payload);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        loop {
            let appended: RedisResult<u64> = APPEND_FOREIGN
                .key(&stream)
                .arg(&seen_prefix)
                .arg(FOREIGN_SEEN_SECS)
                .arg(&batch)
                .invoke_async(&mut conn)
                .await;
            match appended {
                Ok(n) => {
                    outage.recovered();
                    backoff.reset();
                    metrics.records_received.inc_by(n);
                    break;
                }
                Err(e) => {
                    outage.failed(&redis_conn::describe(&e));
                    if !backoff.wait(&shutdown).await {
                        tracing::error!(
                            "stopping with Redis unreachable: {} record(s) of another publisher not appended",
                            batch.len()
                        );
                        return;
                    }
                }
            }
        }
    }
}
