//! Synthetic finished games for tests and benchmarks.
//!
//! A [`SynthGame`] is played by the server's rules (turn order sorted by token, the head attacks
//! a living enemy, health floors at 0, a hero at 0 leaves the order, the game ends when one is
//! left or after `max_turns` attacks) and [`seed`] stores it exactly the way the game server
//! stores a finished game (the keys of `docs/redis-keys.md`), so the worker's `load_game`
//! reads it like a real one. [`records`] produces the lifecycle records (`docs/records.md`) that make a
//! worker process them; [`append_all`] puts them in the log as the server does, [`publish_all`]
//! on a channel as another publisher (or a test) would.

use std::collections::BTreeMap;

use crate::pipeline::redis_conn::Conn;
use anyhow::{bail, Context, Result};
use rand::Rng;

use crate::pipeline::delivery::Log;
use crate::pipeline::keys::{self, status};
use crate::pipeline::record::{AttackRecord, LifecycleRecord, CLEANING_GAME_RECORDS};
use crate::pipeline::shard::{Layout, Shard};
use crate::pipeline::sink::{MetaRow, PodiumRow};

/// The timestamp of every synthetic attack record.
const SYNTH_TIMESTAMP: &str = "2026-11-26T16:14:48Z";
/// A participant of a synthetic game and its hero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthPlayer {
    pub token: String,
    pub hero_id: u16,
    pub attack: u64,
    /// Health at the start.
    pub initial_health: u64,
    /// Health at the end.
    pub health: u64,
}

/// What happened in a turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SynthEvent {
    /// `players[attacker]` attacked `players[enemy]`; the stored attack record.
    Attack {
        attacker: usize,
        enemy: usize,
        damage: u64,
        prior: u64,
        post: u64,
    },
    /// `players[i]` was eliminated without a blow (turn timeout or closed lobby socket).
    Leave(usize),
}

/// A finished game.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthGame {
    pub token: String,
    /// Token of the creator.
    pub host: String,
    /// Participant tokens, sorted (the turn order at the start).
    pub players: Vec<String>,
    /// One per participant, in the order of `players`.
    pub heroes: Vec<SynthPlayer>,
    pub events: Vec<SynthEvent>,
    /// Indices into `players` in the order they fell.
    pub fallen: Vec<usize>,
    /// Living players in turn order at the end.
    pub order: Vec<usize>,
}

