//! Redis Cluster: REDIS_CLUSTER_NODES is checked like every setting; `status` and `clean` see
//! the keys of every primary; a [`Conn`] runs scripts and pipelines across slots, follows MOVED
//! and survives a primary's death; game servers play whole games on a cluster, their keys
//! spread over shards; `demo --cluster` starts a real cluster and then says plainly that the
//! pipeline cannot run on it yet (`bench --cluster` runs: tests/it/bench.rs). Every test starts
//! its own 3-primary cluster.

use std::time::Duration;

use crate::common;

use std::path::Path;

use common::roles::{runtime, Proc};
use common::{free_port, superhero, wait_for, wait_until, TestCluster};
use superhero::pipeline::redis_conn::{self, Conn, Redis, SubEvent};

const LOBBY: &str = "redis.lib.server.lobby";

/// A key of the form `<prefix><n>` that `owner` does not serve (or serves, with `owned`).
fn key_on(cluster: &TestCluster, prefix: &str, owner: u16, owned: bool) -> String {
    (0..1000)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| (cluster.owner_of(k) == owner) == owned)
        .expect("a key on the wanted primary")
}

fn dbsize(cluster: &TestCluster, port: u16) -> u64 {
    cluster.on(port, &["DBSIZE"])
}

#[test]
fn status_and_clean_reach_the_keys_of_every_primary() {
    let cluster = TestCluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = superhero(dir.path())
            .env("REDIS_CLUSTER_NODES", cluster.seeds())
            .args(args)
            .output()
            .expect("run superhero");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    // Timed Out games, each key written on the primary that serves it, until every primary
    // holds some.
    let mut games = Vec::new();
    while primaries.iter().any(|&p| dbsize(&cluster, p) == 0) {
        assert!(games.len() < 100, "keys never reached every primary");
        let g = uuid::Uuid::new_v4().to_string();
        let status = common::single_keys().game_status(&g);
        let size = common::single_keys().game_participants(&g);
        let _: () = cluster.on(cluster.owner_of(&status), &["SET", &status, "Timed Out"]);
        let _: () = cluster.on(cluster.owner_of(&size), &["SET", &size, "2"]);
        let listed = common::single_keys().games_players(2);
        let _: i64 = cluster.on(cluster.owner_of(&listed), &["LPUSH", &listed, &g]);
        let joined = &common::single_keys().games_participants();
        let _: i64 = cluster.on(cluster.owner_of(joined), &["ZADD", joined, "0", &g]);
        games.push(g);
    }

    let status: serde_json::Value =
        serde_json::from_str(&run(&["status", "--format", "json"])).expect("status JSON");
    assert_eq!(status["games"]["Timed Out"], games.len(), "{status}");
    assert!(
        status["redis"].as_str().unwrap().starts_with("cluster "),
        "{status}"
    );

    let cleaned = run(&["clean"]);
    assert!(
        cleaned.contains(&format!("removed {} finished games", games.len())),
        "{cleaned}"
    );
    for g in &games {
        let status = common::single_keys().game_status(g);
        let left: u64 = cluster.on(cluster.owner_of(&status), &["EXISTS", &status]);
        assert_eq!(left, 0, "{status} is left after clean");
    }
    let listed = common::single_keys().games_players(2);
    let left: u64 = cluster.on(cluster.owner_of(&listed), &["LLEN", &listed]);
    assert_eq!(left, 0, "clean leaves the games in {listed}");

    // Keys under the lobby on every primary: `clean --all` removes them all.
    let mut n = 0;
    while primaries.iter().any(|&p| dbsize(&cluster, p) == 0) {
        let key = format!("{LOBBY}:leftover:{n}");
        let _: () = cluster.on(cluster.owner_of(&key), &["SET", &key, "x"]);
        n += 1;
    }
    let total: u64 = primaries.iter().map(|&p| dbsize(&cluster, p)).sum();
    let cleaned = run(&["clean", "--all"]);
    assert!(
        cleaned.contains(&format!("removed {total} keys")),
        "{cleaned}"
    );
    for p in primaries {
        assert_eq!(dbsize(&cluster, p), 0, "primary {p} still holds keys");
    }
}

