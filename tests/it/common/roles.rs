//! Roles as real `superhero` processes ([`Proc`]: spawn with a log file, signal (STOP, CONT,
//! TERM, KILL), wait for exit) or as tasks in the test process ([`Task`]); a whole pipeline of
//! them ([`Pipeline`]); and the Parquet pairs they leave behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use superhero::config::Settings;
use superhero::pipeline::redis_conn::{Conn, Redis};
use superhero::roles::worker::WorkerReport;
use superhero::shutdown::{self, Shutdown, ShutdownTrigger};
use tokio::task::JoinHandle;

use super::{superhero, wait_until, TestRedis};

/// The lobby every pipeline test uses (the default LOBBY).
pub const LOBBY: &str = "redis.lib.server.lobby";

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

    /// Spawns a prepared command (any `superhero` subcommand, any environment) as `name`, its
    /// stdout and stderr in `<dir>/<name>.log`.
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

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit, however long that takes.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for the process")
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

    /// The exit code once the process ends within `timeout`; panics if it does not (the drop
    /// kills it).
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        self.wait_exit(timeout)
            .unwrap_or_else(|| panic!("{} did not exit within {timeout:?}", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Game token → its files as (table, worker id), from wherever the output went.
pub type Pairs = BTreeMap<String, Vec<(String, String)>>;

/// Game token → the (table, worker id) of every finished Parquet file under the given output
/// folders (workers may each have their own).
pub fn pairs(dirs: &[&Path]) -> Pairs {
    let mut out = Pairs::new();
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

/// The games with both files (META and PODIUM) under the output folders `dirs`: a game counted
/// by [`pairs`] may have only its first file renamed so far.
pub fn written(dirs: &[&Path]) -> std::collections::BTreeSet<String> {
    pairs(dirs)
        .into_iter()
        .filter(|(_, files)| files.len() >= 2)
        .map(|(game, _)| game)
        .collect()
}

/// Asserts that the games `found` are exactly `games`, each with one META and one PODIUM file by
/// the same worker, and that nothing else is left (`strays`: every other file or object, temporary
/// or not); `what` names the comparison of games in a failure.
pub fn assert_exactly_once_in(found: &Pairs, strays: &[String], games: &[String], what: &str) {
    let mut expected: Vec<&String> = games.iter().collect();
    expected.sort();
    expected.dedup();
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
    assert!(
        strays.is_empty(),
        "temporary or stray files left: {strays:?}"
    );
}

/// Asserts that exactly `games` have output under the output folders `dirs`, each exactly one
/// META and one PODIUM file by the same worker, and that no other file (temporary or stray,
/// anywhere under them) is left.
pub fn assert_exactly_once(dirs: &[&Path], games: &[String]) {
    let found = pairs(dirs);
    let all = every_file(dirs);
    let mut strays: Vec<String> = all
        .into_iter()
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            superhero::pipeline::sink::parse_file_name(name).is_none()
        })
        .collect();
    for dir in dirs {
        strays.extend(files_outside_tables(dir));
    }
    assert_exactly_once_in(
        &found,
        &strays,
        games,
        "games with output vs games expected",
    );
}

/// Every file under `out` but outside the table folders (there should be none).
fn files_outside_tables(out: &Path) -> Vec<String> {
    let tables = ["GAME_META", "GAME_PODIUM"].map(|t| out.join("superhero").join(t));
    let mut names = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !tables.contains(&path) {
                    stack.push(path);
                }
            } else if !tables.iter().any(|t| path.starts_with(t)) {
                names.push(path.display().to_string());
            }
        }
    }
    names
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

/// The ids of the log's entries pending in the fanouts' group (single layout, first 100).
pub async fn pending_ids(conn: &mut Conn) -> Vec<String> {
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(superhero::pipeline::keys::log_stream(LOBBY))
        .arg(superhero::pipeline::keys::fanout_group(LOBBY))
        .arg("-")
        .arg("+")
        .arg(100)
        .query_async(conn)
        .await
        .unwrap_or_default();
    rows.into_iter().map(|(id, ..)| id).collect()
}

