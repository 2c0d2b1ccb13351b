//! The worker's exactly-once claim at each crash point of `src/roles/worker/claim.rs`, set up by hand:
//! the state a worker killed at that instant leaves behind, then a live worker given the record
//! again, as the fanout would after ACK_TIMEOUT.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{wait_for, TestRedis};
use rand::SeedableRng;
use superhero::config::Settings;
use superhero::ops::bench::synth::{self, SynthGame};
use superhero::pipeline::redis_conn::{self, Conn, Redis};
use superhero::pipeline::sink::{self, META_TABLE, PODIUM_TABLE};
use superhero::pipeline::{delivery, keys};
use superhero::roles::fanout;
use superhero::roles::worker::{self, etl, WorkerReport};
use superhero::shutdown::{self, ShutdownTrigger};
use tokio::task::JoinHandle;

const LOBBY: &str = "redis.lib.server.lobby";
const GHOST: &str = "ghost";

struct Setup {
    _redis: TestRedis,
    out: tempfile::TempDir,
    settings: Settings,
    conn: Conn,
    game: SynthGame,
}

async fn setup() -> Setup {
    setup_on(TestRedis::start()).await
}

async fn setup_on(redis: TestRedis) -> Setup {
    let out = tempfile::tempdir().unwrap();
    let settings = redis.settings_with(&[
        ("OUTPUT_DIR", out.path().to_str().unwrap()),
        ("HOSTNAME", "live"),
    ]);
    let mut conn = Redis::connect(&settings.redis).await.unwrap().conn();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let game = synth::random_game(&mut rng, 3, 12, 1000);
    synth::seed(&mut conn, std::slice::from_ref(&game))
        .await
        .unwrap();
    Setup {
        _redis: redis,
        out,
        settings,
        conn,
        game,
    }
}

/// Writes the ghost worker's pair of files, as a worker that died after its renames would leave.
async fn ghost_files(s: &mut Setup) {
    let data = etl::load_game(&mut s.conn, &common::single_keys(), &s.game.token)
        .await
        .unwrap()
        .unwrap();
    let (meta, podium) = etl::rows(&s.game.token, &data);
    common::write_pair(s.out.path(), GHOST, &s.game.token, &meta, &podium)
        .await
        .unwrap();
}

fn file(out: &Path, table: &str, game: &str, worker: &str) -> std::path::PathBuf {
    sink::file_path(out, table, game, worker)
}

/// Every file name under the output folder.
fn all_files(out: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for table in [META_TABLE, PODIUM_TABLE] {
        for entry in std::fs::read_dir(sink::table_dir(out, table))
            .into_iter()
            .flatten()
            .flatten()
        {
            names.push(format!("{table}/{}", entry.file_name().to_string_lossy()));
        }
    }
    names.sort();
    names
}

/// Routes the host record as the fanout would: appended to the log, pending in the group, then
/// PUBLISHed with its entry id as the delivery id. Returns the entry id.
async fn deliver(s: &mut Setup) -> String {
    let record = synth::host_record(LOBBY, &s.game);
    route(&mut s.conn, &record).await
}

/// XADD to the log, XREADGROUP as a fanout would (the entry becomes pending), then PUBLISH on
/// the live worker's channel with `delivery_id` = the entry id.
async fn route(conn: &mut Conn, record: &str) -> String {
    let id = make_pending(conn, record).await;
    assert_eq!(common::roles::pending_ids(conn).await, vec![id.clone()]);
    let routed = fanout::with_delivery_id(record.as_bytes(), &id).unwrap();
    let receivers: u64 = redis::cmd("PUBLISH")
        .arg(keys::worker_channel(LOBBY, "live"))
        .arg(routed)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(receivers, 1, "the live worker listens");
    id
}

/// XADD to the log, then XREADGROUP as a fanout would: the entry becomes pending under
/// `fanout:test`. Its id.
async fn make_pending(conn: &mut Conn, record: &str) -> String {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::log_stream(LOBBY))
        .arg(keys::fanout_group(LOBBY))
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    if let Err(e) = created {
        assert_eq!(e.code(), Some("BUSYGROUP"), "{e}");
    }
    let id: String = redis::cmd("XADD")
        .arg(keys::log_stream(LOBBY))
        .arg("*")
        .arg(delivery::RECORD_FIELD)
        .arg(record)
        .query_async(conn)
        .await
        .unwrap();
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(keys::fanout_group(LOBBY))
        .arg("fanout:test")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(keys::log_stream(LOBBY))
        .arg(">")
        .query_async(conn)
        .await
        .unwrap();
    assert_ne!(read, redis::Value::Nil, "the entry was read");
    id
}

