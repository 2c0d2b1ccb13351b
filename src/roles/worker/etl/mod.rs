//! The worker's transform step (`docs/parquet.md`): read one finished game from Redis, turn it into
//! GAME_META and GAME_PODIUM rows, and (CLEAN_ROUTINE) expire its keys afterwards.
//!
//! [`load_game`] is the only Redis read of the ETL: one pipeline, one round trip. [`rows`] is
//! pure, so the podium rules are unit-tested here without Redis. The Redis steps fail with an
//! [`EtlError`], which says whether trying again can help.

use std::sync::LazyLock;
use std::time::Duration;

use crate::pipeline::redis_conn::Conn;
use anyhow::{bail, Context, Result};
use redis::Script;

use crate::pipeline::keys::status;
use crate::pipeline::keys::Keys;
use crate::pipeline::record::AttackRecord;
use crate::pipeline::redis_conn;
use crate::pipeline::sink::{MetaRow, PodiumRow};

/// Why an ETL step failed.
#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    /// A Redis command failed; `doing` names the step.
    #[error("{doing}")]
    Redis {
        doing: String,
        #[source]
        source: redis::RedisError,
    },
    /// The token cannot name a game's keys (it goes into a SORT pattern).
    #[error("game token {token:?} is not a UUID")]
    BadToken {
        token: String,
        #[source]
        source: uuid::Error,
    },
    /// The game's state is not what the server writes; reading it again reads the same.
    #[error("game {game} is malformed: {reason:#}")]
    Malformed { game: String, reason: anyhow::Error },
}

impl EtlError {
    /// Whether the same step can succeed later: only a Redis error of the passing kind
    /// ([`redis_conn::is_transient`]); a bad token or malformed state never gets better.
    pub fn is_transient(&self) -> bool {
        match self {
            EtlError::Redis { source, .. } => redis_conn::is_transient(source),
            EtlError::BadToken { .. } | EtlError::Malformed { .. } => false,
        }
    }

    fn redis(doing: String) -> impl FnOnce(redis::RedisError) -> EtlError {
        move |source| EtlError::Redis { doing, source }
    }
}

/// What the ETL needs of one finished game.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GameData {
    /// User token of the player who created the game (None if the key is missing).
    pub host: Option<String>,
    /// The number of players the game was created for.
    pub size: u8,
    /// Participants, sorted by token.
    pub players: Vec<Player>,
    /// Attacks in the order they happened.
    pub attacks: Vec<Attack>,
    /// Indices into `players` in the order they fell (killed, timed out or disconnected).
    pub fallen: Vec<usize>,
}

/// A participant and its hero at the end of the game.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Player {
    pub token: String,
    pub hero_id: u16,
    /// Remaining health.
    pub health: u64,
}

/// One attack of the game's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attack {
    /// Index into [`GameData::players`].
    pub attacker: usize,
    /// Index into [`GameData::players`].
    pub enemy: usize,
    pub damage: u64,
    pub enemy_health_post: u64,
}

