//! Issue #13, point 3: no impersonation, and the original client still plays.
//!
//! A user token is a player's only credential. These tests check that a (game, user) pair has
//! one lobby socket at most (across server processes), that players only ever see each other by
//! per-game aliases, that an opponent's real token is refused as ENEMY_TOKEN while its alias
//! works, and that both the player bot and a minimal bot written from the API description alone
//! (tokens as opaque strings, like the original Python client) finish their games.
//!
//! Servers run in-process through `server::run`, each test on its own private redis-server.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{wait_for, TestRedis};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use superhero::config::Settings;
use superhero::pipeline::keys;
use superhero::roles::player::{self, Outcome, PlayerOptions};
use superhero::shutdown;

use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use common::ws::{connect, Ws};

/// How long any single frame may take to arrive.
const FRAME_WAIT: Duration = Duration::from_secs(30);

use common::game_server::Server;

/// Settings for the tests: a private Redis, loaded heroes, lobbies that wait long enough.
async fn prepared(redis: &TestRedis, vars: &[(&str, &str)]) -> Settings {
    let mut all = vec![("LOBBY_TIMEOUT", "20")];
    all.extend_from_slice(vars);
    common::game_server::prepared(redis, &all).await
}

/// The next text frame, as received.
async fn next_text(ws: &mut Ws) -> String {
    let frame = tokio::time::timeout(FRAME_WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(Message::Close(_))) | None => panic!("the server closed the socket"),
                Some(Err(e)) => panic!("socket failed: {e}"),
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    frame.expect("a frame in time")
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("frames are JSON")
}

async fn ask(ws: &mut Ws, body: Value) -> Value {
    ws.send(Message::text(body.to_string()))
        .await
        .expect("send");
    parse(&next_text(ws).await)
}

/// A minimal client written from the API description only: tokens are opaque strings, sorted
/// and sent back as they came (what the original Python client does). It keeps every frame it
/// receives, on every socket, to look for leaks afterwards.
struct MiniBot {
    name: String,
    token: String,
    game: String,
    participants: Vec<String>,
    find: Ws,
    lobby: Ws,
    hero: Ws,
    action: Ws,
    frames: Vec<String>,
}

impl MiniBot {
    async fn login(port: u16, name: &str) -> MiniBot {
        let mut login = connect(port, "/api/v1/login").await;
        login
            .send(Message::text(
                json!({"PAYLOAD": {"USER": name}}).to_string(),
            ))
            .await
            .unwrap();
        let text = next_text(&mut login).await;
        let token = parse(&text)["PAYLOAD"]["USER_TOKEN"]
            .as_str()
            .expect("a user token")
            .to_string();
        MiniBot {
            name: name.to_string(),
            token,
            game: String::new(),
            participants: Vec::new(),
            find: connect(port, "/api/v1/game/find").await,
            lobby: connect(port, "/api/v1/game/lobby").await,
            hero: connect(port, "/api/v1/game/hero").await,
            action: connect(port, "/api/v1/game/action").await,
            frames: vec![text],
        }
    }

    /// Sends `body` on one of the bot's sockets and returns the reply, keeping it.
    async fn request(&mut self, route: &str, body: Value) -> Value {
        let ws = match route {
            "find" => &mut self.find,
            "lobby" => &mut self.lobby,
            "hero" => &mut self.hero,
            "action" => &mut self.action,
            other => panic!("no socket for {other}"),
        };
        ws.send(Message::text(body.to_string()))
            .await
            .expect("send");
        let text = next_text(ws).await;
        self.frames.push(text.clone());
        parse(&text)
    }

    async fn find(&mut self, n: u8) {
        let body = json!({"PAYLOAD": {"USER_TOKEN": self.token, "PARTICIPANTS": n}});
        let reply = self.request("find", body).await;
        assert_eq!(reply["STATUS"]["JOINED"], "SUCCESS", "{reply}");
        self.game = reply["PAYLOAD"]["GAME_TOKEN"].as_str().unwrap().to_string();
    }

    fn registration(&self) -> Value {
        json!({"PAYLOAD": {"GAME_TOKEN": self.game, "USER_TOKEN": self.token}})
    }

    async fn register(&mut self) {
        let text = self.registration().to_string();
        self.lobby.send(Message::text(text)).await.expect("send");
    }

