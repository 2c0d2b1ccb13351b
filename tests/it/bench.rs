//! Every `bench` runs end to end with tiny sizes and reports numbers, Redis's own CPU among them
//! (speed is never asserted here; the figures live in docs/benchmarks.md).

use crate::common;

use common::{superhero, TestRedis};
use serde_json::Value;

/// The JSON report of one run on `redis`, whose Redis cost is checked ([`assert_redis_cost`]).
fn bench(redis: &TestRedis, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = superhero(dir.path());
    cmd.env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .arg("bench");
    run(cmd, args, 1)
}

/// The JSON report of one run with `--cluster 3`: on a private cluster of 3 primaries it
/// starts and stops itself, its Redis cost summed over the 3.
fn bench_on_cluster(args: &[&str], env: &[(&str, &str)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = superhero(dir.path());
    cmd.env_remove("REDIS_CLUSTER_NODES")
        .envs(env.iter().copied())
        .args(["bench", "--cluster", "3"]);
    let report = run(cmd, args, 3);
    assert!(
        report["redis"]
            .as_str()
            .is_some_and(|r| r.starts_with("cluster ")),
        "{report}"
    );
    report
}

/// Runs `cmd` (`superhero bench …`) with `--json` and `args`; its report, whose Redis cost is
/// checked over `primaries` primaries.
fn run(mut cmd: std::process::Command, args: &[&str], primaries: usize) -> Value {
    let result = cmd.arg("--json").args(args).output().expect("run bench");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "bench {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON figures");
    assert_redis_cost(&report, primaries);
    report
}

/// Redis spent CPU on the run, the per-unit figure is the total over the units, and the
/// commands are ranked by their time.
fn assert_redis_cost(report: &Value, primaries: usize) {
    let cost = &report["redis_cost"];
    let cpu = number(cost, "cpu_seconds");
    let units = number(cost, "units");
    assert!(cpu > 0.0, "{report}");
    assert_eq!(number(cost, "primaries"), primaries as f64, "{report}");
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

#[test]
fn bench_etl_on_a_private_cluster_writes_every_game_and_sums_redis_cpu_over_3_primaries() {
    let report = bench_on_cluster(&["etl", "--games", "24"], &[]);
    let f = &report["figures"];
    assert_eq!(number(f, "games"), 24.0, "{f}");
    assert_eq!(number(f, "files_meta"), 24.0, "{f}");
    assert!(number(f, "games_per_second") > 0.0, "{f}");
    assert_eq!(number(&report["redis_cost"], "units"), 24.0, "{report}");
}

#[test]
fn bench_fanout_on_a_private_cluster_loses_nothing_and_sums_redis_cpu_over_3_primaries() {
    let report = bench_on_cluster(&["fanout", "--records", "600", "--workers", "2"], &[]);
    let f = &report["figures"];
    assert_eq!(number(f, "records"), 600.0, "{f}");
    assert_eq!(number(f, "lost"), 0.0, "{f}");
    assert_eq!(number(f, "duplicated"), 0.0, "{f}");
    assert!(number(f, "records_per_second") > 0.0, "{f}");
    assert_eq!(number(&report["redis_cost"], "units"), 600.0, "{report}");
}

#[test]
fn bench_game_on_a_private_cluster_finishes_games_and_sums_redis_cpu_over_3_primaries() {
    // Bots that find no lobby at the same moment may open one each on different shards and
    // split between them: a short LOBBY_TIMEOUT (the server child inherits it) frees them
    // within the window.
    let report = bench_on_cluster(
        &[
            "game",
            "--bots",
            "6",
            "--participants",
            "2",
            "--seconds",
            "4",
        ],
        &[("LOBBY_TIMEOUT", "1")],
    );
    let f = &report["figures"];
    assert!(number(f, "games_finished") >= 1.0, "{f}");
    assert!(number(f, "games_per_second") > 0.0, "{f}");
    assert_eq!(
        number(&report["redis_cost"], "units"),
        number(f, "games_finished"),
        "{report}"
    );
}

#[test]
fn bench_runs_on_the_cluster_of_redis_cluster_nodes_in_its_shards() {
    let cluster = common::TestCluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = superhero(dir.path());
    cmd.env("REDIS_CLUSTER_NODES", cluster.seeds()).arg("bench");
    let report = run(cmd, &["fanout", "--records", "300", "--workers", "2"], 3);
    let f = &report["figures"];
    assert_eq!(number(f, "lost"), 0.0, "{f}");
    assert_eq!(number(f, "duplicated"), 0.0, "{f}");
    // The layout is agreed and stored like any role's: 4 shards per primary.
    let any = cluster.owner_of("superhero:shards");
    assert_eq!(
        cluster.on::<String>(any, &["GET", "superhero:shards"]),
        "12"
    );
}
