//! Who is who in a game, as players see it (issue #13: no impersonation).
//!
//! A user token is a player's only credential, so no player is ever shown another's. Each
//! participant of a game gets an alias, a fresh UUIDv4 created once per game
//! (`games:<g>:aliases`, `games:<g>:alias-of`), and every frame a player receives names the
//! others by their aliases: START, the hero replies, the attack record returned by an action.
//! Requests name opponents by alias (ENEMY_TOKEN, the hero route's USER_TOKEN); a player's own
//! USER_TOKEN is its real token, the credential. What the server stores (logs, lifecycle
//! records, the turn order) keeps the real tokens.
//!
//! Independently, a (game, user) pair has at most one registered lobby socket across all server
//! processes (`games:<g>:lobby-sockets`): a second registration is refused and the first stays.
//!
//! These are translations and registrations around the game scripts of [`super::game`], which
//! know nothing of aliases.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use anyhow::{Context, Result};
use redis::aio::ConnectionManager;
use redis::Script;

use super::protocol::{reason, AttackRecord, HeroSpec, StartPush};
use super::views;
use super::Shared;
use crate::pipeline::keys;

static CLAIM_LOBBY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("claim_lobby.lua")));
static RELEASE_LOBBY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("release_lobby.lua")));
static ALIASES: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("aliases.lua")));
static HERO_OF: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("hero_of.lua")));

/// Fresh alias candidates handed to the aliases script: more than the 8 players a game may have.
const ALIAS_CANDIDATES: usize = 10;

/// Registers socket `socket` as the one lobby socket of `u` in game `g`. `Ok(true)`: it holds
/// the registration and must [`release_lobby`] it when done; `Ok(false)`: the game is over,
/// there is nothing to hold; `Err`: the reason the registration is refused.
pub async fn claim_lobby(
    shared: &Shared,
    g: &str,
    u: &str,
    socket: &str,
) -> Result<bool, &'static str> {
    let answer: Result<String> = CLAIM_LOBBY
        .key(keys::game_status(g))
        .key(keys::game(g))
        .key(keys::game_lobby_sockets(g))
        .arg(u)
        .arg(socket)
        .invoke_async(&mut shared.redis.conn())
        .await
        .context("claim lobby script");
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let r = shared.unavailable(&e);
            // The claim may be stored with only its answer lost: give it up (if it is ours).
            release_lobby(shared, g, u, socket).await;
            return Err(r);
        }
    };
    shared.available();
    match answer.as_str() {
        "OK" => Ok(true),
        "OVER" => Ok(false),
        "TAKEN" => Err(reason::LOBBY_ALREADY_OPEN),
        "NOT IN GAME" => Err(reason::USER_NOT_IN_GAME),
        _ => Err(reason::UNKNOWN_GAME_TOKEN),
    }
}

/// Gives up the registration [`claim_lobby`] gave `socket`, once its player has left the game,
/// so the player may register again (before START; afterwards a closed socket has eliminated it).
pub async fn release_lobby(shared: &Shared, g: &str, u: &str, socket: &str) {
    let released: Result<i64> = RELEASE_LOBBY
        .key(keys::game_lobby_sockets(g))
        .arg(u)
        .arg(socket)
        .invoke_async(&mut shared.redis.conn())
        .await
        .context("release lobby script");
    match released {
        Ok(_) => shared.available(),
        Err(e) => {
            // The pair stays registered: this user cannot open another lobby socket for g.
            shared.unavailable(&e);
            tracing::warn!("game {g}: cannot release the lobby registration of {u}: {e:#}");
        }
    }
}

/// user token → alias of every participant of `g`, creating the missing ones (once per game).
pub async fn aliases(conn: &mut ConnectionManager, g: &str) -> Result<HashMap<String, String>> {
    let mut script = ALIASES.prepare_invoke();
    script
        .key(keys::game_status(g))
        .key(keys::game(g))
        .key(keys::game_aliases(g))
        .key(keys::game_alias_of(g));
    for _ in 0..ALIAS_CANDIDATES {
        script.arg(uuid::Uuid::new_v4().to_string());
    }
    script.invoke_async(conn).await.context("aliases script")
}

/// The hero of the participant called `name` (an alias, or a user token) in game `g`, with
/// `token` = `name`: an answer tells nobody more than they asked with. One round trip.
pub async fn hero_spec(
    conn: &mut ConnectionManager,
    g: &str,
    name: &str,
) -> Result<Option<HeroSpec>> {
    let fields: BTreeMap<String, String> = HERO_OF
        .key(keys::game_aliases(g))
        .arg(name)
        .arg(keys::game_hero(g, ""))
        .invoke_async(conn)
        .await
        .context("hero script")?;
    Ok(views::spec_of(name, &fields))
}

/// The stored attack record `record` as its attacker receives it: the enemy named by the alias
/// the attacker sent.
pub fn record_for_attacker(record: &str, enemy_alias: &str) -> Result<String> {
    let mut parsed: AttackRecord =
        serde_json::from_str(record).context("the attack script returned a malformed record")?;
    parsed.status.details.enemy_token = enemy_alias.to_string();
    Ok(serde_json::to_string(&parsed)?)
}