#[test]
fn a_conn_runs_scripts_and_pipelines_across_slots_and_follows_moved() {
    let cluster = TestCluster::start(3, 1);
    let primaries = cluster.primaries();
    let seed = primaries[0];
    // Through one seed only: every key of another primary is found through the slot map.
    let settings = cluster.settings_with_seeds(&format!("127.0.0.1:{seed}"));
    let rt = runtime();
    let redis = rt
        .block_on(Redis::connect(&settings.redis))
        .expect("connect");
    assert!(redis.is_cluster());
    assert_eq!(rt.block_on(redis.primaries()).unwrap().len(), 3);
    let mut conn = redis.conn();

    let elsewhere = key_on(&cluster, "cluster-test:away:", seed, false);
    let script =
        redis::Script::new("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])");
    let got: String = rt
        .block_on(
            script
                .key(&elsewhere)
                .arg("scripted")
                .invoke_async(&mut conn),
        )
        .expect("script");
    assert_eq!(got, "scripted");
    let stored: String = cluster.on(cluster.owner_of(&elsewhere), &["GET", &elsewhere]);
    assert_eq!(stored, "scripted");

    // A pipeline over keys of two primaries comes back whole and in order.
    let here = key_on(&cluster, "cluster-test:here:", seed, true);
    let (a, b): (String, String) = rt
        .block_on(
            redis::pipe()
                .set(&here, "1")
                .ignore()
                .set(&elsewhere, "2")
                .ignore()
                .get(&here)
                .get(&elsewhere)
                .query_async(&mut conn),
        )
        .expect("pipeline across slots");
    assert_eq!((a.as_str(), b.as_str()), ("1", "2"));

    // Move the (empty) slot of a key to another primary behind the conn's back: the conn still
    // sends to the old owner, which answers MOVED.
    let moved = key_on(&cluster, "cluster-test:moved:", seed, true);
    let to = primaries[1];
    let slot: i64 = cluster.on(seed, &["CLUSTER", "KEYSLOT", &moved]);
    let (slot, from_id, to_id): (String, String, String) = (
        slot.to_string(),
        cluster.on(seed, &["CLUSTER", "MYID"]),
        cluster.on(to, &["CLUSTER", "MYID"]),
    );
    let _: () = cluster.on(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    let _: () = cluster.on(seed, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    for p in [to, seed, primaries[2]] {
        let _: () = cluster.on(p, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
    let _: () = rt
        .block_on(
            redis::cmd("SET")
                .arg(&moved)
                .arg("followed")
                .query_async(&mut conn),
        )
        .expect("SET after the slot moved");
    let stored: String = cluster.on(to, &["GET", &moved]);
    assert_eq!(stored, "followed");

    // A subscription whose first seed is dead moves on to the next and hears a PUBLISH made
    // on any node.
    let dead = free_port();
    let seeds = format!("127.0.0.1:{dead},{}", cluster.seeds());
    let both = rt
        .block_on(Redis::connect(&cluster.settings_with_seeds(&seeds).redis))
        .expect("connect past a dead seed");
    rt.block_on(async {
        let (stop, shutdown) = superhero::shutdown::channel();
        let channel = "cluster-test:channel".to_string();
        let mut events = redis_conn::subscribe(&both, vec![channel.clone()], vec![], shutdown);
        let first = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
        assert!(matches!(first, Ok(Some(SubEvent::Subscribed))), "{first:?}");
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("hello")
            .query_async(&mut conn)
            .await
            .unwrap();
        let message = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
        match message {
            Ok(Some(SubEvent::Message {
                channel: c,
                payload,
            })) => {
                assert_eq!((c, payload), (channel, b"hello".to_vec()))
            }
            other => panic!("no message: {other:?}"),
        }
        stop.fire();
    });
}

#[test]
fn a_conn_made_before_a_primary_dies_works_after_its_replica_takes_over() {
    let mut cluster = TestCluster::start(3, 1);
    let rt = runtime();
    let redis = rt
        .block_on(Redis::connect(&cluster.settings().redis))
        .expect("connect");
    let conn = redis.conn();
    let key = "cluster-test:survivor";
    let set = |conn: Conn, value: &'static str| async move {
        let mut conn = conn;
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut conn)
            .await
    };
    rt.block_on(set(conn.clone(), "before")).expect("SET");
    let primary = cluster.owner_of(key);
    let replica = cluster.inner.replicas_of(primary).unwrap()[0];
    wait_until(
        "the replica to hold the key",
        Duration::from_secs(10),
        || dbsize(&cluster, replica) == 1,
    );

    cluster.inner.kill(primary);
    cluster
        .inner
        .wait_promoted(replica, Duration::from_secs(30))
        .expect("the replica is promoted");
    assert!(!cluster.primaries().contains(&primary));

    rt.block_on(wait_for(
        "the same conn to read through the promoted replica",
        Duration::from_secs(30),
        || {
            let mut conn = conn.clone();
            async move {
                let got: redis::RedisResult<Option<String>> =
                    redis::cmd("GET").arg(key).query_async(&mut conn).await;
                matches!(got, Ok(Some(v)) if v == "before")
            }
        },
    ));
    rt.block_on(set(conn.clone(), "after"))
        .expect("SET after the failover");
    let stored: String = cluster.on(replica, &["GET", key]);
    assert_eq!(stored, "after");
}

#[test]
fn a_one_channel_subscription_goes_through_its_slots_primary_so_a_publish_counts_it() {
    let cluster = TestCluster::start(3, 0);
    let seed = cluster.primaries()[0];
    // Through one seed only, for a channel whose slot another primary serves: subscribed
    // through the seed, a PUBLISH (sent to the slot's primary) would count nobody.
    let settings = cluster.settings_with_seeds(&format!("127.0.0.1:{seed}"));
    let channel = key_on(&cluster, "lobby-worker-", seed, false);
    let rt = runtime();
    let redis = rt
        .block_on(Redis::connect(&settings.redis))
        .expect("connect");
    let (stop, shutdown) = superhero::shutdown::channel();
    let mut events = {
        let _guard = rt.enter();
        redis_conn::subscribe(&redis, vec![channel.clone()], Vec::new(), shutdown)
    };
    rt.block_on(async {
        let first = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
        assert!(matches!(first, Ok(Some(SubEvent::Subscribed))), "{first:?}");
        let heard: u64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("hello")
            .query_async(&mut redis.conn())
            .await
            .expect("PUBLISH");
        assert_eq!(heard, 1, "the subscriber of {channel} was not counted");
        let got = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
        assert!(
            matches!(&got, Ok(Some(SubEvent::Message { payload, .. })) if payload == b"hello"),
            "{got:?}"
        );
    });
    stop.fire();
}

/// The environment, the arguments, and what the one error line must name.
type Refused<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

#[test]
fn bad_cluster_settings_and_the_roles_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = format!("127.0.0.1:{}", free_port());
    let cases: [Refused; 4] = [
        (
            &[("REDIS_CLUSTER_NODES", "localhost")],
            &["status"],
            "REDIS_CLUSTER_NODES",
        ),
        (
            &[],
            &["status", "--redis-cluster-nodes", "a:1,,b:2"],
            "REDIS_CLUSTER_NODES",
        ),
        (
            &[("REDIS_CLUSTER_NODES", "a:0")],
            &["clean"],
            "REDIS_CLUSTER_NODES",
        ),
        (
            &[("REDIS_CLUSTER_NODES", seeds.as_str()), ("REDIS_DB", "1")],
            &["status"],
            "REDIS_DB",
        ),
    ];
    for (env, args, named) in cases {
        let out = superhero(dir.path())
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named), "{env:?} {args:?}: {stderr}");
    }
    // Well-formed seeds nobody answers on: one line, within seconds, no retry chatter.
    let out = superhero(dir.path())
        .env("REDIS_CLUSTER_NODES", &seeds)
        .arg("status")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach Redis at cluster {seeds}")),
        "{stderr}"
    );
}

