//! Issue 14: OUTPUT_DIR in an object store. Every test starts its own S3 protocol server
//! (`moto_server` from the PyPI package `moto[server]`, installed by `.ci/run`), creates its
//! bucket, and runs workers and a fanout as real processes writing to `s3://bucket/run`.
//! Without moto the tests fail and say how to install it.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::roles::{
    assert_exactly_once_in, conn, games, runtime, tokens, unacked, wait_live_for, Pairs, Proc,
};
use common::{free_port, superhero, wait_until, TestRedis};
use superhero::ops::bench::synth::{self, SynthGame};
use superhero::pipeline::keys;

const LOBBY: &str = "redis.lib.server.lobby";
const BUCKET: &str = "superhero-test";
const KEY_ID: &str = "AKIATESTKEY0000001";
const SECRET: &str = "test-secret-9f8e7d6c5b4a";
/// How long these tests wait for a worker to be live.
const LIVE: Duration = Duration::from_secs(30);

/// A moto S3 server on a free port, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        Moto::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("cannot run python3 for moto_server: install python3 and moto[server]");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "moto_server exited at once ({status}): is it installed? \
                     `python3 -m pip install 'moto[server]'` (.ci/run does this)"
                );
            }
            if http(port, "GET", "/", &[]).is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, port }
    }

    fn create_bucket(&self) {
        let answer = http(self.port, "PUT", &format!("/{BUCKET}"), &[]).expect("PUT bucket");
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "{answer}"
        );
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Game → (table, worker) of every object under `run/superhero/`; every other key too.
    fn pairs(&self) -> (Pairs, Vec<String>) {
        list_pairs(self.port)
    }

    /// Exactly the given games in the bucket, each one META and one PODIUM object by one
    /// worker, and no other object.
    fn assert_one_pair_per_game(&self, games: &[String]) {
        let (found, others) = self.pairs();
        assert_exactly_once_in(
            &found,
            &others,
            games,
            "games in the bucket vs games expected",
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn list_pairs(port: u16) -> (Pairs, Vec<String>) {
    let mut found: Pairs = BTreeMap::new();
    let mut others = Vec::new();
    for key in list_keys(port) {
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["run", "superhero", table, name] => {
                match superhero::pipeline::sink::parse_file_name(name) {
                    Some((game, worker)) => found
                        .entry(game.to_string())
                        .or_default()
                        .push((table.to_string(), worker.to_string())),
                    None => others.push(key.clone()),
                }
            }
            _ => others.push(key.clone()),
        }
    }
    (found, others)
}

/// Every key in the bucket (ListObjectsV2, page by page), unsigned: moto accepts that.
fn list_keys(port: u16) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/{BUCKET}?list-type=2");
        if let Some(t) = &token {
            path.push_str(&format!("&continuation-token={}", percent(t)));
        }
        let Some(body) = http(port, "GET", &path, &[]) else {
            return keys;
        };
        keys.extend(tags(&body, "Key"));
        token = tags(&body, "NextContinuationToken").into_iter().next();
        if !body.contains("<IsTruncated>true</IsTruncated>") || token.is_none() {
            return keys;
        }
    }
}

fn tags(body: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    body.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One plain HTTP/1.0 request (no chunking to undo); the whole response, or None when nobody
/// answers.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).to_string())
}

/// A TCP proxy in front of moto that the test can take down and bring back on the same port:
/// while down, connecting is refused and open connections are cut. While held, it forwards
/// nothing (a store that stalls mid-request) until released.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    held: Arc<AtomicBool>,
    /// Chunks that arrived while held.
    stalled: Arc<std::sync::atomic::AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    target: u16,
    listener: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let mut proxy = Proxy {
            port: free_port(),
            up: Arc::new(AtomicBool::new(false)),
            held: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            open: Arc::new(Mutex::new(Vec::new())),
            target,
            listener: None,
        };
        proxy.bring_up();
        proxy
    }

    fn bring_up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        self.up.store(true, Ordering::SeqCst);
        let (up, held, stalled, open, target) = (
            self.up.clone(),
            self.held.clone(),
            self.stalled.clone(),
            self.open.clone(),
            self.target,
        );
        self.listener = Some(std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    let (held, stalled) = (held.clone(), stalled.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if held.load(Ordering::SeqCst) {
                                stalled.fetch_add(1, Ordering::SeqCst);
                            }
                            while held.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
                let mut open = open.lock().unwrap();
                open.push(client);
                open.push(server);
            }
            // Dropping the listener here closes the port: new connections are refused.
        }));
    }

    /// Chunks of requests or answers held so far.
    fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Stalls (true) or resumes (false) every byte in both directions.
    fn hold(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
    }

    fn take_down(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(t) = self.listener.take() {
            t.join().unwrap();
        }
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.hold(false);
        self.take_down();
    }
}