/// The host record delivered again under the same delivery id, as the fanout routes it after
/// ACK_TIMEOUT.
async fn redeliver(s: &mut Setup, id: &str) {
    let record = synth::host_record(LOBBY, &s.game);
    let routed = fanout::with_delivery_id(record.as_bytes(), id).unwrap();
    let _: u64 = redis::cmd("PUBLISH")
        .arg(keys::worker_channel(LOBBY, "live"))
        .arg(routed)
        .query_async(&mut s.conn)
        .await
        .unwrap();
}

/// The game is done by the live worker, and its pair is the only files in the output.
async fn assert_written_once_by_live(s: &mut Setup) {
    let g = s.game.token.clone();
    assert_eq!(
        get(&mut s.conn, common::single_keys().etl_done(&g))
            .await
            .as_deref(),
        Some("live")
    );
    assert_eq!(
        all_files(s.out.path()),
        vec![
            format!("{META_TABLE}/{g}_live.gz"),
            format!("{PODIUM_TABLE}/{g}_live.gz")
        ]
    );
}

/// Ids of the log entries not yet acknowledged (XPENDING).
async fn unacked(conn: &mut Conn) -> u64 {
    fanout::inspect(conn, LOBBY).await.unwrap().unacked
}

async fn wait_acked(s: &mut Setup) {
    let conn = s.conn.clone();
    wait_for("the record acknowledged", Duration::from_secs(20), || {
        let mut conn = conn.clone();
        async move { unacked(&mut conn).await == 0 }
    })
    .await;
}

async fn get(conn: &mut Conn, key: String) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

struct Running {
    metrics: worker::WorkerMetrics,
    trigger: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<WorkerReport>>,
}

/// Sets `key` to `value`, expiring after `ms` milliseconds when given: what a worker that
/// crashed at some point left behind.
async fn set_key(s: &mut Setup, key: String, value: &str, ms: Option<u64>) {
    let mut set = redis::cmd("SET");
    set.arg(key).arg(value);
    if let Some(ms) = ms {
        set.arg("PX").arg(ms);
    }
    let _: () = set.query_async(&mut s.conn).await.unwrap();
}

/// Starts the worker, delivers the host record, waits for its acknowledgement and stops the
/// worker; its report.
async fn deliver_once(s: &mut Setup) -> WorkerReport {
    let worker = start(s).await;
    deliver(s).await;
    wait_acked(s).await;
    worker.stop().await
}

async fn start(s: &mut Setup) -> Running {
    let settings = s.settings.clone();
    let redis = Redis::connect(&settings.redis).await.unwrap();
    let (trigger, stop) = shutdown::channel();
    let registry = superhero::metrics::registry("worker");
    let metrics = worker::WorkerMetrics::register(&registry);
    let m = metrics.clone();
    let task = tokio::spawn(async move {
        worker::run_with_metrics(&settings, redis, stop, m, &registry).await
    });
    let channel = keys::worker_channel(LOBBY, "live");
    let conn = s.conn.clone();
    wait_for("the worker subscribed", Duration::from_secs(10), || {
        let (mut conn, channel) = (conn.clone(), channel.clone());
        async move {
            redis_conn::numsub(&mut conn, &[channel])
                .await
                .map(|c| c[0].1 == 1)
                .unwrap_or(false)
        }
    })
    .await;
    Running {
        metrics,
        trigger,
        task,
    }
}

impl Running {
    async fn stop(self) -> WorkerReport {
        self.trigger.fire();
        self.task.await.unwrap().unwrap()
    }
}

