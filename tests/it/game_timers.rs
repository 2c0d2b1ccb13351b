//! Issue 13: every game ends whatever crashes, no server judges another's clock, and Redis stays
//! bounded with the default settings. Every role is a real process on a private redis-server.

use crate::common;

use std::time::Duration;

use common::roles::{assert_exactly_once, build_db, runtime, scan, server, Proc};
use common::ws;
use common::{free_port, wait_until, TestRedis};

const LOBBY: &str = "redis.lib.server.lobby";

fn status_of(redis: &TestRedis, g: &str) -> Option<String> {
    redis.cmd(&["GET", &format!("games:{g}:status")])
}

#[test]
fn games_whose_server_was_killed_end_under_a_new_server() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build_db(dir.path(), &redis);
    let timers = [("TURN_TIMEOUT", "8"), ("LOBBY_TIMEOUT", "15")];
    let port = free_port();
    let mut first = server(dir.path(), &redis, "server-1", port, &timers);
    let rt = runtime();
    // 20 two-player games started (both lobby sockets open, nobody acts), 5 lobbies full but
    // never started (nobody opened a lobby socket).
    let (playing, full, _sockets) = rt.block_on(async {
        let mut playing = Vec::new();
        let mut sockets = Vec::new();
        for i in 0..20 {
            let a = ws::login(port, &format!("a{i}")).await;
            let b = ws::login(port, &format!("b{i}")).await;
            let g = ws::find(port, &a, 2).await;
            assert_eq!(ws::find(port, &b, 2).await, g);
            sockets.push(ws::open_lobby(port, &g, &a).await);
            sockets.push(ws::open_lobby(port, &g, &b).await);
            playing.push(g);
        }
        let mut full = Vec::new();
        for i in 0..5 {
            let a = ws::login(port, &format!("c{i}")).await;
            let b = ws::login(port, &format!("d{i}")).await;
            let g = ws::find(port, &a, 2).await;
            assert_eq!(ws::find(port, &b, 2).await, g);
            full.push(g);
        }
        (playing, full, sockets)
    });
    wait_until("20 games in progress", Duration::from_secs(20), || {
        playing
            .iter()
            .all(|g| status_of(&redis, g).as_deref() == Some("In-Progress"))
    });
    for g in &full {
        assert_eq!(status_of(&redis, g).as_deref(), Some("Waiting Lobby"));
    }
    first.kill();
    // A new server (on another port: nobody reconnects), a fanout and a worker.
    let _second = server(dir.path(), &redis, "server-2", free_port(), &timers);
    let env = [("OUTPUT_DIR", out.to_str().unwrap()), ("ACK_TIMEOUT", "2")];
    let _worker = Proc::start(
        "w1",
        dir.path(),
        &redis,
        &["worker", "--worker-id", "w1"],
        &env,
    );
    let _fanout = Proc::start("fanout", dir.path(), &redis, &["fanout"], &env);
    // Each game has two players: at most two turn deadlines (TURN_TIMEOUT × participants), plus
    // a few seconds for the new server to start and sweep.
    wait_until("every game over", Duration::from_secs(16 + 10), || {
        playing
            .iter()
            .all(|g| status_of(&redis, g).as_deref() == Some("Completed"))
            && full
                .iter()
                .all(|g| status_of(&redis, g).as_deref() == Some("Timed Out"))
    });
    wait_until("every game written", Duration::from_secs(30), || {
        common::roles::pairs(&[&out])
            .values()
            .filter(|f| f.len() == 2)
            .count()
            == playing.len()
    });
    assert_exactly_once(&[&out], &playing);
    let due: u64 = redis.cmd(&["ZCARD", "games:deadlines"]);
    assert_eq!(due, 0, "no deadline is left behind");
}

