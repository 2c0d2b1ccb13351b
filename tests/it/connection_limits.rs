//! Issue 13, connection limits: silent sockets cannot lock players out of a server capped at
//! MAX_CONNECTIONS, sockets that owe a request are closed after IDLE_TIMEOUT (lobby sockets in
//! a game are not), and a flood of silent connections does not stop a metrics scrape.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, superhero, wait_until, TestRedis};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use superhero::config::Settings;
use superhero::roles::player::{self, GameReport, Outcome, PlayerOptions};
use superhero::shutdown;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use common::roles::Proc;
use common::ws::{connect, Ws};

/// A `superhero server` process (killed when dropped) and the port it serves on.
struct Server {
    _proc: Proc,
    port: u16,
}

/// Loads the heroes and starts a server process with `vars`; returns once it listens.
fn start_server(redis: &TestRedis, dir: &Path, vars: &[(&str, &str)]) -> Server {
    let env = |cmd: &mut std::process::Command| {
        cmd.env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", redis.port.to_string());
    };
    let mut build = superhero(dir);
    env(&mut build);
    let built = build.arg("build-db").output().expect("build-db");
    assert!(built.status.success(), "{built:?}");
    let port = free_port();
    let mut cmd = superhero(dir);
    env(&mut cmd);
    cmd.arg("server")
        .env("WEBSOCKET_HOST", "127.0.0.1")
        .env("WEBSOCKET_PORT", port.to_string());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let server = Proc::spawn(&format!("server-{port}"), dir, cmd);
    wait_until("the server to listen", Duration::from_secs(30), || {
        server.log_text().contains("game server listening")
    });
    Server {
        _proc: server,
        port,
    }
}

/// Bot settings aimed at `server`.
fn bot_settings(redis: &TestRedis, server: &Server, games: u64) -> Settings {
    let mut s = redis.settings_with(&[("CLIENT_SLEEP", "0.2")]);
    s.websocket_host = "127.0.0.1".into();
    s.websocket_port = server.port;
    s.client_games = Some(games);
    s
}

/// Runs `bots` in-process player bots to the end, within `deadline`; their reports, per bot.
async fn play(
    settings: &Settings,
    bots: usize,
    participants: Option<u8>,
    deadline: Duration,
) -> Vec<Vec<GameReport>> {
    let (_stop, shutdown) = shutdown::channel();
    let tasks: Vec<_> = (0..bots)
        .map(|_| {
            let (s, sd) = (settings.clone(), shutdown.clone());
            tokio::spawn(async move {
                let options = PlayerOptions {
                    participants,
                    ..PlayerOptions::default()
                };
                player::play(&s, &options, sd).await
            })
        })
        .collect();
    let all = async {
        let mut reports = Vec::new();
        for task in tasks {
            reports.push(task.await.expect("bot task").expect("bot"));
        }
        reports
    };
    tokio::time::timeout(deadline, all)
        .await
        .unwrap_or_else(|_| panic!("the bots did not finish within {deadline:?}"))
}

/// Every bot played `games` games, none aborted, and Redis agrees each one ended.
fn check_games(redis: &TestRedis, reports: &[Vec<GameReport>], games: usize) -> usize {
    let mut completed = BTreeSet::new();
    for (bot, mine) in reports.iter().enumerate() {
        assert_eq!(mine.len(), games, "bot {bot}: {mine:#?}");
        for r in mine {
            let status: String =
                redis.cmd(&["GET", &common::single_keys().game_status(&r.game_token)]);
            match r.outcome {
                Outcome::Won | Outcome::Survived | Outcome::Eliminated => {
                    assert_eq!(status, "Completed", "bot {bot}: {r:?}");
                    completed.insert(r.game_token.clone());
                }
                Outcome::TimedOut => assert_eq!(status, "Timed Out", "bot {bot}: {r:?}"),
                Outcome::Aborted(ref why) => panic!("bot {bot}: game aborted: {why}"),
            }
        }
    }
    completed.len()
}

/// Opens `n` silent connections: WebSockets that never send a request, and with `bare` every
/// other one a bare TCP socket that never even starts the handshake. Connections the server refuses or closes at once are
/// fine: the point is the flood.
async fn flood(port: u16, n: usize, bare: bool) -> (Vec<TcpStream>, Vec<Ws>) {
    let mut tcp = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..n {
        if bare && i % 2 == 0 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
                tcp.push(s);
            }
        } else if let Ok((s, _)) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/v1/game/hero"))
                .await
        {
            sockets.push(s);
        }
    }
    (tcp, sockets)
}

/// Reads until the server closes the socket; how long after `since` that was.
async fn tcp_closed_after(mut s: TcpStream, since: Instant, within: Duration) -> Duration {
    let mut buf = [0u8; 256];
    let closed = async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    };
    tokio::time::timeout(within, closed)
        .await
        .expect("the server to close a silent TCP socket");
    since.elapsed()
}

/// Reads until the server closes the WebSocket (close frame, EOF or reset); how long after
/// `since` that was, and the close frame's reason.
async fn ws_closed_after(
    mut s: Ws,
    since: Instant,
    within: Duration,
) -> (Duration, Option<String>) {
    let closed = async {
        loop {
            match s.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    };
    let reason = tokio::time::timeout(within, closed)
        .await
        .expect("the server to close an idle WebSocket");
    (since.elapsed(), reason)
}

async fn ask(ws: &mut Ws, body: Value) -> Value {
    ws.send(Message::text(body.to_string()))
        .await
        .expect("send");
    next_json(ws).await
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

/// The check: with the cap at 50, 200 idle sockets do not stop 10 bots from finishing
/// 30 games. IDLE_TIMEOUT is short, so the bots' own sockets idle out between uses too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_sockets_do_not_stop_ten_bots() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(
        &redis,
        dir.path(),
        &[
            ("MAX_CONNECTIONS", "50"),
            ("IDLE_TIMEOUT", "2"),
            ("TURN_TIMEOUT", "5"),
        ],
    );
    let idle = flood(server.port, 200, true).await;
    assert_eq!(idle.0.len() + idle.1.len(), 200);
    let reports = play(
        &bot_settings(&redis, &server, 3),
        10,
        None,
        Duration::from_secs(120),
    )
    .await;
    let completed = check_games(&redis, &reports, 3);
    assert!(completed >= 5, "only {completed} games completed");
    drop(idle);
}

