//! Shared test helpers: a private `redis-server` (or Redis Cluster) per test, the real binary,
//! deadline waits.
//!
//! Every test that needs Redis starts its own server on a free port with no persistence, so tests
//! run in parallel, may kill and restart their Redis, and never see each other's keys or channels.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use superhero::config::{Layers, Settings};
use superhero::ops::private_cluster::PrivateCluster;
use superhero::ops::private_redis::PrivateRedis;
use superhero::pipeline::sink::{MetaRow, Output, PodiumRow};

/// A private redis-server, stopped when dropped.
pub struct TestRedis {
    inner: PrivateRedis,
    pub port: u16,
}

/// A port nobody listens on right now.
/// The key names of a single Redis (today's names), for tests that look at keys directly.
pub fn single_keys() -> superhero::pipeline::keys::Keys {
    superhero::pipeline::shard::Layout::single().keys(superhero::pipeline::shard::Shard(0))
}

pub fn free_port() -> u16 {
    superhero::ops::private_redis::free_port().expect("no free port")
}

impl TestRedis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra redis-server arguments, e.g. `["--requirepass", "secret"]`.
    pub fn start_with(extra: &[&str]) -> Self {
        let inner = PrivateRedis::start(extra).expect("private redis-server (see .ci/run)");
        let port = inner.port();
        TestRedis { inner, port }
    }

    /// Kills the server (SIGKILL): every connection drops, every key is gone.
    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.inner.restart().expect("restart redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Settings pointing at this server, everything else at its default.
    pub fn settings(&self) -> Settings {
        self.settings_with(&[])
    }

    /// Settings pointing at this server with some variables overridden.
    pub fn settings_with(&self, vars: &[(&str, &str)]) -> Settings {
        let mut layers = Layers::default();
        layers.flags.insert("REDIS_HOST".into(), "127.0.0.1".into());
        layers
            .flags
            .insert("REDIS_PORT".into(), self.port.to_string());
        for (k, v) in vars {
            layers.flags.insert(k.to_string(), v.to_string());
        }
        Settings::from_layers(layers).expect("test settings")
    }

    /// A plain synchronous connection for assertions.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to private redis")
    }

    /// Runs one command on this server.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut self.client()).expect("redis command")
    }

    /// A private replica of this server, returned once its link is up and the primary counts it
    /// online (so a WAIT on the primary can be answered by it).
    pub fn start_replica(&self) -> TestRedis {
        let primary = self.port.to_string();
        let replica = TestRedis::start_with(&["--replicaof", "127.0.0.1", &primary]);
        wait_until(
            "the replica's link to its primary",
            Duration::from_secs(20),
            || {
                let info: String = replica.cmd(&["INFO", "replication"]);
                let online: String = self.cmd(&["INFO", "replication"]);
                info.contains("master_link_status:up") && online.contains("state=online")
            },
        );
        replica
    }

    /// The redis-server's process id, from `INFO server`.
    pub fn pid(&self) -> u32 {
        let info: String = self.cmd(&["INFO", "server"]);
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
            .expect("process_id in INFO server")
    }

    /// Stops the redis-server (SIGSTOP) until the guard is dropped (SIGCONT).
    pub fn pause(&self) -> Paused {
        let pid = self.pid();
        send_signal(pid, "STOP");
        Paused { pid }
    }
}

/// A redis-server stopped by [`TestRedis::pause`]; dropping it lets the server go on.
pub struct Paused {
    pid: u32,
}

impl Drop for Paused {
    fn drop(&mut self) {
        // No assertion: a drop while a failed test unwinds must not panic again.
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid.to_string()])
            .status();
    }
}

fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// A private Redis Cluster on localhost, stopped when dropped.
pub struct TestCluster {
    pub inner: PrivateCluster,
}

impl TestCluster {
    /// `primaries` primaries with `replicas` replicas each, every slot served.
    pub fn start(primaries: usize, replicas: usize) -> Self {
        let inner = PrivateCluster::start(primaries, replicas).expect("private Redis Cluster");
        TestCluster { inner }
    }

    /// The value for REDIS_CLUSTER_NODES: every node.
    pub fn seeds(&self) -> String {
        self.inner.seeds()
    }

    /// Settings pointing at this cluster (through `seeds`), everything else at its default.
    pub fn settings_with_seeds(&self, seeds: &str) -> Settings {
        let mut layers = Layers::default();
        layers
            .flags
            .insert("REDIS_CLUSTER_NODES".into(), seeds.to_string());
        Settings::from_layers(layers).expect("test settings")
    }

    pub fn settings(&self) -> Settings {
        self.settings_with_seeds(&self.seeds())
    }

    /// The ports of the primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        self.inner.primaries().expect("CLUSTER NODES")
    }

    /// Runs one command on one node, as a plain client of that node.
    pub fn on<T: redis::FromRedisValue>(&self, port: u16, args: &[&str]) -> T {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .expect("connect to a cluster node");
        let mut cmd = redis::cmd(args[0]);
        cmd.arg(&args[1..]);
        cmd.query(&mut conn)
            .expect("redis command on a cluster node")
    }

    /// The primary that serves `key`'s slot now, as the first live primary sees it.
    pub fn owner_of(&self, key: &str) -> u16 {
        use redis::Value;
        let any = self.primaries()[0];
        let slot: i64 = self.on(any, &["CLUSTER", "KEYSLOT", key]);
        let Value::Array(ranges) = self.on(any, &["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS is an array");
        };
        for range in ranges {
            if let Value::Array(range) = range {
                if let [Value::Int(from), Value::Int(to), Value::Array(primary), ..] = &range[..] {
                    if let (true, Some(Value::Int(port))) =
                        ((*from..=*to).contains(&slot), primary.get(1))
                    {
                        return *port as u16;
                    }
                }
            }
        }
        panic!("no primary serves slot {slot}");
    }
}

/// The real `superhero` binary, run in an empty working directory (no stray `.env`) with none of
/// the project's variables inherited from the caller's environment.
pub fn superhero(cwd: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_superhero"));
    cmd.current_dir(cwd);
    for var in superhero::config::VARS {
        cmd.env_remove(var.name);
    }
    cmd
}

/// Path of a file under `tests/fixtures/`: the tests bring their own data.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Polls `check` until it returns true or the deadline passes.
pub fn wait_until(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    if !holds_within(timeout, check) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Polls `check` until it returns true (true) or the deadline passes (false).
pub fn holds_within(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Async twin of [`wait_until`].
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
/// Asserts the value of each `(sample, value)` in a scraped Prometheus `text` (shown when one
/// differs).
pub fn assert_samples(text: &str, expected: &[(&str, f64)]) {
    for (name, value) in expected {
        assert_eq!(
            superhero::metrics::sample_value(text, name),
            Some(*value),
            "{name} in\n{text}"
        );
    }
}

pub mod game_server;
pub mod roles;
pub mod ws;

/// GET /metrics over a plain TCP socket.
pub fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Writes `worker`'s pair of `game` into folder `out` through the sink's one writer, as a
/// worker does.
pub async fn write_pair(
    out: &Path,
    worker: &str,
    game: &str,
    meta: &[MetaRow],
    podium: &[PodiumRow],
) -> anyhow::Result<()> {
    Output::Folder(out.to_path_buf())
        .write_game(worker, game, meta.to_vec(), podium.to_vec())
        .await
}

/// [`write_pair`] for a test that is not async itself.
pub fn write_pair_blocking(
    out: &Path,
    worker: &str,
    game: &str,
    meta: &[MetaRow],
    podium: &[PodiumRow],
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(write_pair(out, worker, game, meta, podium))
}
