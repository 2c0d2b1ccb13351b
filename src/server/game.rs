//! Game state in Redis: every state change is one Lua script, so each is atomic across any
//! number of server processes (keys: `docs/redis-keys.md`).
//!
//! - [`join`]: a player joins an open game or creates one; never over-full, never a hero twice.
//! - [`ready`]: a lobby socket registers; the last one starts the game (order sorted by token).
//! - [`attack`]: one attack, stored in `games:<g>:logs`, then the turn passes (or the game ends).
//! - [`eliminate`]: a player who timed out or whose lobby socket closed falls (health 0).
//! - [`lobby_timeout`]: a lobby that did not fill in time becomes `Timed Out`, once.
//!
//! Scripts that change whose turn it is publish the change on the game's event channel inside
//! the script, so no state change can happen without its announcement. Likewise the scripts
//! that start, complete or time out a game append that transition's lifecycle records to the
//! log stream themselves ([`Rules`]): no record ever exists only in this process's memory.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::{Context, Result};
use redis::aio::ConnectionManager;
use redis::Script;
use serde::Deserialize;

use super::protocol::{reason, HeroSpec, StartPayload, StartPush};
use crate::keys::{self, status};

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

/// Lua helpers shared by the scripts: integer formatting without exponents, the Redis clock,
/// and the rules.
///
/// `emit` appends one lifecycle record to the log stream and PUBLISHes it on the lobby channel
/// with its entry id added. It runs inside the script that commits the change the record
/// reports, so the record exists in Redis from the instant the state does. The PUBLISH is for
/// other subscribers and may fail (a forbidden channel, say) without undoing anything: the log
/// is the record's home. Every script that emits takes the log stream as its last key and the
/// lobby channel ('' when LOGGER_MODULE is not redis) and the record timestamp as its first two
/// arguments after its own.
const LUA_PRELUDE: &str = r#"
local function int(x) return string.format('%d', x) end
local function now_us()
  local t = redis.call('TIME')
  return int(tonumber(t[1]) * 1000000 + tonumber(t[2]))
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function emit(stream, channel, ts, message, task)
  if channel == '' then return 0 end
  local rec = '{"level":"INFO","timestamp":' .. cjson.encode(ts) .. ',"name":' ..
    cjson.encode(channel) .. ',"log_message":"' .. message .. '","task":' .. task .. '}'
  local id = redis.call('XADD', stream, '*', 'record', rec)
  redis.pcall('PUBLISH', channel, string.sub(rec, 1, -2) .. ',"entry_id":"' .. id .. '"}')
  return 1
end
local function emit_cleaning(stream, channel, ts, g, members)
  table.sort(members)
  for _, u in ipairs(members) do
    emit(stream, channel, ts, 'Cleaning Game Records',
      '{"game_token":"' .. g .. '","user_token":"' .. u .. '"}')
  end
  return #members
end
"#;

static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_PRELUDE}{}",
        r#"
-- KEYS: 1 game set, 2 participants, 3 status, 4 host, 5 heroes taken, 6 hero of u, 7 created,
--       8 games:participants, 9 games:players:n, 10 open lobbies of n, 11 superheros,
--       12 game deadlines, 13 users' last use, 14 users' open lobby
-- ARGV: 1 g, 2 u, 3 n, 4 (unused), 5 lobby window ms, 6 mode (join | create | create-force),
--       7 and 8: a game's status key is ARGV[7] .. game .. ARGV[8]
local g, u, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now, window, mode = now_ms(), tonumber(ARGV[5]), ARGV[6]
redis.call('ZADD', KEYS[13], 'XX', int(now), u)
-- A user waits in one open lobby at most: asking again finds the same one.
local mine = redis.call('HGET', KEYS[14], u)
if mine then
  if redis.call('GET', ARGV[7] .. mine .. ARGV[8]) == 'Waiting Lobby' then return {'MINE', mine} end
  redis.call('HDEL', KEYS[14], u)
end
if mode == 'join' then
  if redis.call('GET', KEYS[3]) ~= 'Waiting Lobby' then return {'CLOSED'} end
  local created = tonumber(redis.call('GET', KEYS[7]) or '0') or 0
  if now - created >= window then return {'STALE'} end
  if redis.call('SISMEMBER', KEYS[1], u) == 1 then return {'MINE', g} end
  n = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if redis.call('SCARD', KEYS[1]) >= n then return {'FULL'} end