/// A random v4 UUID drawn from `rng` (reproducible with a seeded rng).
pub fn random_token(rng: &mut impl Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A game of `players` (2–8) random heroes whose healths make it last about `attacks` attacks,
/// capped at `max_turns`.
pub fn random_game(
    rng: &mut impl Rng,
    players: usize,
    attacks: usize,
    max_turns: usize,
) -> SynthGame {
    let players = players.clamp(2, 8);
    let mut hero_ids: Vec<u16> = Vec::with_capacity(players);
    while hero_ids.len() < players {
        let id = rng.random_range(1..=731u16);
        if !hero_ids.contains(&id) {
            hero_ids.push(id);
        }
    }
    let heroes: Vec<(String, u16, u64, u64)> = hero_ids
        .into_iter()
        .map(|id| {
            let attack = rng.random_range(5_000..=50_000u64);
            // Blows spread over every player, the eventual winner too: about attacks/n each.
            let blows = (attacks as f64 / players as f64).max(1.0);
            let health = (27_500.0 * blows * rng.random_range(0.7..1.3)) as u64;
            (random_token(rng), id, attack, health.max(1))
        })
        .collect();
    let host = rng.random_range(0..players);
    let host_token = heroes[host].0.clone();
    let mut game = SynthGame::start(random_token(rng), &host_token, heroes);
    while !game.is_over(max_turns) {
        let Some(&attacker) = game.order.first() else {
            break;
        };
        let living: Vec<usize> = game
            .order
            .iter()
            .copied()
            .filter(|&i| i != attacker)
            .collect();
        let enemy = living[rng.random_range(0..living.len())];
        if game.attack(attacker, enemy).is_err() {
            break;
        }
    }
    game
}

/// [`random_game`] with a game token of `shard` of `layout` (drawn as the server draws it); on
/// the single layout, exactly [`random_game`].
pub fn random_game_in(
    rng: &mut impl Rng,
    layout: &Layout,
    shard: Shard,
    players: usize,
    attacks: usize,
    max_turns: usize,
) -> SynthGame {
    let mut game = random_game(rng, players, attacks, max_turns);
    if layout.is_tagged() {
        game.token = layout.draw_token(shard);
    }
    game
}

impl SynthGame {
    /// A game about to play its first turn: `heroes` are (token, hero id, attack, health).
    pub fn start(token: String, host: &str, mut heroes: Vec<(String, u16, u64, u64)>) -> Self {
        heroes.sort_by(|a, b| a.0.cmp(&b.0));
        let players: Vec<String> = heroes.iter().map(|h| h.0.clone()).collect();
        let order = (0..players.len()).collect();
        SynthGame {
            token,
            host: host.to_string(),
            players,
            heroes: heroes
                .into_iter()
                .map(|(token, hero_id, attack, health)| SynthPlayer {
                    token,
                    hero_id,
                    attack,
                    initial_health: health,
                    health,
                })
                .collect(),
            events: Vec::new(),
            fallen: Vec::new(),
            order,
        }
    }

    /// Number of attacks made so far.
    pub fn attacks(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, SynthEvent::Attack { .. }))
            .count()
    }

    /// Whether the server would have ended the game.
    pub fn is_over(&self, max_turns: usize) -> bool {
        self.order.len() <= 1 || self.attacks() >= max_turns
    }

    /// `players[attacker]`, whose turn it must be, attacks living `players[enemy]`.
    pub fn attack(&mut self, attacker: usize, enemy: usize) -> Result<()> {
        if self.order.first() != Some(&attacker) {
            bail!("not the turn of player {attacker}");
        }
        if attacker == enemy || !self.order.contains(&enemy) {
            bail!("player {enemy} is not a living enemy");
        }
        let damage = self.heroes[attacker].attack;
        let prior = self.heroes[enemy].health;
        let post = prior.saturating_sub(damage);
        self.heroes[enemy].health = post;
        self.events.push(SynthEvent::Attack {
            attacker,
            enemy,
            damage,
            prior,
            post,
        });
        self.order.rotate_left(1);
        if post == 0 {
            self.order.retain(|&i| i != enemy);
            self.fallen.push(enemy);
        }
        Ok(())
    }

    /// `players[i]` is eliminated without a blow (timed out or disconnected).
    pub fn leave(&mut self, i: usize) -> Result<()> {
        if !self.order.contains(&i) {
            bail!("player {i} is not playing");
        }
        self.heroes[i].health = 0;
        self.order.retain(|&j| j != i);
        self.fallen.push(i);
        self.events.push(SynthEvent::Leave(i));
        Ok(())
    }

    /// The attack records of the game, as the server's attack script writes them.
    ///
    /// (An attack record of plain strings and numbers always serialises.)
    pub fn log_entries(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                SynthEvent::Attack {
                    attacker,
                    enemy,
                    damage,
                    prior,
                    post,
                } => serde_json::to_string(&AttackRecord::new(
                    SYNTH_TIMESTAMP,
                    &self.token,
                    &self.players[attacker],
                    &self.players[enemy],
                    damage,
                    prior,
                    post,
                ))
                .ok(),
                SynthEvent::Leave(_) => None,
            })
            .collect()
    }
}

/// Stores finished games as the server leaves them, in pipelines of a few hundred games, with
/// the single layout's key names.
pub async fn seed(conn: &mut Conn, games: &[SynthGame]) -> Result<()> {
    seed_in(conn, &Layout::single(), games).await
}

/// [`seed`] in `layout`: each game under its shard's keys (the shard of its token), one
/// pipeline per shard and few hundred games, so every pipeline touches one slot of a cluster.
pub async fn seed_in(conn: &mut Conn, layout: &Layout, games: &[SynthGame]) -> Result<()> {
    for (_, of_shard) in by_shard(layout, games, |g| &g.token) {
        for batch in of_shard.chunks(200) {
            let mut pipe = redis::pipe();
            for game in batch {
                add_game(&mut pipe, layout, game);
            }
            pipe.query_async::<()>(conn)
                .await
                .context("cannot seed synthetic games")?;
        }
    }
    Ok(())
}

/// `items` grouped by the shard of their game token, in shard order, each group in the order
/// of `items` (the single layout: one group, all of them in order).
fn by_shard<'a, T>(
    layout: &Layout,
    items: &'a [T],
    token: impl Fn(&T) -> &str,
) -> BTreeMap<Shard, Vec<&'a T>> {
    let mut groups: BTreeMap<Shard, Vec<&T>> = BTreeMap::new();
    for item in items {
        groups
            .entry(layout.of_token(token(item)))
            .or_default()
            .push(item);
    }
    groups
}