#[test]
fn demo_and_bench_refuse_a_cluster_of_fewer_than_three_primaries() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["demo", "--cluster", "2"][..],
        &["bench", "game", "--cluster", "2"][..],
    ] {
        let out = superhero(dir.path()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--cluster"), "{args:?}: {stderr}");
    }
}

#[test]
fn demo_on_a_private_cluster_writes_every_game_once_with_keys_on_every_primary() {
    let dir = tempfile::tempdir().unwrap();
    let out = superhero(dir.path())
        .args(["demo", "--cluster", "3", "--json", "--progress", "never"])
        // Bots that start together open their first lobbies in one shard (new lobbies of a size
        // meet in one shard per 100 ms); their later games start apart and spread.
        .args(["--players", "6", "--games", "5", "--participants", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary JSON");
    assert!(summary["redis"].as_str().unwrap().starts_with("cluster "));
    assert_eq!(summary["private_redis"], true);
    let played = summary["games_played"].as_u64().unwrap();
    assert!(played > 0, "{summary}");
    assert_eq!(summary["games_processed"], played, "{summary}");
    assert_eq!(summary["duplicated_games"], serde_json::json!([]));
    assert_eq!(summary["missing_games"], serde_json::json!([]));
    let primaries = summary["primaries"].as_array().expect("primaries");
    assert_eq!(primaries.len(), 3, "{summary}");
    assert!(
        primaries.iter().all(|p| p["keys"].as_u64().unwrap() > 0),
        "a primary without keys: {summary}"
    );
    let with_log = primaries
        .iter()
        .filter(|p| p["log_entries"].as_u64().unwrap() > 0)
        .count();
    assert!(
        with_log >= 2,
        "log entries on {with_log} primary: {summary}"
    );
    // The files are on disk under the demo's output folder, one pair per game.
    let found = common::roles::pairs(&[&dir.path().join("data")]);
    assert_eq!(found.len() as u64, played);
}

/// A `superhero` process against `cluster`, with `env`, its output in `<dir>/<name>.log`.
fn on_cluster(
    cluster: &TestCluster,
    dir: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let mut cmd = superhero(dir);
    cmd.env("REDIS_CLUSTER_NODES", cluster.seeds())
        .envs(env.iter().copied())
        .args(args);
    Proc::spawn(name, dir, cmd)
}

#[test]
fn two_servers_play_whole_games_on_a_cluster_with_their_keys_spread_over_primaries() {
    let cluster = TestCluster::start(3, 0);
    let primaries = cluster.primaries();
    let dir = tempfile::tempdir().unwrap();
    let minute = Duration::from_secs(60);

    let mut build = on_cluster(&cluster, dir.path(), "build-db", &["build-db"], &[]);
    assert_eq!(build.exit_code(minute), Some(0), "{}", build.log_text());
    // 4 shards per primary, stored for every later role.
    let any = cluster.owner_of("superhero:shards");
    assert_eq!(
        cluster.on::<String>(any, &["GET", "superhero:shards"]),
        "12"
    );

    let ports = [free_port(), free_port()];
    let servers: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let port = port.to_string();
            let env = [
                ("WEBSOCKET_HOST", "127.0.0.1"),
                ("WEBSOCKET_PORT", port.as_str()),
                ("LOBBY_TIMEOUT", "10"),
            ];
            on_cluster(
                &cluster,
                dir.path(),
                &format!("server-{i}"),
                &["server"],
                &env,
            )
        })
        .collect();
    for s in &servers {
        wait_until(&format!("{} to listen", s.name), minute, || {
            s.log_text().contains("game server listening")
        });
    }

    // Bots spread over both servers; each plays its games to the end.
    let mut bots: Vec<Proc> = (0..6)
        .map(|i| {
            let port = ports[i % 2].to_string();
            let env = [
                ("WEBSOCKET_HOST", "127.0.0.1"),
                ("WEBSOCKET_PORT", port.as_str()),
                ("CLIENT_GAMES", "3"),
                ("CLIENT_SLEEP", "0.2"),
            ];
            let mut cmd = superhero(dir.path());
            cmd.envs(env).args(["player", "--participants", "2"]);
            Proc::spawn(&format!("player-{i}"), dir.path(), cmd)
        })
        .collect();
    for bot in &mut bots {
        let code = bot.exit_code(Duration::from_secs(180));
        assert_eq!(code, Some(0), "{} failed:\n{}", bot.name, bot.log_text());
    }

    let json = status_json(&cluster, dir.path()).expect("status JSON");
    let completed = json["games"]["Completed"].as_u64().unwrap_or(0);
    assert!(completed >= 3, "{json}");
    assert!(json["heroes"].as_u64().unwrap_or(0) >= 100, "{json}");

    // The shards lie on every primary (each holds a copy of the heroes), and the games' keys
    // carry their shards' tags. Which primaries the games themselves land on depends on the
    // bots' random names (a game opens in its creator's home shard), so it is not asserted.
    for &p in &primaries {
        let size: u64 = cluster.on(p, &["DBSIZE"]);
        assert!(size > 0, "primary {p} holds no key");
    }
    let holding: Vec<u16> = primaries
        .iter()
        .copied()
        .filter(|&p| {
            !cluster
                .on::<Vec<String>>(p, &["KEYS", "games:{*}:*:status"])
                .is_empty()
        })
        .collect();
    assert!(!holding.is_empty(), "no game keys on {primaries:?}");
    for &p in &primaries {
        let untagged: Vec<String> = cluster.on(p, &["KEYS", "games:[^{]*"]);
        assert!(untagged.is_empty(), "untagged keys on {p}: {untagged:?}");
    }

    // A role with another REDIS_SHARDS is refused: exit 2, one line naming it and both counts.
    let mut odd = on_cluster(
        &cluster,
        dir.path(),
        "server-odd",
        &["server"],
        &[
            ("REDIS_SHARDS", "5"),
            ("WEBSOCKET_HOST", "127.0.0.1"),
            ("WEBSOCKET_PORT", &free_port().to_string()),
        ],
    );
    assert_eq!(odd.exit_code(minute), Some(2), "{}", odd.log_text());
    let refusal = odd.log_text();
    assert!(
        refusal.contains("REDIS_SHARDS") && refusal.contains('5') && refusal.contains("12"),
        "{refusal}"
    );

    drop(servers);
    let mut clean = on_cluster(&cluster, dir.path(), "clean", &["clean", "--all"], &[]);
    assert_eq!(clean.exit_code(minute), Some(0), "{}", clean.log_text());
    for p in primaries {
        assert_eq!(dbsize(&cluster, p), 0, "primary {p} still holds keys");
    }
}

