//! Game state in Redis: every state change is one Lua script, so each is atomic across any
//! number of server processes (keys: `docs/redis-keys.md`).
//!
//! - [`find`]: a player joins an open game or creates one; never over-full, never a hero twice.
//! - [`ready`]: a lobby socket registers; the last one starts the game (order sorted by token).
//! - [`attack`]: one attack, stored in `games:<g>:logs`, then the turn passes (or the game ends).
//! - [`eliminate`]: a player who timed out or whose lobby socket closed falls (health 0).
//! - [`lobby_timeout`]: a lobby that did not fill in time becomes `Timed Out`, once.
//!
//! Scripts that change whose turn it is publish the change on the game's event channel inside
//! the script, so no state change can happen without its announcement. Likewise the scripts
//! that start, complete or time out a game append that transition's lifecycle records to the
//! log stream themselves ([`Rules`]): no record ever exists only in this process's memory.
//! With LOGGER_MODULE=default no record reaches a worker's clean routine, so the scripts that
//! complete or time out a game put REDIS_EXPIRY on its keys themselves.

use std::sync::LazyLock;

use crate::pipeline::redis_conn::Conn;
use redis::{RedisError, RedisResult, Script, ScriptInvocation};
use serde::Deserialize;

use super::protocol::reason;
use crate::pipeline::keys::{self, Keys};
use crate::pipeline::redis_conn;
use crate::pipeline::shard::{Layout, Shard};

/// Why a change to a game's state failed.
#[derive(Debug, thiserror::Error)]
pub enum GameError {
    /// Redis did not run the step: unreachable, busy, or it refused the command (a key of
    /// the wrong type, say).
    #[error("{step}: {}", redis_conn::describe(error))]
    Redis {
        step: &'static str,
        error: RedisError,
    },
    /// A script answered what it never should: a key of the game or the roster holds garbage.
    #[error("{0}")]
    Broken(String),
}

impl GameError {
    /// Whether Redis itself failed (unreachable, or busy for now) rather than this game's
    /// keys: then every other game would fail the same way.
    pub fn is_outage(&self) -> bool {
        matches!(self, GameError::Redis { error, .. } if redis_conn::is_transient(error))
    }
}

impl From<RedisError> for GameError {
    fn from(error: RedisError) -> Self {
        GameError::Redis {
            step: "Redis",
            error,
        }
    }
}

/// Names the step a Redis error happened in.
trait Step<T> {
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T> Step<T> for RedisResult<T> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|error| GameError::Redis { step, error })
    }
}

type Result<T> = std::result::Result<T, GameError>;

/// Event published on `games:<g>:events` by the scripts (built by concatenation: every token
/// in it is a UUID the server validated).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GameEvent {
    /// The game started; `user` plays turn `turn` (1).
    Start { turn: u64, user: String, at_us: u64 },
    /// Turn `turn` is `user`'s; `at_us` is when the change was stored (Redis clock, µs).
    Turn { turn: u64, user: String, at_us: u64 },
    /// The game is over.
    Complete { turn: u64 },
    /// The lobby did not fill in time.
    TimedOut,
}

/// A script of this folder with the shared Lua prelude (`prelude.lua`: integer formatting, the
/// Redis clock, and `emit`, which appends a lifecycle record to the log stream) in front.
macro_rules! with_prelude {
    ($file:literal) => {
        concat!(include_str!("prelude.lua"), include_str!($file))
    };
}

static JOIN: LazyLock<Script> = LazyLock::new(|| Script::new(with_prelude!("join.lua")));

static READY: LazyLock<Script> = LazyLock::new(|| Script::new(with_prelude!("ready.lua")));

static ATTACK: LazyLock<Script> = LazyLock::new(|| Script::new(with_prelude!("attack.lua")));

static ELIMINATE: LazyLock<Script> = LazyLock::new(|| Script::new(with_prelude!("eliminate.lua")));

static LOBBY_TIMEOUT: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_prelude!("lobby_timeout.lua")));