/// What `SORT <game> BY nosort GET # GET <hero>->id GET <hero>->health` answers, as a script
/// (sent with EVAL inside the pipeline; Redis caches it): the hero hashes are named from the
/// members, in the game's slot.
const MEMBERS_WITH_HEROES: &str = "\
local out = {}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[1] .. u, 'id', 'health')
  out[#out + 1] = u
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
end
return out";

/// Reads game `game` in one round trip. `None` when the game does not exist or is not
/// `Completed`; an error when its state is malformed (a log entry that is not an attack record,
/// an attack by or on a non-participant, a hero hash without an integer id or health).
pub async fn load_game(
    conn: &mut Conn,
    k: &Keys,
    game: &str,
) -> Result<Option<GameData>, EtlError> {
    // The token goes into a SORT pattern below: it must not carry glob characters.
    uuid::Uuid::parse_str(game).map_err(|source| EtlError::BadToken {
        token: game.to_string(),
        source,
    })?;
    type Reply = (
        Option<String>,
        Option<String>,
        Option<String>,
        Vec<Option<String>>,
        Vec<String>,
        Vec<String>,
    );
    let mut pipe = redis::pipe();
    pipe.get(k.game_status(game))
        .get(k.game_host(game))
        .get(k.game_participants(game));
    // Members with their hero's id and health, without a second round trip: SORT … GET on one
    // Redis (the original's way), a script on shards (a cluster refuses SORT's GET).
    if k.tag().is_none() {
        pipe.cmd("SORT")
            .arg(k.game(game))
            .arg("BY")
            .arg("nosort")
            .arg("GET")
            .arg("#")
            .arg("GET")
            .arg(k.game_hero_field_pattern(game, "id"))
            .arg("GET")
            .arg(k.game_hero_field_pattern(game, "health"));
    } else {
        pipe.cmd("EVAL")
            .arg(MEMBERS_WITH_HEROES)
            .arg(1)
            .arg(k.game(game))
            .arg(k.game_hero(game, ""));
    }
    let (state, host, size, heroes, logs, fallen): Reply = pipe
        .lrange(k.game_logs(game), 0, -1)
        .lrange(k.game_eliminated(game), 0, -1)
        .query_async(conn)
        .await
        .map_err(EtlError::redis(format!("cannot read game {game}")))?;
    if state.as_deref() != Some(status::COMPLETED) {
        return Ok(None);
    }
    parse_game(game, host, size, &heroes, &logs, &fallen)
        .map_err(|reason| EtlError::Malformed {
            game: game.to_string(),
            reason,
        })
        .map(Some)
}

fn parse_game(
    game: &str,
    host: Option<String>,
    size: Option<String>,
    heroes: &[Option<String>],
    logs: &[String],
    fallen: &[String],
) -> Result<GameData> {
    let size = match size {
        Some(text) => text
            .parse::<u8>()
            .with_context(|| format!("participants {text:?} is not a small integer"))?,
        None => 0,
    };
    if heroes.len() % 3 != 0 {
        bail!("SORT returned {} values, not triples", heroes.len());
    }
    let mut players = Vec::with_capacity(heroes.len() / 3);
    for triple in heroes.chunks_exact(3) {
        let token = triple[0].clone().context("participant without a token")?;
        let hero_id = triple[1]
            .as_deref()
            .with_context(|| format!("{token} has no hero in {game}"))?;
        let hero_id = hero_id
            .parse::<u16>()
            .with_context(|| format!("hero id {hero_id:?} of {token} is not an integer"))?;
        let health = triple[2]
            .as_deref()
            .with_context(|| format!("the hero of {token} has no health"))?;
        let health = health
            .parse::<u64>()
            .with_context(|| format!("health {health:?} of {token} is not an integer"))?;
        players.push(Player {
            token,
            hero_id,
            health,
        });
    }
    if players.is_empty() {
        bail!("no participants");
    }
    players.sort_unstable_by(|a, b| a.token.cmp(&b.token));
    let index_of = |token: &str| {
        players
            .binary_search_by(|p| p.token.as_str().cmp(token))
            .ok()
    };

    let mut attacks = Vec::with_capacity(logs.len());
    for (n, text) in logs.iter().enumerate() {
        let entry: AttackRecord = serde_json::from_str(text)
            .with_context(|| format!("log entry {n} is not an attack record"))?;
        let attacker = index_of(&entry.payload.user_token).with_context(|| {
            format!(
                "log entry {n}: attacker {} is not a participant",
                entry.payload.user_token
            )
        })?;
        let details = entry.status.details;
        let enemy = index_of(&details.enemy_token).with_context(|| {
            format!(
                "log entry {n}: enemy {} is not a participant",
                details.enemy_token
            )
        })?;
        attacks.push(Attack {
            attacker,
            enemy,
            damage: details.enemy_damage,
            enemy_health_post: details.enemy_health_post,
        });
    }

    let mut fallen_players = Vec::with_capacity(fallen.len());
    for token in fallen {
        let i = index_of(token)
            .with_context(|| format!("eliminated player {token} is not a participant"))?;
        if !fallen_players.contains(&i) {
            fallen_players.push(i);
        }
    }
    Ok(GameData {
        host,
        size,
        players,
        attacks,
        fallen: fallen_players,
    })
}

/// GAME_META and GAME_PODIUM rows of a game, one per participant, in token order.
///
/// Ranks (`docs/parquet.md`): the players who fell get n, n-1, … in the order they fell; the others are
/// ranked above them by remaining health (higher first), then damage delivered (higher first),
/// then token. The fall order is the game's elimination list, completed by kills in the log
/// and then by any other player at 0 health (in token order), so every player at 0 health is
/// ranked as fallen even when a key was missing.
pub fn rows(game: &str, data: &GameData) -> (Vec<MetaRow>, Vec<PodiumRow>) {
    let n = data.players.len();
    let mut rounds = vec![0u64; n];
    let mut delivered = vec![0u64; n];
    let mut received = vec![0u64; n];
    let mut fallen: Vec<usize> = Vec::with_capacity(n);
    let mut is_fallen = vec![false; n];
    for &i in &data.fallen {
        if i < n && !is_fallen[i] {
            is_fallen[i] = true;
            fallen.push(i);
        }
    }
    for a in &data.attacks {
        if a.attacker >= n || a.enemy >= n {
            continue;
        }
        rounds[a.attacker] += 1;
        delivered[a.attacker] = delivered[a.attacker].saturating_add(a.damage);
        received[a.enemy] = received[a.enemy].saturating_add(a.damage);
        if a.enemy_health_post == 0 && !is_fallen[a.enemy] {
            is_fallen[a.enemy] = true;
            fallen.push(a.enemy);
        }
    }
    for (i, p) in data.players.iter().enumerate() {
        if p.health == 0 && !is_fallen[i] {
            is_fallen[i] = true;
            fallen.push(i);
        }
    }
    let mut alive: Vec<usize> = (0..n).filter(|&i| !is_fallen[i]).collect();
    alive.sort_by(|&a, &b| {
        let (pa, pb) = (&data.players[a], &data.players[b]);
        pb.health
            .cmp(&pa.health)
            .then(delivered[b].cmp(&delivered[a]))
            .then(pa.token.cmp(&pb.token))
    });
    let mut rank = vec![0usize; n];
    for (place, &i) in alive.iter().enumerate() {
        rank[i] = place + 1;
    }
    for (order, &i) in fallen.iter().enumerate() {
        rank[i] = n - order;
    }

    let meta = data
        .players
        .iter()
        .map(|p| MetaRow {
            game_token: game.to_string(),
            user_token: p.token.clone(),
            superhero_id: p.hero_id,
        })
        .collect();
    let podium = data
        .players
        .iter()
        .enumerate()
        .map(|(i, p)| PodiumRow {
            game_token: game.to_string(),
            user_token: p.token.clone(),
            rounds: u16::try_from(rounds[i]).unwrap_or(u16::MAX),
            rank: u8::try_from(rank[i]).unwrap_or(u8::MAX),
            damage_delivered: delivered[i],
            damage_received: received[i],
        })
        .collect();
    (meta, podium)
}

/// The clean routine (CLEAN_ROUTINE, `docs/redis-keys.md`): puts `expiry` on every key of the
/// game (every hero hash included) but its ETL markers, which get `marker_expiry` in the same
/// transaction (a record that comes back later must find the game done, so a crash between
/// the two must not leave the markers on the shorter TTL), and removes the game from
/// `games:participants` and `games:players:<n>` (and from the open lobbies, should it still be
/// listed there). Call it only once the files are in place.
pub async fn expire_game(
    conn: &mut Conn,
    k: &Keys,
    game: &str,
    expiry: Duration,
    marker_expiry: Duration,
) -> Result<(), EtlError> {
    let (members, size): (Vec<String>, Option<String>) = redis::pipe()
        .smembers(k.game(game))
        .get(k.game_participants(game))
        .query_async(conn)
        .await
        .map_err(EtlError::redis(format!(
            "cannot read the keys of game {game}"
        )))?;
    let whole_seconds = |d: Duration| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX);
    let seconds = whole_seconds(expiry);
    let markers = [k.etl_done(game), k.etl_writer(game)];
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in k.game_keys(game) {
        let ttl = if markers.contains(&key) {
            whole_seconds(marker_expiry)
        } else {
            seconds
        };
        pipe.expire(key, ttl).ignore();
    }
    for user in &members {
        pipe.expire(k.game_hero(game, user), seconds).ignore();
    }
    pipe.zrem(k.games_participants(), game).ignore();
    // `games:players:<n>` is capped at its newest entries by the join script instead of an
    // O(n) LREM per game here.
    if let Some(n) = size.as_deref().and_then(|s| s.parse::<u8>().ok()) {
        pipe.zrem(k.games_lobbies(n), game).ignore();
    }
    pipe.zrem(k.game_deadlines(), game).ignore();
    pipe.query_async::<()>(conn)
        .await
        .map_err(EtlError::redis(format!("cannot expire game {game}")))?;
    Ok(())
}

static EXPIRE_TIMED_OUT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("expire_timed_out.lua")));

/// The clean routine of a `Game Timed Out` record: what [`expire_game`] does, for a game whose
/// status is `Timed Out` only, checked in the same script. False, and nothing changed, for a
/// game in any other status: the record is stale or another publisher's, and that game is not a
/// dead lobby. True for a game already gone.
pub async fn expire_timed_out(
    conn: &mut Conn,
    k: &Keys,
    game: &str,
    expiry: Duration,
) -> Result<bool, EtlError> {
    let mut script = EXPIRE_TIMED_OUT.prepare_invoke();
    script
        .key(k.game_status(game))
        .key(k.game(game))
        .key(k.games_participants())
        .key(k.game_deadlines());
    for key in k.game_keys(game) {
        script.key(key);
    }
    let expired: i64 = script
        .arg(game)
        .arg(expiry.as_secs().max(1))
        .arg(k.game_hero(game, ""))
        .invoke_async(conn)
        .await
        .map_err(EtlError::redis(format!(
            "cannot expire timed-out game {game}"
        )))?;
    Ok(expired != 0)
}

#[cfg(test)]
mod tests;
