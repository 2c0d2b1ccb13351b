//! Issue 5: `superhero demo` runs the whole system in one process and its summary matches the
//! files on disk.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{free_port, superhero};

/// (game token, worker id) of every finished file of one table.
fn files(table_dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(table_dir).expect("table dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        assert!(name.ends_with(".gz"), "unexpected file {name}");
        let (game, worker) = superhero::report::parse_file_name(&name).expect("file name");
        out.push((game.to_string(), worker.to_string()));
    }
    out
}

#[test]
fn demo_with_its_own_private_redis_processes_every_game_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Nothing listens on this port, so the demo starts (and stops) a private redis-server.
    let result = superhero(dir.path())
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", free_port().to_string())
        .args(["demo", "--players", "6", "--workers", "2", "--games", "2"])
        .args(["--participants", "2", "--quiet", "--json", "--output-dir"])
        .arg(&out)
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(
        result.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(summary["private_redis"], true, "{summary}");

    let meta = files(&out.join("superhero").join("GAME_META"));
    let podium = files(&out.join("superhero").join("GAME_PODIUM"));
    let played = summary["games_played"].as_u64().expect("games_played") as usize;
    // 6 bots × 2 games of 2 players: 6 games, fewer only if a lobby timed out.
    assert!((1..=6).contains(&played), "{summary}");
    assert_eq!(summary["games_processed"].as_u64(), Some(played as u64));
    assert_eq!(meta.len(), played, "META files vs summary: {summary}");
    assert_eq!(podium.len(), played, "PODIUM files vs summary: {summary}");
    assert_eq!(summary["duplicated_games"], serde_json::json!([]));
    assert_eq!(summary["missing_games"], serde_json::json!([]));

    let mut per_worker: BTreeMap<String, u64> = BTreeMap::new();
    for (_, worker) in meta.iter().chain(&podium) {
        *per_worker.entry(worker.clone()).or_default() += 1;
    }
    let reported: BTreeMap<String, u64> =
        serde_json::from_value(summary["files_per_worker"].clone()).expect("files_per_worker");
    let reported: BTreeMap<String, u64> = reported.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(per_worker, reported, "{summary}");
    assert!(per_worker
        .keys()
        .all(|w| w == "worker-1" || w == "worker-2"));
}
