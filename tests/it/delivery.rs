//! Issue 12: nothing lost at the seams. Every role is a real `superhero` process against a
//! private redis-server; records reach the log stream from the server's scripts (or, for the
//! synthetic games, exactly as those scripts append them).

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::roles::{
    assert_exactly_once, build_db, completed_games, conn, games, pairs, runtime, tokens, unacked,
    wait_live, wait_subscribed, Pipeline, Proc,
};
use common::{free_port, superhero, wait_until, TestRedis};
use superhero::ops::bench::synth::{self, SynthGame};
use superhero::pipeline::keys;

const LOBBY: &str = "redis.lib.server.lobby";

/// Stores the games as the server does and appends their records to the log as its scripts do.
fn seed_and_append(redis: &TestRedis, games: &[SynthGame]) -> Vec<String> {
    runtime().block_on(async {
        let mut conn = conn(redis).await;
        synth::seed(&mut conn, games).await.expect("seed");
        let records: Vec<String> = games
            .iter()
            .flat_map(|g| synth::records(LOBBY, g))
            .collect();
        synth::append_all(&mut conn, LOBBY, &records, 500)
            .await
            .expect("append")
    })
}

/// What every role here gets unless a test says otherwise.
const ENV: [(&str, &str); 1] = [("ACK_TIMEOUT", "2")];

fn wait_pairs(dirs: &[&Path], n: usize, timeout: Duration) {
    wait_until(&format!("{n} games written"), timeout, || {
        pairs(dirs).values().filter(|f| f.len() >= 2).count() >= n
    });
}

fn dead_letters(redis: &TestRedis) -> Vec<std::collections::BTreeMap<String, String>> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys::dead_stream(LOBBY))
        .arg("-")
        .arg("+")
        .query(&mut redis.client())
        .expect("XRANGE dead");
    entries
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect()
}

/// Runs `n` player bots of 2-player games to the end.
fn play(dir: &Path, redis: &TestRedis, ws_port: u16, n: usize, games: u32) {
    let port = ws_port.to_string();
    let games = games.to_string();
    let mut bots: Vec<Proc> = (0..n)
        .map(|i| {
            Proc::start(
                &format!("player-{i}"),
                dir,
                redis,
                &["player", "--participants", "2"],
                &[
                    ("WEBSOCKET_HOST", "127.0.0.1"),
                    ("WEBSOCKET_PORT", &port),
                    ("CLIENT_GAMES", &games),
                    ("CLIENT_SLEEP", "0.2"),
                ],
            )
        })
        .collect();
    for bot in &mut bots {
        let code = bot.wait_exit(Duration::from_secs(90));
        assert_eq!(code, Some(Some(0)), "{}:\n{}", bot.name, bot.log_text());
    }
}

fn server(dir: &Path, redis: &TestRedis, ws_port: u16, extra: &[(&str, &str)]) -> Proc {
    let mut env = vec![("LOBBY_TIMEOUT", "20")];
    env.extend_from_slice(extra);
    common::roles::server(dir, redis, "server", ws_port, &env)
}

#[test]
fn a_fanout_paused_then_killed_loses_no_game() {
    let p = Pipeline::new(&ENV);
    let (redis, dir, out) = (&p.redis, p.dir.path(), p.out.as_path());
    build_db(dir, redis);
    let ws = free_port();
    let _server = server(dir, redis, ws, &[]);
    let _w1 = p.worker("w1", &[]);
    let mut f1 = p.fanout("fanout-1", &[]);
    wait_live(redis, LOBBY, "w1");
    // The paused fanout is still subscribed to the lobby channel, so the server's PUBLISHes
    // reach it (and only it): on a pub/sub hop that is where they would die with it.
    f1.signal("STOP");
    play(dir, redis, ws, 4, 2);
    let games = completed_games(redis);
    assert!(!games.is_empty());
    // A fanout that read entries and died before routing them leaves them pending under its
    // name; the next fanout claims them after ACK_TIMEOUT.
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::log_stream(LOBBY))
        .arg(keys::fanout_group(LOBBY))
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut redis.client())
        .unwrap_or(redis::Value::Nil);
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(keys::fanout_group(LOBBY))
        .arg("fanout:ghost")
        .arg("COUNT")
        .arg(3)
        .arg("STREAMS")
        .arg(keys::log_stream(LOBBY))
        .arg(">")
        .query(&mut redis.client())
        .expect("XREADGROUP");
    f1.kill();
    let _f2 = p.fanout("fanout-2", &[]);
    wait_pairs(&[out], games.len(), Duration::from_secs(60));
    wait_until("every entry acknowledged", Duration::from_secs(30), || {
        unacked(redis, LOBBY) == 0
    });
    assert_exactly_once(&[out], &games);
    assert!(dead_letters(redis).is_empty());
}

#[test]
fn a_server_killed_after_its_publish_failed_loses_no_game() {
    let p = Pipeline::new(&ENV);
    let (redis, dir, out) = (&p.redis, p.dir.path(), p.out.as_path());
    build_db(dir, redis);
    // The server's user may not publish on the lobby channel: every PUBLISH of a lifecycle
    // record fails, as if the server died between its commit and its publish.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("game")
        .arg("on")
        .arg(">game-pass")
        .arg("~*")
        .arg("resetchannels")
        .arg("&games:*:events")
        .arg("+@all")
        .query(&mut redis.client())
        .expect("ACL SETUSER");
    let ws = free_port();
    let url = format!("redis://game:game-pass@127.0.0.1:{}/0", redis.port);
    let mut server = server(dir, redis, ws, &[("REDIS_URL", &url)]);
    play(dir, redis, ws, 4, 2);
    server.kill();
    let games = completed_games(redis);
    assert!(!games.is_empty());
    let _w = p.worker("w1", &[]);
    let _f = p.fanout("fanout", &[]);
    wait_pairs(&[out], games.len(), Duration::from_secs(60));
    assert_exactly_once(&[out], &games);
}

