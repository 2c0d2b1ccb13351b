//! Issue 7, the game server's part: the Prometheus endpoint counts what happened, and without
//! METRICS_ADDR no port is opened.

use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::roles::Proc;
use common::{free_port, superhero, wait_for, TestRedis};
use superhero::metrics::{sample_value, scrape};
use superhero::pipeline::keys;
use superhero::pipeline::redis_conn::Redis;
use superhero::roles::player::{self, Outcome, PlayerOptions};
use superhero::shutdown;

async fn value(addr: SocketAddr, name: &str) -> f64 {
    let text = scrape(addr).await.expect("scrape");
    sample_value(&text, name).unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_metrics_count_what_happened() {
    let redis_server = TestRedis::start();
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let settings = redis_server.settings_with(&[
        ("METRICS_ADDR", &metrics_addr),
        ("LOGGER_MODULE", "redis"),
        ("LOBBY_TIMEOUT", "2"),
        ("TURN_TIMEOUT", "5"),
    ]);
    let addr: SocketAddr = metrics_addr.parse().unwrap();
    let redis = Redis::connect(&settings.redis).await.unwrap();
    superhero::ops::build_db::run(&redis, &superhero::pipeline::shard::Layout::single(), None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, shutdown) = shutdown::channel();
    let server = {
        let (s, r, sd) = (settings.clone(), redis.clone(), shutdown.clone());
        tokio::spawn(async move { superhero::roles::server::run(&s, r, listener, sd).await })
    };

    // A watcher waits in a lobby of four that never fills: its socket stays connected throughout
    // (after its lobby times out too).
    let user = common::ws::login(port, "watcher").await;
    let game = common::ws::find(port, &user, 4).await;
    let lobby = common::ws::open_lobby(port, &game, &user).await;
    wait_for(
        "the watcher to be connected",
        Duration::from_secs(10),
        || async { value(addr, "superhero_server_connected_players").await == 1.0 },
    )
    .await;

    let bots: Vec<_> = (0..4)
        .map(|_| {
            let mut s = settings.clone();
            s.websocket_host = "127.0.0.1".into();
            s.websocket_port = port;
            s.client_games = Some(3);
            let sd = shutdown.clone();
            tokio::spawn(async move {
                let options = PlayerOptions {
                    participants: Some(2),
                    ..PlayerOptions::default()
                };
                player::play(&s, &options, sd).await
            })
        })
        .collect();
    let mut reports = Vec::new();
    for bot in bots {
        reports.extend(
            tokio::time::timeout(Duration::from_secs(60), bot)
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    let completed: BTreeSet<&str> = reports
        .iter()
        .filter(|r| {
            matches!(
                r.outcome,
                Outcome::Won | Outcome::Survived | Outcome::Eliminated
            )
        })
        .map(|r| r.game_token.as_str())
        .collect();
    assert!(!completed.is_empty());
    let turns: u32 = reports.iter().map(|r| r.turns).sum();
    let mut attacks = 0u64;
    for g in &completed {
        attacks += redis_server.cmd::<u64>(&["LLEN", &common::single_keys().game_logs(g)]);
    }

    let watcher_status = common::single_keys().game_status(&game);
    wait_for(
        "the watcher's lobby to time out",
        Duration::from_secs(10),
        || async { redis_server.cmd::<String>(&["GET", &watcher_status]) == "Timed Out" },
    )
    .await;
    let mut timed_out = 0;
    for key in redis_server.cmd::<Vec<String>>(&["KEYS", "games:*:status"]) {
        if redis_server.cmd::<String>(&["GET", &key]) == "Timed Out" {
            timed_out += 1;
        }
    }
    // The bots are gone; only the watcher is still connected.
    wait_for(
        "the bots' sockets to close",
        Duration::from_secs(10),
        || async { value(addr, "superhero_server_connected_players").await == 1.0 },
    )
    .await;
    let text = scrape(addr).await.unwrap();
    let get = |name: &str| sample_value(&text, name).unwrap_or(-1.0);
    assert_eq!(
        get("superhero_server_games_completed_total"),
        completed.len() as f64,
        "{text}"
    );
    assert_eq!(
        get("superhero_server_games_started_total"),
        completed.len() as f64,
        "{text}"
    );
    assert_eq!(
        get("superhero_server_games_timed_out_total"),
        timed_out as f64,
        "{text}"
    );
    assert_eq!(
        get("superhero_server_attacks_total"),
        attacks as f64,
        "{text}"
    );
    // Every USER'S TURN announced on an event is timed (one found by a resync has no start time).
    let timed = get("superhero_server_turn_latency_seconds_count");
    assert!(
        timed > 0.0 && timed <= f64::from(turns),
        "{timed} of {turns}\n{text}"
    );
    // No subscriber on the lobby channel: every record is in the log all the same, appended by
    // the script that made the change it reports, and counted as published.
    let log = keys::log_stream(&settings.worker_channel);
    wait_for("every record counted", Duration::from_secs(10), || async {
        let len: u64 = redis_server.cmd(&["XLEN", &log]);
        value(addr, "superhero_server_records_published_total").await == len as f64
    })
    .await;
    // Starting Match per game, Cleaning Game Records per participant.
    let records = completed.len() + 2 * completed.len() + timed_out;
    let logged: u64 = redis_server.cmd(&["XLEN", &log]);
    assert_eq!(logged as usize, records);
    assert_eq!(
        sample_value(&text, "superhero_server_records_backlogged_total"),
        None,
        "there is no backlog any more"
    );

    drop(lobby);
    wait_for("the watcher to leave", Duration::from_secs(10), || async {
        value(addr, "superhero_server_connected_players").await == 0.0
    })
    .await;
    stop.fire();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Inodes of the TCP sockets in LISTEN state on this machine.
fn listening_inodes() -> BTreeSet<String> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "0A" {
                inodes.insert(cols[9].to_string());
            }
        }
    }
    inodes
}

/// How many listening TCP sockets process `pid` holds.
fn listening_sockets_of(pid: u32) -> usize {
    let listening = listening_inodes();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().to_string();
            t.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .filter(|inode| listening.contains(inode))
        .count()
}

#[test]
fn metrics_port_only_when_configured() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    for metrics in [None, Some(free_port())] {
        let port = free_port();
        let mut cmd = superhero(dir.path());
        cmd.arg("server")
            .env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", redis.port.to_string())
            .env("WEBSOCKET_HOST", "127.0.0.1")
            .env("WEBSOCKET_PORT", port.to_string());
        if let Some(m) = metrics {
            cmd.env("METRICS_ADDR", format!("127.0.0.1:{m}"));
        }
        let mut server = Proc::spawn("server", dir.path(), cmd);
        // Logged once the server is past starting its metrics endpoint (or not).
        common::wait_until("the server to listen", Duration::from_secs(20), || {
            server.log_text().contains("game server listening")
        });
        let expected = if metrics.is_some() { 2 } else { 1 };
        let sockets = listening_sockets_of(server.id());
        server.kill();
        assert_eq!(
            sockets, expected,
            "listening sockets with METRICS_ADDR={metrics:?}"
        );
    }
}