/// What the scripts need besides the game itself: the layout (which shard's keys a game or user
/// has), where lifecycle records go (the log stream of the game's shard and the lobby channel,
/// or nowhere when LOGGER_MODULE is not `redis`: an empty channel tells the scripts so), and
/// how long a lobby and a turn may last. Deadlines are kept in Redis by Redis time
/// ([`Keys::game_deadlines`]), set by the same scripts that start a lobby or a turn.
#[derive(Clone, Debug)]
pub struct Rules {
    pub layout: Layout,
    lobby: String,
    channel: String,
    /// SERVER_SLEEP + TURN_TIMEOUT: a turn's deadline after it starts.
    turn_ms: u64,
    /// LOBBY_TIMEOUT.
    pub lobby_ms: u64,
    /// Seconds of TTL the scripts that end a game put on its keys themselves: REDIS_EXPIRY when
    /// no record will reach a worker's clean routine (LOGGER_MODULE is not `redis`), else 0
    /// (the worker cleans once the files are written). 0 too when CLEAN_ROUTINE is off.
    ended_ttl: u64,
}

impl Rules {
    pub fn new(settings: &crate::config::Settings, layout: Layout) -> Self {
        let lobby = &settings.worker_channel;
        let on = settings.logger_module == crate::config::LoggerModule::Redis;
        Rules {
            layout,
            lobby: lobby.clone(),
            channel: if on { lobby.clone() } else { String::new() },
            turn_ms: (settings.server_sleep + settings.turn_timeout).as_millis() as u64,
            lobby_ms: settings.lobby_timeout.as_millis() as u64,
            ended_ttl: if !on && settings.clean_routine {
                settings.redis_expiry.as_secs().max(1)
            } else {
                0
            },
        }
    }

    /// The log stream the scripts of a game in the shard of `keys` append to.
    fn stream(&self, keys: &Keys) -> String {
        keys.log_stream(&self.lobby)
    }
}

/// What a script that may end a game takes last (`expire_ended` in prelude.lua):
/// `games:participants` and every key of the game, and the TTL of an ended game.
trait EndsGame {
    fn ending(&mut self, k: &Keys, g: &str, rules: &Rules) -> &mut Self;
}

impl EndsGame for ScriptInvocation<'_> {
    fn ending(&mut self, k: &Keys, g: &str, rules: &Rules) -> &mut Self {
        self.key(k.games_participants());
        for key in k.game_keys(g) {
            self.key(key);
        }
        self.arg(rules.ended_ttl)
    }
}