#[test]
fn a_server_whose_clock_runs_ahead_times_out_no_lobby_early() {
    let faketime = std::process::Command::new("faketime").arg("-h").output();
    assert!(
        faketime.is_ok(),
        "faketime is needed for this test (.ci/run installs it with apt-get)"
    );
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    build_db(dir.path(), &redis);
    let (port_a, port_b) = (free_port(), free_port());
    let timers = [("LOBBY_TIMEOUT", "3")];
    let _a = server(dir.path(), &redis, "server-a", port_a, &timers);
    // Server B's clock is 10 s ahead of server A's (and of Redis's).
    let mut cmd = std::process::Command::new("faketime");
    cmd.current_dir(dir.path())
        .args(["-f", "+10s"])
        .arg(env!("CARGO_BIN_EXE_superhero"))
        .arg("server");
    for var in superhero::config::VARS {
        cmd.env_remove(var.name);
    }
    cmd.env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .env("LOGGER_MODULE", "redis")
        .env("WEBSOCKET_HOST", "127.0.0.1")
        .env("WEBSOCKET_PORT", port_b.to_string())
        .env("LOBBY_TIMEOUT", "3");
    let b = Proc::spawn("server-b", dir.path(), cmd);
    wait_until("server-b to listen", Duration::from_secs(20), || {
        b.log_text().contains("game server listening")
    });
    let rt = runtime();
    rt.block_on(async {
        let u1 = ws::login(port_a, "first").await;
        let u2 = ws::login(port_b, "second").await;
        let u3 = ws::login(port_b, "third").await;
        // A lobby for three opened on A, with its socket on A.
        let g = ws::find(port_a, &u1, 3).await;
        let _s1 = ws::open_lobby(port_a, &g, &u1).await;
        // Joined through B a moment later: B must not take it for 10 s old.
        assert_eq!(
            ws::find(port_b, &u2, 3).await,
            g,
            "server B timed the lobby out"
        );
        let _s2 = ws::open_lobby(port_b, &g, &u2).await;
        assert_eq!(status_of(&redis, &g).as_deref(), Some("Waiting Lobby"));
        assert_eq!(ws::find(port_b, &u3, 3).await, g);
        let mut s3 = ws::open_lobby(port_b, &g, &u3).await;
        let start = ws::next_json(&mut s3, Duration::from_secs(10))
            .await
            .expect("START");
        assert_eq!(start["STATUS"]["GAME"], "START", "{start}");
    });
}