#[test]
fn a_late_acknowledgement_from_before_a_redis_restart_removes_nothing_new() {
    let mut p = Pipeline::new(&ENV);
    let out = p.out.clone();
    let _w = p.worker("w1", &[]);
    let _f = p.fanout("fanout", &[]);
    wait_live(&p.redis, LOBBY, "w1");
    let first = games(2, 1);
    let old_ids = seed_and_append(&p.redis, &first);
    wait_pairs(&[&out], 2, Duration::from_secs(30));
    // Redis loses everything (no persistence); the roles ride it out.
    p.redis.kill();
    p.redis.restart();
    wait_live(&p.redis, LOBBY, "w1");
    // Park the next records: no worker may take them until the late ack has landed.
    let second = games(2, 2);
    let new_ids = runtime().block_on(async {
        let mut c = conn(&p.redis).await;
        synth::seed(&mut c, &second).await.expect("seed");
        let records: Vec<String> = second
            .iter()
            .flat_map(|g| synth::records(LOBBY, g))
            .collect();
        let ids = synth::append_all(&mut c, LOBBY, &records, 100)
            .await
            .expect("append");
        // An acknowledgement of every old id arrives late.
        superhero::pipeline::delivery::ack(&mut c, LOBBY, &old_ids)
            .await
            .expect("late ack");
        ids
    });
    for id in &new_ids {
        assert!(!old_ids.contains(id), "entry id {id} was handed out twice");
    }
    wait_pairs(&[&out], 4, Duration::from_secs(30));
    let mut all = tokens(&first);
    all.extend(tokens(&second));
    assert_exactly_once(&[&out], &all);
}

#[test]
fn a_record_whose_etl_always_fails_ends_in_the_dead_letters() {
    let p = Pipeline::new(&[("ACK_TIMEOUT", "1"), ("MAX_DELIVERIES", "3")]);
    let (redis, dir) = (&p.redis, p.dir.path());
    // OUTPUT_DIR is a plain file: no game can ever be written there.
    std::fs::write(&p.out, b"x").unwrap();
    let _w = p.worker("w1", &[]);
    let _f = p.fanout("fanout", &[]);
    wait_live(redis, LOBBY, "w1");
    let doomed = games(1, 3);
    seed_and_append(redis, &doomed);
    // And a host record of a game that does not exist.
    let ghost = uuid::Uuid::new_v4().to_string();
    let record = format!(
        r#"{{"level":"INFO","timestamp":"2026-11-27T00:00:00.000000","name":"{LOBBY}","log_message":"Cleaning Game Records","task":{{"game_token":"{ghost}","user_token":"{ghost}"}}}}"#
    );
    let _: String = redis.cmd(&["XADD", &keys::log_stream(LOBBY), "*", "record", &record]);
    wait_until("two dead letters", Duration::from_secs(40), || {
        dead_letters(redis).len() >= 2
    });
    let dead = dead_letters(redis);
    assert_eq!(dead.len(), 2, "{dead:?}");
    for letter in &dead {
        assert_eq!(letter["deliveries"], "3", "{letter:?}");
        assert_eq!(letter["workers"], "w1 w1 w1", "{letter:?}");
        assert!(letter["reason"].starts_with("w1: "), "{letter:?}");
    }
    let by_game = |g: &str| {
        dead.iter()
            .find(|l| l["record"].contains(g))
            .unwrap_or_else(|| panic!("no dead letter for {g}: {dead:?}"))
    };
    assert!(by_game(&ghost)["reason"].contains("unknown game"));
    assert!(
        by_game(&doomed[0].token)["reason"].contains("writing game")
            || by_game(&doomed[0].token)["reason"].contains("cannot")
    );
    // The other records of the doomed game needed no work: acknowledged, not dead.
    wait_until(
        "nothing left unacknowledged",
        Duration::from_secs(10),
        || unacked(redis, LOBBY) == 0,
    );
    let status = superhero(dir)
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .args(["status", "--format", "json"])
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(status["dead_letters"], 2, "{status}");
}

#[test]
fn a_paused_worker_gets_nothing_new_and_its_games_are_written_by_another() {
    let p = Pipeline::new(&ENV);
    let (redis, out) = (&p.redis, p.out.as_path());
    let w1 = p.worker("w1", &[]);
    let _w2 = p.worker("w2", &[]);
    let _f = p.fanout("fanout", &[]);
    wait_live(redis, LOBBY, "w1");
    wait_live(redis, LOBBY, "w2");
    w1.signal("STOP");
    // Until its heartbeat goes stale some of these still go to w1, and wait there.
    let first = games(20, 4);
    seed_and_append(redis, &first);
    wait_pairs(&[out], 20, Duration::from_secs(60));
    let second = games(20, 5);
    seed_and_append(redis, &second);
    wait_pairs(&[out], 40, Duration::from_secs(60));
    wait_until(
        "nothing left unacknowledged",
        Duration::from_secs(30),
        || unacked(redis, LOBBY) == 0,
    );
    let writers: Vec<String> = pairs(&[out])
        .values()
        .flat_map(|f| f.iter().map(|(_, w)| w.clone()))
        .collect();
    assert!(writers.iter().all(|w| w == "w2"), "{writers:?}");
    // Resumed, w1 works through what it was sent while paused: every game is done already.
    w1.signal("CONT");
    wait_until("w1 to beat again", Duration::from_secs(20), || {
        let beat: Option<f64> = redis.cmd(&["ZSCORE", &keys::worker_heartbeats(LOBBY), "w1"]);
        let now: Vec<String> = redis.cmd(&["TIME"]);
        let now_ms = now[0].parse::<f64>().unwrap() * 1000.0;
        beat.is_some_and(|b| now_ms - b < 1500.0)
    });
    let third = games(5, 6);
    seed_and_append(redis, &third);
    wait_pairs(&[out], 45, Duration::from_secs(60));
    let mut all = tokens(&first);
    all.extend(tokens(&second));
    all.extend(tokens(&third));
    assert_exactly_once(&[out], &all);
}

