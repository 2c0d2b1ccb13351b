//! Issue 7: during a short pipeline run, each role's /metrics endpoint serves exposition text
//! whose counters match what the run did; a role without METRICS_ADDR opens no port.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::roles::Proc;
use common::{free_port, scrape, superhero, wait_until, TestRedis};
use superhero::metrics::sample_value;

fn value(text: &str, name: &str) -> f64 {
    sample_value(text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// TCP ports a process listens on, from /proc (its socket inodes in LISTEN state).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().to_string();
            t.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state == "0A" && inodes.contains(*inode) {
                if let Some(port) = local
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

fn files_of(dir: &Path, worker: &str) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.ends_with(&format!("_{worker}.gz"))
        })
        .count()
}

#[test]
fn each_role_serves_counters_that_match_the_run_and_no_port_when_off() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let ws_port = free_port();
    let (server_m, fanout_m, worker_m) = (free_port(), free_port(), free_port());
    let base = |cmd: &mut Command| {
        cmd.env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", redis.port.to_string())
            .env("WEBSOCKET_HOST", "127.0.0.1")
            .env("WEBSOCKET_PORT", ws_port.to_string())
            .env("LOGGER_MODULE", "redis")
            .env("OUTPUT_DIR", &out)
            .env("LOG_LEVEL", "WARN");
    };
    let spawn = |name: &str, args: &[&str], metrics: Option<u16>| {
        let mut cmd = superhero(dir.path());
        base(&mut cmd);
        if let Some(port) = metrics {
            cmd.env("METRICS_ADDR", format!("127.0.0.1:{port}"));
        }
        cmd.args(args);
        Proc::spawn(name, dir.path(), cmd)
    };
    let mut build = superhero(dir.path());
    base(&mut build);
    assert!(build
        .arg("build-db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("build-db")
        .success());

    let fanout = spawn("fanout", &["fanout"], Some(fanout_m));
    let worker_a = spawn("wa", &["worker", "--worker-id", "wa"], Some(worker_m));
    let worker_b = spawn("wb", &["worker", "--worker-id", "wb"], None);
    let server = spawn("server", &["server"], Some(server_m));
    for port in [server_m, fanout_m, worker_m] {
        wait_until("metrics endpoints up", Duration::from_secs(20), || {
            scrape(port).is_some()
        });
    }
    wait_until("both workers subscribed", Duration::from_secs(20), || {
        let n: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("redis.lib.server.lobby-wa")
            .arg("redis.lib.server.lobby-wb")
            .query(&mut redis.client())
            .unwrap_or_default();
        n.iter().all(|(_, subs)| *subs == 1) && n.len() == 2
    });

    let mut bots: Vec<Proc> = (0..4)
        .map(|i| {
            let mut cmd = superhero(dir.path());
            base(&mut cmd);
            cmd.env("CLIENT_GAMES", "2")
                .args(["player", "--participants", "2"]);
            Proc::spawn(&format!("bot-{i}"), dir.path(), cmd)
        })
        .collect();
    for bot in &mut bots {
        let status = bot.wait();
        assert!(status.success());
    }

    // Wait until the pipeline has caught up, then the counters must agree with the world.
    let meta_dir = out.join("superhero").join("GAME_META");
    wait_until("every record routed", Duration::from_secs(30), || {
        let (Some(s), Some(f)) = (scrape(server_m), scrape(fanout_m)) else {
            return false;
        };
        sample_value(&s, "superhero_server_records_published_total")
            == sample_value(&f, "superhero_fanout_records_routed_total")
    });
    let server_text = scrape(server_m).expect("server metrics");
    let completed = value(&server_text, "superhero_server_games_completed_total");
    assert!(completed >= 1.0, "{server_text}");
    wait_until("every game written", Duration::from_secs(30), || {
        (files_of(&meta_dir, "wa") + files_of(&meta_dir, "wb")) as f64 >= completed
    });
    // A game's files are in place a moment before its worker counts it (the done marker is
    // set in between): wait for the count to catch up with the files.
    wait_until(
        "the worker's counter to match its files",
        Duration::from_secs(10),
        || {
            scrape(worker_m).is_some_and(|text| {
                sample_value(&text, "superhero_worker_games_written_total")
                    == Some(files_of(&meta_dir, "wa") as f64)
            })
        },
    );
    let worker_text = scrape(worker_m).expect("worker metrics");
    let written_a = files_of(&meta_dir, "wa") as f64;
    assert_eq!(
        value(&worker_text, "superhero_worker_games_written_total"),
        written_a,
        "{worker_text}"
    );
    assert_eq!(
        value(&worker_text, "superhero_worker_files_written_total"),
        2.0 * written_a,
        "{worker_text}"
    );
    assert_eq!(
        (files_of(&meta_dir, "wa") + files_of(&meta_dir, "wb")) as f64,
        completed
    );
    let fanout_text = scrape(fanout_m).expect("fanout metrics");
    assert_eq!(
        value(&fanout_text, "superhero_fanout_records_routed_total"),
        value(&server_text, "superhero_server_records_published_total"),
        "{fanout_text}"
    );
    for text in [&server_text, &fanout_text, &worker_text] {
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    // Metrics off: the second worker listens on nothing; the server only on its API port plus
    // the metrics port it was given.
    assert_eq!(listening_ports(worker_b.id()), BTreeSet::new());
    assert_eq!(
        listening_ports(server.id()),
        BTreeSet::from([ws_port, server_m])
    );
    drop((fanout, worker_a));
}
