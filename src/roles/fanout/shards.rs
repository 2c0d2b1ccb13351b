//! On a sharded layout, which fanout reads which shard's log: each fanout leases shards
//! (`{<lobby>:<s>}:fanout`, a TTL renewed every second) up to its fair share, ⌈S / live
//! fanouts⌉, and runs one [`Router`] per leased shard. A fanout that dies (or is paused) lets
//! its leases run out and the others take its shards; a fanout that joins makes the others'
//! share smaller, and they hand the extra shards over. Nothing rests on the leases for
//! correctness: the group gives each entry to one consumer however many routers read a log, so
//! a paused fanout that comes back to a shard now leased to another only reads beside it until
//! its next renewal fails. What a stopped router had read stays in the group's pending list and
//! is claimed by the shard's next router after ACK_TIMEOUT.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{RedisResult, Script};
use std::sync::LazyLock;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::router::Router;
use super::{FanoutMetrics, LIVE_WORKERS};
use crate::config::Settings;
use crate::pipeline::delivery::{self, Log};
use crate::pipeline::keys;
use crate::pipeline::redis_conn::{self, Backoff, Conn, Outage, Redis};
use crate::pipeline::shard::{Layout, Shard};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};

/// How often leases are renewed and the shares looked at again.
const KEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a shard's lease lasts without renewal: a dead fanout's shards wait this long.
const SHARD_LEASE: Duration = Duration::from_secs(5);
/// A fanout without a beat for this long leaves the heartbeat set.
const FORGET_FANOUT_BEAT: Duration = Duration::from_secs(60);

static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "-- Takes or renews a shard's lease for ARGV[1] (ARGV[2] ms): 1, or 0 when another holds it.
         local holder = redis.call('GET', KEYS[1])
         if holder and holder ~= ARGV[1] then return 0 end
         redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
         return 1",
    )
});
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "-- Deletes a shard's lease if ARGV[1] holds it.
         if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
         return 0",
    )
});

/// A router running for one leased shard.
struct Running {
    stop: ShutdownTrigger,
    task: JoinHandle<()>,
}

/// Leases shards and runs their routers until shutdown.
pub(super) async fn keep(
    settings: &Settings,
    layout: &Layout,
    consumer: &str,
    redis: &Redis,
    metrics: &FanoutMetrics,
    shutdown: &Shutdown,
) {
    let lobby = settings.worker_channel.clone();
    let mut conn = redis.conn();
    let mut running: BTreeMap<Shard, Running> = BTreeMap::new();
    let mut outage = Outage::new("fanout shard leases");
    let mut backoff = Backoff::default();
    // Where this fanout starts looking for free shards, so fanouts starting together do not
    // all race for the same ones.
    let start = layout.of_token(consumer).0;
    let count = layout.count();
    let shards: Vec<Shard> = (0..count).map(|i| Shard((start + i) % count)).collect();
    loop {
        let kept = tokio::select! {
            kept = keep_once(&lobby, layout, consumer, &shards, &mut conn, &mut running) => kept,
            _ = shutdown.recv() => break,
        };
        let mut wanted: Vec<Shard> = Vec::new();
        match kept {
            Ok(to_start) => {
                outage.recovered();
                backoff.reset();
                wanted = to_start;
            }
            Err(e) => {
                outage.failed(&redis_conn::describe(&e));
                if !backoff.wait(shutdown).await {
                    break;
                }
            }
        }
        for shard in wanted {
            let log = Log::of(layout, &lobby, shard);
            let Ok(conn) = redis.own_conn() else { continue };
            let (stop, stopped) = shutdown::channel();
            let mut router =
                Router::new(settings, log, consumer.to_string(), conn, metrics.clone());
            let outer = shutdown.clone();
            let task = tokio::spawn(
                async move {
                    tokio::select! {
                        () = router.run(&stopped) => {}
                        () = outer.recv() => {}
                    }
                }
                .instrument(tracing::info_span!("shard", s = shard.0)),
            );
            running.insert(shard, Running { stop, task });
        }
        tokio::select! {
            _ = tokio::time::sleep(KEEP_EVERY) => {}
            _ = shutdown.recv() => break,
        }
    }
    for (_, router) in running {
        router.stop.fire();
        let _ = router.task.await;
    }
    // Leases are not given back at shutdown: they run out, and a restart under the same id
    // takes its shards again at once.
}

/// One round: beats, renews the leases of the shards running here (stopping the routers of
/// those lost), gives back shards beyond the fair share, and takes free ones up to it. The
/// shards newly taken, whose routers the caller starts.
async fn keep_once(
    lobby: &str,
    layout: &Layout,
    consumer: &str,
    shards: &[Shard],
    conn: &mut Conn,
    running: &mut BTreeMap<Shard, Running>,
) -> RedisResult<Vec<Shard>> {
    let beats = keys::fanout_heartbeats(lobby);
    delivery::beat(conn, &beats, consumer).await?;
    let mut live: Vec<String> = LIVE_WORKERS
        .key(&beats)
        .arg(delivery::HEARTBEAT_STALE.as_millis() as u64)
        .arg(FORGET_FANOUT_BEAT.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    live.remove(0); // Redis's time
    let fanouts = live.len().max(1);
    let share = usize::from(layout.count()).div_ceil(fanouts);
    let lease_of = |s: Shard| layout.keys(s).fanout_lease(lobby);
    // Renew what runs here; a lease lost stops its router.
    let held: Vec<Shard> = running.keys().copied().collect();
    for shard in held {
        if !take(conn, &lease_of(shard), consumer).await? {
            tracing::info!(
                "shard {} is leased to another fanout; stopping its router",
                shard.0
            );
            stop(running, shard);
        }
    }
    // Beyond the share: hand over the last ones.
    while running.len() > share {
        let Some(&shard) = running.keys().next_back() else {
            break;
        };
        tracing::info!(
            "{fanouts} fanouts share {} shards: handing shard {} over",
            layout.count(),
            shard.0
        );
        stop(running, shard);
        let _: i64 = GIVE_BACK
            .key(lease_of(shard))
            .arg(consumer)
            .invoke_async(conn)
            .await?;
    }
    let mut taken = Vec::new();
    for &shard in shards {
        if running.len() + taken.len() >= share {
            break;
        }
        if running.contains_key(&shard) {
            continue;
        }
        if take(conn, &lease_of(shard), consumer).await? {
            taken.push(shard);
        }
    }
    if !taken.is_empty() {
        let names: Vec<String> = taken.iter().map(|s| s.0.to_string()).collect();
        tracing::info!(
            "reading shard(s) {} ({} fanout(s) share {} shards)",
            names.join(", "),
            fanouts,
            layout.count()
        );
    }
    Ok(taken)
}

/// Takes or renews the lease `key` for `consumer`; false when another fanout holds it.
async fn take(conn: &mut Conn, key: &str, consumer: &str) -> RedisResult<bool> {
    let taken: i64 = TAKE
        .key(key)
        .arg(consumer)
        .arg(SHARD_LEASE.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(taken == 1)
}

/// Stops the router of `shard` (it keeps nothing Redis does not hold).
fn stop(running: &mut BTreeMap<Shard, Running>, shard: Shard) {
    if let Some(router) = running.remove(&shard) {
        router.stop.fire();
        router.task.abort();
    }
}
