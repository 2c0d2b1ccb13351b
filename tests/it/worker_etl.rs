//! The ETL against a private Redis: games stored the way the server stores them are loaded,
//! turned into rows and written as Parquet, then read back with an independent implementation
//! (the arrow-rs `parquet` crate): schema, codec, and hand-computed values.

use crate::common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::roles::conn;
use common::TestRedis;
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use rand::SeedableRng;
use superhero::ops::bench::synth::{self, SynthGame};
use superhero::pipeline::sink::{self, MetaRow, PodiumRow, META_TABLE, PODIUM_TABLE};
use superhero::roles::worker::etl;

const WORKER: &str = "w-1";

/// Tokens in sorted order, so a game's players are `[t(1), t(2), …]` in turn order.
fn t(n: u8) -> String {
    format!("00000000-0000-4000-8000-0000000000{n:02x}")
}

/// Three players; a (attack 100) kills c (health 90) first, then b (health 100).
fn early_elimination() -> SynthGame {
    let mut g = SynthGame::start(
        "11111111-1111-4111-8111-111111111111".into(),
        &t(2),
        vec![
            (t(1), 101, 100, 200),
            (t(2), 102, 50, 100),
            (t(3), 103, 30, 90),
        ],
    );
    g.attack(0, 2).unwrap(); // a hits c: 90 -> 0, order b a
    g.attack(1, 0).unwrap(); // b hits a: 200 -> 150, order a b
    g.attack(0, 1).unwrap(); // a hits b: 100 -> 0
    assert!(g.is_over(1000));
    g
}

/// Four players, ended by a cap of 6 attacks with a, b and d alive; a and b end at the same
/// health, b delivered more.
fn turn_cap() -> SynthGame {
    let mut g = SynthGame::start(
        "22222222-2222-4222-8222-222222222222".into(),
        &t(11),
        vec![
            (t(11), 7, 300, 1000),
            (t(12), 8, 400, 1300),
            (t(13), 9, 300, 600),
            (t(14), 10, 200, 700),
        ],
    );
    g.attack(0, 2).unwrap(); // a hits c: 600 -> 300
    g.attack(1, 2).unwrap(); // b hits c: 300 -> 0, order d a b
    g.attack(3, 0).unwrap(); // d hits a: 1000 -> 800
    g.attack(0, 1).unwrap(); // a hits b: 1300 -> 1000
    g.attack(1, 3).unwrap(); // b hits d: 700 -> 300
    g.attack(3, 1).unwrap(); // d hits b: 1000 -> 800
    assert!(g.is_over(6));
    g
}

/// Three players; p times out before acting, then q kills r.
fn timeout_then_kill() -> SynthGame {
    let mut g = SynthGame::start(
        "33333333-3333-4333-8333-333333333333".into(),
        &t(21),
        vec![(t(21), 1, 10, 10), (t(22), 2, 50, 10), (t(23), 3, 5, 40)],
    );
    g.leave(0).unwrap(); // p out, order q r
    g.attack(1, 2).unwrap(); // q hits r: 40 -> 0
    assert!(g.is_over(1000));
    g
}

/// (user, rounds, rank, delivered, received) computed by hand.
fn hand_podium(game: &SynthGame) -> Vec<(String, u16, u8, u64, u64)> {
    let rows: &[(u8, u16, u8, u64, u64)] = match game.token.as_bytes()[0] {
        b'1' => &[(1, 2, 1, 200, 50), (2, 1, 2, 50, 100), (3, 0, 3, 0, 100)],
        b'2' => &[
            (11, 2, 2, 600, 200),
            (12, 2, 1, 800, 500),
            (13, 0, 4, 0, 700),
            (14, 2, 3, 400, 400),
        ],
        _ => &[(21, 0, 3, 0, 0), (22, 1, 1, 50, 0), (23, 0, 2, 0, 50)],
    };
    rows.iter()
        .map(|&(u, r, k, d, x)| (t(u), r, k, d, x))
        .collect()
}

fn paths(dir: &Path, game: &str) -> (PathBuf, PathBuf) {
    (
        sink::file_path(dir, META_TABLE, game, WORKER),
        sink::file_path(dir, PODIUM_TABLE, game, WORKER),
    )
}