#[test]
fn with_default_settings_written_games_leave_no_keys_behind() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build_db(dir.path(), &redis);
    let port = free_port();
    // Default settings but a short REDIS_EXPIRY, so the test need not wait 30 s.
    let env = [
        ("OUTPUT_DIR", out.to_str().unwrap()),
        ("REDIS_EXPIRY", "2"),
        ("LOBBY_TIMEOUT", "2"),
        ("USER_EXPIRY", "3"),
    ];
    let _server = server(dir.path(), &redis, "server", port, &env);
    let _w = Proc::start(
        "w1",
        dir.path(),
        &redis,
        &["worker", "--worker-id", "w1"],
        &env,
    );
    let _f = Proc::start("fanout", dir.path(), &redis, &["fanout"], &env);
    let port_s = port.to_string();
    // At scale: 20 bots × 205 two-player games, at least 2,000 of them completed and written
    // (a lobby left alone at the very end times out instead).
    let mut bots: Vec<Proc> = (0..20)
        .map(|i| {
            Proc::start(
                &format!("player-{i}"),
                dir.path(),
                &redis,
                &["player", "--participants", "2"],
                &[
                    ("WEBSOCKET_HOST", "127.0.0.1"),
                    ("WEBSOCKET_PORT", &port_s),
                    ("CLIENT_GAMES", "205"),
                    ("CLIENT_SLEEP", "0.2"),
                    ("LOBBY_TIMEOUT", "2"),
                ],
            )
        })
        .collect();
    for bot in &mut bots {
        assert_eq!(
            bot.wait_exit(Duration::from_secs(600)),
            Some(Some(0)),
            "{}",
            bot.log_text()
        );
    }
    // Every record the games produced is delivered and acknowledged: every game is written.
    wait_until(
        "every record acknowledged",
        Duration::from_secs(300),
        || {
            let state = common::roles::pipeline_state(&redis, LOBBY);
            state.undelivered == 0 && state.unacked == 0
        },
    );
    assert_eq!(common::roles::pipeline_state(&redis, LOBBY).dead_letters, 0);
    let written: Vec<String> = common::roles::pairs(&[&out]).into_keys().collect();
    assert!(written.len() >= 2000, "{} games written", written.len());
    // Every game's keys (played or timed out) expire; only the roster, the users and the
    // pipeline's own bookkeeping remain. A written game's done marker and writer outlive the
    // rest on purpose (its record may still come back after every ACK_TIMEOUT), but they too
    // carry a TTL: at most ACK_TIMEOUT × (MAX_DELIVERIES + 1) + 10 s (30 × 6 + 10 with the defaults).
    wait_until(
        "every game's keys to expire",
        Duration::from_secs(30),
        || {
            scan(&redis, "games:*")
                .iter()
                .all(|k| is_shared_game_key(k) || is_done_marker(k))
        },
    );
    let left = scan(&redis, "games:*");
    for g in &written {
        for key in left.iter().filter(|k| k.contains(g.as_str())) {
            assert!(is_done_marker(key), "{g}: {key}");
            let ttl: i64 = redis.cmd(&["TTL", key]);
            assert!(ttl > 0 && ttl <= 30 * 6 + 10, "{key} has TTL {ttl}");
        }
    }
    // Users idle for USER_EXPIRY are forgotten: name, token and last use.
    wait_until(
        "idle users to be forgotten",
        Duration::from_secs(30),
        || {
            let users: u64 = redis.cmd(&["HLEN", "users"]);
            let tokens: u64 = redis.cmd(&["SCARD", "games:user-tokens"]);
            let names: u64 = redis.cmd(&["HLEN", "games:users:names"]);
            users == 0 && tokens == 0 && names == 0
        },
    );
}

#[test]
fn a_user_waits_in_one_open_lobby_at_most() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    build_db(dir.path(), &redis);
    let port = free_port();
    let _server = server(
        dir.path(),
        &redis,
        "server",
        port,
        &[("LOBBY_TIMEOUT", "30")],
    );
    runtime().block_on(async {
        let u = ws::login(port, "patient").await;
        let first = ws::find(port, &u, 3).await;
        for _ in 0..5 {
            assert_eq!(ws::find(port, &u, 3).await, first, "a second open lobby");
        }
        let open: u64 = redis.cmd(&["ZCARD", "games:lobbies:3"]);
        assert_eq!(open, 1);
    });
}

#[test]
fn a_game_with_corrupt_keys_holds_back_no_other_deadline() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    build_db(dir.path(), &redis);
    // Two broken games, due before anything else (the sweep takes the oldest first): one whose
    // status is a hash, one whose turn number is not a number.
    let wrong_type = uuid::Uuid::new_v4().to_string();
    let garbage = uuid::Uuid::new_v4().to_string();
    let _: i64 = redis.cmd(&["HSET", &format!("games:{wrong_type}:status"), "x", "y"]);
    let _: () = redis.cmd(&["SET", &format!("games:{garbage}:status"), "In-Progress"]);
    let _: i64 = redis.cmd(&["RPUSH", &format!("games:{garbage}:order"), "someone"]);
    let _: () = redis.cmd(&["SET", &format!("games:{garbage}:turns"), "twelve"]);
    let _: i64 = redis.cmd(&["ZADD", "games:deadlines", "1", &wrong_type, "2", &garbage]);
    let port = free_port();
    let server = server(
        dir.path(),
        &redis,
        "server",
        port,
        &[("LOBBY_TIMEOUT", "2")],
    );
    // A lobby nobody else joins: its deadline comes after the broken ones.
    let g = runtime().block_on(async {
        let u = ws::login(port, "alone").await;
        ws::find(port, &u, 2).await
    });
    wait_until("the lobby to time out", Duration::from_secs(10), || {
        status_of(&redis, &g).as_deref() == Some("Timed Out")
    });
    // Each broken game is logged once and put back, not retried at every sweep.
    let now_ms = || {
        let (secs, micros): (u64, u64) = redis.cmd(&["TIME"]);
        secs * 1000 + micros / 1000
    };
    for bad in [&wrong_type, &garbage] {
        let due: Option<u64> = redis.cmd(&["ZSCORE", "games:deadlines", bad]);
        assert!(due.is_some_and(|d| d > now_ms()), "{bad} due at {due:?}");
        let log = server.log_text();
        let lines = log
            .lines()
            .filter(|l| l.contains(bad.as_str()) && l.contains("cannot apply its deadline"))
            .count();
        assert_eq!(lines, 1, "{log}");
    }
}

