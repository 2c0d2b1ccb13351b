//! Issue 3's "Checked by": the game server and the player bots against private redis-servers.
//!
//! Servers run in-process through `server::run` (the same function the CLI runs) unless the test
//! is about the process itself (SIGTERM, outage logging), which runs the real binary.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::{free_port, superhero, wait_for, wait_until, TestRedis};
use futures_util::StreamExt;
use serde_json::{json, Value};
use superhero::config::Settings;
use superhero::pipeline::keys;
use superhero::pipeline::record::AttackRecord;
use superhero::pipeline::record::LifecycleRecord;
use superhero::pipeline::redis_conn::Redis;
use superhero::roles::player::{self, GameReport, Outcome, PlayerOptions};
use superhero::shutdown::{self, Shutdown};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use common::game_server::{prepared, Server};
use common::roles::Proc;
use common::ws::{ask, connect, next_json};

/// Starts `count` bots against `port`, each playing `games` games of `participants` players.
fn spawn_bots(
    settings: &Settings,
    port: u16,
    count: usize,
    games: Option<u64>,
    participants: Option<u8>,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<anyhow::Result<Vec<GameReport>>>> {
    (0..count)
        .map(|_| {
            let mut s = settings.clone();
            s.websocket_host = "127.0.0.1".into();
            s.websocket_port = port;
            s.client_games = games;
            let sd = shutdown.clone();
            tokio::spawn(async move {
                let options = PlayerOptions {
                    participants,
                    ..PlayerOptions::default()
                };
                player::play(&s, &options, sd).await
            })
        })
        .collect()
}

async fn join_bots(
    bots: Vec<JoinHandle<anyhow::Result<Vec<GameReport>>>>,
    within: Duration,
) -> Vec<GameReport> {
    let mut all = Vec::new();
    for bot in bots {
        let reports = tokio::time::timeout(within, bot)
            .await
            .expect("bots finish in time")
            .expect("bot task")
            .expect("bot returns Ok");
        all.extend(reports);
    }
    all
}

fn is_complete(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Won | Outcome::Survived | Outcome::Eliminated
    )
}

/// Asserts every invariant of a finished game that Redis can show; returns its attack count.
fn check_game(redis: &TestRedis, g: &str, max_turns: usize) -> usize {
    let members: BTreeSet<String> = redis.cmd(&["SMEMBERS", &common::single_keys().game(g)]);
    let n: usize = redis.cmd(&["GET", &common::single_keys().game_participants(g)]);
    let status: String = redis.cmd(&["GET", &common::single_keys().game_status(g)]);
    assert_eq!(status, "Completed", "game {g}");
    assert_eq!(members.len(), n, "game {g} holds exactly its size");
    // No hero twice in a game.
    let mut heroes = BTreeMap::new();
    let mut attack_of = HashMap::new();
    let mut health_of = HashMap::new();
    for u in &members {
        let hero: HashMap<String, u64> =
            redis.cmd(&["HGETALL", &common::single_keys().game_hero(g, u)]);
        heroes.insert(hero["id"], u.clone());
        attack_of.insert(u.clone(), hero["attack"]);
        health_of.insert(u.clone(), hero["health"]);
    }
    assert_eq!(heroes.len(), members.len(), "game {g}: a hero taken twice");
    let taken: BTreeSet<u64> = redis.cmd(&["SMEMBERS", &common::single_keys().game_superheros(g)]);
    assert_eq!(taken, heroes.keys().copied().collect(), "game {g}");
    // The logs replay consistently.
    let logs: Vec<String> = redis.cmd(&["LRANGE", &common::single_keys().game_logs(g), "0", "-1"]);
    assert!(logs.len() <= max_turns, "game {g} exceeded MAX_TURNS");
    let mut last_post: HashMap<String, u64> = HashMap::new();
    for line in &logs {
        let record: AttackRecord = serde_json::from_str(line).expect("attack record JSON");
        // Built by the attack script with cjson, read and written back by the one Rust type:
        // the same object.
        let back: serde_json::Value = serde_json::to_value(&record).unwrap();
        let original: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(back, original, "the attack record round-trips");
        let d = &record.status.details;
        let (u, e) = (
            &record.payload.user_token.to_string(),
            &d.enemy_token.to_string(),
        );
        assert_eq!(record.payload.game_token, g);
        assert!(
            members.contains(u) && members.contains(e) && u != e,
            "{line}"
        );
        assert_eq!(
            d.enemy_damage, attack_of[u],
            "damage is the attacker's attack: {line}"
        );
        assert_eq!(
            d.enemy_health_post,
            d.enemy_health_prior.saturating_sub(d.enemy_damage),
            "{line}"
        );
        assert!(d.enemy_health_prior > 0, "attack on a dead hero: {line}");
        if let Some(prior) = last_post.get(e) {
            assert_eq!(*prior, d.enemy_health_prior, "health jumped: {line}");
        }
        if let Some(post) = last_post.get(u) {
            assert!(*post > 0, "a dead hero attacked: {line}");
        }
        last_post.insert(e.clone(), d.enemy_health_post);
    }
    for (e, post) in &last_post {
        assert_eq!(health_of[e], *post, "game {g}: final health of {e}");
    }
    let alive = health_of.values().filter(|h| **h > 0).count();
    assert!(
        alive <= 1 || logs.len() == max_turns,
        "game {g} ended with {alive} alive after {} attacks",
        logs.len()
    );
    logs.len()
}

