//! WebSocket API v1 wire formats (`docs/websocket-api.md`): request parsing with a STATUS reason for every way a
//! request can be wrong, and the serde types of every reply and push.
//!
//! Each request payload is one type that both encodes (serde, the player bot sends it) and
//! parses its wire form: the frame must be a JSON object with an object `PAYLOAD`
//! ([`payload_of`]), then the route's type takes its fields with `parse` (e.g.
//! [`FindPayload::parse`]), failing on the first wrong field, in the order the fields are
//! listed, with the STATUS reason the client sees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// STATUS reasons of refused requests.
pub mod reason {
    pub const INVALID_JSON: &str = "INVALID JSON";
    pub const BINARY_FRAMES: &str = "BINARY FRAMES NOT SUPPORTED";
    pub const INVALID_UTF8: &str = "INVALID UTF-8";
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE TOO LARGE";
    pub const MISSING_PAYLOAD: &str = "MISSING PAYLOAD IN MESSAGE";
    pub const MISSING_USER: &str = "MISSING USER IN PAYLOAD";
    pub const MISSING_USER_TOKEN: &str = "MISSING USER TOKEN IN PAYLOAD";
    pub const MISSING_GAME_TOKEN: &str = "MISSING GAME TOKEN IN PAYLOAD";
    pub const MISSING_PARTICIPANTS: &str = "MISSING PARTICIPANTS IN PAYLOAD";
    pub const MISSING_ENEMY_TOKEN: &str = "MISSING ENEMY TOKEN IN PAYLOAD";
    pub const MISSING_ACTION: &str = "MISSING ACTION IN PAYLOAD";
    pub const INVALID_USER: &str = "INVALID USER";
    pub const INVALID_PARTICIPANTS: &str = "INVALID PARTICIPANTS";
    pub const INVALID_ACTION: &str = "INVALID ACTION";
    pub const INVALID_ENEMY: &str = "INVALID ENEMY";
    pub const ENEMY_IS_DEAD: &str = "ENEMY IS DEAD";
    pub const UNKNOWN_USER_TOKEN: &str = "UNKNOWN USER TOKEN";
    pub const UNKNOWN_GAME_TOKEN: &str = "UNKNOWN GAME TOKEN";
    pub const UNKNOWN_ENEMY_TOKEN: &str = "UNKNOWN ENEMY TOKEN";
    pub const USER_NOT_IN_GAME: &str = "USER NOT IN GAME";
    pub const NOT_YOUR_TURN: &str = "NOT YOUR TURN";
    pub const GAME_NOT_IN_PROGRESS: &str = "GAME NOT IN PROGRESS";
    pub const GAME_IS_OVER: &str = "GAME IS OVER";
    pub const ALREADY_IN_LOBBY: &str = "ALREADY IN LOBBY";
    /// Another socket is registered in this game's lobby for this user: one socket per player.
    pub const LOBBY_ALREADY_OPEN: &str = "LOBBY ALREADY OPEN";
    pub const NO_HEROES: &str = "NO HEROES AVAILABLE";
    pub const SERVICE_UNAVAILABLE: &str = "SERVICE UNAVAILABLE";
}

/// Pushes and replies under `STATUS.GAME`.
pub mod game_status {
    pub const START: &str = "START";
    pub const USERS_TURN: &str = "USER'S TURN";
    pub const COMPLETE: &str = "COMPLETE";
    pub const TIMED_OUT: &str = "TIMED OUT";
    pub const HERO_SPEC: &str = "HERO SPEC";
}

/// Longest accepted user name, in bytes.
pub const MAX_USER_NAME: usize = 256;

/// The API's routes, by URL path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Login,
    Find,
    Lobby,
    Hero,
    Action,
}

impl Route {
    pub const ALL: [Route; 5] = [
        Route::Login,
        Route::Find,
        Route::Lobby,
        Route::Hero,
        Route::Action,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Route::Login => "/api/v1/login",
            Route::Find => "/api/v1/game/find",
            Route::Lobby => "/api/v1/game/lobby",
            Route::Hero => "/api/v1/game/hero",
            Route::Action => "/api/v1/game/action",
        }
    }

    /// The route of a request path; a trailing slash is tolerated.
    pub fn from_path(path: &str) -> Option<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        Route::ALL.into_iter().find(|r| r.path() == path)
    }
}

