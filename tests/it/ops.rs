//! Issue 12: operating the system safely. `clean` never loses a finished game whose output is not
//! written yet, `clean --all` removes what older versions left behind, and a server whose Redis
//! lost everything reloads the built-in roster by itself.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::roles::Proc;
use common::{free_port, superhero, wait_until, TestRedis};

/// The lobby channel every process here uses (WORKER_CHANNEL's default).
const LOBBY: &str = "redis.lib.server.lobby";
/// What the server logs when it reloads the roster; one line per reload.
const RELOAD_LINE: &str = "loaded the built-in roster";

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run superhero");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn clean(redis: &TestRedis, dir: &Path, flags: &[&str]) -> String {
    let port = redis.port.to_string();
    let (code, out, err) = run(superhero(dir)
        .arg("clean")
        .args(flags)
        .args(["--redis-port", &port]));
    assert_eq!(code, 0, "clean {flags:?}: {err}");
    out
}

/// A game of one player in `status`, as the server leaves it.
fn seed_game(redis: &TestRedis, status: &str) -> String {
    let g = uuid::Uuid::new_v4().to_string();
    let u = uuid::Uuid::new_v4().to_string();
    redis::pipe()
        .sadd(format!("games:{g}"), &u)
        .set(format!("games:{g}:participants"), 2)
        .set(format!("games:{g}:status"), status)
        .set(format!("games:{g}:host"), &u)
        .rpush(format!("games:{g}:order"), &u)
        .sadd(format!("games:{g}:superheros"), 7)
        .hset_multiple(
            format!("games:{g}:superheros:{u}"),
            &[("id", "7"), ("attack", "10"), ("health", "0")],
        )
        .rpush(format!("games:{g}:logs"), "{}")
        .zadd("games:participants", &g, 1)
        .rpush("games:players:2", &g)
        .query::<()>(&mut redis.client())
        .unwrap();
    g
}

fn keys_of(redis: &TestRedis, g: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis.cmd(&["KEYS", &format!("games:{g}*")]);
    keys.sort();
    keys
}

fn status_of(redis: &TestRedis, g: &str) -> Option<String> {
    redis.cmd(&["GET", &format!("games:{g}:status")])
}

#[test]
fn clean_keeps_finished_games_whose_output_is_not_written() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    // Two Completed games no worker has written yet: one untouched, one mid-write (lease and
    // writer set, no done marker).
    let unwritten = seed_game(&redis, "Completed");
    let mid_write = seed_game(&redis, "Completed");
    redis.cmd::<()>(&["SET", &format!("games:{mid_write}:etl:writer"), "w1"]);
    redis.cmd::<()>(&[
        "SET",
        &format!("games:{mid_write}:etl:lease"),
        "w1:1",
        "EX",
        "60",
    ]);
    let written = seed_game(&redis, "Completed");
    redis.cmd::<()>(&["SET", &format!("games:{written}:etl:writer"), "w1"]);
    redis.cmd::<()>(&["SET", &format!("games:{written}:etl:done"), "w1"]);
    let timed_out = seed_game(&redis, "Timed Out");
    let playing = seed_game(&redis, "In-Progress");
    let waiting = seed_game(&redis, "Waiting Lobby");
    let unwritten_keys = keys_of(&redis, &unwritten);
    let mid_write_keys = keys_of(&redis, &mid_write);
    let kept_line =
        "kept 2 finished games whose output is not written yet (use --force to remove them)";

    // A dry run reports exactly what a real run does, and removes nothing.
    let out = clean(&redis, dir.path(), &["--dry-run"]);
    assert!(out.contains("would remove 2 finished games"), "{out}");
    assert!(out.contains(kept_line), "{out}");
    assert!(out.contains(&written) && out.contains(&timed_out), "{out}");
    for g in [&unwritten, &mid_write, &playing, &waiting] {
        assert!(!out.contains(&format!("remove game {g}")), "{out}");
    }
    assert!(
        status_of(&redis, &written).is_some(),
        "a dry run removes nothing"
    );

    let out = clean(&redis, dir.path(), &[]);
    assert!(out.contains("removed 2 finished games"), "{out}");
    assert!(out.contains(kept_line), "{out}");
    assert!(keys_of(&redis, &written).is_empty(), "written game removed");
    assert!(
        keys_of(&redis, &timed_out).is_empty(),
        "timed-out game removed"
    );
    assert_eq!(
        keys_of(&redis, &unwritten),
        unwritten_keys,
        "unwritten game kept whole"
    );
    assert_eq!(
        keys_of(&redis, &mid_write),
        mid_write_keys,
        "ETL markers kept"
    );
    for g in [&playing, &waiting] {
        assert!(status_of(&redis, g).is_some(), "live game {g} left alone");
    }
    let mut members: Vec<String> = redis.cmd(&["ZRANGE", "games:participants", "0", "-1"]);
    members.sort();
    let mut expected = vec![
        unwritten.clone(),
        mid_write.clone(),
        playing.clone(),
        waiting.clone(),
    ];
    expected.sort();
    assert_eq!(members, expected);

    // --force removes them too; live games still stay.
    let out = clean(&redis, dir.path(), &["--force", "--dry-run"]);
    assert!(out.contains("would remove 2 finished games"), "{out}");
    assert!(!out.contains("kept"), "{out}");
    let out = clean(&redis, dir.path(), &["--force"]);
    assert!(out.contains("removed 2 finished games"), "{out}");
    assert!(keys_of(&redis, &unwritten).is_empty());
    assert!(keys_of(&redis, &mid_write).is_empty());
    let members: Vec<String> = redis.cmd(&["ZRANGE", "games:participants", "0", "-1"]);
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(status_of(&redis, &playing).is_some() && status_of(&redis, &waiting).is_some());

    // Nothing left to keep: no "kept" line.
    let out = clean(&redis, dir.path(), &[]);
    assert!(out.contains("removed 0 finished games"), "{out}");
    assert!(!out.contains("kept"), "{out}");
}