/// Games whose status is `wanted`, from every primary of `cluster` (tagged keys only).
fn games_with_status(cluster: &TestCluster, wanted: &str) -> Vec<String> {
    let mut games = Vec::new();
    for p in cluster.primaries() {
        let keys: Vec<String> = cluster.on(p, &["KEYS", "games:{*}:*:status"]);
        for key in keys {
            let Some((_, g)) = superhero::pipeline::keys::parse_game_key(&key, ":status") else {
                continue;
            };
            let status: Option<String> = cluster.on(p, &["GET", &key]);
            if status.as_deref() == Some(wanted) {
                games.push(g.to_string());
            }
        }
    }
    games.sort();
    games
}

/// The entries of every shard's `suffix` stream (`log`, `dead`) on each primary, by primary.
fn stream_lengths(cluster: &TestCluster, suffix: &str) -> Vec<(u16, u64)> {
    cluster
        .primaries()
        .into_iter()
        .map(|p| {
            let keys: Vec<String> = cluster.on(p, &["KEYS", &format!("{{{LOBBY}:*}}:{suffix}")]);
            let total = keys
                .iter()
                .map(|k| cluster.on::<u64>(p, &["XLEN", k]))
                .sum();
            (p, total)
        })
        .collect()
}

/// `superhero status --format json` on `cluster`; None when it fails.
fn status_json(cluster: &TestCluster, dir: &Path) -> Option<serde_json::Value> {
    let args = ["status", "--format", "json"];
    let mut status = on_cluster(cluster, dir, "status", &args, &[]);
    let ok = status.exit_code(Duration::from_secs(60)) == Some(0);
    let json = serde_json::from_str(&status.log_text()).ok();
    json.filter(|_| ok)
}