#[test]
fn workers_with_separate_folders_leave_one_pair_after_a_writer_died_mid_pair() {
    let p = Pipeline::new(&ENV);
    let redis = &p.redis;
    let (out_w, out_x) = (p.dir.path().join("out-w"), p.dir.path().join("out-x"));
    let games = games(2, 7);
    let (mid_pair, whole_pair) = (&games[0], &games[1]);
    runtime().block_on(async {
        let mut c = conn(redis).await;
        synth::seed(&mut c, &games).await.expect("seed");
        for g in &games {
            // W claimed and started writing; its lease has run out since.
            let _: () = redis::cmd("SET")
                .arg(common::single_keys().etl_writer(&g.token))
                .arg("w")
                .query_async(&mut c)
                .await
                .unwrap();
            let (meta, podium) = synth::expected_rows(g);
            common::write_pair(&out_w, "w", &g.token, &meta, &podium)
                .await
                .unwrap();
        }
    });
    // W died mid-pair on the first game: its PODIUM file was still a temporary.
    let podium = superhero::pipeline::sink::file_path(&out_w, "GAME_PODIUM", &mid_pair.token, "w");
    let tmp = podium.with_file_name(format!(
        ".{}.4242-0.tmp",
        podium.file_name().unwrap().to_string_lossy()
    ));
    std::fs::rename(&podium, &tmp).unwrap();
    // X takes the first game over; it cannot see W's folder, so it writes its own pair.
    let records: Vec<String> = synth::records(LOBBY, mid_pair);
    runtime().block_on(async {
        let mut c = conn(redis).await;
        synth::append_all(&mut c, LOBBY, &records, 100)
            .await
            .unwrap();
    });
    let _x = p.worker("x", &[("OUTPUT_DIR", out_x.to_str().unwrap())]);
    let _f = p.fanout("fanout", &[]);
    wait_pairs(&[&out_x], 1, Duration::from_secs(30));
    // W comes back under the same id: the half pair of a game done by X goes; the whole pair of
    // a game nobody took over is finished with (it becomes the output).
    let w = p.worker("w", &[("OUTPUT_DIR", out_w.to_str().unwrap())]);
    wait_until("w's start-up sweep", Duration::from_secs(30), || {
        w.log_text().contains("start-up sweep")
    });
    let done: Option<String> =
        redis.cmd(&["GET", &common::single_keys().etl_done(&whole_pair.token)]);
    assert_eq!(done.as_deref(), Some("w"));
    // The second game's record now arrives: it is done already, nobody writes it again.
    let records: Vec<String> = synth::records(LOBBY, whole_pair);
    runtime().block_on(async {
        let mut c = conn(redis).await;
        synth::append_all(&mut c, LOBBY, &records, 100)
            .await
            .unwrap();
    });
    wait_until("every entry acknowledged", Duration::from_secs(30), || {
        let len: u64 = redis.cmd(&["XLEN", &keys::log_stream(LOBBY)]);
        len == 6 && unacked(redis, LOBBY) == 0
    });
    assert_exactly_once(&[&out_w, &out_x], &tokens(&games));
    let found = pairs(&[&out_w, &out_x]);
    assert_eq!(found[&mid_pair.token][0].1, "x");
    assert_eq!(found[&whole_pair.token][0].1, "w");
}

#[test]
fn a_redis_restart_with_aof_loses_no_finished_game() {
    let redis = TestRedis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut p = Pipeline::on(redis, &ENV);
    let (dir, out) = (p.dir.path().to_path_buf(), p.out.clone());
    build_db(&dir, &p.redis);
    let ws = free_port();
    let _server = server(&dir, &p.redis, ws, &[]);
    let _w = p.worker("w1", &[]);
    play(&dir, &p.redis, ws, 4, 2);
    let before = completed_games(&p.redis);
    assert!(!before.is_empty());
    // No fanout ran yet: every finished game exists only as records in the log. Redis dies.
    p.redis.kill();
    p.redis.restart();
    assert_eq!(
        completed_games(&p.redis),
        before,
        "the AOF brought the games back"
    );
    let _f = p.fanout("fanout", &[]);
    play(&dir, &p.redis, ws, 4, 1);
    let all = completed_games(&p.redis);
    wait_pairs(&[&out], all.len(), Duration::from_secs(60));
    assert_exactly_once(&[&out], &all);
}

#[test]
fn two_fanouts_and_four_workers_write_2000_games_exactly_once() {
    let p = Pipeline::new(&ENV);
    let (redis, out) = (&p.redis, p.out.as_path());
    let _workers: Vec<Proc> = ["w1", "w2", "w3", "w4"]
        .iter()
        .map(|id| p.worker(id, &[]))
        .collect();
    let _f1 = p.fanout("fanout-1", &[]);
    let _f2 = p.fanout("fanout-2", &[]);
    for id in ["w1", "w2", "w3", "w4"] {
        wait_live(redis, LOBBY, id);
    }
    let games = games(2000, 8);
    seed_and_append(redis, &games);
    wait_pairs(&[out], 2000, Duration::from_secs(180));
    wait_until("every entry acknowledged", Duration::from_secs(30), || {
        unacked(redis, LOBBY) == 0
    });
    assert_exactly_once(&[out], &tokens(&games));
    assert!(dead_letters(redis).is_empty());
    // Each fanout routed some: the group shares the work.
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(keys::log_stream(LOBBY))
        .arg(keys::fanout_group(LOBBY))
        .query(&mut redis.client())
        .expect("XINFO CONSUMERS");
    let names = format!("{consumers:?}");
    assert!(names.matches("fanout:").count() >= 2, "{names}");
}

#[test]
fn records_in_the_original_format_are_processed_exactly_once() {
    let p = Pipeline::new(&ENV);
    let (redis, out) = (&p.redis, p.out.as_path());
    let _w1 = p.worker("w1", &[]);
    let _w2 = p.worker("w2", &[]);
    // Two fanouts hear every record of the other publisher: it must enter the log once.
    let _f1 = p.fanout("fanout-1", &[]);
    let _f2 = p.fanout("fanout-2", &[]);
    wait_live(redis, LOBBY, "w1");
    wait_live(redis, LOBBY, "w2");
    wait_until("both fanouts subscribed", Duration::from_secs(20), || {
        let n: Vec<(String, u64)> = redis.cmd(&["PUBSUB", "NUMSUB", LOBBY]);
        n.first().is_some_and(|(_, n)| *n == 2)
    });
    let games = games(50, 9);
    let records: Vec<String> = games
        .iter()
        .flat_map(|g| synth::records(LOBBY, g))
        // The original Python publisher double-encoded: a JSON string holding the object.
        .map(|r| serde_json::to_string(&r).unwrap())
        .collect();
    runtime().block_on(async {
        let mut c = conn(redis).await;
        synth::seed(&mut c, &games).await.unwrap();
        synth::publish_all(&mut c, LOBBY, &records, 100)
            .await
            .unwrap();
    });
    wait_pairs(&[out], 50, Duration::from_secs(60));
    wait_until("every entry acknowledged", Duration::from_secs(30), || {
        unacked(redis, LOBBY) == 0
    });
    assert_exactly_once(&[out], &tokens(&games));
    let len: u64 = redis.cmd(&["XLEN", &keys::log_stream(LOBBY)]);
    assert_eq!(len as usize, records.len(), "each record appended once");
}