#[test]
fn clean_all_removes_keys_older_versions_left_and_nothing_foreign() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    // What the pub/sub fanout of earlier versions kept, and the streams of later ones.
    let mut conn = redis.client();
    redis::pipe()
        .hset(format!("{LOBBY}:pending"), "1", "{}")
        .rpush(format!("{LOBBY}:waiting"), "1")
        .zadd(format!("{LOBBY}:deadlines"), "1", 1)
        .hset(format!("{LOBBY}:routes"), "1", "0 w1")
        .set(format!("{LOBBY}:delivery-seq"), 1)
        .rpush(format!("{LOBBY}:backlog"), "{}")
        .cmd("XADD")
        .arg(format!("{LOBBY}:log"))
        .arg("*")
        .arg("record")
        .arg("{}")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg(format!("{LOBBY}:log"))
        .arg("workers")
        .arg("0")
        .cmd("XADD")
        .arg(format!("{LOBBY}:dead"))
        .arg("*")
        .arg("record")
        .arg("{}")
        .zadd(format!("{LOBBY}:workers"), "w1", 1)
        .hset(format!("{LOBBY}:tries"), "1-0", "w1")
        .hset(format!("{LOBBY}:failures"), "1-0", "w1: unknown game")
        .set(format!("{LOBBY}:foreign:0123abcd"), 1)
        .query::<()>(&mut conn)
        .unwrap();
    let g = seed_game(&redis, "Completed");
    redis.cmd::<()>(&["SET", &format!("games:{g}:etl:writer"), "w1"]);
    // Someone else's keys, some of them close to ours.
    let foreign = [
        "someone:else",
        "gamesx",
        "redis.lib.server.lobbyx:pending",
        "redis.lib.server.lobby-w1",
        "other.lobby:pending",
        "superherosx",
    ];
    for key in foreign {
        redis.cmd::<()>(&["SET", key, "keep me"]);
    }

    let out = clean(&redis, dir.path(), &["--all", "--dry-run"]);
    assert!(
        out.contains(&format!("would remove key {LOBBY}:deadlines")),
        "{out}"
    );
    assert!(redis.cmd::<u64>(&["EXISTS", &format!("{LOBBY}:deadlines")]) == 1);

    let out = clean(&redis, dir.path(), &["--all"]);
    for suffix in [
        "pending",
        "waiting",
        "deadlines",
        "routes",
        "delivery-seq",
        "backlog",
        "log",
        "dead",
        "workers",
        "tries",
        "failures",
        "foreign:0123abcd",
    ] {
        assert!(
            out.contains(&format!("removed key {LOBBY}:{suffix}")),
            "{suffix}: {out}"
        );
    }
    let mut left: Vec<String> = redis.cmd(&["KEYS", "*"]);
    left.sort();
    let mut expected: Vec<String> = foreign.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(left, expected, "only foreign keys are left");
}