else
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'RETRY'} end
  -- Creating while an open lobby exists would split players between half-full games.
  if mode == 'create' and redis.call('ZCOUNT', KEYS[10], now - window + 1, '+inf') > 0 then
    return {'RETRY'}
  end
end
local id = nil
for _, cand in ipairs(redis.call('HRANDFIELD', KEYS[11], 16)) do
  if redis.call('SISMEMBER', KEYS[5], cand) == 0 then id = cand break end
end
if not id then
  for _, cand in ipairs(redis.call('HKEYS', KEYS[11])) do
    if redis.call('SISMEMBER', KEYS[5], cand) == 0 then id = cand break end
  end
end
if not id then return {'NO HEROES'} end
local ok, doc = pcall(cjson.decode, redis.call('HGET', KEYS[11], id))
if not ok or type(doc) ~= 'table' or type(doc['powerstats']) ~= 'table' then
  return {'BAD HERO', id}
end
local attack = tonumber(doc['powerstats']['attack'])
local health = tonumber(doc['powerstats']['health'])
if not attack or not health then return {'BAD HERO', id} end
if mode ~= 'join' then
  redis.call('SET', KEYS[2], int(n))
  redis.call('SET', KEYS[3], 'Waiting Lobby')
  redis.call('SET', KEYS[4], u)
  redis.call('SET', KEYS[7], int(now))
  redis.call('RPUSH', KEYS[9], g)
  -- The original's list of games per size only grows: keep its newest entries only.
  redis.call('LTRIM', KEYS[9], -10000, -1)
  redis.call('ZADD', KEYS[10], int(now), g)
  redis.call('ZADD', KEYS[12], int(now + window), g)
end
redis.call('SADD', KEYS[1], u)
redis.call('SADD', KEYS[5], id)
redis.call('HSET', KEYS[6], 'id', id, 'attack', int(attack), 'health', int(health))
redis.call('HSET', KEYS[14], u, g)
local count = redis.call('SCARD', KEYS[1])
redis.call('ZADD', KEYS[8], count, g)
if count >= n then redis.call('ZREM', KEYS[10], g) end
return {'OK', id}
"#
    ))
});

static READY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_PRELUDE}{}",
        r#"
-- KEYS: 1 game set, 2 status, 3 participants, 4 ready, 5 order, 6 turns, 7 game deadlines,
--       8 log stream, 9 users' open lobby
-- ARGV: 1 u, 2 events channel, 3 lobby channel, 4 record timestamp, 5 g, 6 hero key prefix,
--       7 turn window ms
local u = ARGV[1]
local st = redis.call('GET', KEYS[2])
if not st then return {'UNKNOWN'} end
if redis.call('SISMEMBER', KEYS[1], u) == 0 then return {'NOT IN GAME'} end
if st ~= 'Waiting Lobby' then return {'STATUS', st} end
redis.call('SADD', KEYS[4], u)
local n = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if redis.call('SCARD', KEYS[4]) >= n and redis.call('SCARD', KEYS[1]) >= n then
  local order = redis.call('SMEMBERS', KEYS[1])
  table.sort(order)
  redis.call('SET', KEYS[2], 'In-Progress')
  redis.call('DEL', KEYS[5])
  redis.call('RPUSH', KEYS[5], unpack(order))
  redis.call('SET', KEYS[6], '1')
  redis.call('ZADD', KEYS[7], int(now_ms() + tonumber(ARGV[7])), ARGV[5])
  redis.call('HDEL', KEYS[9], unpack(order))
  redis.call('PUBLISH', ARGV[2], '{"kind":"start","turn":1,"user":"' .. order[1] ..
    '","at_us":' .. now_us() .. '}')
  if ARGV[3] ~= '' then
    -- Starting Match carries the START message (participants sorted, heroes by token).
    local heroes = {}
    for i, p in ipairs(order) do
      local h = redis.call('HMGET', ARGV[6] .. p, 'id', 'attack', 'health')
      local id = tonumber(h[1])
      heroes[i] = '"' .. p .. '":{"token":"' .. p .. '","id":' ..
        ((id and int(id)) or 'null') .. ',"attack":' .. int(tonumber(h[2]) or 0) ..
        ',"health":' .. int(tonumber(h[3]) or 0) .. '}'
    end
    emit(KEYS[8], ARGV[3], ARGV[4], 'Starting Match',
      '{"PAYLOAD":{"GAME_TOKEN":"' .. ARGV[5] .. '","PARTICIPANTS":["' ..
      table.concat(order, '","') .. '"],"PARTICIPANTS_HEROS":{' .. table.concat(heroes, ',') ..
      '}},"STATUS":{"GAME":"START"}}')
  end
  return {'STARTED'}