/// Checks the file's schema as arrow-rs sees it and the codec of every column chunk.
fn check_layout(path: &Path, expected: &[(&str, &str)]) -> SerializedFileReader<File> {
    let arrow = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        File::open(path).unwrap(),
    )
    .unwrap();
    let fields: Vec<(String, String, bool)> = arrow
        .schema()
        .fields()
        .iter()
        .map(|f| {
            (
                f.name().clone(),
                format!("{:?}", f.data_type()),
                f.is_nullable(),
            )
        })
        .collect();
    let wanted: Vec<(String, String, bool)> = expected
        .iter()
        .map(|(n, ty)| (n.to_string(), ty.to_string(), true))
        .collect();
    assert_eq!(fields, wanted, "{}", path.display());

    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let metadata = reader.metadata();
    assert_eq!(metadata.num_row_groups(), 1);
    let group = metadata.row_group(0);
    assert_eq!(group.num_columns(), expected.len());
    for column in group.columns() {
        assert!(
            matches!(column.compression(), Compression::GZIP(_)),
            "{:?} in {}",
            column.compression(),
            path.display()
        );
    }
    reader
}

/// The rows of a file read with arrow-rs after [`check_layout`], each made by `row`.
fn rows_with_arrow_rs<T>(
    path: &Path,
    layout: &[(&str, &str)],
    row: impl Fn(&parquet::record::Row) -> T,
) -> Vec<T> {
    check_layout(path, layout)
        .get_row_iter(None)
        .unwrap()
        .map(|r| row(&r.unwrap()))
        .collect()
}

fn read_meta_with_arrow_rs(path: &Path) -> Vec<(String, String, u16)> {
    let layout = [
        ("game_token", "Utf8"),
        ("user_token", "Utf8"),
        ("superhero_id", "UInt16"),
    ];
    rows_with_arrow_rs(path, &layout, |row| {
        (
            row.get_string(0).unwrap().clone(),
            row.get_string(1).unwrap().clone(),
            row.get_ushort(2).unwrap(),
        )
    })
}

fn read_podium_with_arrow_rs(path: &Path) -> Vec<(String, String, u16, u8, u64, u64)> {
    let layout = [
        ("game_token", "Utf8"),
        ("user_token", "Utf8"),
        ("rounds", "UInt16"),
        ("rank", "UInt8"),
        ("damage_delivered", "UInt64"),
        ("damage_received", "UInt64"),
    ];
    rows_with_arrow_rs(path, &layout, |row| {
        (
            row.get_string(0).unwrap().clone(),
            row.get_string(1).unwrap().clone(),
            row.get_ushort(2).unwrap(),
            row.get_ubyte(3).unwrap(),
            row.get_ulong(4).unwrap(),
            row.get_ulong(5).unwrap(),
        )
    })
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn fixed_games_round_trip_through_an_independent_reader() {
    let redis = TestRedis::start();
    let mut conn = conn(&redis).await;
    let games = [early_elimination(), turn_cap(), timeout_then_kill()];
    synth::seed(&mut conn, &games).await.unwrap();
    let out = tempfile::tempdir().unwrap();

    for game in &games {
        let data = etl::load_game(&mut conn, &common::single_keys(), &game.token)
            .await
            .unwrap()
            .expect("a completed game");
        assert_eq!(data.host.as_deref(), Some(game.host.as_str()));
        let (meta, podium) = etl::rows(&game.token, &data);
        assert_eq!((meta.clone(), podium.clone()), synth::expected_rows(game));
        common::write_pair(out.path(), WORKER, &game.token, &meta, &podium)
            .await
            .unwrap();

        let (meta_path, podium_path) = paths(out.path(), &game.token);
        let meta_back = read_meta_with_arrow_rs(&meta_path);
        let heroes: Vec<(String, String, u16)> = game
            .heroes
            .iter()
            .map(|h| (game.token.clone(), h.token.clone(), h.hero_id))
            .collect();
        assert_eq!(meta_back, heroes, "one META row per participant");

        let podium_back = read_podium_with_arrow_rs(&podium_path);
        let hand: Vec<_> = hand_podium(game)
            .into_iter()
            .map(|(u, r, k, d, x)| (game.token.clone(), u, r, k, d, x))
            .collect();
        assert_eq!(podium_back, hand, "podium of game {}", game.token);

        // arrow2 reads back what arrow-rs read.
        assert_eq!(sink::read_meta(&meta_path).unwrap(), meta);
        assert_eq!(sink::read_podium(&podium_path).unwrap(), podium);
    }

    let files = all_files(out.path());
    assert_eq!(files.len(), 2 * games.len(), "{files:?}");
    assert!(files
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "gz")));
    for file in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o022,
            0,
            "{} is group/world writable",
            file.display()
        );
    }
}

