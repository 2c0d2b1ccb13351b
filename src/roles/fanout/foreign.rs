//! Records of other publishers: the fanout also listens on the lobby channel and appends what
//! another publisher (the Python reference server, say) sent there, without an entry id, to the
//! log, once across all fanouts ([`super::APPEND_FOREIGN`]). Records that carry an `entry_id`
//! are in the log already and are ignored.

use crate::pipeline::redis_conn::Conn;
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
    mut conn: Conn,
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
            let mut invocation = APPEND_FOREIGN.key(&stream);
            invocation
                .arg(&seen_prefix)
                .arg(FOREIGN_SEEN_SECS)
                .arg(&batch);
            let append = invocation.invoke_async(&mut conn);
            // During an outage a command waits on a reconnection for as long as Redis stays
            // away: a shutdown does not wait for it.
            let appended: Option<RedisResult<u64>> = tokio::select! {
                appended = append => Some(appended),
                _ = shutdown.recv() => None,
            };
            let stopped = match appended {
                Some(Ok(n)) => {
                    outage.recovered();
                    backoff.reset();
                    metrics.records_received.inc_by(n);
                    break;
                }
                Some(Err(e)) => {
                    outage.failed(&redis_conn::describe(&e));
                    !backoff.wait(&shutdown).await
                }
                None => true,
            };
            if stopped {
                tracing::error!(
                    "stopping with Redis unreachable: {} record(s) of another publisher not appended",
                    batch.len()
                );
                return;
            }
        }
    }
}
