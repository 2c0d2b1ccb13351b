//! Issue 5: `superhero demo` runs the whole system in one process and its summary matches the
//! files on disk. Issue 11: in a terminal it reads like a product (bars, routine lines in a log
//! file), piped it prints plain lines, and it does not wait out LOBBY_TIMEOUT at the end.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, superhero};

/// (game token, worker id) of every finished file of one table.
fn files(table_dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(table_dir).expect("table dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        assert!(name.ends_with(".gz"), "unexpected file {name}");
        let (game, worker) = superhero::pipeline::sink::parse_file_name(&name).expect("file name");
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

/// What one demo run printed, and how long it took.
struct DemoRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl DemoRun {
    fn context(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `demo` on a private Redis (nothing listens on the port given) with output in `out`.
fn run_demo(dir: &Path, out: &Path, args: &[&str], vars: &[(&str, &str)]) -> DemoRun {
    let mut cmd = superhero(dir);
    cmd.env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", free_port().to_string())
        .arg("demo")
        .args(args)
        .arg("--output-dir")
        .arg(out);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let result = cmd.output().expect("run demo");
    DemoRun {
        code: result.status.code(),
        stdout: String::from_utf8_lossy(&result.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&result.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The bots' one line per game they played: `<bot>: game <token> hero <id>: <outcome>`.
fn per_game_lines(text: &str) -> usize {
    text.lines()
        .filter(|l| l.contains(": game ") && l.contains(" hero "))
        .count()
}

#[test]
fn demo_in_a_terminal_draws_bars_and_keeps_routine_lines_in_its_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Tests have no terminal: force the terminal display.
    let args = ["--players", "4", "--games", "2", "--participants", "2"];
    let run = run_demo(
        dir.path(),
        &out,
        &[&args[..], &["--progress", "always"]].concat(),
        &[],
    );
    // Three bars with totals, redrawn in place.
    for bar in ["games played [", "games processed [", "files written ["] {
        assert!(
            run.stderr.contains(bar),
            "no {bar:?} bar: {}",
            run.context()
        );
    }
    assert!(run.stderr.contains("/4"), "no total: {}", run.context());
    assert!(
        run.stderr.contains("\x1b["),
        "no cursor movement: {}",
        run.context()
    );
    // No routine lines on the terminal.
    assert!(!run.stderr.contains(" INFO "), "{}", run.context());
    assert_eq!(per_game_lines(&run.stderr), 0, "{}", run.context());

    // They are in the log file the summary names: one line per bot per game.
    let log = out.join("superhero-demo.log");
    assert!(
        run.stdout
            .contains(&format!("log                    {}", log.display())),
        "{}",
        run.context()
    );
    let logged = std::fs::read_to_string(&log).expect("demo log file");
    assert_eq!(per_game_lines(&logged), 4 * 2, "{logged}");
    assert!(!logged.contains('\x1b'), "{logged}");

    // The summary's leaderboard and a way to open the output.
    assert!(
        run.stdout.contains("top heroes             1. "),
        "{}",
        run.context()
    );
    let podium_glob = out.join("superhero").join("GAME_PODIUM").join("*.gz");
    assert!(
        run.stdout.contains(&format!(
            "duckdb -c \"SELECT * FROM read_parquet('{}')",
            podium_glob.display()
        )),
        "{}",
        run.context()
    );
}

#[test]
fn demo_piped_prints_plain_lines_without_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = ["--players", "4", "--games", "2", "--participants", "2"];
    let run = run_demo(dir.path(), &out, &args, &[]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert!(!run.stdout.contains('\x1b'), "{}", run.context());
    assert!(!run.stderr.contains('\x1b'), "{}", run.context());
    assert!(!run.stderr.contains("games played ["), "{}", run.context());
    assert_eq!(per_game_lines(&run.stderr), 0, "{}", run.context());
    assert!(run
        .stdout
        .contains("every finished game processed exactly once"));

    // -v prints the routine lines too, still plain.
    let run = run_demo(dir.path(), &out, &[&args[..], &["-v"]].concat(), &[]);
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert!(!run.stderr.contains('\x1b'), "{}", run.context());
    assert_eq!(per_game_lines(&run.stderr), 4 * 2, "{}", run.context());
}

#[test]
fn demo_ends_soon_after_the_last_game_that_can_be_played() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let lobby_timeout = Duration::from_secs(20);
    // 10 bots × 3 games = 30 seats in games of 4: at least one lobby can never fill.
    let run = run_demo(
        dir.path(),
        &out,
        &[
            "--players",
            "10",
            "--games",
            "3",
            "--participants",
            "4",
            "--json",
        ],
        &[("LOBBY_TIMEOUT", "20")],
    );
    assert_eq!(run.code, Some(0), "{}", run.context());
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON summary");
    let timed_out = summary["games_timed_out"].as_u64().unwrap();
    let ended_early = summary["lobbies_ended_early"].as_u64().unwrap();
    assert!(timed_out >= 1, "{summary}");
    assert!(ended_early >= 1 && ended_early <= timed_out, "{summary}");
    assert_eq!(
        summary["games_processed"], summary["games_played"],
        "{summary}"
    );
    // A behaviour check, not a benchmark: the games take well under a second, so anything near
    // LOBBY_TIMEOUT means the demo waited for a lobby nobody could fill.
    assert!(
        run.took < lobby_timeout / 2,
        "took {:?} with LOBBY_TIMEOUT {lobby_timeout:?}: {summary}",
        run.took
    );
}