fn seed(redis: &TestRedis, games: &[SynthGame]) {
    runtime().block_on(async {
        let mut conn = conn(redis).await;
        synth::seed(&mut conn, games).await.expect("seed");
    });
}

fn append(redis: &TestRedis, games: &[SynthGame]) {
    runtime().block_on(async {
        let mut conn = conn(redis).await;
        let records: Vec<String> = games
            .iter()
            .flat_map(|g| synth::records(LOBBY, g))
            .collect();
        synth::append_all(&mut conn, LOBBY, &records, 500)
            .await
            .expect("append");
    });
}

/// The store settings every process gets: endpoint, region, (fake) credentials.
fn s3_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("OUTPUT_DIR", format!("s3://{BUCKET}/run")),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("ACK_TIMEOUT", "2".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn role(
    dir: &Path,
    redis: &TestRedis,
    name: &str,
    args: &[&str],
    endpoint: &str,
    extra: &[(&str, &str)],
) -> Proc {
    let env = s3_env(endpoint);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend_from_slice(extra);
    Proc::start(name, dir, redis, args, &all)
}

fn worker(dir: &Path, redis: &TestRedis, id: &str, endpoint: &str, extra: &[(&str, &str)]) -> Proc {
    role(
        dir,
        redis,
        id,
        &["worker", "--worker-id", id],
        endpoint,
        extra,
    )
}

fn fanout(dir: &Path, redis: &TestRedis, endpoint: &str, extra: &[(&str, &str)]) -> Proc {
    role(dir, redis, "fanout", &["fanout"], endpoint, extra)
}

fn dead_letters(redis: &TestRedis) -> usize {
    let n: usize = redis.cmd(&["XLEN", &keys::dead_stream(LOBBY)]);
    n
}

fn wait_pairs(moto_port: u16, n: usize, timeout: Duration) {
    wait_until(&format!("{n} games in the bucket"), timeout, || {
        list_pairs(moto_port)
            .0
            .values()
            .filter(|f| f.len() >= 2)
            .count()
            >= n
    });
}

/// `superhero report` of the bucket, as JSON, with its exit code.
fn report(dir: &Path, endpoint: &str) -> (i32, serde_json::Value, String) {
    let mut cmd = superhero(dir);
    for (k, v) in s3_env(endpoint) {
        cmd.env(k, v);
    }
    let out = cmd
        .args(["report", "--format", "json", "--strict"])
        .output()
        .expect("report");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// Reads both tables of the bucket with pyarrow through the S3 API and prints their schemas and
/// counts.
fn pyarrow_reads(endpoint: &str) -> String {
    let script = r#"
import sys
try:
    import pyarrow.fs as fs, pyarrow.parquet as pq
except ImportError as e:
    print("pyarrow is missing (python3 -m pip install pyarrow; .ci/run does): %s" % e)
    sys.exit(3)
endpoint, bucket, key, secret = sys.argv[1:5]
s3 = fs.S3FileSystem(endpoint_override=endpoint.split("://")[1], scheme="http",
                     access_key=key, secret_key=secret, region="us-east-1")
for table in ["GAME_META", "GAME_PODIUM"]:
    t = pq.read_table("%s/run/superhero/%s" % (bucket, table), filesystem=s3)
    print(table, t.num_rows, len(set(t.column("game_token").to_pylist())))
    for f in t.schema:
        print(" ", f.name, f.type)
"#;
    let out = Command::new("python3")
        .args(["-c", script, endpoint, BUCKET, KEY_ID, SECRET])
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pyarrow could not read the bucket:\n{text}"
    );
    text
}

#[test]
fn four_workers_write_500_games_exactly_once_to_s3_and_pyarrow_reads_them() {
    let moto = Moto::start();
    moto.create_bucket();
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = moto.endpoint();
    let ids = ["w1", "w2", "w3", "w4"];
    let workers: Vec<Proc> = ids
        .iter()
        .map(|id| worker(dir.path(), &redis, id, &endpoint, &[]))
        .collect();
    let _f = fanout(dir.path(), &redis, &endpoint, &[]);
    for id in ids {
        wait_live_for(&redis, LOBBY, &[id], LIVE);
    }
    let games = games(500, 14);
    seed(&redis, &games);
    append(&redis, &games);
    wait_pairs(moto.port, 500, Duration::from_secs(240));
    wait_until("every entry acknowledged", Duration::from_secs(30), || {
        unacked(&redis, LOBBY) == 0
    });
    moto.assert_one_pair_per_game(&tokens(&games));
    assert_eq!(dead_letters(&redis), 0);
    let writers: std::collections::BTreeSet<String> =
        moto.pairs().0.values().map(|f| f[0].1.clone()).collect();
    assert!(writers.len() >= 2, "the work was shared: {writers:?}");

    let (code, json, stderr) = report(dir.path(), &endpoint);
    assert_eq!(code, 0, "report --strict: {stderr}\n{json}");
    assert_eq!(json["meta"]["games"], 500, "{json}");
    assert_eq!(json["podium"]["games"], 500, "{json}");
    assert_eq!(json["output_dir"], format!("s3://{BUCKET}/run/superhero"));

    let read = pyarrow_reads(&endpoint);
    let meta_rows: usize = games.iter().map(|g| synth::expected_rows(g).0.len()).sum();
    assert!(
        read.contains(&format!("GAME_META {meta_rows} 500")),
        "{read}"
    );
    assert!(
        read.contains(&format!("GAME_PODIUM {meta_rows} 500")),
        "{read}"
    );
    for field in [
        "game_token string",
        "user_token string",
        "superhero_id uint16",
        "rounds uint16",
        "rank uint8",
        "damage_delivered uint64",
        "damage_received uint64",
    ] {
        assert!(read.contains(field), "{field} in\n{read}");
    }
    for w in &workers {
        let log = w.log_text();
        assert!(
            !log.contains(SECRET) && !log.contains(KEY_ID),
            "{}: {log}",
            w.name
        );
    }
}

#[test]
fn a_writer_dead_mid_pair_leaves_one_pair_in_the_bucket() {
    let moto = Moto::start();
    moto.create_bucket();
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = moto.endpoint();
    let games = games(2, 15);
    let (mid_pair, whole_pair) = (&games[0], &games[1]);
    seed(&redis, &games);
    // W claimed both games and started writing; its lease has run out since. It died after its
    // META PUT of the first game, and after both PUTs (before `finish`) of the second.
    for g in &games {
        let _: () = redis.cmd(&["SET", &common::single_keys().etl_writer(&g.token), "w"]);
        let (meta, podium) = synth::expected_rows(g);
        let (meta_bytes, podium_bytes) =
            superhero::pipeline::sink::encode_game("w", &g.token, &meta, &podium).unwrap();
        let put = |table: &str, bytes: &[u8]| {
            let path = format!("/{BUCKET}/run/superhero/{table}/{}_w.gz", g.token);
            let answer = http(moto.port, "PUT", &path, bytes).expect("PUT object");
            assert!(answer.contains(" 200 "), "{answer}");
        };
        put("GAME_META", &meta_bytes);
        if g.token == whole_pair.token {
            put("GAME_PODIUM", &podium_bytes);
        }
    }
    let _x = worker(dir.path(), &redis, "x", &endpoint, &[]);
    let _f = fanout(dir.path(), &redis, &endpoint, &[]);
    wait_live_for(&redis, LOBBY, &["x"], LIVE);
    append(&redis, &games);
    wait_until("both games done", Duration::from_secs(60), || {
        games.iter().all(|g| {
            let done: Option<String> =
                redis.cmd(&["GET", &common::single_keys().etl_done(&g.token)]);
            done.is_some()
        })
    });
    wait_until("every entry acknowledged", Duration::from_secs(30), || {
        unacked(&redis, LOBBY) == 0
    });
    moto.assert_one_pair_per_game(&tokens(&games));
    let found = moto.pairs().0;
    assert_eq!(
        found[&mid_pair.token][0].1, "x",
        "the half pair was replaced"
    );
    assert_eq!(
        found[&whole_pair.token][0].1, "w",
        "the whole pair became the output"
    );
    let done: Option<String> =
        redis.cmd(&["GET", &common::single_keys().etl_done(&whole_pair.token)]);
    assert_eq!(done.as_deref(), Some("w"));
}

#[test]
fn a_worker_killed_during_a_burst_and_restarted_leaves_one_pair_per_game() {
    let moto = Moto::start();
    moto.create_bucket();
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = moto.endpoint();
    let mut w1 = worker(dir.path(), &redis, "w1", &endpoint, &[]);
    let _w2 = worker(dir.path(), &redis, "w2", &endpoint, &[]);
    let _f = fanout(dir.path(), &redis, &endpoint, &[("MAX_DELIVERIES", "50")]);
    wait_live_for(&redis, LOBBY, &["w1"], LIVE);
    wait_live_for(&redis, LOBBY, &["w2"], LIVE);
    let games = games(300, 16);
    seed(&redis, &games);
    append(&redis, &games);
    // SIGKILL w1 while it is writing: some of its games are claimed, some half-written.
    wait_until(
        "w1 to have written some games",
        Duration::from_secs(60),
        || {
            moto.pairs()
                .0
                .values()
                .any(|f| f.iter().any(|(_, w)| w == "w1"))
        },
    );
    w1.kill();
    // w1 comes back under the same id and sweeps its leftovers in the bucket.
    let _w1 = worker(dir.path(), &redis, "w1", &endpoint, &[]);
    wait_pairs(moto.port, 300, Duration::from_secs(180));
    wait_until("every entry acknowledged", Duration::from_secs(60), || {
        unacked(&redis, LOBBY) == 0
    });
    moto.assert_one_pair_per_game(&tokens(&games));
    assert_eq!(dead_letters(&redis), 0);
}

#[test]
fn the_store_unreachable_for_10s_loses_and_duplicates_nothing() {
    let moto = Moto::start();
    moto.create_bucket();
    let mut proxy = Proxy::start(moto.port);
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let extra = [("MAX_DELIVERIES", "100")];
    let _w1 = worker(dir.path(), &redis, "w1", &endpoint, &extra);
    let _w2 = worker(dir.path(), &redis, "w2", &endpoint, &extra);
    let _f = fanout(dir.path(), &redis, &endpoint, &extra);
    wait_live_for(&redis, LOBBY, &["w1"], LIVE);
    wait_live_for(&redis, LOBBY, &["w2"], LIVE);
    let games = games(200, 17);
    seed(&redis, &games);
    let (before, during) = games.split_at(100);
    append(&redis, before);
    wait_until("some games written", Duration::from_secs(60), || {
        !moto.pairs().0.is_empty()
    });
    proxy.take_down();
    let down_since = Instant::now();
    append(&redis, during);
    // The outage itself lasts 10 s: the workers must ride it out, not a settling pause.
    let outage_end = down_since + Duration::from_secs(10);
    wait_until("the outage to last 10 s", Duration::from_secs(15), || {
        Instant::now() >= outage_end
    });
    proxy.bring_up();
    wait_pairs(moto.port, 200, Duration::from_secs(180));
    wait_until("every entry acknowledged", Duration::from_secs(60), || {
        unacked(&redis, LOBBY) == 0
    });
    moto.assert_one_pair_per_game(&tokens(&games));
    assert_eq!(dead_letters(&redis), 0);
}

#[test]
fn wrong_credentials_or_a_missing_bucket_are_one_clear_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // moto checks credentials only in its IAM mode: no key is known, so ours is refused.
    let strict = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let (code, _, stderr) = report(dir.path(), &strict.endpoint());
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("InvalidAccessKeyId") || stderr.contains("403"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(SECRET) && !stderr.contains(KEY_ID),
        "{stderr}"
    );

    // A worker with the same credentials stops at start with that one line.
    let redis = TestRedis::start();
    let mut w = worker(dir.path(), &redis, "w1", &strict.endpoint(), &[]);
    let code = w
        .wait_exit(Duration::from_secs(60))
        .expect("the worker stops");
    assert_ne!(code, Some(0));
    let log = w.log_text();
    assert!(
        log.contains("error: ") && log.contains("InvalidAccessKeyId"),
        "{log}"
    );
    assert!(!log.contains(SECRET) && !log.contains(KEY_ID), "{log}");

    // A bucket that does not exist.
    let open = Moto::start();
    let (code, _, stderr) = report(dir.path(), &open.endpoint());
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("NoSuchBucket") || stderr.contains("not found"),
        "{stderr}"
    );

    // Help never shows the credentials the environment holds.
    let mut cmd = superhero(dir.path());
    for (k, v) in s3_env(&open.endpoint()) {
        cmd.env(k, v);
    }
    let help = cmd.args(["worker", "--help"]).output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains(SECRET) && !help.contains(KEY_ID), "{help}");
}

