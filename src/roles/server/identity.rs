//! Who is who in a game, as players see it: a player knows the others by alias only, so no one
//! can act with another's token.
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
use std::sync::{Arc, LazyLock};

use tokio::sync::OnceCell;

use crate::pipeline::redis_conn::Conn;
use anyhow::{Context, Result};
use redis::Script;

use super::protocol::{game_status, GameStatus, HeroSpec, StartPayload, StartPush};
use super::views;
use super::Shared;
use crate::pipeline::keys::Keys;
use crate::pipeline::record::AttackRecord;

static RELEASE_LOBBY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("release_lobby.lua")));
static START: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("start.lua")));
static HERO_OF: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("hero_of.lua")));

/// Fresh alias candidates handed to the start script: more than the 8 players a game may have.
const ALIAS_CANDIDATES: usize = 10;

/// Gives up the lobby registration that the ready script ([`super::game::ready`]) gave
/// `socket`, once its player has left the game, so the player may register again (before
/// START; afterwards a closed socket has eliminated it).
pub async fn release_lobby(shared: &Shared, g: &str, u: &str, socket: &str) {
    let released: Result<i64> = RELEASE_LOBBY
        .key(shared.rules.layout.keys_of(g).game_lobby_sockets(g))
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

/// The hero of the participant called `name` (an alias, or a user token) in game `g`, with
/// `token` = `name`: an answer tells nobody more than they asked with. One round trip: a plain
/// HGETALL when this process knows the game's aliases (its START was read here, as it is for
/// every game with a lobby socket on this process), else a script that resolves the alias.
pub async fn hero_spec(
    shared: &Shared,
    conn: &mut Conn,
    g: &str,
    name: &str,
) -> Result<Option<HeroSpec>> {
    let k = shared.rules.layout.keys_of(g);
    let fields: BTreeMap<String, String> = match shared.starts.participant(g, name) {
        Some(u) => redis::cmd("HGETALL")
            .arg(k.game_hero(g, &u))
            .query_async(conn)
            .await
            .context("hero of a participant")?,
        None => HERO_OF
            .key(k.game_aliases(g))
            .arg(name)
            .arg(k.game_hero(g, ""))
            .invoke_async(conn)
            .await
            .context("hero script")?,
    };
    Ok(views::spec_of(name, &fields))
}

/// The stored attack record `record` as its attacker receives it: the enemy named by the alias
/// the attacker sent.
pub fn record_for_attacker(record: &str, enemy_alias: &str) -> Result<String> {
    let mut parsed: AttackRecord =
        serde_json::from_str(record).context("the attack script returned a malformed record")?;
    parsed.status.details.enemy_token = enemy_alias.into();
    Ok(serde_json::to_string(&parsed)?)
}

/// The START of a game and its aliases: the same for every participant, and never changed once
/// the game has started.
#[derive(Clone, Debug)]
struct Start {
    push: StartPush,
    /// user token → alias.
    aliases: HashMap<String, String>,
    /// alias → user token.
    tokens: HashMap<String, String>,
}

/// How many games [`Starts`] remembers before it starts over.
const STARTS_KEPT: usize = 4096;

/// The STARTs this process has read, per game. The first participant of a game on this process
/// reads it (one round trip); the others, whose START events arrive at the same moment, wait
/// for that read instead of making their own.
#[derive(Default)]
pub struct Starts(std::sync::Mutex<HashMap<String, Arc<OnceCell<Start>>>>);

impl Starts {
    fn cell(&self, g: &str) -> Arc<OnceCell<Start>> {
        let mut games = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if games.len() >= STARTS_KEPT && !games.contains_key(g) {
            games.clear();
        }
        games.entry(g.to_string()).or_default().clone()
    }

    /// The user token of the participant of `g` called `name` (its alias or its own token),
    /// when this process has read g's START; None when it has not or `name` is nobody there.
    fn participant(&self, g: &str, name: &str) -> Option<String> {
        let cell = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(g)?
            .clone();
        let start = cell.get()?;
        if start.aliases.contains_key(name) {
            return Some(name.to_string());
        }
        start.tokens.get(name).cloned()
    }

    fn forget(&self, g: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(g);
    }
}

/// The START push of game `g` as participant `viewer` sees it.
pub async fn start_for(
    shared: &Shared,
    conn: &mut Conn,
    g: &str,
    viewer: &str,
) -> Result<StartPush> {
    let cell = shared.starts.cell(g);
    let k = shared.rules.layout.keys_of(g);
    let start = cell
        .get_or_try_init(|| read_start(conn, &k, g))
        .await?
        .clone();
    let complete = start.push.payload.participants.len() == start.aliases.len()
        && start.push.payload.participants_heros.len() == start.aliases.len();
    if !complete {
        // A game missing a participant's hero or alias: read it again next time.
        shared.starts.forget(g);
    }
    disguise_start(start.push, viewer, &start.aliases)
}

/// Reads game `g`'s START and aliases, giving every participant its alias first (`start.lua`).
async fn read_start(conn: &mut Conn, k: &Keys, g: &str) -> Result<Start> {
    let mut script = START.prepare_invoke();
    script
        .key(k.game_status(g))
        .key(k.game(g))
        .key(k.game_aliases(g))
        .key(k.game_alias_of(g))
        .arg(k.game_hero(g, ""));
    for _ in 0..ALIAS_CANDIDATES {
        script.arg(uuid::Uuid::new_v4().to_string());
    }
    let rows: Vec<String> = script.invoke_async(conn).await.context("start script")?;
    Ok(start_of(g, &rows))
}

/// The START and aliases from the start script's rows (token, id, attack, health, alias).
fn start_of(g: &str, rows: &[String]) -> Start {
    let mut push = StartPush {
        payload: StartPayload {
            game_token: g.to_string(),
            participants: Vec::new(),
            participants_heros: BTreeMap::new(),
        },
        status: GameStatus {
            game: game_status::START.to_string(),
        },
    };
    let mut aliases = HashMap::new();
    for row in rows.chunks_exact(5) {
        let [u, id, attack, health, alias] = row else {
            continue;
        };
        push.payload.participants.push(u.clone());
        let fields: BTreeMap<String, String> = [("id", id), ("attack", attack), ("health", health)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Some(hero) = views::spec_of(u, &fields) {
            push.payload.participants_heros.insert(u.clone(), hero);
        }
        aliases.insert(u.clone(), alias.clone());
    }
    let tokens = aliases
        .iter()
        .map(|(u, a)| (a.clone(), u.clone()))
        .collect();
    Start {
        push,
        aliases,
        tokens,
    }
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