#[tokio::test]
async fn a_dead_writers_complete_pair_is_kept() {
    // Crash point 4: both files renamed into place, killed before marking the game done.
    let mut s = setup().await;
    ghost_files(&mut s).await;
    let g = s.game.token.clone();
    set_key(&mut s, common::single_keys().etl_writer(&g), GHOST, None).await;
    let report = deliver_once(&mut s).await;
    assert_eq!(report.games_written, 0);
    assert_eq!(
        get(&mut s.conn, common::single_keys().etl_done(&g))
            .await
            .as_deref(),
        Some(GHOST)
    );
    assert_eq!(
        all_files(s.out.path()),
        vec![
            format!("{META_TABLE}/{g}_{GHOST}.gz"),
            format!("{PODIUM_TABLE}/{g}_{GHOST}.gz")
        ]
    );
}

#[tokio::test]
async fn a_dead_writers_partial_files_are_replaced() {
    // Crash point 3: META renamed, PODIUM still a temporary file.
    let mut s = setup().await;
    ghost_files(&mut s).await;
    let g = s.game.token.clone();
    let podium = file(s.out.path(), PODIUM_TABLE, &g, GHOST);
    let tmp = podium.with_file_name(format!(".{g}_{GHOST}.gz.999-0.tmp"));
    std::fs::rename(&podium, &tmp).unwrap();
    set_key(&mut s, common::single_keys().etl_writer(&g), GHOST, None).await;
    assert_eq!(deliver_once(&mut s).await.games_written, 1);
    assert_written_once_by_live(&mut s).await;
    // The replacement is a readable, correct file.
    let (meta, podium) = synth::expected_rows(&s.game);
    assert_eq!(
        sink::read_meta(&file(s.out.path(), META_TABLE, &g, "live")).unwrap(),
        meta
    );
    assert_eq!(
        sink::read_podium(&file(s.out.path(), PODIUM_TABLE, &g, "live")).unwrap(),
        podium
    );
}

#[tokio::test]
async fn a_game_already_done_is_only_acknowledged() {
    // Crash point 5: done, killed before the ack.
    let mut s = setup().await;
    ghost_files(&mut s).await;
    let g = s.game.token.clone();
    set_key(&mut s, common::single_keys().etl_done(&g), GHOST, None).await;
    let report = deliver_once(&mut s).await;
    assert_eq!((report.games_written, report.already_done), (0, 1));
    assert_eq!(all_files(s.out.path()).len(), 2);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    // Crash point 2: claimed, killed before writing; the lease runs out by itself.
    let mut s = setup().await;
    let lease = common::single_keys().etl_lease(&s.game.token);
    set_key(&mut s, lease, "ghost:0", Some(300)).await;
    assert_eq!(deliver_once(&mut s).await.games_written, 1);
    assert_eq!(all_files(s.out.path()).len(), 2);
}

#[tokio::test]
async fn a_game_held_by_a_live_worker_is_not_acknowledged() {
    let mut s = setup().await;
    let lease = common::single_keys().etl_lease(&s.game.token);
    set_key(&mut s, lease, "other:1", Some(600_000)).await;
    let worker = start(&mut s).await;
    let id = deliver(&mut s).await;
    let received = worker.metrics.records_received.clone();
    wait_for("the record received", Duration::from_secs(10), || {
        let received = received.clone();
        async move { received.get() == 1 }
    })
    .await;
    let report = worker.stop().await;
    assert_eq!(report.records_received, 1);
    assert_eq!(report.busy, 1);
    assert_eq!(
        common::roles::pending_ids(&mut s.conn).await,
        vec![id],
        "the record must stay for re-routing"
    );
    assert!(all_files(s.out.path()).is_empty());
}

#[tokio::test]
async fn clean_routine_runs_only_after_the_files() {
    let mut s = setup().await;
    s.settings.clean_routine = true;
    let g = s.game.token.clone();
    let worker = start(&mut s).await;
    // A non-host record first: acknowledged, cleans nothing.
    let other = s
        .game
        .players
        .iter()
        .find(|p| **p != s.game.host)
        .unwrap()
        .clone();
    let record = synth::host_record(LOBBY, &s.game).replace(&s.game.host, &other);
    route(&mut s.conn, &record).await;
    wait_acked(&mut s).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(common::single_keys().game_logs(&g))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "a non-host record must not clean the game");
    deliver(&mut s).await;
    wait_acked(&mut s).await;
    worker.stop().await;
    assert_eq!(all_files(s.out.path()).len(), 2);
    let ttl: i64 = redis::cmd("TTL")
        .arg(common::single_keys().game_logs(&g))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert!(ttl > 0, "the clean routine puts a TTL on the game's keys");
}