#[test]
fn every_role_stops_promptly_on_sigterm_while_redis_is_down() {
    let mut p = Pipeline::new(&ENV);
    let dir = p.dir.path().to_path_buf();
    build_db(&dir, &p.redis);
    let ws = free_port();
    let mut roles = vec![
        server(&dir, &p.redis, ws, &[]),
        p.worker("w1", &[]),
        p.fanout("fanout", &[]),
    ];
    wait_live(&p.redis, LOBBY, "w1");
    wait_until("the fanout to be up", Duration::from_secs(20), || {
        let n: Vec<(String, u64)> = p.redis.cmd(&["PUBSUB", "NUMSUB", LOBBY]);
        let groups: u64 = redis::cmd("EXISTS")
            .arg(keys::log_stream(LOBBY))
            .query(&mut p.redis.client())
            .unwrap_or(0);
        n.first().is_some_and(|(_, n)| *n == 1) && groups == 1
    });
    p.redis.kill();
    for role in &roles {
        wait_until(
            &format!("{} to notice Redis is gone", role.name),
            Duration::from_secs(20),
            || role.log_text().contains("lost Redis"),
        );
    }
    for role in &mut roles {
        role.signal("TERM");
        // The issue asks for one second; allow some slack for a loaded test machine.
        let code = role.wait_exit(Duration::from_secs(3));
        assert_eq!(
            code,
            Some(Some(0)),
            "{} did not exit promptly:\n{}",
            role.name,
            role.log_text()
        );
    }
}

#[test]
fn acknowledged_history_is_trimmed_after_the_retention_window() {
    let p = Pipeline::new(&ENV);
    let (redis, out) = (&p.redis, p.out.as_path());
    let _w = p.worker("w1", &[]);
    let _f = p.fanout("fanout", &[("LOG_RETENTION", "1")]);
    wait_live(redis, LOBBY, "w1");
    let games = games(100, 10);
    seed_and_append(redis, &games);
    wait_pairs(&[out], 100, Duration::from_secs(60));
    wait_until(
        "the log trimmed to nothing",
        Duration::from_secs(30),
        || {
            let len: u64 = redis.cmd(&["XLEN", &keys::log_stream(LOBBY)]);
            len == 0
        },
    );
    assert_exactly_once(&[out], &tokens(&games));
}

#[test]
fn the_log_is_never_trimmed_past_another_groups_pending_entries() {
    let p = Pipeline::new(&ENV);
    let (redis, out) = (&p.redis, p.out.as_path());
    let stream = keys::log_stream(LOBBY);
    // Another reader of the same log (an analytics consumer, say) with its own group.
    let _: () = redis.cmd(&["XGROUP", "CREATE", &stream, "analytics", "0", "MKSTREAM"]);
    let games = games(100, 11);
    let ids = seed_and_append(redis, &games);
    let _: redis::Value = redis.cmd(&[
        "XREADGROUP",
        "GROUP",
        "analytics",
        "a1",
        "COUNT",
        "1000",
        "STREAMS",
        &stream,
        ">",
    ]);
    // It acknowledges the first half only.
    let half = ids.len() / 2;
    let mut ack = vec!["XACK", stream.as_str(), "analytics"];
    ack.extend(ids[..half].iter().map(String::as_str));
    let _: u64 = redis.cmd(&ack);
    let _w = p.worker("w1", &[]);
    let _f = p.fanout("fanout", &[("LOG_RETENTION", "1")]);
    wait_pairs(&[out], 100, Duration::from_secs(60));
    wait_until(
        "the fanouts' group drained",
        Duration::from_secs(30),
        || unacked(redis, LOBBY) == 0,
    );
    wait_until(
        "the acknowledged half trimmed",
        Duration::from_secs(30),
        || {
            let len: usize = redis.cmd(&["XLEN", &stream]);
            len <= ids.len() - half
        },
    );
    let left: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query(&mut redis.client())
        .unwrap();
    let left: Vec<String> = left.into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        left,
        ids[half..].to_vec(),
        "the other group's pending entries stay"
    );
}

#[test]
fn games_at_a_trickle_spread_over_every_worker() {
    let ids = ["w1", "w2", "w3", "w4"];
    let p = Pipeline::start(&ids, &ENV);
    let (redis, out) = (&p.redis, p.out.as_path());
    // One game at a time, each written before the next ends: every record finds every worker
    // idle, so only the tie-break decides where it goes.
    // Each game's records as the server appends them: `Starting Match`, then one `Cleaning Game
    // Records` per participant in token order (the host's anywhere among them).
    let games = games(40, 12);
    let stream = keys::log_stream(LOBBY);
    for (i, game) in games.iter().enumerate() {
        runtime().block_on(async {
            synth::seed(&mut conn(redis).await, std::slice::from_ref(game))
                .await
                .unwrap()
        });
        let start = serde_json::json!({
            "level": "INFO", "timestamp": "2026-12-06 00:00:00", "name": LOBBY,
            "log_message": "Starting Match",
            "task": {"PAYLOAD": {"GAME_TOKEN": game.token}, "STATUS": {"GAME": "START"}},
        });
        let mut records = vec![start.to_string()];
        records.extend(synth::records(LOBBY, game));
        for record in &records {
            let _: String = redis.cmd(&["XADD", &stream, "*", "record", record]);
        }
        wait_pairs(&[out], i + 1, Duration::from_secs(30));
    }
    assert_exactly_once(&[out], &tokens(&games));
    let mut per_worker: std::collections::BTreeMap<String, usize> =
        ids.iter().map(|id| (id.to_string(), 0)).collect();
    for files in pairs(&[out]).values() {
        *per_worker.entry(files[0].1.clone()).or_default() += 1;
    }
    assert!(
        per_worker.values().all(|&n| n >= 5),
        "games per worker: {per_worker:?}"
    );
}