#[tokio::test]
async fn random_games_give_the_rows_of_their_simulation() {
    let redis = TestRedis::start();
    let mut conn = conn(&redis).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let games: Vec<SynthGame> = (0..300)
        .map(|i| {
            let players = 2 + i % 7;
            // One game in five hits a low cap with several players alive.
            let cap = if i % 5 == 0 { 7 } else { 1000 };
            synth::random_game(&mut rng, players, 30, cap)
        })
        .collect();
    assert!(games.iter().any(|g| g.order.len() > 1));
    synth::seed(&mut conn, &games).await.unwrap();
    for game in &games {
        let data = etl::load_game(&mut conn, &common::single_keys(), &game.token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(etl::rows(&game.token, &data), synth::expected_rows(game));
    }
}

#[tokio::test]
async fn unknown_unfinished_and_malformed_games() {
    let redis = TestRedis::start();
    let mut conn = conn(&redis).await;
    assert_eq!(
        etl::load_game(
            &mut conn,
            &common::single_keys(),
            "44444444-4444-4444-8444-444444444444"
        )
        .await
        .unwrap(),
        None
    );
    assert!(etl::load_game(&mut conn, &common::single_keys(), "games:*")
        .await
        .is_err());

    let game = early_elimination();
    synth::seed(&mut conn, std::slice::from_ref(&game))
        .await
        .unwrap();
    let status = format!("games:{}:status", game.token);
    let _: () = redis.cmd(&["SET", &status, "In-Progress"]);
    assert_eq!(
        etl::load_game(&mut conn, &common::single_keys(), &game.token)
            .await
            .unwrap(),
        None
    );

    let _: () = redis.cmd(&["SET", &status, "Completed"]);
    let logs = format!("games:{}:logs", game.token);
    let _: () = redis.cmd(&["RPUSH", &logs, "{\"not\": \"an attack\"}"]);
    let error = etl::load_game(&mut conn, &common::single_keys(), &game.token)
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("log entry 3"), "{error:#}");
}

#[test]
fn unsafe_tokens_write_nothing_and_no_temporary_file_stays() {
    let out = tempfile::tempdir().unwrap();
    let game = early_elimination();
    let (meta, podium) = synth::expected_rows(&game);
    for bad in ["../x", "../../etc/passwd", "not-a-uuid", ""] {
        let rewrite = |rows: &[MetaRow]| -> Vec<MetaRow> {
            rows.iter()
                .map(|r| MetaRow {
                    game_token: bad.to_string(),
                    ..r.clone()
                })
                .collect()
        };
        assert!(
            common::write_pair_blocking(out.path(), WORKER, bad, &rewrite(&meta), &podium).is_err()
        );
    }
    assert!(common::write_pair_blocking(out.path(), "../w", &game.token, &meta, &podium).is_err());
    assert!(all_files(out.path()).is_empty());
    assert!(all_files(out.path().parent().unwrap())
        .iter()
        .all(|f| f.file_name().is_none_or(|n| n != "x")));

    common::write_pair_blocking(out.path(), WORKER, &game.token, &meta, &podium).unwrap();
    let podium_again: Vec<PodiumRow> = podium.clone();
    common::write_pair_blocking(out.path(), WORKER, &game.token, &meta, &podium_again).unwrap();
    let files = all_files(out.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|f| !f.to_string_lossy().ends_with(".tmp")));
}

#[tokio::test]
async fn expire_game_puts_a_ttl_on_every_key_and_unlists_the_game() {
    let redis = TestRedis::start();
    let mut conn = conn(&redis).await;
    let game = turn_cap();
    let other = early_elimination();
    synth::seed(&mut conn, &[game.clone(), other.clone()])
        .await
        .unwrap();
    let done = format!("games:{}:etl:done", game.token);
    let _: () = redis.cmd(&["SET", &done, WORKER]);
    etl::expire_game(
        &mut conn,
        &common::single_keys(),
        &game.token,
        Duration::from_secs(30),
        Duration::from_secs(90),
    )
    .await
    .unwrap();

    let keys: Vec<String> = redis.cmd(&["KEYS", &format!("games:{}*", game.token)]);
    assert!(keys.len() >= 8 + game.players.len(), "{keys:?}");
    assert!(keys.contains(&done));
    for hero in &game.players {
        assert!(keys.contains(&format!("games:{}:superheros:{hero}", game.token)));
    }
    for key in &keys {
        let ttl: i64 = redis.cmd(&["TTL", key]);
        if *key == done {
            // The done marker outlives the rest, for records that come back later.
            assert!((31..=90).contains(&ttl), "{key} has TTL {ttl}");
        } else {
            assert!((1..=30).contains(&ttl), "{key} has TTL {ttl}");
        }
    }
    let score: Option<String> = redis.cmd(&["ZSCORE", "games:participants", &game.token]);
    assert_eq!(score, None);
    // `games:players:<n>` stays as it is: issue 13 replaced the O(n) LREM per game by a cap on
    // the list's length in the join script.

    // The other game is untouched.
    let ttl: i64 = redis.cmd(&["TTL", &format!("games:{}:logs", other.token)]);
    assert_eq!(ttl, -1);
    let score: Option<String> = redis.cmd(&["ZSCORE", "games:participants", &other.token]);
    assert_eq!(score.as_deref(), Some("3"));
}