pub async fn conn(redis: &TestRedis) -> Conn {
    let manager = redis::Client::open(redis.url())
        .expect("client")
        .get_connection_manager()
        .await
        .expect("connection");
    Conn::Single(manager)
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

/// Waits (20 s at most) until worker `id` of `lobby` is live: see [`until_live`].
pub fn wait_live(redis: &TestRedis, lobby: &str, id: &str) {
    wait_live_for(redis, lobby, &[id], Duration::from_secs(20));
}

/// Waits until every worker of `ids` is live: see [`until_live`].
pub fn wait_live_for(redis: &TestRedis, lobby: &str, ids: &[&str], timeout: Duration) {
    block_on(until_live(redis, lobby, ids, timeout));
}

/// Waits until every worker of `ids` in `lobby` is live as the fanout sees it: a fresh heartbeat
/// (it is subscribed and in rotation). A fanout started earlier would share the first records
/// among the others only.
pub async fn until_live(redis: &TestRedis, lobby: &str, ids: &[&str], timeout: Duration) {
    let conn = conn(redis).await;
    let what = format!("workers {} to be live", ids.join(", "));
    super::wait_for(&what, timeout, || {
        let mut conn = conn.clone();
        async move {
            superhero::roles::fanout::inspect(&mut conn, lobby)
                .await
                .map(|s| ids.iter().all(|id| s.live_workers.iter().any(|w| w == id)))
                .unwrap_or(false)
        }
    })
    .await;
}

/// Runs `fut` on a runtime of its own in a thread of its own: callable from a plain test and
/// from within a tokio test alike.
fn block_on<T: Send>(fut: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| runtime().block_on(fut))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Waits until each channel has at least `n` subscribers.
pub fn wait_subscribed(redis: &TestRedis, channels: &[String], n: u64) {
    let client = redis::Client::open(redis.url()).expect("redis url");
    wait_until("subscriptions", Duration::from_secs(10), || {
        let counts: Vec<(String, u64)> = client
            .get_connection()
            .and_then(|mut c| {
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(channels)
                    .query(&mut c)
            })
            .unwrap_or_default();
        counts.len() == channels.len() && counts.iter().all(|(_, k)| *k >= n)
    });
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

/// A connection for a role run in this process.
pub async fn connect_with(settings: &Settings) -> Redis {
    Redis::connect(&settings.redis)
        .await
        .expect("connect to redis")
}

/// A role function run as a task in this process (not a process: that is [`Proc`]), stopped
/// through its shutdown trigger.
pub struct Task<T> {
    trigger: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<T>>,
}

impl<T: Send + 'static> Task<T> {
    /// Spawns what `role` makes of the shutdown signal.
    pub fn spawn<F>(role: impl FnOnce(Shutdown) -> F) -> Task<T>
    where
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let (trigger, stop) = shutdown::channel();
        let task = tokio::spawn(role(stop));
        Task { trigger, task }
    }

    /// Fires the shutdown signal; what the role returned (it must return Ok).
    pub async fn stop(self) -> T {
        self.trigger.fire();
        self.task.await.unwrap().unwrap()
    }

    /// [`Task::stop`], failing if the role takes longer than `timeout` to return.
    pub async fn stop_within(self, timeout: Duration) -> T {
        self.trigger.fire();
        tokio::time::timeout(timeout, self.task)
            .await
            .unwrap_or_else(|_| panic!("the role did not stop within {timeout:?}"))
            .expect("the role's task")
            .expect("the role returns Ok")
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// `worker::run` as worker `id`, in this process.
pub async fn start_worker(settings: &Settings, id: &str) -> Task<WorkerReport> {
    let mut settings = settings.clone();
    settings.worker_id = id.to_string();
    let redis = connect_with(&settings).await;
    Task::spawn(|stop| async move { superhero::roles::worker::run(&settings, redis, stop).await })
}

/// `fanout::run`, in this process.
pub async fn start_fanout(settings: &Settings) -> Task<()> {
    let settings = settings.clone();
    let redis = connect_with(&settings).await;
    Task::spawn(|stop| async move { superhero::roles::fanout::run(&settings, redis, stop).await })
}

/// Redis + fanout + N workers + output: a private redis-server, a working folder with the
/// output folder `out` in it, and `superhero worker` and `superhero fanout` processes (logs in
/// the folder).
pub struct Pipeline {
    pub workers: Vec<Proc>,
    pub fanout: Option<Proc>,
    pub out: PathBuf,
    pub dir: tempfile::TempDir,
    pub redis: TestRedis,
    env: Vec<(String, String)>,
}

impl Pipeline {
    /// Redis and the folders, no role yet; `env` is given to every role started from it.
    pub fn new(env: &[(&str, &str)]) -> Pipeline {
        Pipeline::on(TestRedis::start(), env)
    }

    /// [`Pipeline::new`] on a redis-server started by the caller (with its own arguments).
    pub fn on(redis: TestRedis, env: &[(&str, &str)]) -> Pipeline {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        Pipeline {
            workers: Vec::new(),
            fanout: None,
            out,
            dir,
            redis,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Workers `ids` writing to `out`, live (within 20 s), then a fanout subscribed to the lobby
    /// channel.
    pub fn start(ids: &[&str], env: &[(&str, &str)]) -> Pipeline {
        Pipeline::new(env).with_roles(ids, Duration::from_secs(20))
    }

    /// Starts workers `ids`, waits `live_within` at most for them to be live, then starts a
    /// fanout (named "fanout") and waits for it to subscribe to the lobby channel.
    pub fn with_roles(mut self, ids: &[&str], live_within: Duration) -> Pipeline {
        self.workers = ids.iter().map(|id| self.worker(id, &[])).collect();
        wait_subscribed(&self.redis, &worker_channels(ids), 1);
        wait_live_for(&self.redis, LOBBY, ids, live_within);
        self.fanout = Some(self.fanout("fanout", &[]));
        wait_subscribed(&self.redis, &[LOBBY.to_string()], 1);
        self
    }

    /// The settings of a role run in this process: this Redis, OUTPUT_DIR `out`, the
    /// pipeline's `env` and then `extra`.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let out = self.out.display().to_string();
        let mut vars = vec![("OUTPUT_DIR", out.as_str())];
        vars.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        vars.extend_from_slice(extra);
        self.redis.settings_with(&vars)
    }

    /// A `superhero worker --worker-id <id>` process writing to `out`, not waited for.
    pub fn worker(&self, id: &str, extra: &[(&str, &str)]) -> Proc {
        let out = self.out.display().to_string();
        let mut env = vec![("OUTPUT_DIR", out.as_str())];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend_from_slice(extra);
        Proc::start(
            id,
            self.dir.path(),
            &self.redis,
            &["worker", "--worker-id", id],
            &env,
        )
    }

    /// A `superhero fanout` process named `name` (its log), not waited for.
    pub fn fanout(&self, name: &str, extra: &[(&str, &str)]) -> Proc {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        Proc::start(name, self.dir.path(), &self.redis, &["fanout"], &env)
    }

    /// The same roles in this process, with [`Pipeline::settings`]: workers `ids`
    /// (`worker::run`), live within `live_within`, then a fanout (`fanout::run`) subscribed to
    /// the lobby channel.
    pub async fn start_tasks(
        &self,
        ids: &[&str],
        live_within: Duration,
    ) -> (Vec<Task<WorkerReport>>, Task<()>) {
        let settings = self.settings(&[]);
        let mut workers = Vec::new();
        for id in ids {
            workers.push(start_worker(&settings, id).await);
        }
        wait_subscribed(&self.redis, &worker_channels(ids), 1);
        until_live(&self.redis, LOBBY, ids, live_within).await;
        let fanout = start_fanout(&settings).await;
        wait_subscribed(&self.redis, &[LOBBY.to_string()], 1);
        (workers, fanout)
    }
}

/// The channels of workers `ids` in the lobby.
pub fn worker_channels(ids: &[&str]) -> Vec<String> {
    ids.iter()
        .map(|id| superhero::pipeline::keys::worker_channel(LOBBY, id))
        .collect()
}