#[tokio::test]
async fn an_error_redis_will_repeat_fails_the_delivery_instead_of_retrying_forever() {
    // A Redis that refuses a command the worker needs (managed services disable some): every
    // read of the game answers "ERR unknown command". Retrying cannot help, so the delivery
    // fails with that reason and ends in the dead letters, rather than holding the worker's
    // slot while it "waits for Redis" for ever.
    let mut s = setup_on(TestRedis::start_with(&["--rename-command", "SORT", ""])).await;
    let worker = start(&mut s).await;
    let id = deliver(&mut s).await;
    let conn = s.conn.clone();
    let failures = keys::delivery_failures(LOBBY);
    wait_for(
        "the failure noted for the dead letter",
        Duration::from_secs(15),
        || {
            let (mut conn, failures, id) = (conn.clone(), failures.clone(), id.clone());
            async move {
                let reason: Option<String> = redis::cmd("HGET")
                    .arg(failures)
                    .arg(id)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                reason.is_some_and(|r| r.contains("unknown command"))
            }
        },
    )
    .await;
    assert_eq!(
        get(&mut s.conn, common::single_keys().etl_done(&s.game.token)).await,
        None
    );
    assert_eq!(
        get(&mut s.conn, common::single_keys().etl_lease(&s.game.token)).await,
        None,
        "the failed delivery gave its lease back"
    );
    let report = worker.stop().await;
    assert_eq!(report.games_written, 0);
}

#[tokio::test]
async fn a_record_back_after_its_games_keys_expired_finds_the_game_done() {
    // A record queued at a worker that died comes back after ACK_TIMEOUT; meanwhile another
    // worker wrote the game and REDIS_EXPIRY removed its keys, host key included. It must be
    // acknowledged as done, not failed as an unknown game (which ends as a false dead letter).
    let mut s = setup().await;
    let g = s.game.token.clone();
    let _: () = redis::cmd("DEL")
        .arg(common::single_keys().game_keys(&g).to_vec())
        .query_async(&mut s.conn)
        .await
        .unwrap();
    set_key(&mut s, common::single_keys().etl_done(&g), GHOST, None).await;
    let report = deliver_once(&mut s).await;
    assert_eq!(report.games_written, 0);
    let failures: u64 = redis::cmd("HLEN")
        .arg(keys::delivery_failures(LOBBY))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(failures, 0, "no failure noted");
}

#[tokio::test]
async fn a_written_games_done_marker_outlives_every_redelivery() {
    // REDIS_EXPIRY (30 s by default) is shorter than ACK_TIMEOUT × MAX_DELIVERIES (30 s × 5):
    // the done marker must stay until the last possible redelivery has come back.
    let mut s = setup().await;
    let report = deliver_once(&mut s).await;
    assert_eq!(report.games_written, 1);
    let ttl: i64 = redis::cmd("TTL")
        .arg(common::single_keys().etl_done(&s.game.token))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    let bound = (s.settings.ack_timeout * s.settings.max_deliveries).as_secs() as i64;
    assert!(ttl >= bound, "done expires in {ttl} s, before {bound} s");
}

#[tokio::test]
async fn a_write_that_overruns_write_timeout_keeps_the_game_and_becomes_its_output() {
    // WRITE_TIMEOUT of a millisecond: the write (two files, each fsynced with its directory)
    // overruns and goes on in the background. It must hold the game until it returns and then
    // be judged under that hold: its complete pair is marked done, never removed after a stale
    // look at the done marker.
    let redis = TestRedis::start();
    let mut s = setup_on(redis).await;
    s.settings.write_timeout = Duration::from_millis(1);
    let g = s.game.token.clone();
    let worker = start(&mut s).await;
    let id = deliver(&mut s).await;
    let conn = s.conn.clone();
    wait_for("the game done", Duration::from_secs(20), || {
        let (mut conn, g) = (conn.clone(), g.clone());
        async move {
            get(&mut conn, common::single_keys().etl_done(&g))
                .await
                .is_some()
        }
    })
    .await;
    // The record comes back, as the fanout routes it after ACK_TIMEOUT: acknowledged as done.
    redeliver(&mut s, &id).await;
    wait_acked(&mut s).await;
    worker.stop().await;
    assert_written_once_by_live(&mut s).await;
}

