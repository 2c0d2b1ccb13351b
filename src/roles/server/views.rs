//! Reads of game and user state, no changes: a player's hero, what a lobby needs to
//! resynchronise ([`GameView`]), and whether a user or a game exists. The changes are the
//! scripts of [`super::game`].

use std::collections::BTreeMap;

use crate::pipeline::redis_conn::Conn;
use redis::RedisResult as Result;

use super::protocol::HeroSpec;
use crate::pipeline::keys::status;
use crate::pipeline::shard::Layout;

pub(super) fn spec_of(u: &str, fields: &BTreeMap<String, String>) -> Option<HeroSpec> {
    if fields.is_empty() {
        return None;
    }
    let num = |k: &str| {
        fields
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(HeroSpec {
        token: u.to_string(),
        id: fields.get("id").and_then(|v| v.parse().ok()),
        attack: num("attack"),
        health: num("health"),
    })
}

/// What a lobby needs to know about its game to resynchronise.
#[derive(Debug, Default)]
pub struct GameView {
    pub status: Option<String>,
    pub head: Option<String>,
    pub turn: u64,
    pub participants: u8,
}

impl GameView {
    pub fn is(&self, s: &str) -> bool {
        self.status.as_deref() == Some(s)
    }

    pub fn is_over(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| status::FINISHED.contains(&s))
    }
}

pub async fn view(conn: &mut Conn, layout: &Layout, g: &str) -> Result<GameView> {
    let k = layout.keys_of(g);
    type Row = (Option<String>, Option<String>, Option<u64>, Option<u8>);
    let (st, head, turn, n): Row = redis::pipe()
        .get(k.game_status(g))
        .lindex(k.game_order(g), 0)
        .get(k.game_turns(g))
        .get(k.game_participants(g))
        .query_async(conn)
        .await?;
    Ok(GameView {
        status: st,
        head,
        turn: turn.unwrap_or(0),
        participants: n.unwrap_or(0),
    })
}

/// Whether login ever handed out `token` (a user token is drawn for its home shard, which
/// keeps the registry).
pub async fn is_user(conn: &mut Conn, layout: &Layout, token: &str) -> Result<bool> {
    redis::cmd("SISMEMBER")
        .arg(layout.keys_of(token).user_tokens())
        .arg(token)
        .query_async(conn)
        .await
}

/// Whether game `g` exists.
pub async fn is_game(conn: &mut Conn, layout: &Layout, g: &str) -> Result<bool> {
    redis::cmd("EXISTS")
        .arg(layout.keys_of(g).game_status(g))
        .query_async(conn)
        .await
}