/// How many of the `shards` shards' leases each fanout holds.
fn shard_leases(cluster: &TestCluster, shards: u16) -> std::collections::BTreeMap<String, u16> {
    let mut held = std::collections::BTreeMap::new();
    for s in 0..shards {
        let key = format!("{{{LOBBY}:{s}}}:fanout");
        let holder: Option<String> = cluster.on(cluster.owner_of(&key), &["GET", &key]);
        if let Some(holder) = holder {
            *held.entry(holder).or_default() += 1;
        }
    }
    held
}

/// Servers, fanouts and workers as processes on `cluster`, with LOGGER_MODULE=redis.
struct ClusterPipeline {
    servers: Vec<Proc>,
    ports: Vec<u16>,
    fanouts: Vec<Proc>,
    workers: Vec<Proc>,
    out: std::path::PathBuf,
}

impl ClusterPipeline {
    fn start(
        cluster: &TestCluster,
        dir: &Path,
        (servers, fanouts, workers): (usize, usize, usize),
        env: &[(&str, &str)],
    ) -> ClusterPipeline {
        let minute = Duration::from_secs(60);
        let mut build = on_cluster(cluster, dir, "build-db", &["build-db"], &[]);
        assert_eq!(build.exit_code(minute), Some(0), "{}", build.log_text());
        let out = dir.join("out");
        let out_text = out.display().to_string();
        let mut base: Vec<(&str, &str)> = vec![
            ("LOGGER_MODULE", "redis"),
            ("OUTPUT_DIR", &out_text),
            ("ACK_TIMEOUT", "3"),
            // Finished games keep their keys past the test's end (30 s by default), so their
            // statuses can be compared with the files.
            ("REDIS_EXPIRY", "600"),
        ];
        base.extend_from_slice(env);
        let ports: Vec<u16> = (0..servers).map(|_| free_port()).collect();
        let servers = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let port = port.to_string();
                let mut env = base.clone();
                env.extend([
                    ("WEBSOCKET_HOST", "127.0.0.1"),
                    ("WEBSOCKET_PORT", port.as_str()),
                ]);
                on_cluster(cluster, dir, &format!("server-{i}"), &["server"], &env)
            })
            .collect();
        let role = |kind: &str, i: usize| {
            let id = format!("{kind}-{i}");
            let mut env = base.clone();
            env.push(("HOSTNAME", &id));
            on_cluster(cluster, dir, &id, &[kind], &env)
        };
        let fanouts = (0..fanouts).map(|i| role("fanout", i)).collect();
        let workers = (0..workers).map(|i| role("worker", i)).collect();
        let pipeline = ClusterPipeline {
            servers,
            ports,
            fanouts,
            workers,
            out,
        };
        pipeline.wait("every role to start", minute, |pipeline| {
            pipeline.roles().all(|p| {
                let ready = match p.name.split('-').next() {
                    Some("server") => "game server listening",
                    Some("worker") => "listening on",
                    _ => "reading shard",
                };
                p.log_text().contains(ready)
            })
        });
        pipeline
    }

    /// Waits for `check`, failing with every role's log.
    fn wait(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Self) -> bool) {
        if !common::holds_within(timeout, || check(self)) {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.logs()
            );
        }
    }

    /// Every role's log, for a failure message.
    fn logs(&self) -> String {
        self.roles()
            .map(|p| format!("==== {}\n{}", p.name, p.log_text()))
            .collect()
    }

    fn roles(&self) -> impl Iterator<Item = &Proc> {
        self.servers
            .iter()
            .chain(&self.fanouts)
            .chain(&self.workers)
    }

    /// `n` bots, spread over the servers, each playing `games` 2-player games.
    fn bots(&self, dir: &Path, n: usize, games: u32) -> Vec<Proc> {
        (0..n)
            .map(|i| {
                let port = self.ports[i % self.ports.len()].to_string();
                let games = games.to_string();
                let env = [
                    ("WEBSOCKET_HOST", "127.0.0.1"),
                    ("WEBSOCKET_PORT", port.as_str()),
                    ("CLIENT_GAMES", games.as_str()),
                    ("CLIENT_SLEEP", "0.1"),
                ];
                let mut cmd = superhero(dir);
                cmd.envs(env).args(["player", "--participants", "2"]);
                Proc::spawn(&format!("player-{i}"), dir, cmd)
            })
            .collect()
    }

    /// Asserts every role still runs.
    fn assert_running(&mut self) {
        for p in self
            .servers
            .iter_mut()
            .chain(&mut self.fanouts)
            .chain(&mut self.workers)
        {
            assert!(p.is_running(), "{} exited:\n{}", p.name, p.log_text());
        }
    }
}

