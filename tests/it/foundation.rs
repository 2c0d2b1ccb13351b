//! Issue 2: configuration, build-db and clean through the real binary against a private Redis.

use crate::common;

use std::time::{Duration, Instant};

use common::{fixture, superhero, TestRedis};

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("run superhero");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn build_db_loads_the_builtin_roster() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run(superhero(dir.path()).args(["build-db", "--redis-port", &redis.port.to_string()]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("loaded"), "{out}");
    let n: u64 = redis.cmd(&["HLEN", "superheros"]);
    assert!(n >= 100, "only {n} heroes");
}

/// The stored hero `id` as a JSON document.
fn stored_hero(redis: &TestRedis, id: &str) -> serde_json::Value {
    let hero: String = redis.cmd(&["HGET", "superheros", id]);
    serde_json::from_str(&hero).expect("stored hero is JSON")
}

/// `powerstats` as stored: the six cleaned stats, then health and attack.
fn powerstats(stats: [u64; 6], health: u64, attack: u64) -> serde_json::Value {
    let [intelligence, strength, speed, durability, power, combat] = stats;
    serde_json::json!({
        "intelligence": intelligence, "strength": strength, "speed": speed,
        "durability": durability, "power": power, "combat": combat,
        "health": health, "attack": attack,
    })
}

#[test]
fn build_db_source_cleans_every_awkward_hero_of_the_fixture() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let source = fixture("heroes.json");
    let (code, out, err) = run(superhero(dir.path())
        .args(["build-db", "--source"])
        .arg(&source)
        .env("REDIS_PORT", redis.port.to_string()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("loaded 5 heroes"), "{out}");
    let mut ids: Vec<String> = redis.cmd(&["HKEYS", "superheros"]);
    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4", "65535"]);

    // Plain strings: health = int × str × dur × 10, attack = speed × power × combat; every
    // field but `id` and `response` is kept as it was.
    let quartz = stored_hero(&redis, "1");
    assert_eq!(
        quartz["powerstats"],
        powerstats([50, 40, 30, 20, 10, 5], 400_000, 1_500)
    );
    assert_eq!(quartz["name"], "Quartz Warden");
    assert_eq!(
        quartz["biography"]["aliases"],
        serde_json::json!(["The Warden"])
    );
    assert_eq!(
        quartz["image"]["url"],
        "https://example.invalid/quartz-warden.jpg"
    );
    assert!(quartz.get("id").is_none() && quartz.get("response").is_none());

    // JSON null and the string "null" both count as 1.
    let comet = stored_hero(&redis, "2");
    assert_eq!(
        comet["powerstats"],
        powerstats([1, 1, 12, 7, 3, 9], 70, 324)
    );
    assert_eq!(comet["biography"]["alignment"], "bad");

    // "0" and 0 count as 1, so no hero has zero health.
    let tide = stored_hero(&redis, "3");
    assert_eq!(tide["powerstats"], powerstats([1, 1, 25, 1, 4, 2], 10, 200));

    // A numeric id and no optional sections: stored with just its name and stats.
    assert_eq!(
        stored_hero(&redis, "4"),
        serde_json::json!({
            "name": "Bare Minimum",
            "powerstats": powerstats([9, 8, 7, 6, 5, 4], 4_320, 140),
        })
    );

    // A padded id at the top of the range; "" and "NULL" count as 1, " 3 " as 3.
    let edge = stored_hero(&redis, "65535");
    assert_eq!(
        edge["powerstats"],
        powerstats([1, 3, 100, 2, 1, 1], 60, 100)
    );
    assert_eq!(edge["image"], serde_json::json!({}));
}