/// Beats `id`'s heartbeat (by Redis's clock, as a worker does) until dropped.
struct FakeHeartbeat(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl FakeHeartbeat {
    fn start(redis: &TestRedis, id: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, mut conn, id) = (stop.clone(), redis.client(), id.to_string());
        std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
                let ms = secs * 1000 + micros / 1000;
                let _: u64 = redis::cmd("ZADD")
                    .arg(keys::worker_heartbeats(LOBBY))
                    .arg(ms)
                    .arg(&id)
                    .query(&mut conn)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        FakeHeartbeat(stop)
    }
}

impl Drop for FakeHeartbeat {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Collects the `delivery_id` of every record PUBLISHed on a worker's channel.
fn listen(redis: &TestRedis, id: &str) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = heard.clone();
    on_each_record(redis, id, move |id| sink.lock().unwrap().push(id));
    heard
}

/// Subscribes to worker `id`'s channel and hands each record's delivery id to `heard`, on a
/// thread of its own; returns once subscribed.
fn on_each_record(redis: &TestRedis, id: &str, mut heard: impl FnMut(String) + Send + 'static) {
    let (mut conn, channel) = (redis.client(), keys::worker_channel(LOBBY, id));
    let subscribed = channel.clone();
    std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&subscribed).unwrap();
        while let Ok(msg) = pubsub.get_message() {
            let record: serde_json::Value =
                serde_json::from_slice(msg.get_payload_bytes()).unwrap();
            heard(
                record["delivery_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    });
    wait_subscribed(redis, &[channel], 1);
}

#[test]
fn a_fanout_paused_past_ack_timeout_does_not_take_back_what_another_routed() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let stream = keys::log_stream(LOBBY);
    let group = keys::fanout_group(LOBBY);
    let ids = seed_and_append(&redis, &games(3, 13));
    // A worker that is live but not yet listening: the first fanout reads every entry, finds
    // nobody on the channel and holds them, as its own pending entries.
    let _beat = FakeHeartbeat::start(&redis, "wz");
    let a = Proc::start(
        "fanout-a",
        dir.path(),
        &redis,
        &["fanout"],
        &[("ACK_TIMEOUT", "60")],
    );
    let owners = |redis: &TestRedis| -> Vec<(String, String, u64)> {
        // Empty until the fanout has created its group.
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(&group)
            .arg("-")
            .arg("+")
            .arg(1000)
            .query(&mut redis.client())
            .unwrap_or_default();
        rows.into_iter()
            .map(|(id, owner, _, n)| (id, owner, n))
            .collect()
    };
    wait_until(
        "the first fanout holds every entry",
        Duration::from_secs(20),
        || {
            let pending = owners(&redis);
            pending.len() == ids.len() && pending.iter().all(|(_, o, _)| o.starts_with("fanout:"))
        },
    );
    a.signal("STOP");
    // The worker starts listening; a second fanout re-claims the paused one's entries after
    // its ACK_TIMEOUT and routes them, then dies.
    let heard = listen(&redis, "wz");
    let mut b = Proc::start(
        "fanout-b",
        dir.path(),
        &redis,
        &["fanout"],
        &[("ACK_TIMEOUT", "2")],
    );
    wait_until(
        "every entry routed by the second fanout",
        Duration::from_secs(20),
        || heard.lock().unwrap().len() >= ids.len(),
    );
    b.kill();
    a.signal("CONT");
    // A record appended after the resume is routed by the first fanout after its held
    // entries: once it arrives, whatever the resumed fanout did with them is done.
    let marker = seed_and_append(&redis, &games(1, 14));
    wait_until(
        "the resumed fanout routed a new record",
        Duration::from_secs(20),
        || {
            let heard = heard.lock().unwrap();
            marker.iter().all(|m| heard.contains(m))
        },
    );
    let heard = heard.lock().unwrap().clone();
    for id in &ids {
        let times = heard.iter().filter(|h| *h == id).count();
        assert_eq!(times, 1, "{id} routed {times} times: {heard:?}");
    }
    // They stay the worker's, each counted as the two deliveries it had.
    for (id, owner, deliveries) in owners(&redis) {
        if ids.contains(&id) {
            assert_eq!((owner.as_str(), deliveries), ("wz", 2), "{id}");
        }
    }
}

/// The consumers of the fanouts' group.
fn group_consumers(redis: &TestRedis) -> Vec<String> {
    let rows: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(keys::log_stream(LOBBY))
        .arg(keys::fanout_group(LOBBY))
        .query(&mut redis.client())
        .unwrap_or_default();
    rows.iter()
        .filter_map(|row| match row.get("name") {
            Some(redis::Value::BulkString(name)) => Some(String::from_utf8_lossy(name).to_string()),
            Some(redis::Value::SimpleString(name)) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_group_keeps_no_consumer_of_workers_gone() {
    let p = Pipeline::new(&ENV);
    let (redis, out) = (&p.redis, p.out.as_path());
    // 30 workers with random ids, each handed records, then killed: none exits cleanly.
    let ids: Vec<String> = (0..30)
        .map(|i| format!("r{i}-{:08x}", rand::random::<u32>()))
        .collect();
    let mut workers: Vec<Proc> = ids.iter().map(|id| p.worker(id, &[])).collect();
    for id in &ids {
        wait_live(redis, LOBBY, id);
    }
    // Started once every worker beats, the fanout's first look finds all 30.
    let _f = p.fanout("fanout", &[]);
    seed_and_append(redis, &games(120, 15));
    wait_pairs(&[out], 120, Duration::from_secs(120));
    wait_until("every record acknowledged", Duration::from_secs(30), || {
        unacked(redis, LOBBY) == 0
    });
    let before = group_consumers(redis);
    assert!(before.len() > 10, "consumers: {before:?}");
    for w in &mut workers {
        w.kill();
    }
    let _live = p.worker("survivor", &[]);
    wait_live(redis, LOBBY, "survivor");
    seed_and_append(redis, &games(4, 16));
    wait_pairs(&[out], 124, Duration::from_secs(60));
    wait_until(
        "only the live worker's and the fanout's consumers left",
        Duration::from_secs(30),
        || {
            group_consumers(redis)
                .iter()
                .all(|c| c == "survivor" || c.starts_with("fanout:"))
        },
    );
}

#[test]
fn the_dead_letters_keep_within_their_cap() {
    let p = Pipeline::new(&ENV);
    let redis = &p.redis;
    let metrics = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let _w = p.worker("w1", &[]);
    wait_live(redis, LOBBY, "w1");
    let _f = p.fanout(
        "fanout",
        &[("DEAD_LETTERS_MAX", "3"), ("METRICS_ADDR", &metrics_addr)],
    );
    // Entries that are no record at all go straight to the dead letters.
    let stream = keys::log_stream(LOBBY);
    let ids: Vec<String> = (0..10)
        .map(|i| redis.cmd(&["XADD", &stream, "*", "record", &format!("not json {i}")]))
        .collect();
    let dead = keys::dead_stream(LOBBY);
    wait_until("every entry dead-lettered", Duration::from_secs(20), || {
        unacked(redis, LOBBY) == 0 && {
            let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg(&dead)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(&mut redis.client())
                .unwrap();
            last.first()
                .and_then(|(_, f)| f.iter().find(|(k, _)| k == "entry"))
                .is_some_and(|(_, v)| *v == ids[9])
        }
    });
    let kept: Vec<String> = dead_letters(redis)
        .into_iter()
        .map(|fields| fields["entry"].clone())
        .collect();
    assert_eq!(kept, ids[7..].to_vec(), "the newest three are kept");
    wait_until("the drops counted", Duration::from_secs(10), || {
        common::scrape(metrics).is_some_and(|text| {
            superhero::metrics::sample_value(&text, "superhero_fanout_dead_letters_dropped_total")
                == Some(7.0)
        })
    });
}

#[test]
fn a_worker_killed_mid_burst_leaves_every_game_written_once_and_no_dead_letter() {
    // ACK_TIMEOUT 2 s, MAX_DELIVERIES 3 and the shortest REDIS_EXPIRY there is: the records
    // the dead worker held come back after their games may have been written and expired.
    let env = [
        ("ACK_TIMEOUT", "2"),
        ("MAX_DELIVERIES", "3"),
        ("REDIS_EXPIRY", "1"),
    ];
    let mut p = Pipeline::start(&["w1", "w2", "w3"], &env);
    let (redis, out) = (&p.redis, p.out.as_path());
    let games = games(1000, 17);
    seed_and_append(redis, &games);
    wait_until(
        "w1 has written some games",
        Duration::from_secs(120),
        || {
            pairs(&[out])
                .values()
                .filter(|files| files.iter().any(|(_, w)| w == "w1"))
                .count()
                >= 50
        },
    );
    p.workers[0].kill();
    wait_pairs(&[out], 1000, Duration::from_secs(300));
    wait_until("every record acknowledged", Duration::from_secs(60), || {
        let state = common::roles::pipeline_state(redis, LOBBY);
        state.undelivered == 0 && state.unacked == 0
    });
    let dead = dead_letters(redis);
    assert_eq!(dead, Vec::new(), "no dead letter");
    assert_exactly_once(&[out], &tokens(&games));
}

/// The system calls of a worker process, traced by strace: a worker writing one game.
fn traced_worker_writes_one_game() -> (String, std::path::PathBuf, String) {
    let p = Pipeline::new(&ENV);
    let trace = p.dir.path().join("worker.strace");
    let out = p.out.display().to_string();
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-e",
        "trace=openat,fsync,rename,renameat,renameat2",
        "-o",
    ])
    .arg(&trace)
    .arg(env!("CARGO_BIN_EXE_superhero"))
    .args(["worker", "--worker-id", "w1"])
    .current_dir(p.dir.path())
    .env("REDIS_HOST", "127.0.0.1")
    .env("REDIS_PORT", p.redis.port.to_string())
    .env("LOGGER_MODULE", "redis")
    .env("OUTPUT_DIR", &out)
    .env("ACK_TIMEOUT", "2");
    let mut worker = Proc::spawn("w1", p.dir.path(), cmd);
    wait_live(&p.redis, LOBBY, "w1");
    let _f = p.fanout("fanout", &[]);
    let games = games(1, 31);
    seed_and_append(&p.redis, &games);
    wait_pairs(&[p.out.as_path()], 1, Duration::from_secs(60));
    wait_until("the record acknowledged", Duration::from_secs(20), || {
        unacked(&p.redis, LOBBY) == 0
    });
    // The worker is strace's child: stopping it ends strace, which has written everything.
    let stopped = std::process::Command::new("pkill")
        .args(["-TERM", "-P", &worker.id().to_string()])
        .status()
        .expect("pkill");
    assert!(stopped.success(), "pkill found the worker");
    assert!(
        worker.wait_exit(Duration::from_secs(10)).is_some(),
        "the traced worker stopped"
    );
    let text = std::fs::read_to_string(&trace).expect("strace output (is strace installed?)");
    (text, p.out.clone(), games[0].token.clone())
}

#[test]
fn a_written_files_directory_is_fsynced_after_its_rename() {
    let (trace, out, game) = traced_worker_writes_one_game();
    let lines: Vec<&str> = trace.lines().collect();
    for table in ["GAME_META", "GAME_PODIUM"] {
        let dir = out.join("superhero").join(table).display().to_string();
        let final_name = format!("{dir}/{game}_w1.gz\"");
        let renamed = lines
            .iter()
            .position(|l| l.contains("rename") && l.contains(&final_name) && l.ends_with("= 0"))
            .unwrap_or_else(|| panic!("no rename to {final_name} in:\n{trace}"));
        // After the rename: the table directory opened, and that descriptor fsynced.
        let opened = format!("openat(AT_FDCWD, \"{dir}\", ");
        let synced = lines[renamed..].iter().enumerate().find_map(|(i, l)| {
            let fd = l.contains(&opened).then(|| l.rsplit("= ").next())??;
            let fsync = format!("fsync({})", fd.trim());
            lines[renamed + i..]
                .iter()
                .any(|l| l.contains(&fsync))
                .then_some(())
        });
        assert!(
            synced.is_some(),
            "{table}: the directory is not fsynced after the rename:\n{trace}"
        );
    }
}

/// The consumers of the lobby's group with what each holds unacknowledged.
fn held_by(redis: &TestRedis) -> std::collections::BTreeMap<String, u64> {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(keys::log_stream(LOBBY))
        .arg(keys::fanout_group(LOBBY))
        .query(&mut redis.client())
        .unwrap_or(redis::Value::Nil);
    let redis::Value::Array(parts) = summary else {
        return Default::default();
    };
    let Some(redis::Value::Array(consumers)) = parts.get(3) else {
        return Default::default();
    };
    consumers
        .iter()
        .filter_map(|pair| redis::from_redis_value::<(String, u64)>(pair.clone()).ok())
        .collect()
}

#[test]
fn the_routing_script_keeps_a_worker_within_its_limit_counted_over_every_fanout() {
    let redis = TestRedis::start();
    let (stream, group) = (keys::log_stream(LOBBY), keys::fanout_group(LOBBY));
    let mut conn = redis.client();
    let ids: Vec<String> = (0..300)
        .map(|i| {
            redis::cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("record")
                .arg(format!("{{\"log_message\":\"m{i}\"}}"))
                .query(&mut conn)
                .unwrap()
        })
        .collect();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(&group)
        .arg("0")
        .query(&mut conn)
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&group)
        .arg("fanout:a")
        .arg("COUNT")
        .arg(300)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query(&mut conn)
        .unwrap();
    // Another fanout already gave w1 250 entries.
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&stream)
        .arg(&group)
        .arg("w1")
        .arg(0)
        .arg(&ids[..250])
        .arg("JUSTID")
        .query(&mut conn)
        .unwrap();
    let route = redis::Script::new(include_str!("../../src/roles/fanout/route.lua"));
    let mut invocation = route.key(&stream);
    invocation.arg(&group).arg(256);
    invocation
        .arg("w1")
        .arg(10)
        .arg(&ids[250..260])
        .arg("JUSTID");
    invocation
        .arg("w2")
        .arg(3)
        .arg(&ids[260..263])
        .arg("JUSTID");
    let given: Vec<u64> = invocation.invoke(&mut conn).unwrap();
    assert_eq!(given, vec![6, 3], "w1 had room for 6 more, w2 for all");
    let held = held_by(&redis);
    assert_eq!(held.get("w1"), Some(&256));
    assert_eq!(held.get("w2"), Some(&3));
    assert_eq!(held.get("fanout:a"), Some(&(300 - 256 - 3)));
}