#[test]
fn two_servers_two_fanouts_and_four_workers_write_every_game_once_on_a_cluster() {
    let cluster = TestCluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    // WAIT before XACK, on each game's own primary.
    let env = [("WAIT_REPLICAS", "1"), ("WAIT_MS", "1000")];
    let mut pipeline = ClusterPipeline::start(&cluster, dir.path(), (2, 2, 4), &env);
    // The two fanouts divide the 12 shards between them.
    pipeline.wait(
        "the fanouts to share the shards",
        Duration::from_secs(60),
        |_| {
            let holders = shard_leases(&cluster, 12);
            holders.len() == 2 && holders.values().all(|&n| n == 6)
        },
    );
    // 3 games each: the later ones start apart, in other shards (and primaries) than the first.
    let mut bots = pipeline.bots(dir.path(), 20, 3);
    for bot in &mut bots {
        let code = bot.exit_code(Duration::from_secs(240));
        assert_eq!(code, Some(0), "{} failed:\n{}", bot.name, bot.log_text());
    }
    let completed = games_with_status(&cluster, "Completed");
    // 20 bots × 3 games of 2: about 30 games, fewer when a lobby times out.
    assert!(completed.len() >= 15, "{completed:?}");
    pipeline.wait(
        "every completed game's files",
        Duration::from_secs(60),
        |_| common::roles::written(&[&pipeline.out]).len() >= completed.len(),
    );
    common::roles::assert_exactly_once(&[&pipeline.out], &completed);
    pipeline.assert_running();

    // The log entries lie on at least two primaries; nothing was dead-lettered; every worker
    // acknowledged what it wrote.
    let logs = stream_lengths(&cluster, "log");
    let holding = logs.iter().filter(|(_, n)| *n > 0).count();
    assert!(holding >= 2, "log entries by primary: {logs:?}");
    let dead = stream_lengths(&cluster, "dead");
    assert!(dead.iter().all(|(_, n)| *n == 0), "dead letters: {dead:?}");
    pipeline.wait(
        "nothing left unacknowledged",
        Duration::from_secs(30),
        |_| {
            let json = status_json(&cluster, dir.path()).unwrap_or_default();
            json["unacked"]["count"] == 0 && json["undelivered"] == 0 && json["fanouts"] == 2
        },
    );
}