#[test]
fn an_unsupported_output_scheme_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = superhero(dir.path())
        .args(["report", "--output-dir", "ftp://host/run"])
        .output()
        .expect("report");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OUTPUT_DIR") && stderr.contains("unsupported scheme"),
        "{stderr}"
    );
    assert!(!dir.path().join("ftp:").exists());
}

#[test]
fn redis_restarted_empty_while_a_write_is_in_flight_keeps_the_files() {
    let moto = Moto::start();
    moto.create_bucket();
    let proxy = Proxy::start(moto.port);
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let w1 = worker(dir.path(), &redis, "w1", &endpoint, &[]);
    let mut f = fanout(dir.path(), &redis, &endpoint, &[]);
    wait_live_for(&redis, LOBBY, &["w1"], LIVE);
    let games = games(1, 21);
    seed(&redis, &games);
    // The store stalls; the worker claims the game and its write hangs in the proxy.
    proxy.hold(true);
    append(&redis, &games);
    wait_until(
        "w1's write stalled in the store",
        Duration::from_secs(20),
        || proxy.stalled() > 0,
    );
    // Redis comes back empty: the game's keys and its claim are gone with it. (The fanout has
    // done its part; without it, the worker is Redis's only client running scripts.)
    f.kill();
    let mut redis = redis;
    redis.restart();
    // The worker's next lease renewal (a script) finds the lease gone, on a new connection:
    // its `finish` will run against the empty Redis rather than fail on the broken one.
    wait_until("the worker back on Redis", Duration::from_secs(20), || {
        let clients: String = redis.cmd(&["CLIENT", "LIST"]);
        clients.contains("cmd=evalsha")
    });
    proxy.hold(false);
    wait_until(
        "the worker judged its write against an empty Redis",
        Duration::from_secs(30),
        || w1.log_text().contains("keeping our files as its output"),
    );
    let (found, _) = moto.pairs();
    let files = found.get(&games[0].token).cloned().unwrap_or_default();
    assert_eq!(files.len(), 2, "the only copy of the game stays: {found:?}");
}