/// Two fanout processes, `fanout-a` and `fanout-b`, that re-route nothing within the test.
fn two_fanouts(redis: &TestRedis, dir: &Path) -> Vec<Proc> {
    ["fanout-a", "fanout-b"]
        .into_iter()
        .map(|name| {
            Proc::start(
                name,
                dir,
                redis,
                &["fanout"],
                &[("ACK_TIMEOUT", "60"), ("WORKER_ID", name)],
            )
        })
        .collect()
}

#[test]
fn two_fanouts_under_a_burst_never_send_a_worker_past_its_limit() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    // A worker that listens and beats but never acknowledges: once it holds 256 records it
    // must be sent nothing more, whichever fanout routes.
    let _beat = FakeHeartbeat::start(&redis, "wz");
    let heard = listen(&redis, "wz");
    let fanouts = two_fanouts(&redis, dir.path());
    wait_until(
        "both fanouts wait on the log",
        Duration::from_secs(20),
        || {
            // Each is blocked reading the log (a consumer appears only once it read an entry).
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut redis.client())
                .unwrap_or_default();
            clients.matches("cmd=xreadgroup").count() == 2
        },
    );
    // Both fanouts are blocked on the log: the burst wakes both at once.
    let ids = seed_and_append(&redis, &games(300, 22));
    assert!(ids.len() > 2 * 256);
    wait_until("the worker is full", Duration::from_secs(30), || {
        held_by(&redis).get("wz").copied().unwrap_or(0) >= 256 && heard.lock().unwrap().len() >= 256
    });
    // Stopped, the fanouts send nothing more; a last message of the test's own, once heard,
    // is behind everything they sent.
    for mut fanout in fanouts {
        fanout.signal("TERM");
        assert!(fanout.wait_exit(Duration::from_secs(10)).is_some());
    }
    let _: u64 = redis::cmd("PUBLISH")
        .arg(keys::worker_channel(LOBBY, "wz"))
        .arg(r#"{"delivery_id":"last"}"#)
        .query(&mut redis.client())
        .unwrap();
    wait_until("the last message heard", Duration::from_secs(10), || {
        heard.lock().unwrap().iter().any(|id| id == "last")
    });
    let heard: Vec<String> = heard
        .lock()
        .unwrap()
        .iter()
        .filter(|id| *id != "last")
        .cloned()
        .collect();
    let distinct: std::collections::BTreeSet<&String> = heard.iter().collect();
    assert_eq!(distinct.len(), heard.len(), "a record was sent twice");
    assert_eq!(heard.len(), 256, "the worker was sent past its limit");
    assert!(held_by(&redis).get("wz").copied().unwrap_or(0) >= 256);
}