#[test]
fn a_primary_killed_mid_run_loses_no_finished_game_and_no_role_exits() {
    let mut cluster = TestCluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    let env = [("TURN_TIMEOUT", "3"), ("LOBBY_TIMEOUT", "5")];
    let mut pipeline = ClusterPipeline::start(&cluster, dir.path(), (2, 2, 2), &env);
    let mut bots = pipeline.bots(dir.path(), 12, 4);
    pipeline.wait("some games written", Duration::from_secs(120), |p| {
        common::roles::pairs(&[&p.out]).len() >= 4
    });
    let written_before = common::roles::pairs(&[&pipeline.out]).len();
    // The primary of the shard holding most log entries dies; its replica takes over.
    let logs = stream_lengths(&cluster, "log");
    let victim = logs.iter().max_by_key(|(_, n)| *n).unwrap().0;
    let replica = cluster.inner.replicas_of(victim).unwrap()[0];
    cluster.inner.kill(victim);
    cluster
        .inner
        .wait_promoted(replica, Duration::from_secs(60))
        .expect("replica promoted");
    // Bots may lose a game to the failover; the roles must not.
    for bot in &mut bots {
        bot.wait_exit(Duration::from_secs(240))
            .unwrap_or_else(|| panic!("{} never ended:\n{}", bot.name, bot.log_text()));
    }
    // Every game ends by its deadlines: none is left playing.
    pipeline.wait("every game to end", Duration::from_secs(60), |_| {
        ["In-Progress", "Waiting Player", "Starting", "Waiting Lobby"]
            .iter()
            .all(|s| games_with_status(&cluster, s).is_empty())
    });
    let completed = games_with_status(&cluster, "Completed");
    assert!(
        completed.len() > written_before,
        "no game completed after the failover ({written_before} written before)"
    );
    let timed_out = games_with_status(&cluster, "Timed Out");
    pipeline.wait(
        "every completed game's files",
        Duration::from_secs(90),
        |_| {
            let found = common::roles::written(&[&pipeline.out]);
            completed.iter().all(|g| found.contains(g))
        },
    );
    // Exactly once: a finished game has one pair by one worker; a game with files is one that
    // completed (or, its last writes lost with the dead primary, one that then timed out).
    let found = common::roles::pairs(&[&pipeline.out]);
    let extra: Vec<&String> = found.keys().filter(|g| !completed.contains(g)).collect();
    assert!(
        extra.iter().all(|g| timed_out.contains(g)),
        "files of games neither completed nor timed out: {extra:?}"
    );
    let written: Vec<String> = found.keys().cloned().collect();
    common::roles::assert_exactly_once(&[&pipeline.out], &written);
    pipeline.assert_running();
    let dead = stream_lengths(&cluster, "dead");
    assert!(dead.iter().all(|(_, n)| *n == 0), "dead letters: {dead:?}");
}