#[test]
fn build_db_refuses_a_file_with_one_bad_hero_naming_it() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let port = redis.port.to_string();
    let (code, _, err) = run(superhero(dir.path()).args(["build-db", "--redis-port", &port]));
    assert_eq!(code, 0, "{err}");
    let before: Vec<String> = redis.cmd(&["HVALS", "superheros"]);
    // The whole file is refused on its first bad hero, even after good ones.
    for (file, reason) in [
        (
            "heroes_non_numeric_id.json",
            "hero #2: has no integer id from 1 to 65535",
        ),
        (
            "heroes_missing_stat.json",
            "hero #1: id 12: powerstats.combat is missing",
        ),
        ("heroes_missing_name.json", "hero #1: id 13: has no name"),
    ] {
        let (code, out, err) = run(superhero(dir.path())
            .args(["build-db", "--redis-port", &port, "--source"])
            .arg(fixture(file)));
        assert_ne!(code, 0, "{file}: {out}");
        assert!(
            err.contains(&format!("{file} is not a hero collection: {reason}")),
            "{file}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
        let after: Vec<String> = redis.cmd(&["HVALS", "superheros"]);
        assert_eq!(before, after, "{file} changed the collection");
    }
}

#[test]
fn truncated_source_fails_and_keeps_the_previous_collection() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let port = redis.port.to_string();
    let (code, _, err) = run(superhero(dir.path()).args(["build-db", "--redis-port", &port]));
    assert_eq!(code, 0, "{err}");
    let before: Vec<String> = redis.cmd(&["HVALS", "superheros"]);

    let full = std::fs::read_to_string(fixture("heroes.json")).unwrap();
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let (code, _, err) = run(superhero(dir.path())
        .args(["build-db", "--redis-port", &port, "--source"])
        .arg(&truncated));
    assert_ne!(code, 0);
    assert!(err.contains("truncated.json"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    let after: Vec<String> = redis.cmd(&["HVALS", "superheros"]);
    assert_eq!(before, after);
    let keys: Vec<String> = redis.cmd(&["KEYS", "*"]);
    assert_eq!(
        keys,
        vec!["superheros".to_string()],
        "no staging key left behind"
    );
}

#[test]
fn bad_setting_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(superhero(dir.path())
        .arg("build-db")
        .env("REDIS_PORT", "abc"));
    assert_eq!(code, 2);
    assert!(err.contains("REDIS_PORT"), "{err}");
    assert!(err.contains("environment variable REDIS_PORT"), "{err}");
    // The same from .env and from a flag.
    std::fs::write(dir.path().join(".env"), "CLEAN_ROUTINE=perhaps\n").unwrap();
    let (code, _, err) = run(superhero(dir.path()).arg("clean"));
    assert_eq!(code, 2);
    assert!(err.contains("CLEAN_ROUTINE"), "{err}");
    assert!(err.contains(".env file"), "{err}");
    std::fs::remove_file(dir.path().join(".env")).unwrap();
    let (code, _, err) = run(superhero(dir.path()).args(["server", "--lobby-timeout", "soon"]));
    assert_eq!(code, 2);
    assert!(err.contains("LOBBY_TIMEOUT"), "{err}");
    assert!(err.contains("command-line flag --lobby-timeout"), "{err}");
    // And from the --config file.
    std::fs::write(dir.path().join("c.toml"), "max_turns = \"lots\"\n").unwrap();
    let (code, _, err) = run(superhero(dir.path()).args(["clean", "--config", "c.toml"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("MAX_TURNS") && err.contains("TOML file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
}

#[test]
fn dotenv_and_config_file_are_layers() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    // The TOML file points at a dead port; .env fixes it; the environment would win over both.
    std::fs::write(
        dir.path().join("conf.toml"),
        "REDIS_PORT = 1\nREDIS_DB = 2\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("REDIS_PORT={}\n", redis.port),
    )
    .unwrap();
    let (code, _, err) = run(superhero(dir.path()).args(["build-db", "--config", "conf.toml"]));
    assert_eq!(code, 0, "{err}");
    let mut conn = redis.client();
    let n: u64 = redis::cmd("SELECT")
        .arg(2)
        .query::<()>(&mut conn)
        .and_then(|_| redis::cmd("HLEN").arg("superheros").query(&mut conn))
        .unwrap();
    assert!(n >= 100);
}

#[test]
fn unreachable_redis_is_one_clear_error_within_10_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port().to_string();
    let started = Instant::now();
    let (code, _, err) = run(superhero(dir.path()).args(["build-db", "--redis-port", &port]));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("cannot reach Redis at localhost:{port}")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wrong_password_is_clear_and_never_printed() {
    let redis = TestRedis::start_with(&["--requirepass", "s3cret-pw"]);
    let dir = tempfile::tempdir().unwrap();
    let port = redis.port.to_string();
    let (code, _, err) = run(superhero(dir.path())
        .args(["build-db", "--redis-port", &port])
        .env("REDIS_PASSWORD", "wrong-pw-123"));
    assert_ne!(code, 0);
    assert!(err.contains("Redis"), "{err}");
    assert!(!err.contains("wrong-pw-123"), "{err}");
    let (code, _, err) = run(superhero(dir.path())
        .args(["build-db", "--log-level", "debug", "--redis-port", &port])
        .env("REDIS_PASSWORD", "s3cret-pw"));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
    let url = format!("redis://:s3cret-pw@127.0.0.1:{port}/1");
    let (code, _, err) = run(superhero(dir.path())
        .args(["build-db", "--log-level", "debug"])
        .env("REDIS_URL", &url));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
}

fn seed_game(redis: &TestRedis, g: &str, status: &str, n: u8) {
    let u = uuid::Uuid::new_v4().to_string();
    let mut conn = redis.client();
    redis::pipe()
        .sadd(format!("games:{g}"), &u)
        .set(format!("games:{g}:participants"), n)
        .set(format!("games:{g}:status"), status)
        .set(format!("games:{g}:host"), &u)
        .rpush(format!("games:{g}:order"), &u)
        .sadd(format!("games:{g}:superheros"), 7)
        .hset_multiple(
            format!("games:{g}:superheros:{u}"),
            &[("id", "7"), ("attack", "10"), ("health", "0")],
        )
        .rpush(format!("games:{g}:logs"), "{}")
        .zadd("games:participants", g, 1)
        .rpush(format!("games:players:{n}"), g)
        .query::<()>(&mut conn)
        .unwrap();
}

#[test]
fn clean_removes_finished_games_only() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let (done, timed_out, live) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    seed_game(&redis, &done, "Completed", 3);
    // A worker wrote its output; without this marker clean keeps the game (see tests/it/ops.rs).
    redis.cmd::<()>(&["SET", &format!("games:{done}:etl:done"), "w1"]);
    seed_game(&redis, &timed_out, "Timed Out", 2);
    seed_game(&redis, &live, "In-Progress", 3);
    let port = redis.port.to_string();

    let (code, out, _) =
        run(superhero(dir.path()).args(["clean", "--dry-run", "--redis-port", &port]));
    assert_eq!(code, 0);
    assert!(
        out.contains(&done) && out.contains(&timed_out) && !out.contains(&live),
        "{out}"
    );
    assert_eq!(
        redis.cmd::<u64>(&["EXISTS", &format!("games:{done}:status")]),
        1,
        "dry run removed nothing"
    );

    let (code, out, err) = run(superhero(dir.path()).args(["clean", "--redis-port", &port]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed 2 finished games"), "{out}");
    let keys: Vec<String> = redis.cmd(&["KEYS", "*"]);
    assert!(
        keys.iter()
            .all(|k| !k.contains(&done) && !k.contains(&timed_out)),
        "{keys:?}"
    );
    assert!(keys.contains(&format!("games:{live}:status")));
    assert!(keys.contains(&format!("games:{live}")));
    let members: Vec<String> = redis.cmd(&["ZRANGE", "games:participants", "0", "-1"]);
    assert_eq!(members, vec![live.clone()]);
    let open3: Vec<String> = redis.cmd(&["LRANGE", "games:players:3", "0", "-1"]);
    assert_eq!(open3, vec![live]);
}

#[test]
fn clean_all_spares_other_keys_and_rebuild_reloads() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let port = redis.port.to_string();
    let (code, _, _) = run(superhero(dir.path()).args(["build-db", "--redis-port", &port]));
    assert_eq!(code, 0);
    seed_game(&redis, &uuid::Uuid::new_v4().to_string(), "In-Progress", 2);
    redis.cmd::<()>(&["HSET", "users", "alice", "x"]);
    redis.cmd::<String>(&["XADD", "redis.lib.server.lobby:log", "*", "record", "{}"]);
    redis.cmd::<()>(&["SET", "someone:else", "keep me"]);
    redis.cmd::<()>(&["SET", "gamesx", "keep me too"]);

    let (code, out, err) =
        run(superhero(dir.path()).args(["clean", "--all", "--redis-port", &port]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed"), "{out}");
    let mut keys: Vec<String> = redis.cmd(&["KEYS", "*"]);
    keys.sort();
    assert_eq!(keys, vec!["gamesx".to_string(), "someone:else".to_string()]);

    let (code, _, err) =
        run(superhero(dir.path()).args(["clean", "--all", "--rebuild", "--redis-port", &port]));
    assert_eq!(code, 0, "{err}");
    assert!(redis.cmd::<u64>(&["HLEN", "superheros"]) >= 100);
    assert_eq!(redis.cmd::<String>(&["GET", "someone:else"]), "keep me");
}

#[test]
fn a_setting_flag_is_taken_only_by_the_commands_that_read_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["report", "--turn-timeout", "3"],
        ["--turn-timeout", "3", "report"],
    ] {
        let (code, out, err) = run(superhero(dir.path()).args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(
            err.trim(),
            "error: --turn-timeout does not apply to 'report'",
            "{args:?}"
        );
        assert!(out.is_empty(), "{out}");
    }
    // The server reads it: the flag is taken, and its value checked.
    let (code, _, err) = run(superhero(dir.path()).args(["server", "--turn-timeout", "soon"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("TURN_TIMEOUT") && err.contains("command-line flag --turn-timeout"),
        "{err}"
    );
    // The environment is not restricted: one compose file sets it for every service.
    let (code, _, err) = run(superhero(dir.path()).arg("report").env("TURN_TIMEOUT", "3"));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn help_lists_the_settings_of_its_command_without_secrets() {
    use superhero::config::{COMMANDS, RUN_THE_ROLES, VARS};
    let dir = tempfile::tempdir().unwrap();
    let commands = COMMANDS.iter().chain(RUN_THE_ROLES);
    for (args, command) in std::iter::once((vec!["--help"], None))
        .chain(commands.map(|c| (vec![*c, "--help"], Some(*c))))
    {
        let (code, out, _) = run(superhero(dir.path())
            .args(&args)
            .env("REDIS_PASSWORD", "hunter2"));
        assert_eq!(code, 0);
        // Help wraps long lines: compare with every whitespace run made one space.
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        for var in VARS {
            let tail = format!("[env: {}] [default: {}]", var.name, var.default_text);
            let listed = command.is_none_or(|c| var.concerns(c));
            assert_eq!(flat.contains(&tail), listed, "{args:?} --help, {tail}");
        }
        assert!(!out.contains("hunter2"));
    }
    let (code, out, _) = run(superhero(dir.path()).arg("--version"));
    assert_eq!(code, 0);
    assert!(out.starts_with("superhero "));
}

#[test]
fn a_fanout_with_an_ack_timeout_that_cannot_work_exits_2_naming_it() {
    // ACK_TIMEOUT=0 would claim back every pending entry on each sweep and dead-letter
    // everything within a second: refused before anything starts.
    let dir = tempfile::tempdir().unwrap();
    for value in ["0", "0.5"] {
        let (code, _, err) = run(superhero(dir.path())
            .arg("fanout")
            .env("ACK_TIMEOUT", value)
            .env("REDIS_PORT", "1"));
        assert_eq!(code, 2, "ACK_TIMEOUT={value}: {err}");
        assert!(err.contains("ACK_TIMEOUT"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    }
}