end
return {'WAITING'}
"#
    ))
});

static ATTACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_PRELUDE}{}",
        r#"
-- KEYS: 1 game set, 2 status, 3 order, 4 turns, 5 hero of u, 6 hero of e, 7 logs, 8 eliminated,
--       9 game deadlines, 10 log stream
-- ARGV: 1 g, 2 u, 3 e, 4 timestamp, 5 max turns, 6 events channel, 7 lobby channel,
--       8 record timestamp, 9 turn window ms
local g, u, e = ARGV[1], ARGV[2], ARGV[3]
local st = redis.call('GET', KEYS[2])
if not st then return {'ERR', 'UNKNOWN GAME TOKEN'} end
if redis.call('SISMEMBER', KEYS[1], u) == 0 then return {'ERR', 'USER NOT IN GAME'} end
if st == 'Completed' or st == 'Timed Out' then return {'ERR', 'GAME IS OVER'} end
if st ~= 'In-Progress' then return {'ERR', 'GAME NOT IN PROGRESS'} end
if u == e or redis.call('SISMEMBER', KEYS[1], e) == 0 then return {'ERR', 'INVALID ENEMY'} end
if redis.call('LINDEX', KEYS[3], 0) ~= u then return {'ERR', 'NOT YOUR TURN'} end
local prior = tonumber(redis.call('HGET', KEYS[6], 'health') or '0') or 0
if prior <= 0 then return {'ERR', 'ENEMY IS DEAD'} end
local damage = tonumber(redis.call('HGET', KEYS[5], 'attack') or '0') or 0
local post = prior - damage
if post < 0 then post = 0 end
redis.call('HSET', KEYS[6], 'health', int(post))
local record = '{"TIMESTAMP": "' .. ARGV[4] .. '", "PAYLOAD": {"GAME_TOKEN": "' .. g ..
  '", "USER_TOKEN": "' .. u .. '"}, "STATUS": {"ACTION": "ATTACK", "DETAILS": {"ENEMY_TOKEN": "' ..
  e .. '", "ENEMY_DAMAGE": ' .. int(damage) .. ', "ENEMY_HEALTH_PRIOR": ' .. int(prior) ..
  ', "ENEMY_HEALTH_POST": ' .. int(post) .. '}}}'
local attacks = redis.call('RPUSH', KEYS[7], record)
redis.call('LMOVE', KEYS[3], KEYS[3], 'LEFT', 'RIGHT')
if post == 0 then
  redis.call('LREM', KEYS[3], 0, e)
  redis.call('RPUSH', KEYS[8], e)
end
local turn = redis.call('INCR', KEYS[4])
if redis.call('LLEN', KEYS[3]) <= 1 or attacks >= tonumber(ARGV[5]) then
  redis.call('SET', KEYS[2], 'Completed')
  redis.call('ZREM', KEYS[9], g)
  redis.call('PUBLISH', ARGV[6], '{"kind":"complete","turn":' .. int(turn) .. '}')
  local emitted = emit_cleaning(KEYS[10], ARGV[7], ARGV[8], g, redis.call('SMEMBERS', KEYS[1]))
  return {'DONE', record, '', turn, emitted}
end
local nxt = redis.call('LINDEX', KEYS[3], 0)
redis.call('ZADD', KEYS[9], int(now_ms() + tonumber(ARGV[9])), g)
redis.call('PUBLISH', ARGV[6], '{"kind":"turn","turn":' .. int(turn) .. ',"user":"' .. nxt ..
  '","at_us":' .. now_us() .. '}')
