//! The sharded layout on one Redis (REDIS_SHARDS): the same code paths as on a cluster, with a
//! Redis that can be paused and inspected like any other. The fanouts divide the shards by
//! lease; when one is killed or paused the other takes its shards, and every game is still
//! written exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::common;
use common::roles::{assert_exactly_once, pairs, server, wait_live_for, written, Proc, LOBBY};
use common::{holds_within, superhero, TestRedis};

const SHARDS: u16 = 4;

/// How many of the shards' leases each fanout holds.
fn leases(redis: &TestRedis) -> BTreeMap<String, u16> {
    let mut held = BTreeMap::new();
    for s in 0..SHARDS {
        let holder: Option<String> = redis.cmd(&["GET", &format!("{{{LOBBY}:{s}}}:fanout")]);
        if let Some(holder) = holder {
            *held.entry(holder).or_default() += 1;
        }
    }
    held
}

/// Completed games of the sharded layout (`games:{<lobby>:<s>}:<g>:status`).
fn completed(redis: &TestRedis) -> Vec<String> {
    let keys: Vec<String> = redis.cmd(&["KEYS", "games:{*}:*:status"]);
    let mut games: Vec<String> = keys
        .iter()
        .filter(|k| redis.cmd::<Option<String>>(&["GET", k]).as_deref() == Some("Completed"))
        .filter_map(|k| superhero::pipeline::keys::parse_game_key(k, ":status"))
        .map(|(_, g)| g.to_string())
        .collect();
    games.sort();
    games
}

fn bots(dir: &Path, port: u16, n: usize, games: u32) -> Vec<Proc> {
    (0..n)
        .map(|i| {
            let mut cmd = superhero(dir);
            cmd.env("WEBSOCKET_HOST", "127.0.0.1")
                .env("WEBSOCKET_PORT", port.to_string())
                .env("CLIENT_GAMES", games.to_string())
                .env("CLIENT_SLEEP", "0.05")
                .args(["player", "--participants", "2"]);
            Proc::spawn(&format!("player-{i}"), dir, cmd)
        })
        .collect()
}

/// Every role's log, for a failure message.
fn logs(procs: &[&Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("==== {}\n{}", p.name, p.log_text()))
        .collect()
}

#[test]
fn a_fanout_killed_or_paused_hands_its_shards_to_the_other_and_no_game_is_lost() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    let shards = SHARDS.to_string();
    let env = [
        ("REDIS_SHARDS", shards.as_str()),
        ("OUTPUT_DIR", out_text.as_str()),
        ("ACK_TIMEOUT", "2"),
        // Finished games keep their keys past the test's end, to be compared with the files.
        ("REDIS_EXPIRY", "600"),
    ];
    let mut build = superhero(dir.path());
    build
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .env("REDIS_SHARDS", &shards)
        .arg("build-db");
    assert!(build.status().unwrap().success());
    let port = common::free_port();
    let server = server(dir.path(), &redis, "server", port, &env);
    let role = |kind: &str, id: &str| {
        let mut with_id = env.to_vec();
        with_id.push(("HOSTNAME", id));
        Proc::start(id, dir.path(), &redis, &[kind], &with_id)
    };
    let workers = [role("worker", "w1"), role("worker", "w2")];
    wait_live_for(&redis, LOBBY, &["w1", "w2"], Duration::from_secs(20));
    let mut f1 = role("fanout", "f1");
    let mut f2 = role("fanout", "f2");
    let all = |extra: &[&Proc]| {
        let mut procs: Vec<&Proc> = vec![&server, &workers[0], &workers[1]];
        procs.extend_from_slice(extra);
        logs(&procs)
    };
    let halves = holds_within(Duration::from_secs(30), || {
        leases(&redis) == BTreeMap::from([("fanout:f1".into(), 2), ("fanout:f2".into(), 2)])
    });
    assert!(halves, "{:?}\n{}", leases(&redis), all(&[&f1, &f2]));

    // Killed: its leases run out and the other fanout takes every shard.
    f1.kill();
    let mut players = bots(dir.path(), port, 8, 3);
    let taken = holds_within(Duration::from_secs(30), || {
        leases(&redis) == BTreeMap::from([("fanout:f2".into(), SHARDS)])
    });
    assert!(taken, "{:?}\n{}", leases(&redis), all(&[&f2]));

    // Back, then paused: a fresh f1 takes half again, then stops renewing while SIGSTOPped,
    // and f2 takes its shards back; f1, continued, gives up what it no longer holds.
    let mut f1 = role("fanout", "f1");
    let halves = holds_within(Duration::from_secs(30), || {
        leases(&redis).get("fanout:f1") == Some(&2)
    });
    assert!(halves, "{:?}\n{}", leases(&redis), all(&[&f1, &f2]));
    f1.signal("STOP");
    let taken = holds_within(Duration::from_secs(30), || {
        leases(&redis) == BTreeMap::from([("fanout:f2".into(), SHARDS)])
    });
    f1.signal("CONT");
    assert!(taken, "{:?}\n{}", leases(&redis), all(&[&f1, &f2]));

    for bot in &mut players {
        assert_eq!(
            bot.exit_code(Duration::from_secs(120)),
            Some(0),
            "{}",
            bot.log_text()
        );
    }
    let games = completed(&redis);
    assert!(games.len() >= 6, "{games:?}");
    let written = holds_within(Duration::from_secs(60), || {
        written(&[&out]).len() >= games.len()
    });
    assert!(
        written,
        "{} of {} written\n{}",
        pairs(&[&out]).len(),
        games.len(),
        all(&[&f1, &f2])
    );
    assert_exactly_once(&[&out], &games);
    let dead: Vec<String> = redis.cmd(&["KEYS", &format!("{{{LOBBY}:*}}:dead")]);
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    assert!(f1.is_running() && f2.is_running());
}
