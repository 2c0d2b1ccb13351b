//! The Parquet sink: the only module that knows arrow2/parquet2.
//!
//! A finished game becomes two gzip-compressed Parquet files (`docs/parquet.md`):
//! `OUTPUT_DIR/superhero/GAME_META/<game>_<worker>.gz` and `.../GAME_PODIUM/<game>_<worker>.gz`,
//! each with one row group and the exact field names and Arrow types documented there.
//!
//! The one way in is [`Output`] (`store.rs`): opened from OUTPUT_DIR, a folder or an object
//! store URL (`s3://bucket/prefix`, parsed by [`crate::config::OutputDir`]), it writes a game
//! ([`Output::write_game`]), lists, reads and removes files. Swapping the writer means changing
//! that one type; the roles see nothing else of the sink but the rows and the names.
//!
//! Writing is built for throughput (a worker writes thousands of games a second): a thread's
//! encoder keeps the Parquet schema descriptors, the Arrow schema footer entry and one reusable
//! gzip encoder (`gzip.rs`); arrow2 encodes each column as one plain page, the page is gzipped,
//! and parquet2 lays out the file in a memory buffer that is written with a single `write` call.
//! Page statistics are off: a file holds one game, so min/max pruning buys readers nothing.
//! In a folder every file goes to a temporary name in its final directory, is fsynced, and is
//! then renamed into place, so no reader ever sees a partial file.
//!
//! This file holds the rows, the names and the checks on them; `encode.rs` makes the Parquet
//! bytes, `folder.rs` puts a file in place, `store.rs` is the [`Output`], `read.rs` reads files
//! back.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};
use serde::Serialize;

mod encode;
mod folder;
mod gzip;
mod read;
pub mod store;

use encode::Encoder;
pub use encode::{meta_schema, podium_schema};
pub use folder::final_name_of_temporary;
pub use read::{meta_from_bytes, podium_from_bytes, read_meta, read_podium};
pub use store::Output;

/// Directory name of the per-participant hero table.
pub const META_TABLE: &str = "GAME_META";
/// Directory name of the per-participant result table.
pub const PODIUM_TABLE: &str = "GAME_PODIUM";

/// Top-level directory under OUTPUT_DIR that holds both tables.
pub const DATASET_DIR: &str = "superhero";

/// One GAME_META row: which hero a participant played.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetaRow {
    pub game_token: String,
    pub user_token: String,
    pub superhero_id: u16,
}

/// One GAME_PODIUM row: how a participant did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodiumRow {
    pub game_token: String,
    pub user_token: String,
    /// Attacks this player delivered.
    pub rounds: u16,
    /// 1 = winner … n = first eliminated.
    pub rank: u8,
    pub damage_delivered: u64,
    pub damage_received: u64,
}

/// `output_dir/superhero/<table>`.
pub fn table_dir(output_dir: &Path, table: &str) -> PathBuf {
    output_dir.join(DATASET_DIR).join(table)
}

/// `output_dir/superhero/<table>/<game>_<worker_id>.gz`.
pub fn file_path(output_dir: &Path, table: &str, game: &str, worker_id: &str) -> PathBuf {
    table_dir(output_dir, table).join(file_name(game, worker_id))
}

/// The name of `worker`'s file of `game` in either table: `<game>_<worker>.gz`. The worker id is
/// in the name so that two workers writing the same game never overwrite each other's file,
/// and whoever judges leftovers can tell whose a file is ([`parse_file_name`]).
pub fn file_name(game: &str, worker: &str) -> String {
    format!("{game}_{worker}.gz")
}

/// `<game_token>_<worker id>.gz` → (game token, worker id): [`file_name`] read back. A game
/// token is a UUID, always 36 characters, so a worker id holding `_` still splits right.
pub fn parse_file_name(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(".gz")?;
    let (game, worker) = stem.split_at_checked(36)?;
    let worker = worker.strip_prefix('_')?;
    (uuid::Uuid::parse_str(game).is_ok() && !worker.is_empty()).then_some((game, worker))
}

/// Whether `id` can be used as one file-name component. The rule is the worker-id rule of
/// [`crate::config::validate_worker_id`], the one place it is declared.
pub fn is_safe_worker_id(id: &str) -> bool {
    crate::config::validate_worker_id(id).is_ok()
}

/// Checks that a game token may be used in a file name: it must be a UUID, in the canonical
/// lowercase hyphenated form (so one game always maps to one file name).
fn check_game_token(game: &str) -> Result<()> {
    let parsed = uuid::Uuid::parse_str(game)
        .map_err(|e| anyhow::anyhow!("game token {game:?} is not a UUID: {e}"))?;
    ensure!(
        parsed.hyphenated().to_string() == game,
        "game token {game:?} is not a lowercase hyphenated UUID"
    );
    Ok(())
}