/// Checks the bots' reports against Redis: every game that started is complete for every one
/// of its players, consistent, and never over-full. A bot may end its run on a lobby that timed
/// out (the other bots had played all their games, so nobody was left to fill it): that lobby
/// must really be short of players. Returns the completed games.
fn check_reports(redis: &TestRedis, reports: &[GameReport], max_turns: usize) -> BTreeSet<String> {
    let mut games: BTreeMap<String, Vec<&GameReport>> = BTreeMap::new();
    for r in reports {
        let g = &r.game_token;
        if r.outcome == Outcome::TimedOut {
            let n: usize = redis.cmd(&["GET", &common::single_keys().game_participants(g)]);
            let joined: usize = redis.cmd(&["SCARD", &common::single_keys().game(g)]);
            let status: String = redis.cmd(&["GET", &common::single_keys().game_status(g)]);
            assert_eq!(status, "Timed Out", "game {g}");
            assert!(
                joined < n,
                "game {g} timed out with {joined} of {n} players"
            );
            continue;
        }
        assert!(is_complete(&r.outcome), "game {g} ended {:?}", r.outcome);
        games.entry(g.clone()).or_default().push(r);
    }
    for (g, players) in &games {
        let n: usize = redis.cmd(&["GET", &common::single_keys().game_participants(g)]);
        assert_eq!(
            players.len(),
            n,
            "game {g}: every participant reported COMPLETE"
        );
        for p in players {
            assert_eq!(p.participants.len(), n);
        }
        let winners = players.iter().filter(|p| p.outcome == Outcome::Won).count();
        assert!(winners <= 1, "game {g} has {winners} winners");
        check_game(redis, g, max_turns);
    }
    games.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_players_three_games_on_one_server() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[]).await;
    let server = Server::start(&settings).await;
    let (_stop, shutdown) = shutdown::channel();
    let bots = spawn_bots(&settings, server.port, 10, Some(3), Some(2), &shutdown);
    let reports = join_bots(bots, Duration::from_secs(120)).await;
    assert_eq!(reports.len(), 30);
    let games = check_reports(&redis, &reports, 1000);
    assert!(games.len() >= 13, "{} games", games.len());
    // 3-player games too: nine bots, three games each.
    let bots = spawn_bots(&settings, server.port, 9, Some(3), Some(3), &shutdown);
    let reports = join_bots(bots, Duration::from_secs(120)).await;
    assert_eq!(reports.len(), 27);
    assert!(check_reports(&redis, &reports, 1000).len() >= 7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_games() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[]).await;
    let a = Server::start(&settings).await;
    let b = Server::start(&settings).await;
    let (_stop, shutdown) = shutdown::channel();
    let mut bots = spawn_bots(&settings, a.port, 5, Some(3), Some(2), &shutdown);
    bots.extend(spawn_bots(
        &settings,
        b.port,
        5,
        Some(3),
        Some(2),
        &shutdown,
    ));
    let reports = join_bots(bots, Duration::from_secs(120)).await;
    assert_eq!(reports.len(), 30);
    let games = check_reports(&redis, &reports, 1000);
    assert!(games.len() >= 13, "{} games", games.len());
    a.stop().await;
    b.stop().await;
}

