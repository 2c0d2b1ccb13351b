//! Every server process enforces every game's deadlines, whichever server holds its sockets.
//!
//! The scripts that open a lobby or start a turn put the game in `games:deadlines` with its
//! deadline by Redis time; the ones that end a lobby or a game take it out. This task looks
//! every 200 ms (`SWEEP_EVERY`) for games past their deadline (by Redis's clock, never this
//! process's) and applies the rule: a lobby still waiting times out, and the player whose turn
//! it is falls, exactly as when its socket closes. The scripts check the state they act on, so
//! any number of servers may sweep at once and each deadline acts once. A game whose servers
//! all died therefore ends as soon as one server runs again: within TURN_TIMEOUT per living
//! player.

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::game::{self, Eliminated};
use super::views;
use super::Shared;
use crate::pipeline::keys::{self, status};

/// How often the deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// Games handled per sweep round trip.
const SWEEP_BATCH: usize = 100;
/// How often idle users are looked for.
const USER_SWEEP_EVERY: Duration = Duration::from_secs(10);

static EXPIRE_USERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("expire_users.lua")));

static DUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("due.lua")));

/// Sweeps until shutdown.
pub async fn run(shared: Arc<Shared>) {
    let mut users_due = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shared.shutdown.recv() => return,
        }
        if let Err(e) = sweep(&shared).await {
            shared.unavailable(&e);
        }
        if tokio::time::Instant::now() >= users_due {
            users_due += USER_SWEEP_EVERY.min(shared.settings.user_expiry.max(SWEEP_EVERY));
            if let Err(e) = forget_idle_users(&shared).await {
                shared.unavailable(&e.into());
            }
        }
    }
}

/// Forgets users whose last login or find is older than USER_EXPIRY.
async fn forget_idle_users(shared: &Shared) -> redis::RedisResult<u64> {
    let forgotten: u64 = EXPIRE_USERS
        .key(keys::USERS)
        .key(keys::USER_TOKENS)
        .key(keys::USERS_LAST_USE)
        .key(keys::USER_NAMES)
        .arg(shared.settings.user_expiry.as_millis() as u64)
        .arg(1000)
        .invoke_async(&mut shared.redis.conn())
        .await?;
    if forgotten > 0 {
        tracing::debug!("forgot {forgotten} user(s) idle for USER_EXPIRY");
    }
    Ok(forgotten)
}

/// Applies every deadline that has passed; the number of games it acted on.
pub async fn sweep(shared: &Shared) -> anyhow::Result<usize> {
    let mut conn = shared.redis.conn();
    let due: Vec<String> = DUE
        .key(keys::GAME_DEADLINES)
        .arg(SWEEP_BATCH)
        .invoke_async(&mut conn)
        .await?;
    let rules = &shared.rules;
    let mut acted = 0;
    for g in due {
        let view = views::view(&mut conn, &g).await?;
        match view.status.as_deref() {
            Some(status::WAITING_LOBBY) => {
                if game::lobby_timeout(&mut conn, &g, view.participants, rules.lobby_ms, rules)
                    .await?
                {
                    shared.game_timed_out(&g);
                    acted += 1;
                }
            }
            Some(status::IN_PROGRESS) => {
                let Some(head) = view.head else { continue };
                match game::eliminate(&mut conn, &g, &head, Some(view.turn), rules).await? {
                    Eliminated::Nothing => {}
                    outcome => {
                        tracing::info!(
                            "game {g}: {head} did not act within TURN_TIMEOUT and is eliminated"
                        );
                        if let Eliminated::Completed { records } = outcome {
                            shared.game_completed(&g, records);
                        }
                        acted += 1;
                    }
                }
            }
            // Over, or gone: nothing is due any more.
            _ => {
                let _: () = redis::cmd("ZREM")
                    .arg(keys::GAME_DEADLINES)
                    .arg(&g)
                    .query_async(&mut conn)
                    .await?;
            }
        }
    }
    shared.available();
    Ok(acted)
}
