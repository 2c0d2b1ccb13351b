//! Roles as real `superhero` processes: spawn with a log file, signal (STOP, CONT, TERM, KILL),
//! wait for exit; and the Parquet pairs they leave behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{superhero, TestRedis};

/// A role process whose stdout and stderr go to a file; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// `superhero <args>` in `dir` against `redis`, with LOGGER_MODULE=redis and `env`.
    pub fn start(
        name: &str,
        dir: &Path,
        redis: &TestRedis,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let mut cmd = superhero(dir);
        cmd.env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", redis.port.to_string())
            .env("LOGGER_MODULE", "redis")
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(name, dir, cmd)
    }

    pub fn spawn(name: &str, dir: &Path, mut cmd: Command) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).expect("log file");
        cmd.stdout(file.try_clone().expect("log file")).stderr(file);
        let child = cmd.spawn().expect("spawn superhero");
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} {}", self.name);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit code once the process ends within `timeout`; None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Game token → the (table, worker id) of every finished Parquet file under the given output
/// folders (workers may each have their own).
pub fn pairs(dirs: &[&Path]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for dir in dirs {
        for table in ["GAME_META", "GAME_PODIUM"] {
            let Ok(entries) = std::fs::read_dir(dir.join("superhero").join(table)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some((game, worker)) = superhero::pipeline::sink::parse_file_name(&name) {
                    out.entry(game.to_string())
                        .or_default()
                        .push((table.to_string(), worker.to_string()));
                }
            }
        }
    }
    out
}

/// Every file under the output folders, temporary ones included (names only).
pub fn every_file(dirs: &[&Path]) -> Vec<String> {
    let mut out = Vec::new();
    for dir in dirs {
        for table in ["GAME_META", "GAME_PODIUM"] {
            if let Ok(entries) = std::fs::read_dir(dir.join("superhero").join(table)) {
                out.extend(
                    entries
                        .flatten()
                        .map(|e| format!("{table}/{}", e.file_name().to_string_lossy())),
                );
            }
        }
    }
    out.sort();
    out
}

/// Asserts that the games `found` (game → its files as (table, worker)) are exactly `expected`
/// (sorted), each with one META and one PODIUM file by the same worker; `what` names the
/// comparison of games in a failure.
pub fn assert_one_pair_each(
    found: &BTreeMap<String, Vec<(String, String)>>,
    expected: &[&String],
    what: &str,
) {
    let got: Vec<&String> = found.keys().collect();
    assert_eq!(got, expected, "{what}");
    for (game, files) in found {
        let mut tables: Vec<&str> = files.iter().map(|(t, _)| t.as_str()).collect();
        tables.sort();
        assert_eq!(
            tables,
            ["GAME_META", "GAME_PODIUM"],
            "game {game}: {files:?}"
        );
        assert_eq!(files[0].1, files[1].1, "game {game} written by two workers");
    }
}

/// Asserts that exactly `games` have output, each exactly one META and one PODIUM file by the
/// same worker, and that no other file (temporary or stray) is left.
pub fn assert_exactly_once(dirs: &[&Path], games: &[String]) {
    let found = pairs(dirs);
    let mut expected: Vec<&String> = games.iter().collect();
    expected.sort();
    expected.dedup();
    assert_one_pair_each(&found, &expected, "games with output vs games expected");
    let all = every_file(dirs);
    assert_eq!(all.len(), games.len() * 2, "stray files: {all:?}");
}

/// Completed games in Redis (SCAN over statuses).
pub fn completed_games(redis: &TestRedis) -> Vec<String> {
    let keys: Vec<String> = scan(redis, "games:*:status");
    let mut games = Vec::new();
    for key in keys {
        if key.matches(':').count() != 2 {
            continue;
        }
        let status: Option<String> = redis.cmd(&["GET", &key]);
        if status.as_deref() == Some("Completed") {
            games.push(key["games:".len()..key.len() - ":status".len()].to_string());
        }
    }
    games.sort();
    games
}

pub fn scan(redis: &TestRedis, pattern: &str) -> Vec<String> {
    runtime().block_on(async {
        superhero::pipeline::redis_conn::scan(&mut conn(redis).await, pattern)
            .await
            .expect("SCAN")
            .into_iter()
            .collect()
    })
}

/// `n` synthetic finished 3-player games, reproducible from `seed`.
pub fn games(n: usize, seed: u64) -> Vec<superhero::ops::bench::synth::SynthGame> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| superhero::ops::bench::synth::random_game(&mut rng, 3, 12, 1000))
        .collect()
}

pub fn tokens(games: &[superhero::ops::bench::synth::SynthGame]) -> Vec<String> {
    games.iter().map(|g| g.token.clone()).collect()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub async fn conn(redis: &TestRedis) -> redis::aio::ConnectionManager {
    redis::Client::open(redis.url())
        .expect("client")
        .get_connection_manager()
        .await
        .expect("connection")
}

/// `superhero build-db` with the built-in roster.
pub fn build_db(dir: &Path, redis: &TestRedis) {
    let status = superhero(dir)
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .arg("build-db")
        .status()
        .expect("build-db");
    assert!(status.success());
}

/// A `superhero server` process on `port`, once it listens.
pub fn server(dir: &Path, redis: &TestRedis, name: &str, port: u16, env: &[(&str, &str)]) -> Proc {
    let port = port.to_string();
    let mut all = vec![
        ("WEBSOCKET_HOST", "127.0.0.1"),
        ("WEBSOCKET_PORT", port.as_str()),
    ];
    all.extend_from_slice(env);
    let s = Proc::start(name, dir, redis, &["server"], &all);
    super::wait_until(
        &format!("{name} to listen"),
        Duration::from_secs(20),
        || s.log_text().contains("game server listening"),
    );
    s
}

/// Waits until worker `id` of `lobby` beats (it is subscribed and in rotation).
pub fn wait_live(redis: &TestRedis, lobby: &str, id: &str) {
    super::wait_until(
        &format!("worker {id} to beat"),
        Duration::from_secs(20),
        || {
            let beat: Option<f64> = redis.cmd(&[
                "ZSCORE",
                &superhero::pipeline::keys::worker_heartbeats(lobby),
                id,
            ]);
            beat.is_some()
        },
    );
}

/// Log entries of `lobby` read and not yet acknowledged.
pub fn unacked(redis: &TestRedis, lobby: &str) -> u64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(superhero::pipeline::keys::log_stream(lobby))
        .arg(superhero::pipeline::keys::fanout_group(lobby))
        .query(&mut redis.client())
        .unwrap_or(redis::Value::Nil);
    match summary {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

/// The delivery state of `lobby` as `superhero status` sees it (log, lag, unacknowledged).
#[allow(dead_code)]
pub fn pipeline_state(redis: &TestRedis, lobby: &str) -> superhero::roles::fanout::PipelineState {
    runtime().block_on(async {
        superhero::roles::fanout::inspect(&mut conn(redis).await, lobby)
            .await
            .expect("inspect the pipeline")
    })
}