return {'NEXT', record, nxt, turn, 0}
"#
    ))
});

static ELIMINATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_PRELUDE}{}",
        r#"
-- KEYS: 1 status, 2 order, 3 turns, 4 hero of u, 5 eliminated, 6 ready, 7 game set,
--       8 game deadlines, 9 log stream
-- ARGV: 1 u, 2 expected turn ('' = whenever), 3 events channel, 4 lobby channel,
--       5 record timestamp, 6 g, 7 turn window ms
local u = ARGV[1]
local st = redis.call('GET', KEYS[1])
if st == 'Waiting Lobby' then
  if ARGV[2] == '' then redis.call('SREM', KEYS[6], u) end
  return {'NONE', 0}
end
if st ~= 'In-Progress' then return {'NONE', 0} end
local head = redis.call('LINDEX', KEYS[2], 0)
if ARGV[2] ~= '' and (redis.call('GET', KEYS[3]) ~= ARGV[2] or head ~= u) then
  return {'NONE', 0}
end
if not redis.call('LPOS', KEYS[2], u) then return {'NONE', 0} end
redis.call('HSET', KEYS[4], 'health', '0')
redis.call('LREM', KEYS[2], 0, u)
redis.call('RPUSH', KEYS[5], u)
if redis.call('LLEN', KEYS[2]) <= 1 then
  redis.call('SET', KEYS[1], 'Completed')
  local turn = redis.call('INCR', KEYS[3])
  redis.call('ZREM', KEYS[8], ARGV[6])
  redis.call('PUBLISH', ARGV[3], '{"kind":"complete","turn":' .. int(turn) .. '}')
  return {'DONE', emit_cleaning(KEYS[9], ARGV[4], ARGV[5], ARGV[6], redis.call('SMEMBERS', KEYS[7]))}
end
if head == u then
  local turn = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[8], int(now_ms() + tonumber(ARGV[7])), ARGV[6])
  redis.call('PUBLISH', ARGV[3], '{"kind":"turn","turn":' .. int(turn) .. ',"user":"' ..
    redis.call('LINDEX', KEYS[2], 0) .. '","at_us":' .. now_us() .. '}')
end
return {'ELIMINATED', 0}
"#
    ))
});

static LOBBY_TIMEOUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_PRELUDE}{}",
        r#"
-- KEYS: 1 status, 2 open lobbies of n, 3 created, 4 game deadlines, 5 log stream, 6 game set,
--       7 users' open lobby
-- ARGV: 1 g, 2 events channel, 3 (unused), 4 lobby window ms, 5 lobby channel, 6 record timestamp
if redis.call('GET', KEYS[1]) ~= 'Waiting Lobby' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
local created = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if now_ms() - created < tonumber(ARGV[4]) then return 0 end
redis.call('SET', KEYS[1], 'Timed Out')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local members = redis.call('SMEMBERS', KEYS[6])
if #members > 0 then redis.call('HDEL', KEYS[7], unpack(members)) end
redis.call('PUBLISH', ARGV[2], '{"kind":"timed_out"}')
emit(KEYS[5], ARGV[5], ARGV[6], 'Game Timed Out', '{"game_token":"' .. ARGV[1] .. '"}')
return 1
"#
    ))
});

/// What the scripts need besides the game itself: where lifecycle records go (the lobby's log
/// stream and channel, or nowhere when LOGGER_MODULE is not `redis`: an empty channel tells the
/// scripts so), and how long a lobby and a turn may last. Deadlines are kept in Redis by Redis
/// time ([`keys::GAME_DEADLINES`]), set by the same scripts that start a lobby or a turn.
#[derive(Clone, Debug)]
pub struct Rules {
    stream: String,
    channel: String,
    /// SERVER_SLEEP + TURN_TIMEOUT: a turn's deadline after it starts.
    turn_ms: u64,
    /// LOBBY_TIMEOUT.
    pub lobby_ms: u64,
    /// A game's status key is `.0 + game + .1` (for scripts that look at another game).
    status_key: (String, String),
}