/// At the cap a newcomer displaces a silent socket, so players get in long before the idle
/// timeout would have freed anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_silent_sockets_make_room_for_players() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(
        &redis,
        dir.path(),
        &[("MAX_CONNECTIONS", "50"), ("IDLE_TIMEOUT", "120")],
    );
    // WebSockets only: a bare socket would also be dropped by the 10 s handshake timeout.
    let (_, sockets) = flood(server.port, 200, false).await;
    // Each newcomer displaced the oldest silent socket, so every handshake went through.
    assert_eq!(sockets.len(), 200);
    let started = Instant::now();
    let reports = play(
        &bot_settings(&redis, &server, 2),
        4,
        Some(2),
        Duration::from_secs(60),
    )
    .await;
    check_games(&redis, &reports, 2);
    assert!(started.elapsed() < Duration::from_secs(60));
    // The flood's oldest sockets were the ones displaced, long before IDLE_TIMEOUT.
    let first = sockets.into_iter().next().expect("a flood socket");
    let (_, reason) = ws_closed_after(first, Instant::now(), Duration::from_secs(5)).await;
    assert_eq!(
        reason.as_deref(),
        Some("idle, and the server is at its connection limit")
    );
}

/// Sockets that owe a request are closed after IDLE_TIMEOUT, not before; a lobby socket waiting
/// in a game is not idle, and becomes so once its game is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_closed_after_the_idle_timeout() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let idle = Duration::from_secs(1);
    let server = start_server(
        &redis,
        dir.path(),
        &[("IDLE_TIMEOUT", "1"), ("LOBBY_TIMEOUT", "3")],
    );
    let port = server.port;
    let within = Duration::from_secs(5);
    // Each clock starts before the server's can (before the connect, or before the request
    // whose reply starts the idle wait), so an early close cannot hide behind test latency.
    let at_least = idle - Duration::from_millis(20);

    let bare_since = Instant::now();
    let bare = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let silent_since = Instant::now();
    let silent = connect(port, "/api/v1/login").await;
    let mut served = connect(port, "/api/v1/login").await;
    let served_since = Instant::now();
    let reply = ask(&mut served, json!({"PAYLOAD": {"USER": "idler"}})).await;
    let user = reply["PAYLOAD"]["USER_TOKEN"].as_str().unwrap().to_string();
    let (bare, silent, served) = tokio::join!(
        tcp_closed_after(bare, bare_since, within),
        ws_closed_after(silent, silent_since, within),
        ws_closed_after(served, served_since, within),
    );
    assert!(bare >= at_least, "bare TCP closed after {bare:?}");
    assert!(
        silent.0 >= at_least,
        "silent socket closed after {silent:?}"
    );
    assert!(
        served.0 >= at_least,
        "served socket closed after {served:?}"
    );
    assert_eq!(silent.1.as_deref(), Some("idle timeout"));
    assert_eq!(served.1.as_deref(), Some("idle timeout"));

    // A lobby of three that never fills: the socket waits LOBBY_TIMEOUT (three idle timeouts)
    // for TIMED OUT, then idles out.
    let mut find = connect(port, "/api/v1/game/find").await;
    let reply = ask(
        &mut find,
        json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": 3}}),
    )
    .await;
    let game = reply["PAYLOAD"]["GAME_TOKEN"].as_str().unwrap().to_string();
    let mut lobby = connect(port, "/api/v1/game/lobby").await;
    let registered = Instant::now();
    let push = ask(
        &mut lobby,
        json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user}}),
    )
    .await;
    assert_eq!(push["STATUS"]["GAME"], "TIMED OUT", "{push}");
    // Registered within moments of the find, so the game held the socket for about
    // LOBBY_TIMEOUT: far longer than IDLE_TIMEOUT.
    assert!(
        registered.elapsed() >= 2 * idle,
        "TIMED OUT after {:?}",
        registered.elapsed()
    );
    let (_, reason) = ws_closed_after(lobby, Instant::now(), within).await;
    assert_eq!(reason.as_deref(), Some("idle timeout"));
}

/// The metrics endpoint answers a scrape while a flood of silent connections holds it, and
/// still gives 404 off /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_does_not_stop_a_scrape() {
    let registry = superhero::metrics::registry("test");
    let (_stop, shutdown) = shutdown::channel();
    let addr = superhero::metrics::serve("127.0.0.1:0".parse().unwrap(), registry, shutdown)
        .await
        .unwrap();
    let mut silent = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(addr).await {
            silent.push(s);
        }
    }
    let text = tokio::time::timeout(Duration::from_secs(3), superhero::metrics::scrape(addr))
        .await
        .expect("a scrape within 3 s, well before the idle timeout frees anything")
        .expect("scrape");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    use tokio::io::AsyncWriteExt;
    let mut other = TcpStream::connect(addr).await.unwrap();
    other
        .write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(3), other.read_to_string(&mut response))
        .await
        .expect("a 404 within 3 s")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    drop(silent);
}