#[test]
fn a_player_who_keeps_playing_outlives_user_expiry() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    // Two heroes that take ten million hits to fall: the game lasts as long as the test plays.
    let hero = |id: u32| {
        serde_json::json!({"id": id.to_string(), "name": format!("Wall {id}"), "powerstats": {
            "intelligence": "100", "strength": "100", "durability": "100",
            "speed": "1", "power": "1", "combat": "1"}})
    };
    let roster = dir.path().join("walls.json");
    std::fs::write(&roster, serde_json::json!([hero(1), hero(2)]).to_string()).unwrap();
    let built = common::superhero(dir.path())
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .args(["build-db", "--source", roster.to_str().unwrap()])
        .status()
        .expect("build-db");
    assert!(built.success());
    let port = free_port();
    let _server = server(
        dir.path(),
        &redis,
        "server",
        port,
        &[
            ("USER_EXPIRY", "1"),
            ("TURN_TIMEOUT", "30"),
            ("SERVER_SLEEP", "0.1"),
            ("MAX_TURNS", "100000"),
        ],
    );
    let last_use = |u: &str| -> u64 {
        let ms: Option<u64> = redis.cmd(&["ZSCORE", "games:users:last-use", u]);
        ms.unwrap_or(0)
    };
    let known = |u: &str| -> bool { redis.cmd(&["SISMEMBER", "games:user-tokens", u]) };
    runtime().block_on(async {
        let a = ws::login(port, "a").await;
        let b = ws::login(port, "b").await;
        let g = ws::find(port, &a, 2).await;
        assert_eq!(ws::find(port, &b, 2).await, g);
        let found_at = last_use(&a).max(last_use(&b));
        wait_until(
            "Redis's clock to pass the finds",
            Duration::from_secs(5),
            || {
                let (secs, micros): (u64, u64) = redis.cmd(&["TIME"]);
                secs * 1000 + micros / 1000 > found_at
            },
        );
        let mut lobbies = [
            ws::open_lobby(port, &g, &a).await,
            ws::open_lobby(port, &g, &b).await,
        ];
        let mut starts = Vec::new();
        for lobby in &mut lobbies {
            let start = ws::next_json(lobby, Duration::from_secs(10))
                .await
                .expect("START");
            assert_eq!(start["STATUS"]["GAME"], "START", "{start}");
            starts.push(start);
        }
        assert!(
            last_use(&a) > found_at && last_use(&b) > found_at,
            "a lobby registration marks its player as used"
        );
        // Each player names the other by its alias, the one participant that is not itself.
        let players = [a.clone(), b.clone()];
        let enemy: Vec<String> = (0..2)
            .map(|i| {
                let seen = starts[i]["PAYLOAD"]["PARTICIPANTS"].as_array().unwrap();
                let other = seen
                    .iter()
                    .find(|p| p.as_str() != Some(players[i].as_str()));
                other.and_then(|p| p.as_str()).unwrap().to_string()
            })
            .collect();
        let mut turn = usize::from(starts[0]["PAYLOAD"]["PARTICIPANTS"][0] != a.as_str());
        // Logged in after the game started and idle since: once the sweep forgets it, it has
        // forgotten every user idle since before it (a and b too, unless playing refreshes them).
        let idle = ws::login(port, "idle").await;
        let mut actions = [
            ws::connect(port, "/api/v1/game/action").await,
            ws::connect(port, "/api/v1/game/action").await,
        ];
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while known(&idle) {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle user is never forgotten"
            );
            loop {
                let push = ws::next_json(&mut lobbies[turn], Duration::from_secs(10))
                    .await
                    .expect("USER'S TURN");
                if push["STATUS"]["GAME"] == "USER'S TURN" {
                    break;
                }
            }
            let reply = ws::ask(
                &mut actions[turn],
                serde_json::json!({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": players[turn],
                    "ENEMY_TOKEN": enemy[turn], "ACTION": "ATTACK"}}),
            )
            .await;
            assert_eq!(reply["STATUS"]["ACTION"], "ATTACK", "{reply}");
            turn = 1 - turn;
        }
        assert_eq!(status_of(&redis, &g).as_deref(), Some("In-Progress"));
        assert!(known(&a) && known(&b), "a player was forgotten mid-game");
        // And each may look for its next game.
        ws::find(port, &a, 3).await;
        ws::find(port, &b, 3).await;
    });
}