fn add_game(pipe: &mut redis::Pipeline, layout: &Layout, game: &SynthGame) {
    let g = game.token.as_str();
    let n = game.players.len() as u8;
    let k = layout.keys_of(g);
    pipe.sadd(k.game(g), &game.players).ignore();
    pipe.set(k.game_participants(g), n).ignore();
    pipe.set(k.game_status(g), status::COMPLETED).ignore();
    pipe.set(k.game_host(g), &game.host).ignore();
    pipe.set(k.game_created(g), crate::clock::now_ms()).ignore();
    pipe.sadd(k.game_ready(g), &game.players).ignore();
    pipe.set(k.game_turns(g), game.events.len() + 1).ignore();
    let order: Vec<&str> = game
        .order
        .iter()
        .map(|&i| game.players[i].as_str())
        .collect();
    if !order.is_empty() {
        pipe.rpush(k.game_order(g), order).ignore();
    }
    let ids: Vec<u16> = game.heroes.iter().map(|h| h.hero_id).collect();
    pipe.sadd(k.game_superheros(g), ids).ignore();
    for hero in &game.heroes {
        pipe.hset_multiple(
            k.game_hero(g, &hero.token),
            &[
                ("id", hero.hero_id.to_string()),
                ("attack", hero.attack.to_string()),
                ("health", hero.health.to_string()),
            ],
        )
        .ignore();
    }
    let logs = game.log_entries();
    if !logs.is_empty() {
        pipe.rpush(k.game_logs(g), logs).ignore();
    }
    let fallen: Vec<&str> = game
        .fallen
        .iter()
        .map(|&i| game.players[i].as_str())
        .collect();
    if !fallen.is_empty() {
        pipe.rpush(k.game_eliminated(g), fallen).ignore();
    }
    pipe.rpush(k.games_players(n), g).ignore();
    pipe.zadd(k.games_participants(), g, n).ignore();
}

fn cleaning_record(lobby: &str, game: &str, user: &str) -> String {
    let record = LifecycleRecord::info(
        lobby,
        CLEANING_GAME_RECORDS,
        serde_json::json!({"game_token": game, "user_token": user}),
    );
    // A record of plain strings always serialises.
    serde_json::to_string(&record).unwrap_or_default()
}

/// The `Cleaning Game Records` record of the game's host: the one that triggers the ETL.
pub fn host_record(lobby: &str, game: &SynthGame) -> String {
    cleaning_record(lobby, &game.token, &game.host)
}

/// One `Cleaning Game Records` record per participant, host included, in token order.
pub fn records(lobby: &str, game: &SynthGame) -> Vec<String> {
    game.players
        .iter()
        .map(|u| cleaning_record(lobby, &game.token, u))
        .collect()
}

/// PUBLISHes `records` to `channel`, `batch` per pipeline.
pub async fn publish_all(
    conn: &mut Conn,
    channel: &str,
    records: &[String],
    batch: usize,
) -> Result<()> {
    for chunk in records.chunks(batch.max(1)) {
        let mut pipe = redis::pipe();
        for record in chunk {
            pipe.publish(channel, record).ignore();
        }
        pipe.query_async::<()>(conn)
            .await
            .with_context(|| format!("cannot publish to {channel}"))?;
    }
    Ok(())
}

/// Appends `records` to the lobby's log stream, as the server's scripts do, `batch` per
/// pipeline. Returns their entry ids in order.
pub async fn append_all(
    conn: &mut Conn,
    lobby: &str,
    records: &[String],
    batch: usize,
) -> Result<Vec<String>> {
    let stream = keys::log_stream(lobby);
    let mut ids = Vec::with_capacity(records.len());
    for chunk in records.chunks(batch.max(1)) {
        ids.extend(xadd_batch(conn, &stream, chunk).await?);
    }
    Ok(ids)
}

/// XADDs `records` to `stream` in one pipeline; their entry ids, in order.
async fn xadd_batch<'a>(
    conn: &mut Conn,
    stream: &str,
    records: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<String>> {
    let mut pipe = redis::pipe();
    for record in records {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(crate::pipeline::delivery::RECORD_FIELD)
            .arg(record);
    }
    pipe.query_async(conn)
        .await
        .with_context(|| format!("cannot append to {stream}"))
}