#[test]
fn synthetic_games_seeded_in_their_shards_and_logged_in_their_logs_are_written_once() {
    use rand::SeedableRng;
    use superhero::ops::bench::synth;
    use superhero::pipeline::shard::{Layout, Shard};

    let cluster = TestCluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    // No server: the games are synthetic, as `bench etl` makes them.
    let pipeline = ClusterPipeline::start(&cluster, dir.path(), (0, 1, 1), &[]);
    let layout = Layout::tagged(LOBBY, 12);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let games: Vec<synth::SynthGame> = (0..24u16)
        .map(|i| synth::random_game_in(&mut rng, &layout, Shard(i % 12), 3, 12, 1000))
        .collect();
    let rt = runtime();
    let redis = rt
        .block_on(Redis::connect(&cluster.settings().redis))
        .expect("connect");
    let mut conn = redis.conn();
    rt.block_on(synth::seed_in(&mut conn, &layout, &games))
        .expect("seed");
    let records: Vec<(String, String)> = games
        .iter()
        .map(|g| (g.token.clone(), synth::host_record(LOBBY, g)))
        .collect();
    let ids = rt
        .block_on(synth::append_all_in(&mut conn, &layout, LOBBY, &records, 5))
        .expect("append");
    // Each record went to the log of its game's shard, the slot of the game's own keys.
    for (game, id) in games.iter().zip(&ids) {
        let shard = layout.of_token(&game.token).0;
        assert!(
            id.starts_with(&format!("{shard}/")),
            "{id} for shard {shard}"
        );
        let status = layout.keys_of(&game.token).game_status(&game.token);
        let log = layout.keys_of(&game.token).log_stream(LOBBY);
        assert_eq!(cluster.owner_of(&status), cluster.owner_of(&log));
    }
    let tokens = common::roles::tokens(&games);
    pipeline.wait("every game's files", Duration::from_secs(60), |p| {
        common::roles::written(&[&p.out]).len() >= tokens.len()
    });
    common::roles::assert_exactly_once(&[&pipeline.out], &tokens);
}
