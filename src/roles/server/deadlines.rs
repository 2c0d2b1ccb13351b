//! Every server process enforces every game's deadlines, whichever server holds its sockets.
//!
//! The scripts that open a lobby or start a turn put the game in its shard's `games:deadlines`
//! with its deadline by Redis time; the ones that end a lobby or a game take it out. This task looks
//! every 200 ms (`SWEEP_EVERY`) for games past their deadline (by Redis's clock, never this
//! process's) and applies the rule: a lobby still waiting times out, and the player whose turn
//! it is falls, exactly as when its socket closes. The scripts check the state they act on, so
//! any number of servers may sweep at once and each deadline acts once. A game whose servers
//! all died therefore ends as soon as one server runs again: within TURN_TIMEOUT per living
//! player. A game whose deadline cannot be applied (a key of it holds garbage or the wrong
//! type) is logged once and put back a minute; the games behind it go on.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use crate::pipeline::redis_conn::Conn;
use redis::Script;

use super::game::{self, Eliminated, GameError};
use super::views;
use super::Shared;
use crate::pipeline::keys::{status, Keys};
use crate::pipeline::shard::{Layout, Shard};

/// How often the deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// Games handled per sweep round trip.
const SWEEP_BATCH: usize = 100;
/// How long a game whose deadline failed (a key of it holds garbage or the wrong type) waits
/// before it is tried again: rare enough to cost nothing, soon enough for a mended game.
const BROKEN_RETRY: Duration = Duration::from_secs(60);
/// How often idle users are looked for.
const USER_SWEEP_EVERY: Duration = Duration::from_secs(10);

static EXPIRE_USERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("expire_users.lua")));

static DUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("due.lua")));

static POSTPONE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("postpone.lua")));

/// Sweeps until shutdown.
pub async fn run(shared: Arc<Shared>) {
    let mut users_due = tokio::time::Instant::now();
    let mut broken = Broken::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shared.shutdown.recv() => return,
        }
        if let Err(e) = sweep(&shared, &mut broken).await {
            shared.unavailable(&e);
        }
        if tokio::time::Instant::now() >= users_due {
            users_due += USER_SWEEP_EVERY.min(shared.settings.user_expiry.max(SWEEP_EVERY));
            if let Err(e) = forget_idle_users(&shared).await {
                shared.unavailable(&e);
            }
        }
    }
}

/// Forgets users whose last login, find, lobby registration or attack is older than USER_EXPIRY,
/// shard by shard. A user's last use is kept in the shard of each game it plays, so its home
/// shard forgets it only when no shard has seen it within USER_EXPIRY (S reads per idle user);
/// a user seen elsewhere gets that time at home, and is not asked about again until then.
async fn forget_idle_users(shared: &Shared) -> redis::RedisResult<u64> {
    let layout = &shared.rules.layout;
    let idle_ms = shared.settings.user_expiry.as_millis() as u64;
    let mut conn = shared.redis.conn();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
    let cutoff = (secs * 1000 + micros / 1000).saturating_sub(idle_ms);
    let mut forgotten = 0;
    for shard in layout.shards() {
        let k = layout.keys(shard);
        let idle: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(k.users_last_use())
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .arg("LIMIT")
            .arg(0)
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        let mut gone = Vec::new();
        for u in idle {
            match seen_elsewhere(&mut conn, layout, shard, &u, cutoff).await? {
                Some(last) => {
                    let _: () = redis::cmd("ZADD")
                        .arg(k.users_last_use())
                        .arg("XX")
                        .arg("GT")
                        .arg(last)
                        .arg(&u)
                        .query_async(&mut conn)
                        .await?;
                }
                None => gone.push(u),
            }
        }
        if gone.is_empty() {
            continue;
        }
        let here: u64 = EXPIRE_USERS
            .key(k.users())
            .key(k.user_tokens())
            .key(k.users_last_use())
            .key(k.user_names())
            .arg(idle_ms)
            .arg(gone)
            .invoke_async(&mut conn)
            .await?;
        forgotten += here;
    }
    if forgotten > 0 {
        tracing::debug!("forgot {forgotten} user(s) idle for USER_EXPIRY");
    }
    Ok(forgotten)
}