/// Consumer name → its pending count, of the log's group (XINFO CONSUMERS).
async fn consumers(conn: &mut Conn) -> std::collections::BTreeMap<String, u64> {
    let rows: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(keys::log_stream(LOBBY))
        .arg(keys::fanout_group(LOBBY))
        .query_async(conn)
        .await
        .unwrap();
    rows.into_iter()
        .map(|row| {
            let name: String = redis::from_redis_value_ref(&row["name"]).unwrap();
            let pending: u64 = redis::from_redis_value_ref(&row["pending"]).unwrap();
            (name, pending)
        })
        .collect()
}

#[tokio::test]
async fn a_worker_that_stops_deletes_its_consumer_unless_it_holds_entries() {
    let mut s = setup().await;
    // The consumer the fanout made for this worker when it routed the record to it.
    let worker = start(&mut s).await;
    deliver(&mut s).await;
    wait_acked(&mut s).await;
    let _: i64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(keys::log_stream(LOBBY))
        .arg(keys::fanout_group(LOBBY))
        .arg("live")
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(consumers(&mut s.conn).await.get("live"), Some(&0));
    worker.stop().await;
    assert_eq!(
        consumers(&mut s.conn).await.get("live"),
        None,
        "a clean stop holding nothing deletes the worker's consumer"
    );

    // Routed to the worker as it stopped (never received): the entry is pending under its
    // consumer, which must stay, or the entry would leave the pending list for good.
    let worker = start(&mut s).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let unseeded = synth::random_game(&mut rng, 3, 12, 1000);
    let record = synth::host_record(LOBBY, &unseeded);
    let id = make_pending(&mut s.conn, &record).await;
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(keys::log_stream(LOBBY))
        .arg(keys::fanout_group(LOBBY))
        .arg("live")
        .arg(0)
        .arg(&id)
        .arg("JUSTID")
        .query_async(&mut s.conn)
        .await
        .unwrap();
    worker.stop().await;
    assert_eq!(consumers(&mut s.conn).await.get("live"), Some(&1));
    assert_eq!(common::roles::pending_ids(&mut s.conn).await, vec![id]);
}

#[tokio::test]
async fn a_failure_noted_for_an_entry_no_longer_pending_leaves_no_field() {
    let mut s = setup().await;
    let failures = keys::delivery_failures(LOBBY);
    // No worker listens: the entry is only made pending, as a fanout that read it would.
    let record = synth::host_record(LOBBY, &s.game);
    let id = make_pending(&mut s.conn, &record).await;
    let noted = |conn: Conn, failures: String, id: String| async move {
        let mut conn = conn;
        let reason: Option<String> = redis::cmd("HGET")
            .arg(failures)
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
        reason
    };
    let _ = delivery::note_failure(&mut s.conn, LOBBY, &id, "w1", "first try").await;
    assert_eq!(
        noted(s.conn.clone(), failures.clone(), id.clone())
            .await
            .as_deref(),
        Some("w1: first try"),
        "a pending entry's failure is noted"
    );
    // Another worker acknowledged it meanwhile; a late note of a slower attempt comes after.
    delivery::ack(&mut s.conn, LOBBY, std::slice::from_ref(&id))
        .await
        .unwrap();
    let _ = delivery::note_failure(&mut s.conn, LOBBY, &id, "w2", "too late").await;
    assert_eq!(
        noted(s.conn.clone(), failures.clone(), id.clone()).await,
        None,
        "nothing would ever remove a note of an acknowledged entry"
    );
}