/// A hand-driven player: logs in and joins a game of `n`; returns (user token, game token).
async fn join_by_hand(port: u16, name: &str, n: u8) -> (String, String) {
    let mut login = connect(port, "/api/v1/login").await;
    let reply = ask(&mut login, json!({"PAYLOAD": {"USER": name}})).await;
    let user = reply["PAYLOAD"]["USER_TOKEN"].as_str().unwrap().to_string();
    let mut find = connect(port, "/api/v1/game/find").await;
    let reply = ask(
        &mut find,
        json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": n}}),
    )
    .await;
    assert_eq!(reply["STATUS"]["JOINED"], "SUCCESS", "{reply}");
    let game = reply["PAYLOAD"]["GAME_TOKEN"].as_str().unwrap().to_string();
    (user, game)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lobby_socket_does_not_hang_the_game() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[("TURN_TIMEOUT", "4")]).await;
    let server = Server::start(&settings).await;
    // The deserter joins first, so the bots join its game.
    let (user, game) = join_by_hand(server.port, "deserter", 3).await;
    let mut lobby = common::ws::open_lobby(server.port, &game, &user).await;
    let (_stop, shutdown) = shutdown::channel();
    let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let bots: Vec<_> = (0..2)
        .map(|_| {
            let mut s = settings.clone();
            s.websocket_host = "127.0.0.1".into();
            s.websocket_port = server.port;
            s.client_games = Some(1);
            let (sd, tx) = (shutdown.clone(), tx.clone());
            tokio::spawn(async move {
                let options = PlayerOptions {
                    participants: Some(3),
                    progress: Some(tx),
                    ..PlayerOptions::default()
                };
                player::play(&s, &options, sd).await
            })
        })
        .collect();
    drop(tx);
    let start = next_json(&mut lobby, Duration::from_secs(10))
        .await
        .expect("START");
    assert_eq!(start["STATUS"]["GAME"], "START", "{start}");
    // Mid-game (the game has started; it may even be the deserter's turn): drop the socket.
    drop(lobby);
    let dropped = Instant::now();
    let mut finished = Vec::new();
    while let Some(report) = progress.recv().await {
        finished.push((report, dropped.elapsed()));
    }
    assert_eq!(finished.len(), 2);
    for (report, after) in &finished {
        assert_eq!(report.game_token, game);
        assert!(is_complete(&report.outcome), "{:?}", report.outcome);
        assert!(
            *after <= settings.turn_timeout + Duration::from_secs(1),
            "the game ended {after:?} after the drop"
        );
    }
    join_bots(bots, Duration::from_secs(10)).await;
    let health: u64 = redis.cmd(&[
        "HGET",
        &common::single_keys().game_hero(&game, &user),
        "health",
    ]);
    assert_eq!(health, 0, "the deserter is eliminated");
    let fallen: Vec<String> = redis.cmd(&[
        "LRANGE",
        &common::single_keys().game_eliminated(&game),
        "0",
        "-1",
    ]);
    assert!(fallen.contains(&user));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_player_is_eliminated_after_turn_timeout() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[("TURN_TIMEOUT", "1")]).await;
    let server = Server::start(&settings).await;
    let (user, game) = join_by_hand(server.port, "sleeper", 2).await;
    let mut lobby = common::ws::open_lobby(server.port, &game, &user).await;
    let (_stop, shutdown) = shutdown::channel();
    let bots = spawn_bots(&settings, server.port, 1, Some(1), Some(2), &shutdown);
    // The sleeper keeps its socket open and never attacks: it hears COMPLETE all the same.
    let mut saw_complete = false;
    while let Some(push) = next_json(&mut lobby, Duration::from_secs(30)).await {
        if push["STATUS"]["GAME"] == "COMPLETE" {
            saw_complete = true;
            break;
        }
    }
    assert!(saw_complete, "the sleeper is told the game is over");
    let reports = join_bots(bots, Duration::from_secs(30)).await;
    assert_eq!(reports[0].game_token, game);
    assert_eq!(reports[0].outcome, Outcome::Won);
    let health: u64 = redis.cmd(&[
        "HGET",
        &common::single_keys().game_hero(&game, &user),
        "health",
    ]);
    assert_eq!(health, 0);
    server.stop().await;
}

