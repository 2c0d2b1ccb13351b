//! Every `bench` runs end to end with tiny sizes and reports numbers, Redis's own CPU among them
//! (speed is never asserted here; the figures live in docs/benchmarks.md).

use crate::common;

use common::{superhero, TestRedis};
use serde_json::Value;

/// The JSON report of one run, whose Redis cost is checked ([`assert_redis_cost`]).
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
    assert_redis_cost(&report);
    report
}

/// Redis spent CPU on the run, the per-unit figure is the total over the units, and the
/// commands are ranked by their time.
fn assert_redis_cost(report: &Value) {
    let cost = &report["redis_cost"];
    let cpu = number(cost, "cpu_seconds");
    let units = number(cost, "units");
    assert!(cpu > 0.0, "{report}");
    assert_eq!(number(cost, "primaries"), 1.0, "{report}");
    assert!(units > 0.0, "{report}");
    let per_unit = number(cost, "cpu_us_per_unit");
    let expected = cpu * 1e6 / units;
    assert!(
        (per_unit - expected).abs() <= expected * 1e-6,
        "{per_unit} µs per unit against {expected}: {report}"
    );
    let usecs: Vec<f64> = cost["top_commands"]
        .as_array()
        .unwrap_or_else(|| panic!("no top_commands in {report}"))
        .iter()
        .map(|c| number(c, "usec"))
        .collect();
    assert!(!usecs.is_empty(), "{report}");
    assert!(usecs.windows(2).all(|w| w[0] >= w[1]), "{report}");
}

fn number(figures: &Value, name: &str) -> f64 {
    figures[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no figure {name} in {figures}"))
}

#[test]
fn bench_etl_reports_games_per_second_and_redis_cpu_per_game() {
    let redis = TestRedis::start();
    let report = bench(&redis, &["etl", "--games", "40"]);
    let f = &report["figures"];
    assert_eq!(number(f, "games"), 40.0, "{f}");
    assert_eq!(number(f, "files_meta"), 40.0, "{f}");
    assert!(number(f, "games_per_second") > 0.0, "{f}");
    let cost = &report["redis_cost"];
    assert_eq!(cost["unit"], "game", "{report}");
    assert_eq!(number(cost, "units"), 40.0, "{report}");
    // Each game is claimed and finished by a script on Redis.
    let commands: Vec<&str> = cost["top_commands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["command"].as_str())
        .collect();
    assert!(commands.iter().any(|c| c.starts_with("eval")), "{report}");
}

#[test]
fn bench_fanout_reports_records_per_second_nothing_lost_and_redis_cpu_per_record() {
    let redis = TestRedis::start();
    let report = bench(&redis, &["fanout", "--records", "400", "--workers", "2"]);
    let f = &report["figures"];
    assert_eq!(number(f, "records"), 400.0, "{f}");
    assert_eq!(number(f, "lost"), 0.0, "{f}");
    assert_eq!(number(f, "duplicated"), 0.0, "{f}");
    assert!(number(f, "records_per_second") > 0.0, "{f}");
    assert_eq!(report["redis_cost"]["unit"], "record", "{report}");
    assert_eq!(number(&report["redis_cost"], "units"), 400.0, "{report}");
}

#[test]
fn bench_game_reports_games_per_second_and_redis_cpu_per_game() {
    let redis = TestRedis::start();
    let report = bench(&redis, &["game", "--bots", "4", "--seconds", "2"]);
    let f = &report["figures"];
    assert!(number(f, "games_finished") >= 1.0, "{f}");
    assert!(number(f, "games_per_second") > 0.0, "{f}");
    assert_eq!(report["redis_cost"]["unit"], "game", "{report}");
    assert_eq!(
        number(&report["redis_cost"], "units"),
        number(f, "games_finished"),
        "{report}"
    );
}
