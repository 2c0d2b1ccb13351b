//! Issue 7: `superhero status` reports exactly what a prepared Redis holds, and fails when Redis
//! cannot be reached.

use crate::common;

use common::{free_port, superhero, TestRedis};
use superhero::pipeline::keys;

#[test]
fn status_json_reports_exactly_the_prepared_numbers() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let lobby = "redis.lib.server.lobby";
    let run = |args: &[&str]| {
        superhero(dir.path())
            .env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", redis.port.to_string())
            .args(args)
            .output()
            .expect("run superhero")
    };
    assert!(run(&["build-db"]).status.success());

    // A log of 5 records: 2 routed to worker alpha and not acknowledged, 3 not read yet.
    let log = keys::log_stream(lobby);
    let group = keys::fanout_group(lobby);
    for i in 0..5 {
        let _: String = redis.cmd(&["XADD", &log, "*", "record", &format!("{{\"n\":{i}}}")]);
    }
    let _: () = redis.cmd(&["XGROUP", "CREATE", &log, &group, "0"]);
    let _: redis::Value = redis.cmd(&[
        "XREADGROUP",
        "GROUP",
        &group,
        "alpha",
        "COUNT",
        "2",
        "STREAMS",
        &log,
        ">",
    ]);
    // One record given up on.
    let _: String = redis.cmd(&[
        "XADD",
        &keys::dead_stream(lobby),
        "*",
        "entry",
        "1-0",
        "record",
        "{}",
        "reason",
        "test",
    ]);
    // alpha beats now (Redis time); beta's last beat is a minute old.
    let (secs, micros): (u64, u64) = redis.cmd(&["TIME"]);
    let now_ms = secs * 1000 + micros / 1000;
    let heartbeats = keys::worker_heartbeats(lobby);
    let _: i64 = redis.cmd(&["ZADD", &heartbeats, &now_ms.to_string(), "alpha"]);
    let _: i64 = redis.cmd(&["ZADD", &heartbeats, &(now_ms - 60_000).to_string(), "beta"]);
    // Two workers: subscribers of their channels (kept open for the test's duration).
    let mut subscribers = Vec::new();
    for id in ["alpha", "beta"] {
        let mut conn = redis.client();
        redis::cmd("SUBSCRIBE")
            .arg(keys::worker_channel(lobby, id))
            .exec(&mut conn)
            .expect("subscribe");
        subscribers.push(conn);
    }
    // Games in each status: 1 waiting, 2 in progress, 3 completed, 4 timed out.
    let statuses = [
        (keys::status::WAITING_LOBBY, 1),
        (keys::status::IN_PROGRESS, 2),
        (keys::status::COMPLETED, 3),
        (keys::status::TIMED_OUT, 4),
    ];
    for (status, n) in statuses {
        for _ in 0..n {
            let g = uuid::Uuid::new_v4().to_string();
            let _: () = redis.cmd(&["SET", &common::single_keys().game_status(&g), status]);
        }
    }

    let result = run(&["status", "--format", "json"]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("JSON status");
    assert_eq!(status["log_length"], 5, "{status}");
    assert_eq!(status["undelivered"], 3, "{status}");
    assert_eq!(status["dead_letters"], 1, "{status}");
    assert_eq!(status["fanouts"], 0, "{status}");
    let workers: Vec<&str> = status["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(workers, ["alpha", "beta"], "{status}");
    assert_eq!(status["workers"][0]["live"], true, "{status}");
    assert_eq!(status["workers"][0]["unacked"], 2, "{status}");
    assert_eq!(status["workers"][1]["live"], false, "{status}");
    assert_eq!(status["workers"][1]["unacked"], 0, "{status}");
    for (name, n) in statuses {
        assert_eq!(status["games"][name], n, "{name}: {status}");
    }
    assert_eq!(status["games"][keys::status::WAITING_PLAYER], 0, "{status}");
    assert_eq!(status["unacked"]["count"], 2, "{status}");
    let age = status["unacked"]["oldest_age_secs"].as_f64();
    assert!(age.is_some_and(|a| (0.0..60.0).contains(&a)), "{status}");
    assert_eq!(status["claimed_unfinished"], 0, "{status}");
    assert!(status["heroes"].as_u64().unwrap_or(0) >= 100, "{status}");

    // The table form says the same.
    let table = run(&["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success() && text.contains("alpha"), "{text}");
    for line in [
        "log length                   5",
        "not yet delivered            3",
        "dead letters                 1",
        "live workers                 1",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(text.contains("live, 2 unacknowledged"), "{text}");
    assert!(text.contains("no heartbeat, 0 unacknowledged"), "{text}");
    drop(subscribers);
}

#[test]
fn status_fails_when_redis_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let result = superhero(dir.path())
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", free_port().to_string())
        .args(["status", "--format", "json"])
        .output()
        .expect("run superhero");
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
}