/// The latest use of user `u` after `cutoff` in a shard other than `shard`, when `shard` is its
/// home; None when there is none, or when `shard` is not its home (there, a stale last use is
/// only forgotten).
async fn seen_elsewhere(
    conn: &mut Conn,
    layout: &Layout,
    shard: Shard,
    u: &str,
    cutoff: u64,
) -> redis::RedisResult<Option<u64>> {
    if layout.of_token(u) != shard {
        return Ok(None);
    }
    let mut latest = None;
    for other in layout.shards().filter(|s| *s != shard) {
        let last: Option<f64> = redis::cmd("ZSCORE")
            .arg(layout.keys(other).users_last_use())
            .arg(u)
            .query_async(conn)
            .await?;
        if let Some(last) = last.map(|l| l as u64).filter(|l| *l >= cutoff) {
            latest = latest.max(Some(last));
        }
    }
    Ok(latest)
}

/// Applies every deadline that has passed, shard by shard; the number of games it acted on.
/// Each game is handled on its own: one whose keys hold garbage or the wrong type is logged once, its
/// deadline moved [`BROKEN_RETRY`] on, and the sweep goes on with the next, so it cannot hold
/// back every deadline queued behind it. A Redis that is unreachable or busy ends the sweep.
pub async fn sweep(shared: &Shared, broken: &mut Broken) -> anyhow::Result<usize> {
    let mut acted = 0;
    for k in shared.rules.layout.all_keys() {
        acted += sweep_shard(shared, &k, broken).await?;
    }
    shared.available();
    Ok(acted)
}

/// [`sweep`] in the shard of `k`.
async fn sweep_shard(shared: &Shared, k: &Keys, broken: &mut Broken) -> anyhow::Result<usize> {
    let mut conn = shared.redis.conn();
    let due: Vec<String> = DUE
        .key(k.game_deadlines())
        .arg(SWEEP_BATCH)
        .invoke_async(&mut conn)
        .await?;
    let mut acted = 0;
    for g in due {
        match apply(shared, &mut conn, &g).await {
            Ok(done) => {
                acted += usize::from(done);
                broken.mended(&g);
            }
            Err(e) if e.is_outage() => return Err(e.into()),
            Err(e) => {
                if broken.first_failure(&g) {
                    tracing::error!(
                        "game {g}: cannot apply its deadline ({e}); trying again every {}s",
                        BROKEN_RETRY.as_secs()
                    );
                }
                let _: i64 = POSTPONE
                    .key(k.game_deadlines())
                    .arg(&g)
                    .arg(BROKEN_RETRY.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await?;
            }
        }
    }
    Ok(acted)
}

/// Applies game `g`'s deadline: a lobby still waiting times out, the player whose turn it is
/// falls. True when it changed the game.
async fn apply(shared: &Shared, conn: &mut Conn, g: &str) -> Result<bool, GameError> {
    let rules = &shared.rules;
    let view = views::view(conn, &rules.layout, g).await?;
    match view.status.as_deref() {
        Some(status::WAITING_LOBBY) => {
            let timed_out =
                game::lobby_timeout(conn, g, view.participants, rules.lobby_ms, rules).await?;
            if timed_out {
                shared.game_timed_out(g);
            }
            Ok(timed_out)
        }
        Some(status::IN_PROGRESS) => {
            let Some(head) = view.head else {
                return Ok(false);
            };
            match game::eliminate(conn, g, &head, Some(view.turn), rules).await? {
                Eliminated::Nothing => Ok(false),
                outcome => {
                    tracing::info!(
                        "game {g}: {head} did not act within TURN_TIMEOUT and is eliminated"
                    );
                    if let Eliminated::Completed { records } = outcome {
                        shared.game_completed(g, records);
                    }
                    Ok(true)
                }
            }
        }
        // Over, or gone: nothing is due any more.
        _ => {
            let _: () = redis::cmd("ZREM")
                .arg(rules.layout.keys_of(g).game_deadlines())
                .arg(g)
                .query_async(conn)
                .await?;
            Ok(false)
        }
    }
}

/// How many broken games [`Broken`] remembers before it starts over (and logs them again).
const BROKEN_KEPT: usize = 4096;

/// The games whose deadline failed, so each is logged once, not at every retry.
#[derive(Default)]
pub struct Broken(HashSet<String>);

impl Broken {
    /// True the first time game `g` fails.
    fn first_failure(&mut self, g: &str) -> bool {
        if self.0.len() >= BROKEN_KEPT {
            self.0.clear();
        }
        self.0.insert(g.to_string())
    }

    /// Game `g`'s deadline went through: should it break again, that is news.
    fn mended(&mut self, g: &str) {
        self.0.remove(g);
    }
}