/// [`append_all`] in `layout`: each record, given with its game's token, appended to the log of
/// its game's shard (the same slot as the game's keys), one pipeline per shard and `batch`
/// records. Returns their delivery ids in the order of `records` (on the single layout, the
/// entry ids: exactly [`append_all`]).
pub async fn append_all_in(
    conn: &mut Conn,
    layout: &Layout,
    lobby: &str,
    records: &[(String, String)],
    batch: usize,
) -> Result<Vec<String>> {
    if !layout.is_tagged() {
        let texts: Vec<String> = records.iter().map(|(_, r)| r.clone()).collect();
        return append_all(conn, lobby, &texts, batch).await;
    }
    let indexed: Vec<(usize, &(String, String))> = records.iter().enumerate().collect();
    let mut ids = vec![String::new(); records.len()];
    for (shard, of_shard) in by_shard(layout, &indexed, |(_, (g, _))| g) {
        let log = Log::of(layout, lobby, shard);
        for chunk in of_shard.chunks(batch.max(1)) {
            let texts = chunk.iter().map(|(_, (_, record))| record);
            let appended = xadd_batch(conn, &log.stream, texts).await?;
            for ((i, _), entry) in chunk.iter().zip(appended) {
                ids[*i] = log.delivery_id(&entry).into_owned();
            }
        }
    }
    Ok(ids)
}

/// The rows the ETL must produce for `game`, computed from the simulation itself (not from
/// Redis), in token order.
pub fn expected_rows(game: &SynthGame) -> (Vec<MetaRow>, Vec<PodiumRow>) {
    let n = game.players.len();
    let (mut rounds, mut delivered, mut received) = (vec![0u16; n], vec![0u64; n], vec![0u64; n]);
    for e in &game.events {
        if let SynthEvent::Attack {
            attacker,
            enemy,
            damage,
            ..
        } = *e
        {
            rounds[attacker] += 1;
            delivered[attacker] += damage;
            received[enemy] += damage;
        }
    }
    let mut standing: Vec<usize> = (0..n).filter(|i| !game.fallen.contains(i)).collect();
    standing.sort_by_key(|&i| {
        (
            std::cmp::Reverse(game.heroes[i].health),
            std::cmp::Reverse(delivered[i]),
            game.players[i].clone(),
        )
    });
    // Winner first, then the fallen from the last to fall to the first.
    let podium_order: Vec<usize> = standing
        .into_iter()
        .chain(game.fallen.iter().rev().copied())
        .collect();
    let mut rank = vec![0u8; n];
    for (place, &i) in podium_order.iter().enumerate() {
        rank[i] = place as u8 + 1;
    }
    let meta = game
        .heroes
        .iter()
        .map(|h| MetaRow {
            game_token: game.token.clone(),
            user_token: h.token.clone(),
            superhero_id: h.hero_id,
        })
        .collect();
    let podium = (0..n)
        .map(|i| PodiumRow {
            game_token: game.token.clone(),
            user_token: game.players[i].clone(),
            rounds: rounds[i],
            rank: rank[i],
            damage_delivered: delivered[i],
            damage_received: received[i],
        })
        .collect();
    (meta, podium)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_games_follow_the_rules() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut total = 0;
        for _ in 0..200 {
            let game = random_game(&mut rng, 3, 30, 1000);
            assert_eq!(game.players.len(), 3);
            assert!(game.players.windows(2).all(|w| w[0] < w[1]));
            assert!(game.players.contains(&game.host));
            assert_eq!(game.order.len(), 1, "played to the end");
            assert_eq!(game.fallen.len(), 2);
            total += game.attacks();
        }
        let mean = total / 200;
        assert!((20..=40).contains(&mean), "mean attacks {mean}");
        let capped = random_game(&mut rng, 8, 400, 10);
        assert_eq!(capped.attacks(), 10);
        assert!(capped.order.len() > 1);
    }

    #[test]
    fn games_in_a_tagged_layout_fall_in_their_shard_and_the_single_layout_is_unchanged() {
        let single = random_game(&mut rand::rngs::StdRng::seed_from_u64(3), 3, 20, 1000);
        let same = random_game_in(
            &mut rand::rngs::StdRng::seed_from_u64(3),
            &Layout::single(),
            Shard(0),
            3,
            20,
            1000,
        );
        assert_eq!(single, same);

        let layout = Layout::tagged("lobby", 12);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let games: Vec<SynthGame> = layout
            .shards()
            .map(|s| random_game_in(&mut rng, &layout, s, 3, 20, 1000))
            .collect();
        for (s, game) in layout.shards().zip(&games) {
            assert_eq!(layout.of_token(&game.token), s);
            assert!(game.log_entries()[0].contains(&game.token));
        }
        let groups = by_shard(&layout, &games, |g| &g.token);
        assert_eq!(groups.len(), 12);
        assert!(groups.values().all(|g| g.len() == 1));
    }
}