/// A worker that acknowledges what it hears, a few records at a time: the most records it
/// held unacknowledged at once, and every delivery id it heard.
struct SlowAcker {
    heard: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    most_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SlowAcker {
    fn start(redis: &TestRedis, id: &str) -> SlowAcker {
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (sink, top, mut acker) = (heard.clone(), most.clone(), redis.client());
        let mut unacked: Vec<String> = Vec::new();
        on_each_record(redis, id, move |id| {
            sink.lock().unwrap().push(id.clone());
            unacked.push(id);
            top.fetch_max(unacked.len(), std::sync::atomic::Ordering::Relaxed);
            if unacked.len() >= 40 {
                let _: u64 = redis::cmd("XACK")
                    .arg(keys::log_stream(LOBBY))
                    .arg(keys::fanout_group(LOBBY))
                    .arg(&unacked)
                    .query(&mut acker)
                    .unwrap();
                unacked.clear();
            }
        });
        SlowAcker {
            heard,
            most_in_flight: most,
        }
    }
}

#[test]
fn two_fanouts_routing_a_backlog_keep_each_worker_within_its_limit() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let ids = seed_and_append(&redis, &games(1000, 23));
    // Two workers that acknowledge as they go; both fanouts start on a full log, so both read
    // for the workers at once while the workers make room.
    let _beats = [
        FakeHeartbeat::start(&redis, "w1"),
        FakeHeartbeat::start(&redis, "w2"),
    ];
    let workers = [
        SlowAcker::start(&redis, "w1"),
        SlowAcker::start(&redis, "w2"),
    ];
    let _fanouts = two_fanouts(&redis, dir.path());
    wait_until("every record heard", Duration::from_secs(60), || {
        workers
            .iter()
            .map(|w| w.heard.lock().unwrap().len())
            .sum::<usize>()
            >= ids.len()
    });
    let mut all: Vec<String> = workers
        .iter()
        .flat_map(|w| w.heard.lock().unwrap().clone())
        .collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected, "every record routed exactly once");
    for (w, name) in workers.iter().zip(["w1", "w2"]) {
        let most = w.most_in_flight.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            most <= 256,
            "{name} held {most} records unacknowledged at once"
        );
    }
}