/// Collects every lifecycle record published on the lobby channel into a shared list, with the
/// game's LLEN logs and status read at the moment of receipt.
struct Recorded {
    record: LifecycleRecord,
    /// The id of the record's entry in the log stream, which the server adds to what it
    /// publishes.
    entry_id: Option<String>,
    logs_at_receipt: Option<u64>,
    status_at_receipt: Option<String>,
}

/// The game a record is about: `task.game_token`, or the START message's `PAYLOAD.GAME_TOKEN`.
fn game_of(record: &LifecycleRecord) -> String {
    let task = &record.task;
    task["game_token"]
        .as_str()
        .or_else(|| task["PAYLOAD"]["GAME_TOKEN"].as_str())
        .expect("a record names its game")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_records_follow_the_logs() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[("LOGGER_MODULE", "redis")]).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&settings.worker_channel).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let mut stream = pubsub.into_on_message();
            while let Some(msg) = stream.next().await {
                let record: LifecycleRecord =
                    serde_json::from_slice(msg.get_payload_bytes()).expect("record JSON");
                let mut raw: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
                let entry_id = raw["entry_id"].as_str().map(str::to_string);
                // Built by the server's scripts with cjson, read and written back by the one
                // Rust type: the same object (but the entry id the PUBLISH adds).
                raw.as_object_mut().unwrap().remove("entry_id");
                assert_eq!(
                    serde_json::to_value(&record).unwrap(),
                    raw,
                    "the lifecycle record round-trips"
                );
                let g = record.task["game_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let (logs, status): (Option<u64>, Option<String>) = redis::pipe()
                    .llen(common::single_keys().game_logs(&g))
                    .get(common::single_keys().game_status(&g))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let recorded = Recorded {
                    record,
                    entry_id,
                    logs_at_receipt: logs,
                    status_at_receipt: status,
                };
                if tx.send(recorded).is_err() {
                    return;
                }
            }
        })
    };
    let server = Server::start(&settings).await;
    let (_stop, shutdown) = shutdown::channel();
    let bots = spawn_bots(&settings, server.port, 6, Some(2), Some(3), &shutdown);
    let reports = join_bots(bots, Duration::from_secs(120)).await;
    let games = check_reports(&redis, &reports, 1000);
    // Stopping drains the publisher: every record the run made is on its way to the reader.
    server.stop().await;
    let expected_cleaning = reports.iter().filter(|r| is_complete(&r.outcome)).count();
    let mut cleaning: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut starting: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = 0;
    // entry id → record, of everything the subscriber heard.
    let mut heard: BTreeMap<String, LifecycleRecord> = BTreeMap::new();
    while seen < expected_cleaning {
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("every Cleaning record arrives")
            .expect("reader alive");
        let g = game_of(&r.record);
        let entry = r
            .entry_id
            .clone()
            .expect("a published record names its log entry");
        assert!(heard.insert(entry, r.record.clone()).is_none());
        match r.record.log_message.as_str() {
            "Cleaning Game Records" => {
                seen += 1;
                let final_len: u64 = redis.cmd(&["LLEN", &common::single_keys().game_logs(&g)]);
                assert_eq!(r.status_at_receipt.as_deref(), Some("Completed"));
                assert_eq!(
                    r.logs_at_receipt,
                    Some(final_len),
                    "published before the logs were complete"
                );
                assert!(final_len > 0);
                let u = r.record.task["user_token"].as_str().unwrap().to_string();
                cleaning.entry(g).or_default().push(u);
            }
            "Starting Match" => {
                assert_eq!(r.record.task["STATUS"]["GAME"], "START");
                *starting.entry(g).or_default() += 1;
            }
            other => panic!("unexpected record {other}"),
        }
        assert_eq!(r.record.level, "INFO");
        assert_eq!(r.record.name, settings.worker_channel);
    }
    assert_eq!(cleaning.keys().cloned().collect::<BTreeSet<_>>(), games);
    for (g, users) in &cleaning {
        let members: BTreeSet<String> = redis.cmd(&["SMEMBERS", &common::single_keys().game(g)]);
        let mut sorted = users.clone();
        sorted.sort();
        let unique: BTreeSet<String> = users.iter().cloned().collect();
        assert_eq!(
            sorted.len(),
            unique.len(),
            "game {g}: a Cleaning record twice"
        );
        assert_eq!(
            unique, members,
            "game {g}: one Cleaning record per participant"
        );
    }
    // Anything left in flight is a Starting Match record; none is duplicated or stray.
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        assert_eq!(r.record.log_message, "Starting Match");
        let g = game_of(&r.record);
        *starting.entry(g).or_default() += 1;
        let entry = r
            .entry_id
            .clone()
            .expect("a published record names its log entry");
        assert!(heard.insert(entry, r.record).is_none());
    }
    for g in &games {
        assert_eq!(starting.get(g), Some(&1), "game {g}: one Starting Match");
    }
    reader.abort();
    // What was published is exactly what the log holds, each under the entry id it carried.
    let logged: BTreeMap<String, LifecycleRecord> =
        logged_records(&redis, &settings).into_iter().collect();
    assert_eq!(logged, heard, "the log and the published records differ");
}