#[test]
fn without_records_the_server_expires_finished_games() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    build_db(dir.path(), &redis);
    let port = free_port();
    let port_s = port.to_string();
    // No records, so no worker will ever clean: the server must.
    let _server = server(
        dir.path(),
        &redis,
        "server",
        port,
        &[
            ("LOGGER_MODULE", "default"),
            ("REDIS_EXPIRY", "2"),
            ("LOBBY_TIMEOUT", "2"),
        ],
    );
    // Games that end by attacks (two bots)...
    let mut bots: Vec<Proc> = (0..2)
        .map(|i| {
            Proc::start(
                &format!("player-{i}"),
                dir.path(),
                &redis,
                &["player", "--participants", "2"],
                &[
                    ("WEBSOCKET_HOST", "127.0.0.1"),
                    ("WEBSOCKET_PORT", &port_s),
                    ("CLIENT_GAMES", "3"),
                    ("CLIENT_SLEEP", "0.2"),
                    ("LOBBY_TIMEOUT", "2"),
                ],
            )
        })
        .collect();
    let (deserted, lonely) = runtime().block_on(async {
        // ...one whose player left (its lobby socket closed: eliminated)...
        let a = ws::login(port, "stays").await;
        let b = ws::login(port, "leaves").await;
        let deserted = ws::find(port, &a, 3).await;
        assert_eq!(ws::find(port, &b, 3).await, deserted);
        let c = ws::login(port, "third").await;
        assert_eq!(ws::find(port, &c, 3).await, deserted);
        let mut lobbies = Vec::new();
        for u in [&a, &b, &c] {
            lobbies.push(ws::open_lobby(port, &deserted, u).await);
        }
        for lobby in &mut lobbies {
            let start = ws::next_json(lobby, Duration::from_secs(10))
                .await
                .expect("START");
            assert_eq!(start["STATUS"]["GAME"], "START", "{start}");
        }
        drop(lobbies.pop());
        drop(lobbies.pop());
        // ...and a lobby nobody joins.
        let d = ws::login(port, "lonely").await;
        let lonely = ws::find(port, &d, 4).await;
        (deserted, lonely)
    });
    for bot in &mut bots {
        assert_eq!(
            bot.wait_exit(Duration::from_secs(60)),
            Some(Some(0)),
            "{}",
            bot.log_text()
        );
    }
    wait_until("the deserted game to end", Duration::from_secs(10), || {
        status_of(&redis, &deserted).is_none_or(|s| s == "Completed")
    });
    wait_until(
        "the lonely lobby to time out",
        Duration::from_secs(10),
        || status_of(&redis, &lonely).is_none_or(|s| s == "Timed Out"),
    );
    wait_until(
        "every game's keys to expire",
        Duration::from_secs(15),
        || {
            scan(&redis, "games:*")
                .iter()
                .all(|k| is_shared_game_key(k))
        },
    );
    let listed: u64 = redis.cmd(&["ZCARD", "games:participants"]);
    assert_eq!(
        listed, 0,
        "finished games stay listed in games:participants"
    );
}