/// A pipeline on a primary with one replica, its worker w1 waiting for that replica
/// (WAIT_REPLICAS=1); ACK_TIMEOUT 6 s, so a record is routed again well after a WAIT times out.
fn pipeline_with_a_replica() -> (Pipeline, TestRedis, Proc) {
    let mut p = Pipeline::new(&[("ACK_TIMEOUT", "6")]);
    let replica = p.redis.start_replica();
    let worker = p.worker("w1", &[("WAIT_REPLICAS", "1"), ("WAIT_MS", "100")]);
    wait_live(&p.redis, LOBBY, "w1");
    let fanout = p.fanout("fanout", &[]);
    p.fanout = Some(fanout);
    wait_subscribed(&p.redis, &[LOBBY.to_string()], 1);
    (p, replica, worker)
}

/// Stores `game` and appends its host record only; the record's log entry id.
fn append_host_record(redis: &TestRedis, game: &SynthGame) -> String {
    runtime().block_on(async {
        let mut conn = conn(redis).await;
        synth::seed(&mut conn, std::slice::from_ref(game))
            .await
            .expect("seed");
        let record = synth::host_record(LOBBY, game);
        let ids = synth::append_all(&mut conn, LOBBY, &[record], 1)
            .await
            .expect("append");
        ids.into_iter().next().expect("one entry id")
    })
}

/// The entry ids pending in the fanouts' group.
fn pending_ids(redis: &TestRedis) -> Vec<String> {
    runtime()
        .block_on(async { common::roles::pending_ids(&mut common::roles::conn(redis).await).await })
}

#[test]
fn with_wait_replicas_a_written_games_done_marker_is_on_the_replica_when_acknowledged() {
    let (p, replica, mut worker) = pipeline_with_a_replica();
    let game = &games(1, 31)[0];
    append_host_record(&p.redis, game);
    wait_pairs(&[p.out.as_path()], 1, Duration::from_secs(30));
    wait_until("the record acknowledged", Duration::from_secs(20), || {
        unacked(&p.redis, LOBBY) == 0
    });
    // Acknowledged only after WAIT: the replica already holds the marker.
    let done: Option<String> = replica.cmd(&["GET", &common::single_keys().etl_done(&game.token)]);
    assert_eq!(done.as_deref(), Some("w1"));
    assert_exactly_once(&[p.out.as_path()], &tokens(std::slice::from_ref(game)));
    worker.signal("TERM");
    assert_eq!(worker.exit_code(Duration::from_secs(20)), Some(0));
    let log = worker.log_text();
    assert!(!log.contains("replica(s) acknowledged"), "{log}");
}

#[test]
fn with_wait_replicas_a_record_stays_pending_while_the_replica_is_stopped() {
    let (p, replica, mut worker) = pipeline_with_a_replica();
    let game = &games(1, 32)[0];
    let paused = replica.pause();
    let id = append_host_record(&p.redis, game);
    // The files are written and the game is done on the primary, but WAIT times out.
    wait_until("the WAIT to time out", Duration::from_secs(30), || {
        worker.log_text().contains("0 of 1 replica(s) acknowledged")
    });
    wait_pairs(&[p.out.as_path()], 1, Duration::from_secs(5));
    assert_eq!(pending_ids(&p.redis), [id]);
    let done: Option<String> = p
        .redis
        .cmd(&["GET", &common::single_keys().etl_done(&game.token)]);
    assert_eq!(done.as_deref(), Some("w1"));
    drop(paused);
    // Routed again after ACK_TIMEOUT, the record finds the game done and is acknowledged.
    wait_until("the record acknowledged", Duration::from_secs(30), || {
        pending_ids(&p.redis).is_empty()
    });
    assert_exactly_once(&[p.out.as_path()], &tokens(std::slice::from_ref(game)));
    wait_until(
        "the replica to hold the marker",
        Duration::from_secs(10),
        || {
            let done: Option<String> =
                replica.cmd(&["GET", &common::single_keys().etl_done(&game.token)]);
            done.as_deref() == Some("w1")
        },
    );
    worker.signal("TERM");
    assert_eq!(worker.exit_code(Duration::from_secs(20)), Some(0));
    let log = worker.log_text();
    assert!(
        log.contains("2 record(s) received, 1 game(s) written"),
        "the record was delivered twice and written once:\n{log}"
    );
}

#[test]
fn a_worker_with_a_wait_that_cannot_work_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("WAIT_MS", "0"),
        ("WAIT_MS", "60001"),
        ("WAIT_MS", "5000"),
        ("WAIT_REPLICAS", "-1"),
    ] {
        let out = superhero(dir.path())
            .arg("worker")
            .env(var, value)
            .env("REDIS_PORT", "1")
            .output()
            .expect("run superhero");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(&format!("{var}: ")), "{var}={value}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    }
}