/// Encodes the two Parquet files of `game` (META, PODIUM), once the names they will get are
/// known to be safe: the game token must be a lowercase hyphenated UUID and the worker id a
/// safe file-name component, or nothing is encoded. [`Output::write_game`] writes through
/// here; a test that plants files of its own does too.
pub fn encode_game(
    worker_id: &str,
    game: &str,
    meta: &[MetaRow],
    podium: &[PodiumRow],
) -> Result<(Vec<u8>, Vec<u8>)> {
    check_game_token(game)?;
    ensure!(
        is_safe_worker_id(worker_id),
        "worker id {worker_id:?} is not a safe file-name component"
    );
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Encoder::new()?);
        }
        let Some(encoder) = slot.as_mut() else {
            bail!("Parquet encoder unavailable");
        };
        let (mut meta_bytes, mut podium_bytes) =
            (Vec::with_capacity(4096), Vec::with_capacity(4096));
        encoder.encode_meta(meta, &mut meta_bytes)?;
        encoder.encode_podium(podium, &mut podium_bytes)?;
        Ok((meta_bytes, podium_bytes))
    })
}

thread_local! {
    /// Built on a thread's first write; None if the (constant) schemas could not be built.
    static ENCODER: RefCell<Option<Encoder>> = const { RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn game() -> String {
        "0b6f6c1e-2f0a-4c8e-9d5e-0a1b2c3d4e5f".to_string()
    }

    fn rows() -> (Vec<MetaRow>, Vec<PodiumRow>) {
        let users = ["aaaa", "bbbb", "cccc"];
        let meta = users
            .iter()
            .enumerate()
            .map(|(i, u)| MetaRow {
                game_token: game(),
                user_token: u.to_string(),
                superhero_id: 10 + i as u16,
            })
            .collect();
        let podium = users
            .iter()
            .enumerate()
            .map(|(i, u)| PodiumRow {
                game_token: game(),
                user_token: u.to_string(),
                rounds: 3 + i as u16,
                rank: 1 + i as u8,
                damage_delivered: 1_000_000 * i as u64,
                damage_received: u64::MAX - i as u64,
            })
            .collect();
        (meta, podium)
    }

    /// Writes through the one writer, as a worker does.
    async fn write_game(
        dir: &Path,
        worker: &str,
        game: &str,
        meta: &[MetaRow],
        podium: &[PodiumRow],
    ) -> Result<()> {
        let output = Output::Folder(dir.to_path_buf());
        output
            .write_game(worker, game, meta.to_vec(), podium.to_vec())
            .await
    }

    #[tokio::test]
    async fn round_trip_through_arrow2() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, podium) = rows();
        write_game(dir.path(), "w-1", &game(), &meta, &podium)
            .await
            .unwrap();
        let meta_path = file_path(dir.path(), META_TABLE, &game(), "w-1");
        let podium_path = file_path(dir.path(), PODIUM_TABLE, &game(), "w-1");
        assert_eq!(read_meta(&meta_path).unwrap(), meta);
        assert_eq!(read_podium(&podium_path).unwrap(), podium);
        // Twice through the same thread-local encoder gives the same files.
        write_game(dir.path(), "w-1", &game(), &meta, &podium)
            .await
            .unwrap();
        assert_eq!(read_podium(&podium_path).unwrap(), podium);
    }

    #[tokio::test]
    async fn truncated_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, podium) = rows();
        write_game(dir.path(), "w", &game(), &meta, &podium)
            .await
            .unwrap();
        let path = file_path(dir.path(), PODIUM_TABLE, &game(), "w");
        let bytes = fs::read(&path).unwrap();
        for cut in [0, 4, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read_podium(&path).is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn unsafe_names_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, podium) = rows();
        for (game, worker) in [
            ("../x", "w"),
            ("not-a-uuid", "w"),
            ("0B6F6C1E-2F0A-4C8E-9D5E-0A1B2C3D4E5F", "w"),
            (game().as_str(), "../w"),
            (game().as_str(), ".hidden"),
            (game().as_str(), "a/b"),
            (game().as_str(), ""),
        ] {
            assert!(write_game(dir.path(), worker, game, &meta, &podium)
                .await
                .is_err());
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn file_names_read_back() {
        let g = game();
        assert_eq!(
            parse_file_name(&file_name(&g, "w1")),
            Some((g.as_str(), "w1"))
        );
        assert_eq!(
            parse_file_name(&file_name(&g, "w_1")),
            Some((g.as_str(), "w_1"))
        );
        assert_eq!(parse_file_name(&format!("{g}.gz")), None);
        assert_eq!(parse_file_name(&format!("{g}_.gz")), None);
        assert_eq!(parse_file_name("short_w1.gz"), None);
        assert_eq!(parse_file_name(&format!("{g}_w1.gz.1-0.tmp")), None);
    }

    #[test]
    fn temporary_names_are_recognised() {
        let g = game();
        let name = file_name(&g, "w1");
        assert_eq!(
            final_name_of_temporary(&format!(".{name}.1234-5.tmp")),
            Some(name.as_str())
        );
        assert_eq!(final_name_of_temporary(&name), None);
    }

    #[test]
    fn worker_ids() {
        assert!(is_safe_worker_id("abc123def456"));
        assert!(is_safe_worker_id("worker-1.a_b"));
        assert!(!is_safe_worker_id(".."));
        assert!(!is_safe_worker_id("a b"));
        assert!(!is_safe_worker_id("a\\b"));
        // The same limit as a configured worker id.
        assert!(is_safe_worker_id(&"w".repeat(64)));
        assert!(!is_safe_worker_id(&"w".repeat(65)));
    }
}
