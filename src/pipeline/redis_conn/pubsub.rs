//! Pub/sub subscriptions that survive outages: [`subscribe`] forwards messages into a channel,
//! so a slow consumer never makes Redis drop the subscriber.
//!
//! On a Redis Cluster a classic PUBLISH reaches every node, so one subscription on any node
//! hears every channel; it goes through the seeds in turn, moving on when one is unreachable. A
//! subscription to one channel (a worker's) goes through the primary of that channel's slot
//! when it can, where a PUBLISH counts it.

use futures_util::StreamExt;
use redis::Client;
use tokio::sync::mpsc;

use super::{Backoff, Outage, Redis, CONNECT_TIMEOUT};
use crate::shutdown::Shutdown;

/// What a subscription hands its consumer.
#[derive(Debug)]
pub enum SubEvent {
    /// The subscription is (re)established: anything published while it was down was missed,
    /// so consumers resynchronise from Redis state here (backlogs, pending records).
    Subscribed,
    /// A message on one of the channels or patterns.
    Message { channel: String, payload: Vec<u8> },
}

/// Subscribes to `channels` and `patterns` and keeps the subscription alive until `shutdown`,
/// reconnecting with capped backoff. Messages are read as fast as Redis sends them and queued
/// in memory, so a burst never overflows Redis's pub/sub output buffer.
pub fn subscribe(
    redis: &Redis,
    channels: Vec<String>,
    patterns: Vec<String>,
    shutdown: Shutdown,
) -> mpsc::UnboundedReceiver<SubEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    // A worker's one channel: through the primary that serves its slot when it can (see
    // [`Redis::owner_client`]), looked up again at every reconnection (a failover moves it).
    let owned = match (&channels[..], &patterns[..]) {
        ([channel], []) if redis.is_cluster() => Some((redis.clone(), channel.clone())),
        _ => None,
    };
    let nodes = redis.subscription_clients();
    keep_subscribed(nodes, owned, channels, patterns, shutdown, tx);
    rx
}

/// [`subscribe`] to `patterns`, on a cluster once through every primary (then its seeds when
/// that primary is gone), into one receiver: a PUBLISH is heard at once by the subscribers of
/// the node that runs it, and tens of milliseconds later through the cluster bus by those of
/// the others, so each message arrives once per primary, the first time without the bus's
/// delay. The consumer must take a message twice as it takes it once. On one Redis, or when
/// the primaries cannot be listed, it is [`subscribe`].
pub async fn subscribe_on_every_primary(
    redis: &Redis,
    patterns: Vec<String>,
    shutdown: Shutdown,
) -> mpsc::UnboundedReceiver<SubEvent> {
    let primaries = match redis.primary_clients().await {
        Some(primaries) if !primaries.is_empty() => primaries,
        _ => return subscribe(redis, Vec::new(), patterns, shutdown),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    for primary in primaries {
        let mut nodes = vec![primary];
        nodes.extend(redis.subscription_clients());
        let (patterns, shutdown, tx) = (patterns.clone(), shutdown.clone(), tx.clone());
        keep_subscribed(nodes, None, Vec::new(), patterns, shutdown, tx);
    }
    rx
}

/// The subscription task of [`subscribe`]: through `nodes` in turn (or the owner of `owned`'s
/// channel first), resubscribing with backoff, until `shutdown` or the receiver is gone.
fn keep_subscribed(
    nodes: Vec<Client>,
    owned: Option<(Redis, String)>,
    channels: Vec<String>,
    patterns: Vec<String>,
    shutdown: Shutdown,
    tx: mpsc::UnboundedSender<SubEvent>,
) {
    // In the caller's span: the outage lines say whose subscription it is.
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let mut backoff = Backoff::default();
        let mut outage = Outage::new("subscriber");
        // The node subscribed through: one that cannot be reached, or drops the subscription,
        // hands over to the next.
        let mut node = 0;
        // The owner failed last time: go through the seeds once.
        let mut owner_failed = false;
        loop {
            if shutdown.is_triggered() || tx.is_closed() {
                return;
            }
            let owner = match &owned {
                Some((redis, channel)) if !owner_failed => redis.owner_client(channel).await,
                _ => None,
            };
            let through_owner = owner.is_some();
            let client = owner.as_ref().unwrap_or(&nodes[node % nodes.len()]);
            let pubsub = async {
                let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
                    .await
                    .map_err(|_| anyhow::anyhow!("connection timed out"))??;
                for ch in &channels {
                    pubsub.subscribe(ch).await?;
                }
                for p in &patterns {
                    pubsub.psubscribe(p).await?;
                }
                anyhow::Ok(pubsub)
            };
            // A Redis that accepts and then stalls must not hold up a shutdown.
            let pubsub = tokio::select! {
                pubsub = pubsub => pubsub,
                _ = shutdown.recv() => return,
            };
            let pubsub = match pubsub {
                Ok(p) => p,
                Err(e) => {
                    outage.failed(&e);
                    owner_failed = through_owner;
                    node = node.wrapping_add(usize::from(!through_owner));
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            outage.recovered();
            backoff.reset();
            owner_failed = false;
            if tx.send(SubEvent::Subscribed).is_err() {
                return;
            }
            let mut stream = pubsub.into_on_message();
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(msg) => {
                            let event = SubEvent::Message {
                                channel: msg.get_channel_name().to_string(),
                                payload: msg.get_payload_bytes().to_vec(),
                            };
                            if tx.send(event).is_err() {
                                return;
                            }
                        }
                        None => {
                            outage.failed(&"subscription closed");
                            node = node.wrapping_add(1);
                            break;
                        }
                    },
                    _ = shutdown.recv() => return,
                }
            }
        }
    }));
}
