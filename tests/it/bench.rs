//! Issue 5: every `bench` runs end to end with tiny sizes and reports numbers (speed is never
//! asserted here; the figures live in the README).

use crate::common;

use common::{superhero, TestRedis};
use serde_json::Value;

fn bench(redis: &TestRedis, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let result = superhero(dir.path())
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .args(["bench", "--json"])
        .args(args)
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "bench {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON figures");
    report["figures"].clone()
}

fn number(figures: &Value, name: &str) -> f64 {
    figures[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no figure {name} in {figures}"))
}

#[test]
fn bench_etl_reports_games_per_second() {
    let redis = TestRedis::start();
    let f = bench(&redis, &["etl", "--games", "40"]);
    assert_eq!(number(&f, "games"), 40.0, "{f}");
    assert_eq!(number(&f, "files_meta"), 40.0, "{f}");
    assert!(number(&f, "games_per_second") > 0.0, "{f}");
}

#[test]
fn bench_fanout_reports_records_per_second_and_nothing_lost() {
    let redis = TestRedis::start();
    let f = bench(&redis, &["fanout", "--records", "400", "--workers", "2"]);
    assert_eq!(number(&f, "records"), 400.0, "{f}");
    assert_eq!(number(&f, "lost"), 0.0, "{f}");
    assert_eq!(number(&f, "duplicated"), 0.0, "{f}");
    assert!(number(&f, "records_per_second") > 0.0, "{f}");
}

#[test]
fn bench_game_reports_games_per_second() {
    let redis = TestRedis::start();
    let f = bench(&redis, &["game", "--bots", "4", "--seconds", "2"]);
    assert!(number(&f, "games_finished") >= 1.0, "{f}");
    assert!(number(&f, "games_per_second") > 0.0, "{f}");
}