#[test]
fn a_stale_game_timed_out_record_cleans_no_game_that_plays() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build_db(dir.path(), &redis);
    let env = [
        ("OUTPUT_DIR", out.to_str().unwrap()),
        ("LOBBY_TIMEOUT", "2"),
        ("TURN_TIMEOUT", "60"),
    ];
    let port = free_port();
    let _server = server(dir.path(), &redis, "server", port, &env);
    let _worker = Proc::start(
        "w1",
        dir.path(),
        &redis,
        &["worker", "--worker-id", "w1"],
        &env,
    );
    let _fanout = Proc::start("fanout", dir.path(), &redis, &["fanout"], &env);
    common::roles::wait_live(&redis, LOBBY, "w1");
    let (playing, players, lonely, _lobbies) = runtime().block_on(async {
        let a = ws::login(port, "a").await;
        let b = ws::login(port, "b").await;
        let g = ws::find(port, &a, 2).await;
        assert_eq!(ws::find(port, &b, 2).await, g);
        let mut lobbies = [
            ws::open_lobby(port, &g, &a).await,
            ws::open_lobby(port, &g, &b).await,
        ];
        for lobby in &mut lobbies {
            let start = ws::next_json(lobby, Duration::from_secs(10))
                .await
                .expect("START");
            assert_eq!(start["STATUS"]["GAME"], "START", "{start}");
        }
        let c = ws::login(port, "c").await;
        let lonely = ws::find(port, &c, 3).await;
        (g, [a, b], lonely, lobbies)
    });
    // A `Game Timed Out` record about the game in progress, as a stale or foreign one would
    // reach the log.
    let record = serde_json::json!({"level": "INFO", "timestamp": "2026-12-06T00:00:00.000000",
        "name": LOBBY, "log_message": "Game Timed Out", "task": {"game_token": playing}});
    let _: String = redis.cmd(&[
        "XADD",
        &format!("{LOBBY}:log"),
        "*",
        "record",
        &record.to_string(),
    ]);
    // The lonely lobby times out for real: its own record cleans it.
    wait_until(
        "the lonely lobby to be cleaned",
        Duration::from_secs(20),
        || {
            let ttl: i64 = redis.cmd(&["TTL", &format!("games:{lonely}:status")]);
            ttl > 0
        },
    );
    wait_until("every record acknowledged", Duration::from_secs(20), || {
        let state = common::roles::pipeline_state(&redis, LOBBY);
        state.undelivered == 0 && state.unacked == 0
    });
    assert_eq!(status_of(&redis, &playing).as_deref(), Some("In-Progress"));
    let mut kept = vec![
        format!("games:{playing}"),
        format!("games:{playing}:status"),
        format!("games:{playing}:order"),
    ];
    kept.extend(
        players
            .iter()
            .map(|u| format!("games:{playing}:superheros:{u}")),
    );
    for key in &kept {
        let ttl: i64 = redis.cmd(&["TTL", key]);
        assert_eq!(ttl, -1, "{key} of a game in progress expires");
    }
    let listed: Option<f64> = redis.cmd(&["ZSCORE", "games:participants", &playing]);
    assert!(listed.is_some(), "a game in progress was unlisted");
}

/// Keys under `games:` that are not one game's: indexes shared by all games.
fn is_done_marker(key: &str) -> bool {
    key.ends_with(":etl:done") || key.ends_with(":etl:writer")
}

fn is_shared_game_key(key: &str) -> bool {
    key == "games:participants"
        || key == "games:deadlines"
        || key == "games:user-tokens"
        || key.starts_with("games:players:")
        || key.starts_with("games:lobbies:")
        || key.starts_with("games:user")
}