/// `{"PAYLOAD": {}, "STATUS": "<REASON>"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct StatusReply {
    pub payload: Map<String, Value>,
    pub status: String,
}

impl StatusReply {
    pub fn new(reason: &str) -> Self {
        StatusReply {
            payload: Map::new(),
            status: reason.to_string(),
        }
    }
}

/// The PAYLOAD object of a request frame, or the reason it has none.
pub fn payload_of(text: &str) -> Result<Map<String, Value>, &'static str> {
    let value: Value = serde_json::from_str(text).map_err(|_| reason::INVALID_JSON)?;
    match value {
        Value::Object(mut obj) => match obj.remove("PAYLOAD") {
            Some(Value::Object(payload)) => Ok(payload),
            _ => Err(reason::MISSING_PAYLOAD),
        },
        _ => Err(reason::MISSING_PAYLOAD),
    }
}

/// A token field: present (else `missing`), a UUID (else `unknown`), returned in canonical form.
fn token(
    payload: &Map<String, Value>,
    field: &str,
    missing: &'static str,
    unknown: &'static str,
) -> Result<String, &'static str> {
    match payload.get(field) {
        None | Some(Value::Null) => Err(missing),
        Some(Value::String(s)) => uuid::Uuid::parse_str(s)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| unknown),
        Some(_) => Err(unknown),
    }
}

/// Game and user token of a payload, or the reason they are missing or malformed.
fn game_and_user(payload: &Map<String, Value>) -> Result<(String, String), &'static str> {
    let g = token(
        payload,
        "GAME_TOKEN",
        reason::MISSING_GAME_TOKEN,
        reason::UNKNOWN_GAME_TOKEN,
    )?;
    let u = token(
        payload,
        "USER_TOKEN",
        reason::MISSING_USER_TOKEN,
        reason::UNKNOWN_USER_TOKEN,
    )?;
    Ok((g, u))
}

/// PARTICIPANTS: a JSON integer from 2 to 8.
fn participants(payload: &Map<String, Value>) -> Result<u8, &'static str> {
    match payload.get("PARTICIPANTS") {
        None | Some(Value::Null) => Err(reason::MISSING_PARTICIPANTS),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| (2..=8).contains(n))
            .map(|n| n as u8)
            .ok_or(reason::INVALID_PARTICIPANTS),
        Some(_) => Err(reason::INVALID_PARTICIPANTS),
    }
}

/// USER of a login: a non-empty string of bounded length.
fn user_name(payload: &Map<String, Value>) -> Result<String, &'static str> {
    match payload.get("USER") {
        None | Some(Value::Null) => Err(reason::MISSING_USER),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_USER_NAME => Ok(s.clone()),
        Some(_) => Err(reason::INVALID_USER),
    }
}

/// ACTION of an action request: only ATTACK exists.
fn action(payload: &Map<String, Value>) -> Result<String, &'static str> {
    match payload.get("ACTION") {
        None | Some(Value::Null) => Err(reason::MISSING_ACTION),
        Some(Value::String(s)) if s == ATTACK => Ok(ATTACK.to_string()),
        Some(_) => Err(reason::INVALID_ACTION),
    }
}

/// The one ACTION.
pub const ATTACK: &str = "ATTACK";

// ---- Requests (what the bot sends) ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Request<P> {
    pub payload: P,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct LoginPayload {
    pub user: String,
}

impl LoginPayload {
    pub fn parse(payload: &Map<String, Value>) -> Result<Self, &'static str> {
        Ok(LoginPayload {
            user: user_name(payload)?,
        })
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct FindPayload {
    pub user_token: String,
    pub participants: u8,
}

impl FindPayload {
    pub fn parse(payload: &Map<String, Value>) -> Result<Self, &'static str> {
        Ok(FindPayload {
            user_token: token(
                payload,
                "USER_TOKEN",
                reason::MISSING_USER_TOKEN,
                reason::UNKNOWN_USER_TOKEN,
            )?,
            participants: participants(payload)?,
        })
    }
}

/// Payload of lobby and hero requests.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct GameUserPayload {
    pub game_token: String,
    pub user_token: String,
}

impl GameUserPayload {
    pub fn parse(payload: &Map<String, Value>) -> Result<Self, &'static str> {
        let (game_token, user_token) = game_and_user(payload)?;
        Ok(GameUserPayload {
            game_token,
            user_token,
        })
    }
}

