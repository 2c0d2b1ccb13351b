//! The request/reply routes: login, find, hero and action. One socket serves any number of
//! requests; a refused request gets a STATUS reason and the socket stays usable.

use std::sync::Arc;

use anyhow::Result;
use futures_util::SinkExt;
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::Message;

use super::game::{self, Attacked, Found};
use super::identity;
use super::protocol::{self, game_status, reason, Route, StatusReply};
use super::views;
use super::{next_request_until_shutdown, refuse_and_close, Incoming, Shared, Socket};
use crate::connections::Slot;

/// A route's answer: the reply text, or the reason the request was refused. `Err` of the outer
/// result means Redis failed.
type Answer = Result<Result<String, &'static str>>;

/// Serves requests until the client leaves, the socket sits idle for IDLE_TIMEOUT (or is
/// displaced at the connection cap) or the server shuts down.
pub async fn serve(shared: Arc<Shared>, mut ws: Socket, mut slot: Slot, route: Route) {
    loop {
        let incoming = next_request_until_shutdown(&shared, &mut ws, &mut slot).await;
        let reply = match incoming {
            Incoming::Text(text) => handle(&shared, route, &text).await,
            Incoming::Refused(r) => status_text(r),
            Incoming::Fatal(r, code) => return refuse_and_close(&mut ws, r, code).await,
            Incoming::Closed => return,
        };
        if ws.send(Message::text(reply)).await.is_err() {
            return;
        }
    }
}

fn status_text(reason: &str) -> String {
    serde_json::to_string(&StatusReply::new(reason)).unwrap_or_default()
}

async fn handle(shared: &Arc<Shared>, route: Route, text: &str) -> String {
    let payload = match protocol::payload_of(text) {
        Ok(p) => p,
        Err(r) => return status_text(r),
    };
    let answer = match route {
        Route::Login => login(shared, &payload).await,
        Route::Find => find(shared, &payload).await,
        Route::Hero => hero(shared, &payload).await,
        Route::Action => action(shared, &payload).await,
        Route::Lobby => Ok(Err(reason::ALREADY_IN_LOBBY)),
    };
    match answer {
        Ok(Ok(reply)) => {
            shared.available();
            reply
        }
        Ok(Err(r)) => {
            shared.available();
            status_text(r)
        }
        Err(e) => status_text(shared.unavailable(&e)),
    }
}

fn json(value: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

async fn login(shared: &Shared, payload: &Map<String, Value>) -> Answer {
    let name = match protocol::LoginPayload::parse(payload) {
        Ok(p) => p.user,
        Err(r) => return Ok(Err(r)),
    };
    let (token, created) =
        game::login(&mut shared.redis.conn(), &shared.rules.layout, &name).await?;
    Ok(Ok(json(&protocol::LoginReply {
        payload: protocol::LoginReplyPayload { user_token: token },
        status: created.then(|| "USER CREATED".to_string()),
    })?))
}

async fn find(shared: &Shared, payload: &Map<String, Value>) -> Answer {
    let (user, n) = match protocol::FindPayload::parse(payload) {
        Ok(p) => (p.user_token, p.participants),
        Err(r) => return Ok(Err(r)),
    };
    let mut conn = shared.redis.conn();
    if !views::is_user(&mut conn, &shared.rules.layout, &user).await? {
        return Ok(Err(reason::UNKNOWN_USER_TOKEN));
    }
    let mut found = game::find(&mut conn, &user, n, &shared.rules).await?;
    // No heroes at all means Redis lost its data: put the roster back and try once more.
    if matches!(found, Found::Refused(reason::NO_HEROES))
        && crate::heroes::reload_if_missing(&shared.redis, &shared.rules.layout).await?
    {
        found = game::find(&mut conn, &user, n, &shared.rules).await?;
    }
    match found {
        Found::Joined { game, hero_id } => Ok(Ok(json(&protocol::FindReply {
            payload: protocol::FindReplyPayload {
                game_token: game,
                hero_id,
            },
            status: protocol::JoinedStatus {
                joined: "SUCCESS".to_string(),
            },
        })?)),
        Found::Refused(r) => Ok(Err(r)),
    }
}

async fn hero(shared: &Shared, payload: &Map<String, Value>) -> Answer {
    let (g, u) = match protocol::GameUserPayload::parse(payload) {
        Ok(p) => (p.game_token, p.user_token),
        Err(r) => return Ok(Err(r)),
    };
    let mut conn = shared.redis.conn();
    match identity::hero_spec(shared, &mut conn, &g, &u).await? {
        Some(hero) => Ok(Ok(json(&protocol::HeroReply {
            payload: protocol::HeroReplyPayload {
                game_token: g,
                user_token: u,
                hero,
            },
            status: protocol::GameStatus {
                game: game_status::HERO_SPEC.to_string(),
            },
        })?)),
        None if views::is_game(&mut conn, &shared.rules.layout, &g).await? => {
            Ok(Err(reason::USER_NOT_IN_GAME))
        }
        None => Ok(Err(reason::UNKNOWN_GAME_TOKEN)),
    }
}

async fn action(shared: &Arc<Shared>, payload: &Map<String, Value>) -> Answer {
    let (g, u, e) = match protocol::ActionPayload::parse(payload) {
        Ok(p) => (p.game_token, p.user_token, p.enemy_token),
        Err(r) => return Ok(Err(r)),
    };
    let mut conn = shared.redis.conn();
    let max_turns = shared.settings.max_turns;
    // Players name their enemies by alias only; the attack script resolves it.
    let alias = e;
    match game::attack(&mut conn, &g, &u, &alias, max_turns, &shared.rules).await? {
        Attacked::Refused(r) => Ok(Err(r)),
        Attacked::Stored {
            record,
            completed,
            turn,
            next,
            records,
        } => {
            shared.metrics.attacks.inc();
            tracing::trace!("game {g} turn {turn}: {u} attacked {alias}; next {next:?}");
            if completed {
                // The attack is stored, and with it the game's lifecycle records.
                shared.game_completed(&g, records);
            }
            Ok(Ok(identity::record_for_attacker(&record, &alias)?))
        }
    }
}