/// The START push of game `g` as participant `viewer` sees it.
///
/// The START of a game and its aliases are the same for every participant, and aliases never
/// change once made: the first participant on this process reads them, the others get them
/// from [`STARTS`] (saving three round trips each).
pub async fn start_for(conn: &mut ConnectionManager, g: &str, viewer: &str) -> Result<StartPush> {
    let cached = lock_starts().get(g).cloned();
    let (start, aliases) = match cached {
        Some(known) => known,
        None => {
            let start = views::start_push(conn, g).await?;
            let aliases = aliases(conn, g).await?;
            let complete = start.payload.participants.len() == aliases.len()
                && start.payload.participants_heros.len() == aliases.len();
            if complete {
                let mut starts = lock_starts();
                if starts.len() >= STARTS_KEPT {
                    starts.clear();
                }
                starts.insert(g.to_string(), (start.clone(), aliases.clone()));
            }
            (start, aliases)
        }
    };
    disguise_start(start, viewer, &aliases)
}

/// Games whose START this process has built, with their aliases.
type Starts = HashMap<String, (StartPush, HashMap<String, String>)>;

/// How many games [`STARTS`] remembers before it starts over.
const STARTS_KEPT: usize = 4096;

static STARTS: LazyLock<std::sync::Mutex<Starts>> =
    LazyLock::new(|| std::sync::Mutex::new(HashMap::new()));

fn lock_starts() -> std::sync::MutexGuard<'static, Starts> {
    STARTS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Renames every participant but `viewer` by its alias. The list keeps the turn order (by user
/// token); a participant without an alias is an error, never a leak.
fn disguise_start(
    mut start: StartPush,
    viewer: &str,
    aliases: &HashMap<String, String>,
) -> Result<StartPush> {
    let name = |u: &str| -> Result<String> {
        if u == viewer {
            return Ok(u.to_string());
        }
        aliases
            .get(u)
            .cloned()
            .with_context(|| format!("participant {u} has no alias"))
    };
    start.payload.participants = start
        .payload
        .participants
        .iter()
        .map(|u| name(u))
        .collect::<Result<_>>()?;
    let heroes = std::mem::take(&mut start.payload.participants_heros);
    start.payload.participants_heros = heroes
        .into_iter()
        .map(|(u, hero)| {
            let shown = name(&u)?;
            let hero = HeroSpec {
                token: shown.clone(),
                ..hero
            };
            Ok((shown, hero))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::server::protocol::{GameStatus, StartPayload};

    fn hero(token: &str, id: u32) -> HeroSpec {
        HeroSpec {
            token: token.to_string(),
            id: Some(id),
            attack: 10,
            health: 100,
        }
    }

    #[test]
    fn start_names_the_others_by_alias_and_the_viewer_by_itself() {
        let start = StartPush {
            payload: StartPayload {
                game_token: "g".into(),
                participants: vec!["a".into(), "b".into(), "c".into()],
                participants_heros: [("a", 1), ("b", 2), ("c", 3)]
                    .into_iter()
                    .map(|(u, id)| (u.to_string(), hero(u, id)))
                    .collect(),
            },
            status: GameStatus {
                game: "START".into(),
            },
        };
        let aliases: HashMap<String, String> = [("a", "x"), ("b", "y"), ("c", "z")]
            .into_iter()
            .map(|(u, a)| (u.to_string(), a.to_string()))
            .collect();
        let seen = disguise_start(start, "b", &aliases).unwrap();
        assert_eq!(seen.payload.participants, ["x", "b", "z"]);
        let heroes = &seen.payload.participants_heros;
        assert_eq!(heroes.keys().collect::<Vec<_>>(), ["b", "x", "z"]);
        assert_eq!(heroes["x"], hero("x", 1));
        assert_eq!(heroes["b"], hero("b", 2));
        assert_eq!(heroes["z"], hero("z", 3));
        let text = serde_json::to_string(&seen).unwrap();
        assert!(!text.contains("\"a\"") && !text.contains("\"c\""), "{text}");
    }

    #[test]
    fn a_participant_without_alias_is_an_error_not_a_leak() {
        let start = StartPush {
            payload: StartPayload {
                game_token: "g".into(),
                participants: vec!["a".into(), "b".into()],
                participants_heros: BTreeMap::new(),
            },
            status: GameStatus {
                game: "START".into(),
            },
        };
        let aliases: HashMap<String, String> = [("a".to_string(), "x".to_string())].into();
        assert!(disguise_start(start, "a", &aliases).is_err());
    }

    #[test]
    fn the_attacker_sees_the_enemy_alias() {
        let stored = r#"{"TIMESTAMP": "t", "PAYLOAD": {"GAME_TOKEN": "g", "USER_TOKEN": "a"}, "STATUS": {"ACTION": "ATTACK", "DETAILS": {"ENEMY_TOKEN": "b", "ENEMY_DAMAGE": 5, "ENEMY_HEALTH_PRIOR": 7, "ENEMY_HEALTH_POST": 2}}}"#;
        let shown: serde_json::Value =
            serde_json::from_str(&record_for_attacker(stored, "y").unwrap()).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({"TIMESTAMP": "t", "PAYLOAD": {"GAME_TOKEN": "g", "USER_TOKEN": "a"},
                "STATUS": {"ACTION": "ATTACK", "DETAILS": {"ENEMY_TOKEN": "y", "ENEMY_DAMAGE": 5,
                "ENEMY_HEALTH_PRIOR": 7, "ENEMY_HEALTH_POST": 2}}})
        );
    }
}