/// The log stream's entries: (entry id, record), oldest first.
fn logged_records(redis: &TestRedis, settings: &Settings) -> Vec<(String, LifecycleRecord)> {
    let entries: Vec<(String, HashMap<String, String>)> = redis.cmd(&[
        "XRANGE",
        &keys::log_stream(&settings.worker_channel),
        "-",
        "+",
    ]);
    entries
        .into_iter()
        .map(|(id, fields)| {
            let text = fields.get("record").expect("a log entry holds a record");
            (id, serde_json::from_str(text).expect("log record JSON"))
        })
        .collect()
}

fn log_records(redis: &TestRedis, settings: &Settings) -> Vec<LifecycleRecord> {
    logged_records(redis, settings)
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_subscriber_records_wait_in_the_log() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[("LOGGER_MODULE", "redis")]).await;
    let server = Server::start(&settings).await;
    let (_stop, shutdown) = shutdown::channel();
    let bots = spawn_bots(&settings, server.port, 4, Some(1), Some(2), &shutdown);
    let reports = join_bots(bots, Duration::from_secs(60)).await;
    let games = check_reports(&redis, &reports, 1000);
    // The scripts append each record as they commit the state it reports: no fanout, no
    // subscriber, and every record is in the log.
    server.stop().await;
    let records = log_records(&redis, &settings);
    for g in &games {
        let members: BTreeSet<String> = redis.cmd(&["SMEMBERS", &common::single_keys().game(g)]);
        let cleaned: Vec<String> = records
            .iter()
            .filter(|r| r.log_message == "Cleaning Game Records" && r.task["game_token"] == *g)
            .map(|r| r.task["user_token"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(cleaned.len(), members.len(), "game {g}");
        assert_eq!(cleaned.into_iter().collect::<BTreeSet<_>>(), members);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lobby_that_never_fills_times_out() {
    let redis = TestRedis::start();
    let settings = prepared(
        &redis,
        &[("LOBBY_TIMEOUT", "1"), ("LOGGER_MODULE", "redis")],
    )
    .await;
    let server = Server::start(&settings).await;
    let (_stop, shutdown) = shutdown::channel();
    // Two players for a game of four: the lobby can never fill.
    let bots = spawn_bots(&settings, server.port, 2, Some(1), Some(4), &shutdown);
    let reports = join_bots(bots, Duration::from_secs(30)).await;
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    }
    let g = &reports[0].game_token;
    assert_eq!(&reports[1].game_token, g, "both waited in one lobby");
    let status: String = redis.cmd(&["GET", &common::single_keys().game_status(g)]);
    assert_eq!(status, "Timed Out");
    server.stop().await;
    let timed_out: Vec<_> = log_records(&redis, &settings)
        .into_iter()
        .filter(|r| r.log_message == "Game Timed Out")
        .collect();
    assert_eq!(timed_out.len(), 1, "one Game Timed Out record");
    assert_eq!(timed_out[0].task["game_token"], *g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_turns_caps_every_game() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[("MAX_TURNS", "2")]).await;
    let server = Server::start(&settings).await;
    let (_stop, shutdown) = shutdown::channel();
    // Four players and two attacks: at least two heroes are alive when the cap ends the game.
    let bots = spawn_bots(&settings, server.port, 4, Some(2), Some(4), &shutdown);
    let reports = join_bots(bots, Duration::from_secs(60)).await;
    let games = check_reports(&redis, &reports, 2);
    for g in &games {
        let attacks: u64 = redis.cmd(&["LLEN", &common::single_keys().game_logs(g)]);
        assert_eq!(attacks, 2, "game {g} was capped at MAX_TURNS");
    }
    assert!(reports.iter().any(|r| r.outcome == Outcome::Survived));
    server.stop().await;
}

fn server_process(redis: &TestRedis, dir: &std::path::Path, port: u16) -> Proc {
    let mut cmd = superhero(dir);
    cmd.arg("server")
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .env("WEBSOCKET_HOST", "127.0.0.1")
        .env("WEBSOCKET_PORT", port.to_string())
        .env("TURN_TIMEOUT", "3")
        .env("LOBBY_TIMEOUT", "30");
    Proc::spawn("server", dir, cmd)
}

async fn wait_listening(port: u16) {
    wait_for(
        "the server to listen",
        Duration::from_secs(20),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_lobbies_and_exits_zero() {
    let redis = TestRedis::start();
    prepared(&redis, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = server_process(&redis, dir.path(), port);
    wait_listening(port).await;
    let (user, game) = join_by_hand(port, "waiting", 3).await;
    let mut lobby = common::ws::open_lobby(port, &game, &user).await;
    // The lobby is registered once the ready set holds the user.
    let ready = common::single_keys().game_ready(&game);
    wait_until("the lobby to register", Duration::from_secs(10), || {
        redis.cmd::<bool>(&["SISMEMBER", &ready, &user])
    });
    server.signal("TERM");
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match lobby.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    })
    .await
    .expect("the lobby hears from the server");
    assert_eq!(told.as_deref(), Some("server shutting down"));
    let code = server.exit_code(Duration::from_secs(15));
    assert_eq!(code, Some(0), "exit code after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_rides_out_a_redis_restart() {
    let mut redis = TestRedis::start();
    let settings = prepared(&redis, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = server_process(&redis, dir.path(), port);
    wait_listening(port).await;
    // Players are mid-game when Redis goes away.
    let (stop_early, early) = shutdown::channel();
    let early_bots = spawn_bots(&settings, port, 4, None, Some(2), &early);
    // Counted in the list of games created, which finished games do not leave.
    wait_until("games to be played", Duration::from_secs(30), || {
        redis.cmd::<u64>(&["LLEN", &common::single_keys().games_players(2)]) >= 4
    });
    redis.kill();
    // Long enough for every part of the server to notice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_early.fire();
    for bot in early_bots {
        let _ = tokio::time::timeout(Duration::from_secs(10), bot).await;
    }
    redis.restart();
    let conn = Redis::connect(&settings.redis).await.unwrap();
    superhero::ops::build_db::run(&conn, &superhero::pipeline::shard::Layout::single(), None)
        .await
        .unwrap();
    // The server has recovered once it serves a login again (it reconnects with backoff).
    wait_for(
        "the server to recover",
        Duration::from_secs(20),
        || async move {
            let mut login = connect(port, "/api/v1/login").await;
            let reply = ask(&mut login, json!({"PAYLOAD": {"USER": "probe"}})).await;
            reply["PAYLOAD"]["USER_TOKEN"].is_string()
        },
    )
    .await;
    // Games started after the recovery complete.
    let (_stop, shutdown) = shutdown::channel();
    let bots = spawn_bots(&settings, port, 4, Some(2), Some(2), &shutdown);
    let reports = join_bots(bots, Duration::from_secs(60)).await;
    assert_eq!(reports.len(), 8);
    check_reports(&redis, &reports, 1000);
    assert!(server.is_running(), "the server kept running");
    server.signal("TERM");
    assert_eq!(server.exit_code(Duration::from_secs(15)), Some(0));
    let log = server.log_text();
    let lost: Vec<&str> = log.lines().filter(|l| l.contains("lost Redis")).collect();
    assert!(!lost.is_empty(), "the outage is logged:\n{log}");
    // One line per outage per part of the server, not one per retry.
    let mut parts = BTreeSet::new();
    for line in &lost {
        // The part's name sits between the level and "lost Redis"; the timestamp differs.
        let before = line.split("lost Redis").next().unwrap_or_default();
        let part = before
            .rsplit("WARN")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(
            parts.insert(part),
            "outage logged twice:\n{}",
            lost.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_processes_wait_for_a_late_server_and_exit_zero() {
    let redis = TestRedis::start();
    let settings = prepared(&redis, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let players: Vec<_> = (0..2)
        .map(|i| {
            let mut cmd = superhero(dir.path());
            cmd.args(["player", "--participants", "2"])
                .env("WEBSOCKET_HOST", "127.0.0.1")
                .env("WEBSOCKET_PORT", port.to_string())
                .env("CLIENT_GAMES", "1")
                .env("CLIENT_SLEEP", "0.2");
            Proc::spawn(&format!("player{i}"), dir.path(), cmd)
        })
        .collect();
    // The server comes up after the players: they keep retrying until it does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let redis_conn = Redis::connect(&settings.redis).await.unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (stop, shutdown) = shutdown::channel();
    let server = {
        let s = settings.clone();
        tokio::spawn(async move {
            superhero::roles::server::run(&s, redis_conn, listener, shutdown).await
        })
    };
    let mut game_lines = Vec::new();
    for mut player in players {
        let code = player.exit_code(Duration::from_secs(60));
        let text = player.log_text();
        assert_eq!(code, Some(0), "player log:\n{text}");
        assert!(text.contains("not reachable"), "the player waited:\n{text}");
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains(": game ") && l.contains(" hero "))
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), 1, "one line per game:\n{text}");
        game_lines.extend(lines);
    }
    let token = |line: &str| {
        line.split(": game ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .map(str::to_string)
    };
    assert_eq!(
        token(&game_lines[0]),
        token(&game_lines[1]),
        "{game_lines:?}"
    );
    stop.fire();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
