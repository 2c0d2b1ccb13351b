//! Issue 6: a table of bad inputs on the WebSocket API, each answered with its STATUS reason on
//! a connection that stays usable, and a normal game completing afterwards.

use crate::common;

use std::time::Duration;

use common::TestRedis;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use superhero::pipeline::redis_conn::Redis;
use superhero::roles::player::{self, Outcome, PlayerOptions};
use superhero::shutdown;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use common::ws::{connect, Ws};

/// Sends one frame and returns the next JSON reply.
async fn ask(ws: &mut Ws, frame: Message) -> Value {
    ws.send(frame).await.expect("send");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a reply within 10s")
            .expect("connection open")
            .expect("frame");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).expect("replies are JSON");
        }
    }
}

fn text(v: impl ToString) -> Message {
    Message::text(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_inputs_get_reasons_and_games_still_complete() {
    let redis_server = TestRedis::start();
    let settings = redis_server.settings_with(&[("TURN_TIMEOUT", "5"), ("LOBBY_TIMEOUT", "10")]);
    let redis = Redis::connect(&settings.redis).await.unwrap();
    superhero::ops::build_db::run(&redis, &superhero::pipeline::shard::Layout::single(), None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, shutdown) = shutdown::channel();
    let server = {
        let (s, r, sd) = (settings.clone(), redis.clone(), shutdown.clone());
        tokio::spawn(async move { superhero::roles::server::run(&s, r, listener, sd).await })
    };

    // A real user and a real game to make stale and foreign tokens from.
    let mut login = connect(port, "/api/v1/login").await;
    let reply = ask(
        &mut login,
        text(json!({"PAYLOAD": {"USER": "table-tester"}})),
    )
    .await;
    let user = reply["PAYLOAD"]["USER_TOKEN"].as_str().unwrap().to_string();
    let mut find = connect(port, "/api/v1/game/find").await;
    let reply = ask(
        &mut find,
        text(json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": 2}})),
    )
    .await;
    let game = reply["PAYLOAD"]["GAME_TOKEN"].as_str().unwrap().to_string();
    let stranger = uuid::Uuid::new_v4().to_string();
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));

    let cases: Vec<(&str, &str, Message, &str)> = vec![
        ("not json", "/api/v1/login", text("hello"), "INVALID JSON"),
        (
            "truncated json",
            "/api/v1/login",
            text("{\"PAYLOAD\": {"),
            "INVALID JSON",
        ),
        (
            "deeply nested json",
            "/api/v1/login",
            text(&deep),
            "INVALID JSON",
        ),
        (
            "binary frame",
            "/api/v1/login",
            Message::binary(vec![0xff, 0xfe, 0x00]),
            "BINARY FRAMES NOT SUPPORTED",
        ),
        (
            "no payload",
            "/api/v1/login",
            text(json!({"USER": "x"})),
            "MISSING PAYLOAD IN MESSAGE",
        ),
        (
            "payload not an object",
            "/api/v1/login",
            text(json!({"PAYLOAD": [1, 2]})),
            "MISSING PAYLOAD IN MESSAGE",
        ),
        (
            "json array",
            "/api/v1/login",
            text("[1,2,3]"),
            "MISSING PAYLOAD IN MESSAGE",
        ),
        (
            "login without user",
            "/api/v1/login",
            text(json!({"PAYLOAD": {}})),
            "MISSING USER IN PAYLOAD",
        ),
        (
            "user as a number",
            "/api/v1/login",
            text(json!({"PAYLOAD": {"USER": 42}})),
            "INVALID USER",
        ),
        (
            "find without token",
            "/api/v1/game/find",
            text(json!({"PAYLOAD": {"PARTICIPANTS": 2}})),
            "MISSING USER TOKEN IN PAYLOAD",
        ),
        (
            "find without participants",
            "/api/v1/game/find",
            text(json!({"PAYLOAD": {"USER_TOKEN": user}})),
            "MISSING PARTICIPANTS IN PAYLOAD",
        ),
        (
            "participants as a string",
            "/api/v1/game/find",
            text(json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": "3"}})),
            "INVALID PARTICIPANTS",
        ),
        (
            "participants negative",
            "/api/v1/game/find",
            text(json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": -1}})),
            "INVALID PARTICIPANTS",
        ),
        (
            "participants 10^9",
            "/api/v1/game/find",
            text(json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": 1_000_000_000u64}})),
            "INVALID PARTICIPANTS",
        ),
        (
            "participants fractional",
            "/api/v1/game/find",
            text(json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": 2.5}})),
            "INVALID PARTICIPANTS",
        ),
        (
            "unknown user token",
            "/api/v1/game/find",
            text(json!({"PAYLOAD": {"USER_TOKEN": stranger, "PARTICIPANTS": 2}})),
            "UNKNOWN USER TOKEN",
        ),
        (
            "path separator token",
            "/api/v1/game/find",
            text(json!({"PAYLOAD": {"USER_TOKEN": "../../etc/passwd", "PARTICIPANTS": 2}})),
            "UNKNOWN USER TOKEN",
        ),
        (
            "hero without game",
            "/api/v1/game/hero",
            text(json!({"PAYLOAD": {"USER_TOKEN": user}})),
            "MISSING GAME TOKEN IN PAYLOAD",
        ),
        (
            "hero of unknown game",
            "/api/v1/game/hero",
            text(json!({"PAYLOAD": {"GAME_TOKEN": stranger, "USER_TOKEN": user}})),
            "UNKNOWN GAME TOKEN",
        ),
        (
            "action without enemy",
            "/api/v1/game/action",
            text(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "ACTION": "ATTACK"}})),
            "MISSING ENEMY TOKEN IN PAYLOAD",
        ),
        (
            "action without action",
            "/api/v1/game/action",
            text(
                json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "ENEMY_TOKEN": stranger}}),
            ),
            "MISSING ACTION IN PAYLOAD",
        ),
        (
            "unknown action",
            "/api/v1/game/action",
            text(
                json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "ENEMY_TOKEN": stranger, "ACTION": "HEAL"}}),
            ),
            "INVALID ACTION",
        ),
        (
            "action in a game not started",
            "/api/v1/game/action",
            text(
                json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "ENEMY_TOKEN": stranger, "ACTION": "ATTACK"}}),
            ),
            "GAME NOT IN PROGRESS",
        ),
        (
            "action in an unknown game",
            "/api/v1/game/action",
            text(
                json!({"PAYLOAD": {"GAME_TOKEN": stranger, "USER_TOKEN": user, "ENEMY_TOKEN": user, "ACTION": "ATTACK"}}),
            ),
            "UNKNOWN GAME TOKEN",
        ),
        (
            "enemy not a uuid",
            "/api/v1/game/action",
            text(
                json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "ENEMY_TOKEN": "not-a-uuid", "ACTION": "ATTACK"}}),
            ),
            "INVALID ENEMY",
        ),
        (
            "hero of a stranger",
            "/api/v1/game/hero",
            text(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": stranger}})),
            "USER NOT IN GAME",
        ),
        (
            "lobby without game",
            "/api/v1/game/lobby",
            text(json!({"PAYLOAD": {"USER_TOKEN": user}})),
            "MISSING GAME TOKEN IN PAYLOAD",
        ),
        (
            "lobby without user",
            "/api/v1/game/lobby",
            text(json!({"PAYLOAD": {"GAME_TOKEN": game}})),
            "MISSING USER TOKEN IN PAYLOAD",
        ),
        (
            "lobby of an unknown game",
            "/api/v1/game/lobby",
            text(json!({"PAYLOAD": {"GAME_TOKEN": stranger, "USER_TOKEN": user}})),
            "UNKNOWN GAME TOKEN",
        ),
        (
            "lobby of a stranger",
            "/api/v1/game/lobby",
            text(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": stranger}})),
            "USER NOT IN GAME",
        ),
        (
            "lobby binary frame",
            "/api/v1/game/lobby",
            Message::binary(vec![1, 2, 3]),
            "BINARY FRAMES NOT SUPPORTED",
        ),
        (
            "game token as a number",
            "/api/v1/game/hero",
            text(json!({"PAYLOAD": {"GAME_TOKEN": 7, "USER_TOKEN": user}})),
            "UNKNOWN GAME TOKEN",
        ),
    ];
    assert!(cases.len() >= 20);
    for (name, path, frame, want) in cases {
        let mut ws = connect(port, path).await;
        let reply = ask(&mut ws, frame).await;
        assert_eq!(reply["STATUS"], want, "case {name:?}: {reply}");
        assert_eq!(reply["PAYLOAD"], json!({}), "case {name:?}: {reply}");
        // The connection stays usable: a good request on it still works.
        if path == "/api/v1/login" {
            let again = ask(&mut ws, text(json!({"PAYLOAD": {"USER": "table-tester"}}))).await;
            assert_eq!(
                again["PAYLOAD"]["USER_TOKEN"], user,
                "case {name:?} left the socket unusable"
            );
        } else {
            let again = ask(&mut ws, text(json!({"PAYLOAD": {}}))).await;
            assert!(
                again["STATUS"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("MISSING")),
                "case {name:?} left the socket unusable: {again}"
            );
        }
    }

    // Invalid UTF-8 in a text frame must fail the connection (RFC 6455), with a reason first.
    let mut ws = connect(port, "/api/v1/login").await;
    let frame = Frame::message(vec![b'{', 0xc3, 0x28, b'}'], OpCode::Data(Data::Text), true);
    let reply = ask(&mut ws, Message::Frame(frame)).await;
    assert_eq!(reply["STATUS"], "INVALID UTF-8", "{reply}");

    // Just over 64 KiB: refused with a reason, or at least the connection closes.
    let mut ws = connect(port, "/api/v1/login").await;
    let _ = ws.send(text("y".repeat(64 * 1024 + 1))).await;
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("an answer to an oversized frame");
    if let Some(reply) = refused {
        assert!(reply.contains("MESSAGE TOO LARGE"), "{reply}");
    }

    // A 1 MiB frame is refused (the connection closes) without harm to anyone else.
    let mut big = connect(port, "/api/v1/login").await;
    let _ = big.send(text("x".repeat(1 << 20))).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match big.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(Message::Text(t))) if t.contains("STATUS") => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "a 1 MiB frame must be refused");

    // A normal game afterwards still completes. It is a 3-player game: the table tester's own
    // 2-player game is still an open lobby, and a 2-player bot would rightly join it and then
    // time out waiting for a lobby socket the tester never opens.
    let mut players = Vec::new();
    for _ in 0..3 {
        let mut s = settings.clone();
        s.websocket_host = "127.0.0.1".into();
        s.websocket_port = port;
        s.client_games = Some(1);
        let sd = shutdown.clone();
        players.push(tokio::spawn(async move {
            player::play(
                &s,
                &PlayerOptions {
                    participants: Some(3),
                    ..PlayerOptions::default()
                },
                sd,
            )
            .await
        }));
    }
    let mut finished = None;
    for p in players {
        let reports = tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reports.len(), 1);
        finished = Some(reports[0].clone());
        assert!(
            matches!(
                reports[0].outcome,
                Outcome::Won | Outcome::Eliminated | Outcome::Survived
            ),
            "{:?}",
            reports[0].outcome
        );
    }

    // Stale tokens: a move in the finished game is refused with a reason. The bot's START lists
    // its own user token and the others' aliases: attack as the bot, naming an alias.
    let finished = finished.expect("a finished game");
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(common::single_keys().game(&finished.game_token))
        .query_async(&mut redis.conn())
        .await
        .unwrap();
    let a = finished
        .participants
        .iter()
        .find(|p| members.contains(p))
        .expect("the bot sees itself by its user token");
    let b = finished
        .participants
        .iter()
        .find(|p| *p != a)
        .expect("an opponent's alias");
    let mut ws = connect(port, "/api/v1/game/action").await;
    let reply = ask(
        &mut ws,
        text(
            json!({"PAYLOAD": {"GAME_TOKEN": finished.game_token, "USER_TOKEN": a, "ENEMY_TOKEN": b, "ACTION": "ATTACK"}}),
        ),
    )
    .await;
    assert_eq!(reply["STATUS"], "GAME IS OVER", "{reply}");

    stop.fire();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