impl Rules {
    pub fn new(settings: &crate::config::Settings) -> Self {
        let lobby = &settings.worker_channel;
        let on = settings.logger_module == crate::config::LoggerModule::Redis;
        Rules {
            stream: keys::log_stream(lobby),
            channel: if on { lobby.clone() } else { String::new() },
            turn_ms: (settings.server_sleep + settings.turn_timeout).as_millis() as u64,
            lobby_ms: settings.lobby_timeout.as_millis() as u64,
            status_key: keys::split_around_game(keys::game_status),
        }
    }
}

/// How a find ended.
#[derive(Debug)]
pub enum Found {
    Joined { game: String, hero_id: u32 },
    Refused(&'static str),
}

/// Joins the oldest open game for `n` players or creates one (the creator is its host).
/// Lobbies past their deadline are timed out by [`sweep_deadlines`], not here.
pub async fn find(conn: &mut ConnectionManager, user: &str, n: u8, rules: &Rules) -> Result<Found> {
    let lobbies = keys::games_lobbies(n);
    for attempt in 0..50 {
        // Oldest first; the join script itself refuses one that is full, started or stale.
        let open: Vec<String> = redis::cmd("ZRANGE")
            .arg(&lobbies)
            .arg(0)
            .arg(7)
            .query_async(conn)
            .await?;
        for g in &open {
            match join_one(conn, g, user, n, rules, "join").await? {
                JoinReply::Ok(hero_id) => {
                    return Ok(Found::Joined {
                        game: g.clone(),
                        hero_id,
                    })
                }
                JoinReply::Mine(g) => return mine(conn, g, user).await,
                JoinReply::Refused(r) => return Ok(Found::Refused(r)),
                JoinReply::Skip => {}
            }
        }
        let g = uuid::Uuid::new_v4().to_string();
        // Under heavy contention, stop deferring to lobbies others are opening at once.
        let mode = if attempt > 40 {
            "create-force"
        } else {
            "create"
        };
        match join_one(conn, &g, user, n, rules, mode).await? {
            JoinReply::Ok(hero_id) => return Ok(Found::Joined { game: g, hero_id }),
            JoinReply::Mine(g) => return mine(conn, g, user).await,
            JoinReply::Refused(r) => return Ok(Found::Refused(r)),
            JoinReply::Skip => {}
        }
    }
    Ok(Found::Refused(reason::SERVICE_UNAVAILABLE))
}

/// The open lobby `user` already waits in, answered again (one open lobby per user).
async fn mine(conn: &mut ConnectionManager, game: String, user: &str) -> Result<Found> {
    let hero: Option<u32> = redis::cmd("HGET")
        .arg(keys::game_hero(&game, user))
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
    conn: &mut ConnectionManager,
    g: &str,
    u: &str,
    n: u8,
    rules: &Rules,
    mode: &str,
) -> Result<JoinReply> {
    let reply: Vec<String> = JOIN
        .key(keys::game(g))
        .key(keys::game_participants(g))
        .key(keys::game_status(g))
        .key(keys::game_host(g))
        .key(keys::game_superheros(g))
        .key(keys::game_hero(g, u))
        .key(keys::game_created(g))
        .key(keys::GAMES_PARTICIPANTS)
        .key(keys::games_players(n))
        .key(keys::games_lobbies(n))
        .key(keys::SUPERHEROS)
        .key(keys::GAME_DEADLINES)
        .key(keys::USERS_LAST_USE)
        .key(keys::USERS_OPEN_LOBBY)
        .arg(g)
        .arg(u)
        .arg(n)
        .arg("")
        .arg(rules.lobby_ms)
        .arg(mode)
        .arg(&rules.status_key.0)
        .arg(&rules.status_key.1)
        .invoke_async(conn)
        .await
        .context("join script")?;
    Ok(match reply.first().map(String::as_str) {
        Some("OK") => match reply.get(1).and_then(|id| id.parse().ok()) {
            Some(id) => JoinReply::Ok(id),
            None => anyhow::bail!("join script returned a hero id that is not an integer"),
        },
        Some("MINE") => JoinReply::Mine(reply.get(1).cloned().unwrap_or_default()),
        Some("NO HEROES") => JoinReply::Refused(reason::NO_HEROES),
        Some("BAD HERO") => anyhow::bail!(
            "hero {} in {} has no health/attack",
            reply.get(1).map(String::as_str).unwrap_or("?"),
            keys::SUPERHEROS
        ),
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
    NotInGame,
    UnknownGame,
}

pub async fn ready(conn: &mut ConnectionManager, g: &str, u: &str, rules: &Rules) -> Result<Ready> {
    let reply: Vec<String> = READY
        .key(keys::game(g))
        .key(keys::game_status(g))
        .key(keys::game_participants(g))
        .key(keys::game_ready(g))
        .key(keys::game_order(g))
        .key(keys::game_turns(g))
        .key(keys::GAME_DEADLINES)
        .key(&rules.stream)
        .key(keys::USERS_OPEN_LOBBY)
        .arg(u)
        .arg(keys::game_events(g))
        .arg(&rules.channel)
        .arg(crate::clock::record_timestamp())
        .arg(g)
        .arg(keys::game_hero(g, ""))
        .arg(rules.turn_ms)
        .invoke_async(conn)
        .await
        .context("ready script")?;
    Ok(match reply.first().map(String::as_str) {
        Some("STARTED") => Ready::Started,
        Some("WAITING") => Ready::Waiting,
        Some("STATUS") => Ready::Status(reply.get(1).cloned().unwrap_or_default()),
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
    conn: &mut ConnectionManager,
    g: &str,
    u: &str,
    e: &str,
    max_turns: u32,
    rules: &Rules,
) -> Result<Attacked> {
    // Refusals are {'ERR', reason}; stored attacks {kind, record, next, turn}.
    let reply: Vec<String> = ATTACK
        .key(keys::game(g))
        .key(keys::game_status(g))
        .key(keys::game_order(g))
        .key(keys::game_turns(g))
        .key(keys::game_hero(g, u))
        .key(keys::game_hero(g, e))
        .key(keys::game_logs(g))
        .key(keys::game_eliminated(g))
        .key(keys::GAME_DEADLINES)
        .key(&rules.stream)
        .arg(g)
        .arg(u)
        .arg(e)
        .arg(crate::clock::attack_timestamp())
        .arg(max_turns.max(1))
        .arg(keys::game_events(g))
        .arg(&rules.channel)
        .arg(crate::clock::record_timestamp())
        .arg(rules.turn_ms)
        .invoke_async(conn)
        .await
        .context("attack script")?;
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
        other => anyhow::bail!("attack script answered {other:?}"),
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
    conn: &mut ConnectionManager,
    g: &str,
    u: &str,
    expected_turn: Option<u64>,
    rules: &Rules,
) -> Result<Eliminated> {
    let (answer, records): (String, u64) = ELIMINATE
        .key(keys::game_status(g))
        .key(keys::game_order(g))
        .key(keys::game_turns(g))
        .key(keys::game_hero(g, u))
        .key(keys::game_eliminated(g))
        .key(keys::game_ready(g))
        .key(keys::game(g))
        .key(keys::GAME_DEADLINES)
        .key(&rules.stream)
        .arg(u)
        .arg(expected_turn.map(|t| t.to_string()).unwrap_or_default())
        .arg(keys::game_events(g))
        .arg(&rules.channel)
        .arg(crate::clock::record_timestamp())
        .arg(g)
        .arg(rules.turn_ms)
        .invoke_async(conn)
        .await
        .context("eliminate script")?;
    Ok(match answer.as_str() {
        "DONE" => Eliminated::Completed { records },
        "ELIMINATED" => Eliminated::Eliminated,
        _ => Eliminated::Nothing,
    })
}

/// Flips a lobby that is still waiting after the window to `Timed Out`; true for the one caller
/// that did it.
pub async fn lobby_timeout(
    conn: &mut ConnectionManager,
    g: &str,
    n: u8,
    window_ms: u64,
    rules: &Rules,
) -> Result<bool> {
    let flipped: i64 = LOBBY_TIMEOUT
        .key(keys::game_status(g))
        .key(keys::games_lobbies(n))
        .key(keys::game_created(g))
        .key(keys::GAME_DEADLINES)
        .key(&rules.stream)
        .key(keys::game(g))
        .key(keys::USERS_OPEN_LOBBY)
        .arg(g)
        .arg(keys::game_events(g))
        .arg("")
        .arg(window_ms)
        .arg(&rules.channel)
        .arg(crate::clock::record_timestamp())
        .invoke_async(conn)
        .await
        .context("lobby timeout script")?;
    Ok(flipped == 1)
}

/// HERO of user `u` in game `g`, or None when `u` has no hero there.
pub async fn hero_spec(conn: &mut ConnectionManager, g: &str, u: &str) -> Result<Option<HeroSpec>> {
    let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::game_hero(g, u))
        .query_async(conn)
        .await?;
    Ok(spec_of(u, &fields))
}

fn spec_of(u: &str, fields: &BTreeMap<String, String>) -> Option<HeroSpec> {
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

/// The START push of game `g`: participants sorted by token and their heroes.
pub async fn start_push(conn: &mut ConnectionManager, g: &str) -> Result<StartPush> {
    let mut participants = members(conn, g).await?;
    participants.sort();
    let mut pipe = redis::pipe();
    for u in &participants {
        pipe.cmd("HGETALL").arg(keys::game_hero(g, u));
    }
    let heroes: Vec<BTreeMap<String, String>> = pipe.query_async(conn).await?;
    let participants_heros = participants
        .iter()
        .zip(heroes.iter())
        .filter_map(|(u, fields)| spec_of(u, fields).map(|s| (u.clone(), s)))
        .collect();
    Ok(StartPush {
        payload: StartPayload {
            game_token: g.to_string(),
            participants,
            participants_heros,
        },
        status: super::protocol::GameStatus {
            game: super::protocol::game_status::START.to_string(),
        },
    })
}

/// User tokens of game `g`.
pub async fn members(conn: &mut ConnectionManager, g: &str) -> Result<Vec<String>> {
    Ok(redis::cmd("SMEMBERS")
        .arg(keys::game(g))
        .query_async(conn)
        .await?)
}

/// What a lobby needs to know about its game to resynchronise.
#[derive(Debug, Default)]
pub struct GameView {
    pub status: Option<String>,
    pub head: Option<String>,
    pub turn: u64,
    pub participants: u8,
    pub created_ms: u64,
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

pub async fn view(conn: &mut ConnectionManager, g: &str) -> Result<GameView> {
    type Row = (
        Option<String>,
        Option<String>,
        Option<u64>,
        Option<u8>,
        Option<u64>,
    );
    let (st, head, turn, n, created): Row = redis::pipe()
        .get(keys::game_status(g))
        .lindex(keys::game_order(g), 0)
        .get(keys::game_turns(g))
        .get(keys::game_participants(g))
        .get(keys::game_created(g))
        .query_async(conn)
        .await?;
    Ok(GameView {
        status: st,
        head,
        turn: turn.unwrap_or(0),
        participants: n.unwrap_or(0),
        created_ms: created.unwrap_or(0),
    })
}

static LOGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: 1 users, 2 user tokens, 3 users' last use, 4 user names   ARGV: 1 name, 2 fresh token
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known then
  redis.call('ZADD', KEYS[3], now, known)
  redis.call('HSET', KEYS[4], known, ARGV[1])
  return {known, 0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
return {ARGV[2], 1}
"#,
    )
});

/// The user token of `name`, and whether it was created just now. Same name, same token.
pub async fn login(conn: &mut ConnectionManager, name: &str) -> Result<(String, bool)> {
    let (token, created): (String, i64) = LOGIN
        .key(keys::USERS)
        .key(keys::USER_TOKENS)
        .key(keys::USERS_LAST_USE)
        .key(keys::USER_NAMES)
        .arg(name)
        .arg(uuid::Uuid::new_v4().to_string())
        .invoke_async(conn)
        .await
        .context("login script")?;
    Ok((token, created == 1))
}

/// Whether login ever handed out `token`.
pub async fn is_user(conn: &mut ConnectionManager, token: &str) -> Result<bool> {
    Ok(redis::cmd("SISMEMBER")
        .arg(keys::USER_TOKENS)
        .arg(token)
        .query_async(conn)
        .await?)
}

/// Whether game `g` exists.
pub async fn is_game(conn: &mut ConnectionManager, g: &str) -> Result<bool> {
    Ok(redis::cmd("EXISTS")
        .arg(keys::game_status(g))
        .query_async(conn)
        .await?)
}