    /// The next lobby push, kept.
    async fn push(&mut self) -> Value {
        let text = next_text(&mut self.lobby).await;
        self.frames.push(text.clone());
        parse(&text)
    }

    /// Plays from the lobby until COMPLETE: on START note the participants, on each USER'S
    /// TURN attack the first living opponent in string order.
    async fn play(&mut self) {
        loop {
            let push = self.push().await;
            match push["STATUS"]["GAME"].as_str() {
                Some("START") => self.on_start(&push),
                Some("USER'S TURN") => self.take_turn().await,
                Some("COMPLETE") => return,
                _ => panic!("{}: unexpected lobby frame {push}", self.name),
            }
        }
    }

    fn on_start(&mut self, push: &Value) {
        let mut participants: Vec<String> = push["PAYLOAD"]["PARTICIPANTS"]
            .as_array()
            .expect("PARTICIPANTS")
            .iter()
            .map(|p| p.as_str().expect("tokens are strings").to_string())
            .collect();
        participants.sort();
        assert!(participants.contains(&self.token), "{push}");
        self.participants = participants;
    }

    async fn take_turn(&mut self) {
        let opponents: Vec<String> = self
            .participants
            .iter()
            .filter(|p| **p != self.token)
            .cloned()
            .collect();
        for enemy in opponents {
            let body = json!({"PAYLOAD": {"GAME_TOKEN": self.game, "USER_TOKEN": enemy}});
            let hero = self.request("hero", body).await;
            assert_eq!(hero["STATUS"]["GAME"], "HERO SPEC", "{hero}");
            assert_eq!(hero["PAYLOAD"]["USER_TOKEN"], enemy.as_str());
            assert_eq!(hero["PAYLOAD"]["HERO"]["token"], enemy.as_str());
            if hero["PAYLOAD"]["HERO"]["health"].as_u64().unwrap_or(0) > 0 {
                let body = json!({"PAYLOAD": {"GAME_TOKEN": self.game, "USER_TOKEN": self.token,
                    "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}});
                let reply = self.request("action", body).await;
                match reply["STATUS"].as_str() {
                    // It fell meanwhile (its lobby socket closed): try the next one.
                    Some("ENEMY IS DEAD") => continue,
                    // Too slow: the turn timed out.
                    Some("NOT YOUR TURN") => {}
                    Some(_) => panic!("{}: attack refused: {reply}", self.name),
                    None => {
                        assert_eq!(reply["STATUS"]["DETAILS"]["ENEMY_TOKEN"], enemy.as_str())
                    }
                }
                return;
            }
        }
    }
}

/// Plays a bot's game in a task and hands the bot back.
fn spawn_play(mut bot: MiniBot) -> JoinHandle<MiniBot> {
    tokio::spawn(async move {
        bot.play().await;
        bot
    })
}

async fn joined(task: JoinHandle<MiniBot>) -> MiniBot {
    tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the game ends in time")
        .expect("bot task")
}

fn members(redis: &TestRedis, g: &str) -> BTreeSet<String> {
    redis.cmd(&["SMEMBERS", &common::single_keys().game(g)])
}

fn registered(redis: &TestRedis, g: &str, u: &str) -> bool {
    redis.cmd(&["HEXISTS", &common::single_keys().game_lobby_sockets(g), u])
}

async fn wait_registered(redis: &TestRedis, g: &str, u: &str, want: bool) {
    wait_for(
        "the lobby registration",
        Duration::from_secs(10),
        || async move { registered(redis, g, u) == want },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_lobby_socket_is_refused_and_the_first_plays_on() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[]).await;
    // Two server processes on one Redis: the registration holds across them.
    let a = Server::start(&settings).await;
    let b = Server::start(&settings).await;
    let mut first = MiniBot::login(a.port, "first").await;
    first.find(2).await;
    first.register().await;
    wait_registered(&redis, &first.game, &first.token, true).await;
    let mut intruders = vec![
        connect(a.port, "/api/v1/game/lobby").await,
        connect(b.port, "/api/v1/game/lobby").await,
    ];
    for ws in &mut intruders {
        let reply = ask(ws, first.registration()).await;
        assert_eq!(
            reply,
            json!({"PAYLOAD": {}, "STATUS": "LOBBY ALREADY OPEN"})
        );
        // Refused again, on a socket that stays usable.
        let reply = ask(ws, first.registration()).await;
        assert_eq!(reply["STATUS"], "LOBBY ALREADY OPEN");
    }
    let mut second = MiniBot::login(b.port, "second").await;
    second.find(2).await;
    assert_eq!(second.game, first.game);
    second.register().await;
    let (first, second) = (spawn_play(first), spawn_play(second));
    let (first, _second) = (joined(first).await, joined(second).await);
    let g = &first.game;
    let status: String = redis.cmd(&["GET", &common::single_keys().game_status(g)]);
    assert_eq!(status, "Completed");
    // The refused sockets heard nothing of the game: the next reply on each is to a request.
    for ws in &mut intruders {
        let reply = ask(ws, json!({"PAYLOAD": {}})).await;
        assert_eq!(reply["STATUS"], "MISSING GAME TOKEN IN PAYLOAD", "{reply}");
    }
    // The winner's socket gave up its registration when the game ended.
    wait_registered(&redis, g, &first.token, false).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_lobby_socket_frees_the_registration() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[]).await;
    let server = Server::start(&settings).await;
    let port = server.port;
    // Before START: the socket drops, the player registers again and plays.
    let mut early = MiniBot::login(port, "early").await;
    early.find(3).await;
    early.register().await;
    wait_registered(&redis, &early.game, &early.token, true).await;
    let g = early.game.clone();
    let dropped = std::mem::replace(&mut early.lobby, connect(port, "/api/v1/game/lobby").await);
    drop(dropped);
    wait_registered(&redis, &g, &early.token, false).await;
    let ready: bool = redis.cmd(&[
        "SISMEMBER",
        &common::single_keys().game_ready(&g),
        &early.token,
    ]);
    assert!(!ready, "a dropped socket leaves the ready set");
    early.register().await;
    wait_registered(&redis, &g, &early.token, true).await;
    let mut other = MiniBot::login(port, "other").await;
    other.find(3).await;
    other.register().await;
    // After START: the socket drops (its player is eliminated) and the player registers again,
    // pointless but harmless: it hears the game out.
    let mut late = MiniBot::login(port, "late").await;
    late.find(3).await;
    assert_eq!((&other.game, &late.game), (&g, &g));
    let (early, other) = (spawn_play(early), spawn_play(other));
    late.register().await;
    loop {
        let push = late.push().await;
        if push["STATUS"]["GAME"] == "START" {
            break;
        }
    }
    drop(std::mem::replace(
        &mut late.lobby,
        connect(port, "/api/v1/game/lobby").await,
    ));
    wait_registered(&redis, &g, &late.token, false).await;
    late.register().await;
    loop {
        let push = late.push().await;
        match push["STATUS"]["GAME"].as_str() {
            Some("COMPLETE") => break,
            Some("START" | "USER'S TURN") => {}
            _ => panic!("unexpected frame after registering again: {push}"),
        }
    }
    let (early, _other) = (joined(early).await, joined(other).await);
    let fallen: Vec<String> = redis.cmd(&[
        "LRANGE",
        &common::single_keys().game_eliminated(&g),
        "0",
        "-1",
    ]);
    assert!(fallen.contains(&late.token), "the late deserter fell");
    let health: u64 = redis.cmd(&[
        "HGET",
        &common::single_keys().game_hero(&g, &late.token),
        "health",
    ]);
    assert_eq!(health, 0);
    assert_eq!(early.participants.len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opponents_user_token_is_refused_as_enemy_and_its_alias_works() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[("TURN_TIMEOUT", "20")]).await;
    let server = Server::start(&settings).await;
    let mut bots = vec![
        MiniBot::login(server.port, "one").await,
        MiniBot::login(server.port, "two").await,
    ];
    for bot in &mut bots {
        bot.find(2).await;
        bot.register().await;
    }
    let g = bots[0].game.clone();
    assert_eq!(bots[1].game, g);
    for bot in &mut bots {
        let start = bot.push().await;
        assert_eq!(start["STATUS"]["GAME"], "START", "{start}");
        bot.on_start(&start);
    }
    // Whose turn it is, by the server's order of real tokens.
    let head: String = redis.cmd(&["LINDEX", &common::single_keys().game_order(&g), "0"]);
    let (mut attacker, mut victim) = {
        let two = bots.pop().unwrap();
        let one = bots.pop().unwrap();
        if one.token == head {
            (one, two)
        } else {
            (two, one)
        }
    };
    let turn = attacker.push().await;
    assert_eq!(turn["STATUS"]["GAME"], "USER'S TURN");
    let alias = attacker
        .participants
        .iter()
        .find(|p| **p != attacker.token)
        .unwrap()
        .clone();
    assert_ne!(alias, victim.token);
    let parsed = uuid::Uuid::parse_str(&alias).expect("an alias is a UUID");
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(
        parsed.hyphenated().to_string(),
        alias,
        "lowercase hyphenated"
    );
    let prior: u64 = redis.cmd(&[
        "HGET",
        &common::single_keys().game_hero(&g, &victim.token),
        "health",
    ]);
    // The victim's real token, read from Redis, is no way to name it.
    let by_token = json!({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": attacker.token,
        "ENEMY_TOKEN": victim.token, "ACTION": "ATTACK"}});
    let reply = attacker.request("action", by_token).await;
    assert_eq!(reply, json!({"PAYLOAD": {}, "STATUS": "INVALID ENEMY"}));
    let after: u64 = redis.cmd(&[
        "HGET",
        &common::single_keys().game_hero(&g, &victim.token),
        "health",
    ]);
    assert_eq!(after, prior, "a refused attack changes nothing");
    // An alias is no credential: it cannot act or open a lobby.
    let as_alias = json!({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": alias,
        "ENEMY_TOKEN": alias, "ACTION": "ATTACK"}});
    let reply = attacker.request("action", as_alias).await;
    assert_eq!(reply["STATUS"], "USER NOT IN GAME");
    let mut lobby = connect(server.port, "/api/v1/game/lobby").await;
    let reply = ask(
        &mut lobby,
        json!({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": alias}}),
    )
    .await;
    assert_eq!(reply["STATUS"], "USER NOT IN GAME");
    // The hero route answers for the alias, under the alias.
    let hero = attacker
        .request(
            "hero",
            json!({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": alias}}),
        )
        .await;
    assert_eq!(hero["PAYLOAD"]["USER_TOKEN"], alias.as_str());
    assert_eq!(hero["PAYLOAD"]["HERO"]["token"], alias.as_str());
    assert_eq!(hero["PAYLOAD"]["HERO"]["health"], prior);
    // The alias works, and the record the attacker gets back names the enemy by it.
    let by_alias = json!({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": attacker.token,
        "ENEMY_TOKEN": alias, "ACTION": "ATTACK"}});
    let record = attacker.request("action", by_alias).await;
    let details = &record["STATUS"]["DETAILS"];
    assert_eq!(details["ENEMY_TOKEN"], alias.as_str(), "{record}");
    assert_eq!(record["PAYLOAD"]["USER_TOKEN"], attacker.token.as_str());
    assert_eq!(details["ENEMY_HEALTH_PRIOR"], prior);
    // The stored log keeps the real tokens.
    let stored: String = redis.cmd(&["LINDEX", &common::single_keys().game_logs(&g), "-1"]);
    let stored = parse(&stored);
    assert_eq!(
        stored["STATUS"]["DETAILS"]["ENEMY_TOKEN"],
        victim.token.as_str()
    );
    assert_eq!(stored["PAYLOAD"]["USER_TOKEN"], attacker.token.as_str());
    for field in ["ENEMY_DAMAGE", "ENEMY_HEALTH_PRIOR", "ENEMY_HEALTH_POST"] {
        assert_eq!(
            stored["STATUS"]["DETAILS"][field], details[field],
            "{field}"
        );
    }
    // If the victim lives, its turn comes; the attacker's real token is refused there too.
    if details["ENEMY_HEALTH_POST"].as_u64() != Some(0) {
        let turn = victim.push().await;
        assert_eq!(turn["STATUS"]["GAME"], "USER'S TURN");
        let reply = victim
            .request(
                "action",
                json!({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": victim.token,
                    "ENEMY_TOKEN": attacker.token, "ACTION": "ATTACK"}}),
            )
            .await;
        assert_eq!(reply["STATUS"], "INVALID ENEMY");
        victim.take_turn().await;
    }
    let (attacker, victim) = (spawn_play(attacker), spawn_play(victim));
    joined(attacker).await;
    joined(victim).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_frame_names_another_participants_user_token() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[("LOGGER_MODULE", "redis")]).await;
    let server = Server::start(&settings).await;
    let mut bots = Vec::new();
    for name in ["ann", "bob", "cy"] {
        let mut bot = MiniBot::login(server.port, name).await;
        bot.find(3).await;
        bot.register().await;
        bots.push(spawn_play(bot));
    }
    let mut finished = Vec::new();
    for bot in bots {
        finished.push(joined(bot).await);
    }
    let g = finished[0].game.clone();
    let everyone = members(&redis, &g);
    assert_eq!(everyone.len(), 3);
    let mut aliases_seen = BTreeSet::new();
    for bot in &finished {
        assert_eq!(bot.game, g);
        assert!(bot.frames.iter().any(|f| f.contains("START")));
        for other in everyone.iter().filter(|u| **u != bot.token) {
            for frame in &bot.frames {
                assert!(
                    !frame.contains(other.as_str()),
                    "{} received another participant's user token: {frame}",
                    bot.name
                );
            }
        }
        aliases_seen.extend(
            bot.participants
                .iter()
                .filter(|p| **p != bot.token)
                .cloned(),
        );
    }
    // Everyone sees a given opponent under the same alias: one per participant.
    assert_eq!(aliases_seen.len(), 3, "{aliases_seen:?}");
    assert!(aliases_seen.is_disjoint(&everyone));
    // What is stored keeps the real tokens: the attack logs and the Starting Match record.
    let logs: Vec<String> = redis.cmd(&["LRANGE", &common::single_keys().game_logs(&g), "0", "-1"]);
    assert!(!logs.is_empty());
    for line in &logs {
        let record = parse(line);
        let u = record["PAYLOAD"]["USER_TOKEN"].as_str().unwrap();
        let e = record["STATUS"]["DETAILS"]["ENEMY_TOKEN"].as_str().unwrap();
        assert!(everyone.contains(u) && everyone.contains(e), "{line}");
    }
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis.cmd(&[
        "XRANGE",
        &keys::log_stream(&settings.worker_channel),
        "-",
        "+",
    ]);
    let starting: Vec<Value> = entries
        .iter()
        .map(|(_, fields)| parse(&fields["record"]))
        .filter(|r| r["log_message"] == "Starting Match")
        .collect();
    assert_eq!(starting.len(), 1);
    let listed: BTreeSet<String> = starting[0]["task"]["PAYLOAD"]["PARTICIPANTS"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed, everyone,
        "the Starting Match record keeps real tokens"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_bot_and_a_minimal_bot_finish_their_games() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[]).await;
    let server = Server::start(&settings).await;
    let (_stop, shutdown) = shutdown::channel();
    // Round one: two player bots and one minimal bot in a 3-player game; round two: one of each
    // in a 2-player game.
    for (n, player_bots) in [(3u8, 2usize), (2, 1)] {
        let mut mini = MiniBot::login(server.port, &format!("mini-{n}")).await;
        mini.find(n).await;
        mini.register().await;
        let bots: Vec<_> = (0..player_bots)
            .map(|_| {
                let mut s = settings.clone();
                s.websocket_host = "127.0.0.1".into();
                s.websocket_port = server.port;
                s.client_games = Some(1);
                let sd = shutdown.clone();
                tokio::spawn(async move {
                    let options = PlayerOptions {
                        participants: Some(n),
                        ..PlayerOptions::default()
                    };
                    player::play(&s, &options, sd).await
                })
            })
            .collect();
        let mini = joined(spawn_play(mini)).await;
        for bot in bots {
            let reports = tokio::time::timeout(Duration::from_secs(60), bot)
                .await
                .expect("the bot finishes in time")
                .expect("bot task")
                .expect("bot returns Ok");
            assert_eq!(reports.len(), 1);
            let report = &reports[0];
            assert_eq!(report.game_token, mini.game);
            assert!(
                matches!(
                    report.outcome,
                    Outcome::Won | Outcome::Survived | Outcome::Eliminated
                ),
                "{:?}",
                report.outcome
            );
            assert_eq!(report.participants.len(), usize::from(n));
            // The bot sees the minimal bot by an alias, never by its user token.
            assert!(!report.participants.contains(&mini.token));
        }
        let status: String = redis.cmd(&["GET", &common::single_keys().game_status(&mini.game)]);
        assert_eq!(status, "Completed");
    }
    server.stop().await;
}