/// How a find ended.
#[derive(Debug)]
pub enum Found {
    Joined { game: String, hero_id: u32 },
    Refused(&'static str),
}

/// Joins the oldest open game for `n` players in the user's home shard, else the oldest among
/// the other shards, else creates one (the creator is its host) in the shard new lobbies of `n`
/// players go to at this moment ([`Layout::lobby_shard`]): players who find at once meet in one
/// shard, where the script lets one open the lobby and the others join it, rather than each
/// opening a lobby of its own in its home shard. With few players per shard, games still fill. Lobbies past their deadline are timed out by
/// [`super::deadlines::sweep`], not here.
pub async fn find(conn: &mut Conn, user: &str, n: u8, rules: &Rules) -> Result<Found> {
    let home = rules.layout.of_token(user);
    for attempt in 0..50 {
        if let Some(found) = join_in(conn, rules, home, home, user, n).await? {
            return Ok(found);
        }
        for shard in other_shards_by_oldest(conn, rules, home, n).await? {
            if let Some(found) = join_in(conn, rules, shard, home, user, n).await? {
                return Ok(found);
            }
        }
        let shard = rules.layout.lobby_shard(n, crate::clock::now_ms());
        let k = &rules.layout.keys(shard);
        let g = rules.layout.draw_token(shard);
        // Under heavy contention, stop deferring to lobbies others are opening at once.
        let mode = match (attempt > 40, shard == home) {
            (false, true) => "create",
            (true, true) => "create-force",
            (false, false) => "create-away",
            (true, false) => "create-force-away",
        };
        match join_one(conn, k, &g, user, n, rules, mode).await? {
            JoinReply::Ok(hero_id) => return Ok(Found::Joined { game: g, hero_id }),
            JoinReply::Mine(g) => return mine(conn, k, g, user).await,
            JoinReply::Refused(r) => return Ok(Found::Refused(r)),
            JoinReply::Skip => {}
        }
    }
    Ok(Found::Refused(reason::SERVICE_UNAVAILABLE))
}

/// Joins the oldest open lobby for `n` players in `shard` that takes `user`; None when none does.
async fn join_in(
    conn: &mut Conn,
    rules: &Rules,
    shard: Shard,
    home: Shard,
    user: &str,
    n: u8,
) -> Result<Option<Found>> {
    let k = &rules.layout.keys(shard);
    // Oldest first; the join script itself refuses one that is full, started or stale.
    let open: Vec<String> = redis::cmd("ZRANGE")
        .arg(k.games_lobbies(n))
        .arg(0)
        .arg(7)
        .query_async(conn)
        .await?;
    let mode = if shard == home { "join" } else { "join-away" };
    for g in &open {
        match join_one(conn, k, g, user, n, rules, mode).await? {
            JoinReply::Ok(hero_id) => {
                return Ok(Some(Found::Joined {
                    game: g.clone(),
                    hero_id,
                }))
            }
            JoinReply::Mine(g) => return mine(conn, k, g, user).await.map(Some),
            JoinReply::Refused(r) => return Ok(Some(Found::Refused(r))),
            JoinReply::Skip => {}
        }
    }
    Ok(None)
}

/// The shards other than `home` that have an open lobby of `n` players, oldest lobby first
/// (one ZRANGE per shard), read only once the home shard had none to join.
async fn other_shards_by_oldest(
    conn: &mut Conn,
    rules: &Rules,
    home: Shard,
    n: u8,
) -> Result<Vec<Shard>> {
    let mut others = Vec::new();
    for shard in rules.layout.shards().filter(|s| *s != home) {
        let oldest: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(rules.layout.keys(shard).games_lobbies(n))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(conn)
            .await?;
        if let Some((_, created)) = oldest.first() {
            others.push((*created, shard));
        }
    }
    others.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(others.into_iter().map(|(_, s)| s).collect())
}

/// The open lobby `user` already waits in, answered again (one open lobby per user).
async fn mine(conn: &mut Conn, k: &Keys, game: String, user: &str) -> Result<Found> {
    let hero: Option<u32> = redis::cmd("HGET")
        .arg(k.game_hero(&game, user))
        .arg("id")
        .query_async(conn)
        .await?;
    Ok(match hero {
        Some(hero_id) => Found::Joined { game, hero_id },
        None => Found::Refused(reason::SERVICE_UNAVAILABLE),
    })
}

enum JoinReply {
    Ok(u32),
    /// The user already waits in this open lobby.
    Mine(String),
    Skip,
    Refused(&'static str),
}

async fn join_one(
    conn: &mut Conn,
    k: &Keys,
    g: &str,
    u: &str,
    n: u8,
    rules: &Rules,
    mode: &str,
) -> Result<JoinReply> {
    // `…-away`: in a shard that is not the user's home.
    let (mode, away) = match mode.strip_suffix("-away") {
        Some(mode) => (mode, "away"),
        None => (mode, ""),
    };
    // A game's status key is `.0 + game + .1` (the script looks at the user's open lobby).
    let status_key = k.split_around_game(Keys::game_status);
    let reply: Vec<String> = JOIN
        .key(k.game(g))
        .key(k.game_participants(g))
        .key(k.game_status(g))
        .key(k.game_host(g))
        .key(k.game_superheros(g))
        .key(k.game_hero(g, u))
        .key(k.game_created(g))
        .key(k.games_participants())
        .key(k.games_players(n))
        .key(k.games_lobbies(n))
        .key(k.superheros())
        .key(k.game_deadlines())
        .key(k.users_last_use())
        .key(k.users_open_lobby())
        .arg(g)
        .arg(u)
        .arg(n)
        .arg(rules.lobby_ms)
        .arg(mode)
        .arg(&status_key.0)
        .arg(&status_key.1)
        .arg(away)
        .invoke_async(conn)
        .await
        .step("join script")?;
    Ok(match reply.first().map(String::as_str) {
        Some("OK") => match reply.get(1).and_then(|id| id.parse().ok()) {
            Some(id) => JoinReply::Ok(id),
            None => {
                return Err(GameError::Broken(
                    "join script returned a hero id that is not an integer".into(),
                ))
            }
        },
        Some("MINE") => JoinReply::Mine(reply.get(1).cloned().unwrap_or_default()),
        Some("NO HEROES") => JoinReply::Refused(reason::NO_HEROES),
        Some("BAD HERO") => {
            return Err(GameError::Broken(format!(
                "hero {} in {} has no health/attack",
                reply.get(1).map(String::as_str).unwrap_or("?"),
                k.superheros()
            )))
        }
        _ => JoinReply::Skip,
    })
}

/// What registering a lobby socket found.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// This registration completed the lobby: the game started.
    Started,
    Waiting,
    /// The game is past its lobby (started, over or timed out).
    Status(String),
    /// Another socket holds the (game, user) registration.
    Taken,
    NotInGame,
    UnknownGame,
}

impl Ready {
    /// Whether the socket now holds the (game, user) registration and must release it when
    /// its player leaves a game that is not over.
    pub fn holds(&self) -> bool {
        match self {
            Ready::Started | Ready::Waiting => true,
            Ready::Status(s) => !keys::status::FINISHED.contains(&s.as_str()),
            Ready::Taken | Ready::NotInGame | Ready::UnknownGame => false,
        }
    }
}

/// Registers `socket` as the lobby socket of `u` in game `g` (one per pair, across every
/// server process) and marks `u` ready; the last one in starts the game.
pub async fn ready(
    conn: &mut Conn,
    g: &str,
    u: &str,
    socket: &str,
    rules: &Rules,
) -> Result<Ready> {
    let k = &rules.layout.keys_of(g);
    let reply: Vec<String> = READY
        .key(k.game(g))
        .key(k.game_status(g))
        .key(k.game_participants(g))
        .key(k.game_ready(g))
        .key(k.game_order(g))
        .key(k.game_turns(g))
        .key(k.game_deadlines())
        .key(rules.stream(k))
        .key(k.users_open_lobby())
        .key(k.game_lobby_sockets(g))
        .key(k.users_last_use())
        .arg(u)
        .arg(keys::game_events(g))
        .arg(&rules.channel)
        .arg(crate::clock::record_timestamp())
        .arg(g)
        .arg(k.game_hero(g, ""))
        .arg(rules.turn_ms)
        .arg(socket)
        .invoke_async(conn)
        .await
        .step("ready script")?;
    Ok(match reply.first().map(String::as_str) {
        Some("STARTED") => Ready::Started,
        Some("WAITING") => Ready::Waiting,
        Some("STATUS") => Ready::Status(reply.get(1).cloned().unwrap_or_default()),
        Some("TAKEN") => Ready::Taken,
        Some("NOT IN GAME") => Ready::NotInGame,
        _ => Ready::UnknownGame,
    })
}

/// How an attack ended.
#[derive(Debug)]
pub enum Attacked {
    Refused(&'static str),
    Stored {
        /// The attack record, exactly as stored in the logs.
        record: String,
        /// Whose turn it is now (None when the game is over).
        next: Option<String>,
        completed: bool,
        turn: u64,
        /// Lifecycle records the attack appended to the log (one per participant when it
        /// completed the game).
        records: u64,
    },
}

pub async fn attack(
    conn: &mut Conn,
    g: &str,
    u: &str,
    enemy_alias: &str,
    max_turns: u32,
    rules: &Rules,
) -> Result<Attacked> {
    let k = &rules.layout.keys_of(g);
    // Refusals are {'ERR', reason}; stored attacks {kind, record, next, turn}.
    let reply: Vec<String> = ATTACK
        .key(k.game(g))
        .key(k.game_status(g))
        .key(k.game_order(g))
        .key(k.game_turns(g))
        .key(k.game_hero(g, u))
        .key(k.game_aliases(g))
        .key(k.game_logs(g))
        .key(k.game_eliminated(g))
        .key(k.game_deadlines())
        .key(rules.stream(k))
        .key(k.game_lobby_sockets(g))
        .key(k.users_last_use())
        .arg(g)
        .arg(u)
        .arg(enemy_alias)
        .arg(crate::clock::attack_timestamp())
        .arg(max_turns.max(1))
        .arg(keys::game_events(g))
        .arg(&rules.channel)
        .arg(crate::clock::record_timestamp())
        .arg(rules.turn_ms)
        .arg(k.game_hero(g, ""))
        .ending(k, g, rules)
        .invoke_async(conn)
        .await
        .step("attack script")?;
    let mut fields = reply.into_iter();
    let kind = fields.next().unwrap_or_default();
    let record = fields.next().unwrap_or_default();
    Ok(match kind.as_str() {
        "ERR" => Attacked::Refused(static_reason(&record)),
        "NEXT" | "DONE" => Attacked::Stored {
            record,
            next: fields.next().filter(|n| !n.is_empty()),
            completed: kind == "DONE",
            turn: fields.next().and_then(|t| t.parse().ok()).unwrap_or(0),
            records: fields.next().and_then(|t| t.parse().ok()).unwrap_or(0),
        },
        other => {
            return Err(GameError::Broken(format!(
                "attack script answered {other:?}"
            )))
        }
    })
}

fn static_reason(text: &str) -> &'static str {
    [
        reason::UNKNOWN_GAME_TOKEN,
        reason::USER_NOT_IN_GAME,
        reason::GAME_IS_OVER,
        reason::GAME_NOT_IN_PROGRESS,
        reason::INVALID_ENEMY,
        reason::NOT_YOUR_TURN,
        reason::ENEMY_IS_DEAD,
    ]
    .into_iter()
    .find(|r| *r == text)
    .unwrap_or(reason::GAME_NOT_IN_PROGRESS)
}

/// What eliminating a player did.
#[derive(Debug, PartialEq, Eq)]
pub enum Eliminated {
    /// Nothing: not playing, already out, or the turn moved on meanwhile.
    Nothing,
    Eliminated,
    /// The elimination ended the game, appending this many lifecycle records to the log.
    Completed {
        records: u64,
    },
}

/// Eliminates `u` (health 0). With `expected_turn`, only if it is still `u`'s turn number
/// `expected_turn` (a turn timeout); without, whenever (a closed lobby socket).
pub async fn eliminate(
    conn: &mut Conn,
    g: &str,
    u: &str,
    expected_turn: Option<u64>,
    rules: &Rules,
) -> Result<Eliminated> {
    let k = &rules.layout.keys_of(g);
    let (answer, records): (String, u64) = ELIMINATE
        .key(k.game_status(g))
        .key(k.game_order(g))
        .key(k.game_turns(g))
        .key(k.game_hero(g, u))
        .key(k.game_eliminated(g))
        .key(k.game_ready(g))
        .key(k.game(g))
        .key(k.game_deadlines())
        .key(rules.stream(k))
        .key(k.game_lobby_sockets(g))
        .arg(u)
        .arg(expected_turn.map(|t| t.to_string()).unwrap_or_default())
        .arg(keys::game_events(g))
        .arg(&rules.channel)
        .arg(crate::clock::record_timestamp())
        .arg(g)
        .arg(rules.turn_ms)
        .arg(k.game_hero(g, ""))
        .ending(k, g, rules)
        .invoke_async(conn)
        .await
        .step("eliminate script")?;
    Ok(match answer.as_str() {
        "DONE" => Eliminated::Completed { records },
        "ELIMINATED" => Eliminated::Eliminated,
        _ => Eliminated::Nothing,
    })
}

/// Flips a lobby that is still waiting after the window to `Timed Out`; true for the one caller
/// that did it.
pub async fn lobby_timeout(
    conn: &mut Conn,
    g: &str,
    n: u8,
    window_ms: u64,
    rules: &Rules,
) -> Result<bool> {
    let k = &rules.layout.keys_of(g);
    let flipped: i64 = LOBBY_TIMEOUT
        .key(k.game_status(g))
        .key(k.games_lobbies(n))
        .key(k.game_created(g))
        .key(k.game_deadlines())
        .key(rules.stream(k))
        .key(k.game(g))
        .key(k.users_open_lobby())
        .key(k.game_lobby_sockets(g))
        .arg(g)
        .arg(keys::game_events(g))
        .arg(window_ms)
        .arg(&rules.channel)
        .arg(crate::clock::record_timestamp())
        .arg(k.game_hero(g, ""))
        .ending(k, g, rules)
        .invoke_async(conn)
        .await
        .step("lobby timeout script")?;
    Ok(flipped == 1)
}

static LOGIN: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("login.lua")));

/// The user token of `name`, and whether it was created just now. Same name, same token: the
/// name's home shard holds it, and a new token is drawn for that shard.
pub async fn login(conn: &mut Conn, layout: &Layout, name: &str) -> Result<(String, bool)> {
    let home = layout.home_of(name);
    let k = layout.keys(home);
    let (token, created): (String, i64) = LOGIN
        .key(k.users())
        .key(k.user_tokens())
        .key(k.users_last_use())
        .key(k.user_names())
        .arg(name)
        .arg(layout.draw_token(home))
        .invoke_async(conn)
        .await
        .step("login script")?;
    Ok((token, created == 1))
}