fn server_process(redis: &TestRedis, dir: &Path, port: u16) -> Proc {
    let mut cmd = superhero(dir);
    cmd.arg("server")
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .env("WEBSOCKET_HOST", "127.0.0.1")
        .env("WEBSOCKET_PORT", port.to_string())
        .env("LOBBY_TIMEOUT", "30");
    Proc::spawn("server", dir, cmd)
}

fn player_process(dir: &Path, port: u16, name: &str) -> Proc {
    let mut cmd = superhero(dir);
    cmd.args(["player", "--participants", "2", "--user", name])
        .env("WEBSOCKET_HOST", "127.0.0.1")
        .env("WEBSOCKET_PORT", port.to_string())
        .env("CLIENT_GAMES", "1")
        .env("CLIENT_SLEEP", "0.2");
    Proc::spawn(name, dir, cmd)
}

fn server_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

fn reload_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(RELOAD_LINE)).collect()
}

/// Waits for the server to serve: its socket is bound before it starts, so the log says when.
fn wait_serving(dir: &Path) {
    wait_until("the server to serve", Duration::from_secs(20), || {
        server_log(dir).contains("game server listening")
    });
}

#[test]
fn a_server_started_on_an_empty_redis_loads_the_roster() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = server_process(&redis, dir.path(), port);
    wait_serving(dir.path());
    let heroes: u64 = redis.cmd(&["HLEN", "superheros"]);
    assert!(heroes >= 100, "only {heroes} heroes once the server serves");
    let log = server_log(dir.path());
    assert_eq!(reload_lines(&log).len(), 1, "one reload line:\n{log}");
}

#[test]
fn a_server_serves_games_again_after_redis_lost_everything() {
    let mut redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let port_s = redis.port.to_string();
    let (code, _, err) = run(superhero(dir.path()).args(["build-db", "--redis-port", &port_s]));
    assert_eq!(code, 0, "{err}");
    let port = free_port();
    let mut server = server_process(&redis, dir.path(), port);
    wait_serving(dir.path());
    assert!(
        reload_lines(&server_log(dir.path())).is_empty(),
        "heroes were there at start"
    );

    // Redis restarts without persistence: every key is gone, the heroes too.
    redis.kill();
    redis.restart();
    assert_eq!(redis.cmd::<u64>(&["DBSIZE"]), 0);

    // Two players play one game together, with no hand build-db.
    let mut players = [
        player_process(dir.path(), port, "alice"),
        player_process(dir.path(), port, "bob"),
    ];
    for (player, name) in players.iter_mut().zip(["alice", "bob"]) {
        let code = player.wait_exit(Duration::from_secs(60));
        let log = player.log_text();
        assert_eq!(
            code,
            Some(Some(0)),
            "{name} finished its game:\n{log}\nserver:\n{}",
            server_log(dir.path())
        );
    }
    let completed: Vec<String> = redis.cmd(&["KEYS", "games:*:status"]);
    let completed: Vec<&String> = completed
        .iter()
        .filter(|k| {
            redis.cmd::<Option<String>>(&["GET", k.as_str()]).as_deref() == Some("Completed")
        })
        .collect();
    assert_eq!(completed.len(), 1, "one game completed: {completed:?}");
    assert!(redis.cmd::<u64>(&["HLEN", "superheros"]) >= 100);
    assert!(server.is_running(), "the server kept running");
    let log = server_log(dir.path());
    assert_eq!(
        reload_lines(&log).len(),
        1,
        "exactly one reload line:\n{log}"
    );
}