#[test]
fn a_write_held_past_write_timeout_while_another_worker_is_routed_the_game_ends_as_one_pair() {
    let moto = Moto::start();
    moto.create_bucket();
    let proxy = Proxy::start(moto.port);
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let slow = format!("http://127.0.0.1:{}", proxy.port);
    let direct = format!("http://127.0.0.1:{}", moto.port);
    let _w1 = worker(dir.path(), &redis, "w1", &slow, &[("WRITE_TIMEOUT", "1")]);
    let _f = fanout(dir.path(), &redis, &direct, &[]);
    wait_live_for(&redis, LOBBY, &["w1"], LIVE);
    let games = games(1, 22);
    let game = games[0].token.clone();
    seed(&redis, &games);
    proxy.hold(true);
    append(&redis, &games);
    wait_until("w1 holds the game", Duration::from_secs(20), || {
        let holder: Option<String> = redis.cmd(&["GET", &common::single_keys().etl_lease(&game)]);
        holder.is_some_and(|h| h.starts_with("w1:"))
    });
    // A second worker, on a store that answers, is routed the record once w1's delivery times
    // out; while w1's write is out it must not take the game.
    let _w2 = worker(dir.path(), &redis, "w2", &direct, &[]);
    wait_live_for(&redis, LOBBY, &["w2"], LIVE);
    wait_until("the record routed to w2", Duration::from_secs(30), || {
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(keys::log_stream(LOBBY))
            .arg(keys::fanout_group(LOBBY))
            .arg("-")
            .arg("+")
            .arg(10)
            .query(&mut redis.client())
            .unwrap_or_default();
        rows.iter().any(|(_, owner, _, _)| owner == "w2")
    });
    let done: Option<String> = redis.cmd(&["GET", &common::single_keys().etl_done(&game)]);
    assert_eq!(
        done, None,
        "nobody finished the game while w1's write was out"
    );
    proxy.hold(false);
    wait_until("the game done", Duration::from_secs(60), || {
        let done: Option<String> = redis.cmd(&["GET", &common::single_keys().etl_done(&game)]);
        done.is_some() && unacked(&redis, LOBBY) == 0
    });
    let done: Option<String> = redis.cmd(&["GET", &common::single_keys().etl_done(&game)]);
    let (found, others) = moto.pairs();
    assert!(others.is_empty(), "stray objects: {others:?}");
    let files = found.get(&game).cloned().unwrap_or_default();
    assert_eq!(files.len(), 2, "{found:?}");
    assert!(
        files.iter().all(|(_, w)| Some(w) == done.as_ref()),
        "done = {done:?}, files {files:?}"
    );
    assert_eq!(dead_letters(&redis), 0);
}