/// An attack. The enemy is named by the alias the attacker knows it by.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct ActionPayload {
    pub game_token: String,
    pub user_token: String,
    pub enemy_token: String,
    pub action: String,
}

impl ActionPayload {
    pub fn parse(payload: &Map<String, Value>) -> Result<Self, &'static str> {
        let (game_token, user_token) = game_and_user(payload)?;
        Ok(ActionPayload {
            game_token,
            user_token,
            enemy_token: token(
                payload,
                "ENEMY_TOKEN",
                reason::MISSING_ENEMY_TOKEN,
                reason::INVALID_ENEMY,
            )?,
            action: action(payload)?,
        })
    }
}

// ---- Replies and pushes ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct LoginReply {
    pub payload: LoginReplyPayload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct LoginReplyPayload {
    pub user_token: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct FindReply {
    pub payload: FindReplyPayload,
    pub status: JoinedStatus,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct FindReplyPayload {
    pub game_token: String,
    pub hero_id: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct JoinedStatus {
    pub joined: String,
}

/// `{"GAME": "..."}` of pushes and hero replies.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct GameStatus {
    pub game: String,
}

/// USER'S TURN, COMPLETE and TIMED OUT pushes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct GamePush {
    pub payload: GamePayload,
    pub status: GameStatus,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct GamePayload {
    pub game_token: String,
}

impl GamePush {
    pub fn new(game_token: &str, status: &str) -> Self {
        GamePush {
            payload: GamePayload {
                game_token: game_token.to_string(),
            },
            status: GameStatus {
                game: status.to_string(),
            },
        }
    }
}

/// HERO of START and hero replies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeroSpec {
    pub token: String,
    pub id: Option<u32>,
    pub attack: u64,
    pub health: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct StartPush {
    pub payload: StartPayload,
    pub status: GameStatus,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct StartPayload {
    pub game_token: String,
    pub participants: Vec<String>,
    pub participants_heros: BTreeMap<String, HeroSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct HeroReply {
    pub payload: HeroReplyPayload,
    pub status: GameStatus,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct HeroReplyPayload {
    pub game_token: String,
    pub user_token: String,
    pub hero: HeroSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_reasons() {
        assert_eq!(payload_of("nope"), Err(reason::INVALID_JSON));
        assert_eq!(payload_of("[1]"), Err(reason::MISSING_PAYLOAD));
        assert_eq!(payload_of(r#"{"X":1}"#), Err(reason::MISSING_PAYLOAD));
        assert_eq!(
            payload_of(r#"{"PAYLOAD":"x"}"#),
            Err(reason::MISSING_PAYLOAD)
        );
        assert!(payload_of(r#"{"PAYLOAD":{}}"#).is_ok());
    }

    #[test]
    fn participants_must_be_a_small_integer() {
        let p = |v: Value| {
            let mut m = Map::new();
            m.insert("PARTICIPANTS".into(), v);
            participants(&m)
        };
        assert_eq!(p(Value::from(3)), Ok(3));
        for bad in [
            Value::from("3"),
            Value::from(-2),
            Value::from(1),
            Value::from(9),
            Value::from(1_000_000_000u64),
            Value::from(2.5),
        ] {
            assert_eq!(p(bad), Err(reason::INVALID_PARTICIPANTS));
        }
        assert_eq!(participants(&Map::new()), Err(reason::MISSING_PARTICIPANTS));
    }

    #[test]
    fn wire_shapes() {
        let push = serde_json::to_value(GamePush::new("g", game_status::USERS_TURN)).unwrap();
        assert_eq!(
            push,
            serde_json::json!({"PAYLOAD": {"GAME_TOKEN": "g"}, "STATUS": {"GAME": "USER'S TURN"}})
        );
        let reply = serde_json::to_value(StatusReply::new(reason::INVALID_JSON)).unwrap();
        assert_eq!(
            reply,
            serde_json::json!({"PAYLOAD": {}, "STATUS": "INVALID JSON"})
        );
        assert_eq!(Route::from_path("/api/v1/game/find/"), Some(Route::Find));
        assert_eq!(Route::from_path("/api/v2/login"), None);
    }
}