#[tokio::test]
async fn a_dead_writers_file_that_cannot_be_removed_fails_the_delivery() {
    // Crash point 3 with a leftover that cannot be removed (a directory in the place of the
    // ghost's META: the tests run as root, where a read-only folder stops nothing). Writing our
    // pair beside it would leave the game with two writers' files.
    let mut s = setup().await;
    let g = s.game.token.clone();
    set_key(&mut s, common::single_keys().etl_writer(&g), GHOST, None).await;
    let blocked = file(s.out.path(), META_TABLE, &g, GHOST);
    std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
    let worker = start(&mut s).await;
    let id = deliver(&mut s).await;
    let conn = s.conn.clone();
    let failures = keys::delivery_failures(LOBBY);
    let reason = |conn: Conn, failures: String, id: String| async move {
        let mut conn = conn;
        let reason: Option<String> = redis::cmd("HGET")
            .arg(failures)
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
        reason
    };
    wait_for(
        "the delivery to fail or be acknowledged",
        Duration::from_secs(15),
        || {
            let (conn, failures, id) = (conn.clone(), failures.clone(), id.clone());
            async move {
                let mut c = conn.clone();
                reason(conn, failures, id).await.is_some() || unacked(&mut c).await == 0
            }
        },
    )
    .await;
    let why = reason(s.conn.clone(), failures, id.clone()).await;
    assert!(
        why.as_deref()
            .is_some_and(|r| r.contains("cannot remove") && r.contains(GHOST)),
        "failure noted: {why:?}"
    );
    assert_eq!(
        common::roles::pending_ids(&mut s.conn).await,
        vec![id.clone()],
        "not acknowledged"
    );
    assert_eq!(
        get(&mut s.conn, common::single_keys().etl_done(&g)).await,
        None
    );
    assert!(!file(s.out.path(), META_TABLE, &g, "live").exists());
    assert!(!file(s.out.path(), PODIUM_TABLE, &g, "live").exists());
    let writer = get(&mut s.conn, common::single_keys().etl_writer(&g))
        .await
        .unwrap();
    assert_eq!(
        worker::claim::writer_id(&writer),
        GHOST,
        "the ghost's files are left for the next claimant to judge"
    );

    // Once the obstacle is gone, the record routed again is written once, and nothing of the
    // ghost's stays beside it.
    std::fs::remove_dir_all(&blocked).unwrap();
    redeliver(&mut s, &id).await;
    wait_acked(&mut s).await;
    worker.stop().await;
    assert_written_once_by_live(&mut s).await;
}

#[tokio::test]
async fn a_paused_process_of_the_same_id_cannot_finish_a_game_its_successor_swept() {
    // A process of worker "live" put its META in place (on an object store a PUT is final) and
    // was paused before its PODIUM; its lease ran out. A new process of "live" starts beside
    // it: its start-up sweep removes the lone META. Then the paused one resumes, puts its PODIUM
    // in place and asks `finish` to mark the game done: that must fail, or the game's output
    // is half a pair. The writer key as the paused process left it: its lease token, or the
    // bare worker id a version before tokens recorded.
    for (writer, zombie_token) in [("live:zombie", "live:zombie"), ("live", "live")] {
        let mut s = setup().await;
        let g = s.game.token.clone();
        ghost_files(&mut s).await;
        for table in [META_TABLE, PODIUM_TABLE] {
            std::fs::rename(
                file(s.out.path(), table, &g, GHOST),
                file(s.out.path(), table, &g, "live"),
            )
            .unwrap();
        }
        let podium = file(s.out.path(), PODIUM_TABLE, &g, "live");
        let held_back = s.out.path().join("podium-not-yet-put");
        std::fs::rename(&podium, &held_back).unwrap();
        set_key(&mut s, common::single_keys().etl_writer(&g), writer, None).await;

        let worker = start(&mut s).await;
        assert!(
            !file(s.out.path(), META_TABLE, &g, "live").exists(),
            "the sweep removed the lone META"
        );
        std::fs::rename(&held_back, &podium).unwrap();
        let finished = worker::claim::finish(
            &mut s.conn,
            &common::single_keys(),
            &g,
            zombie_token,
            "live",
        )
        .await
        .unwrap();
        assert!(
            matches!(finished, worker::claim::Finish::Lost { .. }),
            "writer {writer}: the paused process finished the game with half a pair: {finished:?}"
        );
        assert_eq!(
            get(&mut s.conn, common::single_keys().etl_done(&g)).await,
            None
        );

        // The record, routed again, is written once: the paused process's PODIUM is replaced.
        deliver(&mut s).await;
        wait_acked(&mut s).await;
        worker.stop().await;
        assert_eq!(
            get(&mut s.conn, common::single_keys().etl_done(&g))
                .await
                .as_deref(),
            Some("live")
        );
        assert_eq!(
            all_files(s.out.path()),
            vec![
                format!("{META_TABLE}/{g}_live.gz"),
                format!("{PODIUM_TABLE}/{g}_live.gz")
            ]
        );
    }
}
