//! `superhero status`: one look at a running system through Redis alone.
//!
//! Answers the operator's two questions — is it keeping up, is anything stuck — from what the
//! roles leave in Redis: subscribers of the lobby and worker channels, worker heartbeats, the log
//! stream (length, records not yet read, records not yet acknowledged per worker and the age of
//! the oldest, dead letters), games by status, claimed games not yet written, heroes loaded.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::pipeline::redis_conn::Conn;
use anyhow::Result;
use serde::Serialize;

use crate::pipeline::delivery::Log;
use crate::pipeline::keys;
use crate::pipeline::redis_conn::scan;
use crate::pipeline::redis_conn::{numsub, Redis};
use crate::pipeline::shard::{Layout, Shard};
use crate::shutdown::Shutdown;

/// A subscribed worker channel.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WorkerChannel {
    pub id: String,
    pub channel: String,
    pub subscribers: u64,
    /// Its heartbeat is fresh: the fanout routes to it.
    pub live: bool,
    /// Records routed to it and not yet acknowledged.
    pub unacked: u64,
}

/// Records read from the log and not yet acknowledged.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Unacked {
    pub count: u64,
    /// Seconds since the server appended the oldest of them.
    pub oldest_age_secs: Option<f64>,
}

/// Everything `status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    pub redis: String,
    pub lobby_channel: String,
    /// The fanouts: subscribers of the lobby channel (on shards: fresh fanout heartbeats).
    pub fanouts: u64,
    pub workers: Vec<WorkerChannel>,
    /// Entries in the log stream: in flight plus the retention window.
    pub log_length: u64,
    /// Entries of the log no fanout has read yet (none while no worker can take them).
    pub undelivered: u64,
    pub unacked: Unacked,
    /// Records given up on after MAX_DELIVERIES (`<lobby>:dead`).
    pub dead_letters: u64,
    /// Games by status; every status of `docs/redis-keys.md` is listed, zero or not.
    pub games: BTreeMap<String, u64>,
    /// Games a worker has claimed but not finished writing.
    pub claimed_unfinished: u64,
    pub heroes: u64,
}

/// Reads the status of the system from Redis.
pub async fn collect(redis: &Redis, layout: &Layout, lobby: &str) -> Result<Status> {
    let mut conn = redis.conn();
    let logs = Log::all(layout, lobby);
    let pipeline = crate::roles::fanout::inspect_logs(&mut conn, &logs, lobby).await?;
    let fanouts = if layout.is_tagged() {
        // On shards the fanouts do not listen on the lobby channel; they beat instead.
        pipeline.live_fanouts.len() as u64
    } else {
        numsub(&mut conn, &[lobby.to_string()])
            .await?
            .first()
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    let mut workers = worker_channels(&mut conn, lobby).await?;
    for w in &mut workers {
        w.live = pipeline.live_workers.contains(&w.id);
        w.unacked = pipeline
            .unacked_per_consumer
            .get(&w.id)
            .copied()
            .unwrap_or(0);
    }
    // Every shard holds the same copy: the first one's size is the collection's.
    let heroes: u64 = redis::cmd("HLEN")
        .arg(layout.keys(Shard(0)).superheros())
        .query_async(&mut conn)
        .await?;
    let games = games_by_status(&mut conn).await?;
    Ok(Status {
        redis: redis.addr().to_string(),
        lobby_channel: lobby.to_string(),
        fanouts,
        workers,
        log_length: pipeline.stream_length,
        undelivered: pipeline.undelivered,
        unacked: Unacked {
            count: pipeline.unacked,
            oldest_age_secs: pipeline.oldest_unacked_age.map(|d| d.as_secs_f64()),
        },
        dead_letters: pipeline.dead_letters,
        games,
        claimed_unfinished: pipeline.claimed_unfinished,
        heroes,
    })
}

/// Worker channels with at least one subscriber, by PUBSUB CHANNELS (on a cluster, every
/// node's list, so a channel may come more than once).
async fn worker_channels(conn: &mut Conn, lobby: &str) -> Result<Vec<WorkerChannel>> {
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(keys::worker_channel_pattern(lobby))
        .query_async(conn)
        .await?;
    channels.sort();
    channels.dedup();
    Ok(numsub(conn, &channels)
        .await?
        .into_iter()
        .filter_map(|(channel, subscribers)| {
            let id = keys::worker_id_of(lobby, &channel)?.to_string();
            Some(WorkerChannel {
                id,
                channel,
                subscribers,
                live: false,
                unacked: 0,
            })
        })
        .filter(|w| w.subscribers > 0)
        .collect())
}

async fn games_by_status(conn: &mut Conn) -> Result<BTreeMap<String, u64>> {
    let mut games: BTreeMap<String, u64> = [
        keys::status::WAITING_LOBBY,
        keys::status::STARTING,
        keys::status::IN_PROGRESS,
        keys::status::WAITING_PLAYER,
        keys::status::COMPLETED,
        keys::status::TIMED_OUT,
    ]
    .iter()
    .map(|s| (s.to_string(), 0))
    .collect();
    let status_keys: Vec<String> = scan(conn, "games:*:status")
        .await?
        .into_iter()
        .filter(|k| keys::parse_game_key(k, ":status").is_some())
        .collect();
    for chunk in status_keys.chunks(500) {
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query_async(conn).await?;
        for status in values.into_iter().flatten() {
            *games.entry(status).or_default() += 1;
        }
    }
    Ok(games)
}

/// Human-readable table.
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<28} {v}\n"));
    line("redis", s.redis.clone());
    line("lobby channel", s.lobby_channel.clone());
    line("fanouts subscribed", s.fanouts.to_string());
    line(
        "live workers",
        s.workers.iter().filter(|w| w.live).count().to_string(),
    );
    for w in &s.workers {
        line(
            &format!("  worker {}", w.id),
            format!(
                "{} subscriber(s) on {}, {}, {} unacknowledged",
                w.subscribers,
                w.channel,
                if w.live { "live" } else { "no heartbeat" },
                w.unacked
            ),
        );
    }
    line("log length", s.log_length.to_string());
    line("not yet delivered", s.undelivered.to_string());
    line(
        "routed, not acknowledged",
        match s.unacked.oldest_age_secs {
            Some(age) => format!("{} (oldest {age:.1}s)", s.unacked.count),
            None => s.unacked.count.to_string(),
        },
    );
    line("dead letters", s.dead_letters.to_string());
    line("games", String::new());
    for (status, n) in &s.games {
        line(&format!("  {status}"), n.to_string());
    }
    line("claimed, not yet written", s.claimed_unfinished.to_string());
    line("heroes loaded", s.heroes.to_string());
    out
}

/// The `status` command: print once, or every `watch` interval until Ctrl-C.
pub async fn run(
    redis: &Redis,
    layout: &Layout,
    lobby: &str,
    json: bool,
    watch: Option<Duration>,
    shutdown: Shutdown,
) -> Result<()> {
    loop {
        let status = collect(redis, layout, lobby).await?;
        let text = if json {
            serde_json::to_string_pretty(&status)?
        } else {
            render_table(&status)
        };
        match watch {
            None => {
                println!("{text}");
                return Ok(());
            }
            Some(every) => {
                // Clear the screen and redraw in place.
                print!(
                    "\x1b[2J\x1b[H{text}\n(refreshing every {:.1}s; Ctrl-C to stop)\n",
                    every.as_secs_f64()
                );
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.recv() => return Ok(()),
                }
            }
        }
    }
}
