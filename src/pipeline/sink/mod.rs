//! The Parquet sink: the only module that knows arrow2/parquet2.
//!
//! A finished game becomes two gzip-compressed Parquet files (`docs/parquet.md`):
//! `OUTPUT_DIR/superhero/GAME_META/<game>_<worker>.gz` and `.../GAME_PODIUM/<game>_<worker>.gz`,
//! each with one row group and the exact field names and Arrow types documented there.
//!
//! Writing is built for throughput (a worker writes thousands of games a second): a [`Sink`]
//! keeps the Parquet schema descriptors, the Arrow schema footer entry and one reusable gzip
//! encoder (`sink/gzip.rs`); arrow2 encodes each column as one plain page, the page is gzipped, and
//! parquet2 lays out the file in a memory buffer that is written with a single `write` call.
//! Page statistics are off: a file holds one game, so min/max pruning buys readers nothing.
//! In a folder every file goes to a temporary name in its final directory, is fsynced, and is
//! then renamed into place, so no reader ever sees a partial file. OUTPUT_DIR may also be an
//! object store URL (`s3://bucket/prefix`): [`location`] parses it, [`store`] holds the
//! [`Output`] that writes, lists and removes files in either kind of place.

use std::cell::RefCell;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Cursor, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use arrow2::array::{Array, PrimitiveArray, Utf8Array};
use arrow2::chunk::Chunk;
use arrow2::datatypes::{DataType, Field, Schema};
use arrow2::io::parquet::read as pq_read;
use arrow2::io::parquet::write::{
    self as pq_write, CompressedDataPage, CompressedPage, DynIter, DynStreamingIterator, Encoding,
    FallibleStreamingIterator, FileWriter, KeyValue, Page, SchemaDescriptor, Version, WriteOptions,
};
use serde::Serialize;

use self::gzip::Gzip;

mod gzip;
pub mod location;
pub mod store;

pub use location::OutputDir;
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
    table_dir(output_dir, table).join(format!("{game}_{worker_id}.gz"))
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

/// Writes the two Parquet files of `game` (see the module docs). The META file is renamed
/// into place first and the PODIUM file last, so a PODIUM file always has its META beside it.
/// Nothing is written when the game token is not a UUID or the worker id is not a safe
/// file-name component.
pub fn write_game(
    output_dir: &Path,
    worker_id: &str,
    game: &str,
    meta: &[MetaRow],
    podium: &[PodiumRow],
) -> Result<()> {
    SINK.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Sink::new()?);
        }
        match slot.as_mut() {
            Some(sink) => sink.write_game(output_dir, worker_id, game, meta, podium),
            None => bail!("Parquet sink unavailable"),
        }
    })
}

/// Encodes the two Parquet files of `game` (META, PODIUM) with the same checks as
/// [`write_game`], for a place that stores them itself.
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
    SINK.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Sink::new()?);
        }
        let Some(sink) = slot.as_mut() else {
            bail!("Parquet sink unavailable");
        };
        let (mut meta_bytes, mut podium_bytes) = (Vec::new(), Vec::new());
        sink.encode_meta(meta, &mut meta_bytes)?;
        sink.encode_podium(podium, &mut podium_bytes)?;
        Ok((meta_bytes, podium_bytes))
    })
}

thread_local! {
    /// Built on a thread's first write; None if the (constant) schemas could not be built.
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// Reusable state for writing game files: schemas, buffers and a gzip encoder.
pub struct Sink {
    meta: TableSchema,
    podium: TableSchema,
    gzip: Gzip,
    /// Encoded bytes of the META file, then of the PODIUM file.
    meta_bytes: Vec<u8>,
    podium_bytes: Vec<u8>,
}

/// Everything about a table's layout that does not depend on the rows.
struct TableSchema {
    parquet: SchemaDescriptor,
    /// The `ARROW:schema` footer entry arrow2 writes, computed once (see [`arrow_schema_entry`]).
    arrow_schema: Vec<KeyValue>,
}

impl TableSchema {
    fn new(fields: Vec<Field>) -> Result<Self> {
        let arrow = Schema::from(fields);
        Ok(TableSchema {
            parquet: pq_write::to_parquet_schema(&arrow).context("Parquet schema")?,
            arrow_schema: arrow_schema_entry(&arrow)?,
        })
    }
}

/// The key-value footer entries arrow2's own writer adds for `schema` (the IPC-encoded Arrow
/// schema readers use to restore exact types), taken from an empty file written once.
fn arrow_schema_entry(schema: &Schema) -> Result<Vec<KeyValue>> {
    let mut writer = FileWriter::try_new(Vec::new(), schema.clone(), WRITE_OPTIONS)?;
    writer.end(None)?;
    let (_, metadata) = writer.into_inner_and_metadata();
    metadata
        .key_value_metadata
        .context("arrow2 wrote no schema metadata")
}

/// The GAME_META schema (`docs/parquet.md`).
pub fn meta_schema() -> Schema {
    Schema::from(meta_fields())
}

/// The GAME_PODIUM schema (`docs/parquet.md`).
pub fn podium_schema() -> Schema {
    Schema::from(podium_fields())
}

fn meta_fields() -> Vec<Field> {
    vec![
        Field::new("game_token", DataType::Utf8, true),
        Field::new("user_token", DataType::Utf8, true),
        Field::new("superhero_id", DataType::UInt16, true),
    ]
}

fn podium_fields() -> Vec<Field> {
    vec![
        Field::new("game_token", DataType::Utf8, true),
        Field::new("user_token", DataType::Utf8, true),
        Field::new("rounds", DataType::UInt16, true),
        Field::new("rank", DataType::UInt8, true),
        Field::new("damage_delivered", DataType::UInt64, true),
        Field::new("damage_received", DataType::UInt64, true),
    ]
}

/// `created_by` of the files: what a reader sees as the writing library.
const CREATED_BY: &str = "superhero (arrow2 0.18 + parquet2 0.17)";

const WRITE_OPTIONS: WriteOptions = WriteOptions {
    write_statistics: false,
    version: Version::V1,
    // Pages are encoded uncompressed, then gzipped by [`gzip_page`] with the reused encoder.
    compression: pq_write::CompressionOptions::Uncompressed,
    data_pagesize_limit: None,
};

impl Sink {
    pub fn new() -> Result<Self> {
        Ok(Sink {
            meta: TableSchema::new(meta_fields())?,
            podium: TableSchema::new(podium_fields())?,
            gzip: Gzip::new(),
            meta_bytes: Vec::with_capacity(4096),
            podium_bytes: Vec::with_capacity(4096),
        })
    }

    /// See [`write_game`].
    pub fn write_game(
        &mut self,
        output_dir: &Path,
        worker_id: &str,
        game: &str,
        meta: &[MetaRow],
        podium: &[PodiumRow],
    ) -> Result<()> {
        check_game_token(game)?;
        ensure!(
            is_safe_worker_id(worker_id),
            "worker id {worker_id:?} is not a safe file-name component"
        );

        let mut meta_bytes = std::mem::take(&mut self.meta_bytes);
        let mut podium_bytes = std::mem::take(&mut self.podium_bytes);
        let encoded = self
            .encode_meta(meta, &mut meta_bytes)
            .and_then(|()| self.encode_podium(podium, &mut podium_bytes))
            .and_then(|()| {
                let meta_path = file_path(output_dir, META_TABLE, game, worker_id);
                let podium_path = file_path(output_dir, PODIUM_TABLE, game, worker_id);
                place_file(&meta_path, &meta_bytes)?;
                place_file(&podium_path, &podium_bytes)
            });
        self.meta_bytes = meta_bytes;
        self.podium_bytes = podium_bytes;
        encoded
    }

    /// Encodes GAME_META rows as a complete Parquet file into `out` (cleared first).
    pub fn encode_meta(&mut self, rows: &[MetaRow], out: &mut Vec<u8>) -> Result<()> {
        let columns: Vec<Box<dyn Array>> = vec![
            utf8(rows.iter().map(|r| r.game_token.as_str())),
            utf8(rows.iter().map(|r| r.user_token.as_str())),
            PrimitiveArray::<u16>::from_vec(rows.iter().map(|r| r.superhero_id).collect()).boxed(),
        ];
        encode(&self.meta, &mut self.gzip, columns, out)
    }

    /// Encodes GAME_PODIUM rows as a complete Parquet file into `out` (cleared first).
    pub fn encode_podium(&mut self, rows: &[PodiumRow], out: &mut Vec<u8>) -> Result<()> {
        let columns: Vec<Box<dyn Array>> = vec![
            utf8(rows.iter().map(|r| r.game_token.as_str())),
            utf8(rows.iter().map(|r| r.user_token.as_str())),
            PrimitiveArray::<u16>::from_vec(rows.iter().map(|r| r.rounds).collect()).boxed(),
            PrimitiveArray::<u8>::from_vec(rows.iter().map(|r| r.rank).collect()).boxed(),
            PrimitiveArray::<u64>::from_vec(rows.iter().map(|r| r.damage_delivered).collect())
                .boxed(),
            PrimitiveArray::<u64>::from_vec(rows.iter().map(|r| r.damage_received).collect())
                .boxed(),
        ];
        encode(&self.podium, &mut self.gzip, columns, out)
    }
}

/// One row group, one plain-encoded page per column, each page gzipped.
fn encode(
    table: &TableSchema,
    gzip: &mut Gzip,
    columns: Vec<Box<dyn Array>>,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    let mut compressed: Vec<CompressedPage> = Vec::with_capacity(columns.len());
    for (array, column) in columns.iter().zip(table.parquet.columns()) {
        let page = pq_write::array_to_page_simple(
            array.as_ref(),
            column.descriptor.primitive_type.clone(),
            WRITE_OPTIONS,
            Encoding::Plain,
        )
        .context("cannot encode a Parquet page")?;
        compressed.push(gzip_page(gzip, page)?);
    }
    let row_group = DynIter::new(compressed.into_iter().map(|page| {
        Ok(DynStreamingIterator::new(OnePage {
            next: Some(page),
            current: None,
        }))
    }));
    let mut writer = parquet2::write::FileWriter::new(
        Cursor::new(out),
        table.parquet.clone(),
        parquet2::write::WriteOptions {
            write_statistics: WRITE_OPTIONS.write_statistics,
            version: WRITE_OPTIONS.version,
        },
        Some(CREATED_BY.to_string()),
    );
    writer
        .write(row_group)
        .context("cannot write a Parquet row group")?;
    writer
        .end(Some(table.arrow_schema.clone()))
        .context("cannot finish a Parquet file")?;
    Ok(())
}

/// Gzips one data page with the reused encoder.
fn gzip_page(gzip: &mut Gzip, page: Page) -> Result<CompressedPage> {
    let Page::Data(page) = page else {
        bail!("unexpected dictionary page for a plain-encoded column");
    };
    let input = page.buffer();
    let mut buffer = Vec::with_capacity(input.len() / 2 + 64);
    gzip.compress_into(input, &mut buffer);
    let rows = page.header().num_values();
    Ok(CompressedPage::Data(CompressedDataPage::new(
        page.header().clone(),
        buffer,
        pq_write::CompressionOptions::Gzip(None).into(),
        input.len(),
        page.descriptor.clone(),
        Some(rows),
    )))
}

/// A column chunk of exactly one (already compressed) page.
struct OnePage {
    next: Option<CompressedPage>,
    current: Option<CompressedPage>,
}

impl FallibleStreamingIterator for OnePage {
    type Item = CompressedPage;
    type Error = parquet2::error::Error;

    fn advance(&mut self) -> Result<(), Self::Error> {
        self.current = self.next.take();
        Ok(())
    }

    fn get(&self) -> Option<&Self::Item> {
        self.current.as_ref()
    }
}

fn utf8<'a>(values: impl Iterator<Item = &'a str>) -> Box<dyn Array> {
    Utf8Array::<i32>::from_iter_values(values).boxed()
}

static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes `bytes` to a temporary file beside `path`, fsyncs it and renames it into place.
/// Creates the directories (mode 0755); the file gets mode 0644.
fn place_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    // Unique per process and call: two threads may write the same game (a duplicate record).
    let seq = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".{}-{seq}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = write_synced(&tmp, bytes).or_else(|e| {
        // The directories are made on the first write into an OUTPUT_DIR only. Another thread
        // may have just made them (its first write failed too): then simply try again.
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        write_synced(&tmp, bytes).map_err(|again| again.context(e))
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("cannot rename into {}", path.display()))
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a GAME_META file back.
pub fn read_meta(path: &Path) -> Result<Vec<MetaRow>> {
    let file =
        File::open(path).with_context(|| format!("cannot read Parquet file {}", path.display()))?;
    meta_rows(file, &path.display().to_string())
}

/// Reads GAME_META rows from a file's bytes.
pub fn meta_from_bytes(bytes: Vec<u8>) -> Result<Vec<MetaRow>> {
    meta_rows(Cursor::new(bytes), "object")
}

fn meta_rows(file: impl Read + Seek, name: &str) -> Result<Vec<MetaRow>> {
    let columns = read_columns(file, name, &meta_fields())?;
    let game = utf8_column(&columns, 0)?;
    let user = utf8_column(&columns, 1)?;
    let hero = primitive_column::<u16>(&columns, 2)?;
    Ok((0..game.len())
        .map(|i| MetaRow {
            game_token: game[i].clone(),
            user_token: user[i].clone(),
            superhero_id: hero[i],
        })
        .collect())
}

/// Reads a GAME_PODIUM file back.
pub fn read_podium(path: &Path) -> Result<Vec<PodiumRow>> {
    let file =
        File::open(path).with_context(|| format!("cannot read Parquet file {}", path.display()))?;
    podium_rows(file, &path.display().to_string())
}

/// Reads GAME_PODIUM rows from a file's bytes.
pub fn podium_from_bytes(bytes: Vec<u8>) -> Result<Vec<PodiumRow>> {
    podium_rows(Cursor::new(bytes), "object")
}

fn podium_rows(file: impl Read + Seek, name: &str) -> Result<Vec<PodiumRow>> {
    let columns = read_columns(file, name, &podium_fields())?;
    let game = utf8_column(&columns, 0)?;
    let user = utf8_column(&columns, 1)?;
    let rounds = primitive_column::<u16>(&columns, 2)?;
    let rank = primitive_column::<u8>(&columns, 3)?;
    let delivered = primitive_column::<u64>(&columns, 4)?;
    let received = primitive_column::<u64>(&columns, 5)?;
    Ok((0..game.len())
        .map(|i| PodiumRow {
            game_token: game[i].clone(),
            user_token: user[i].clone(),
            rounds: rounds[i],
            rank: rank[i],
            damage_delivered: delivered[i],
            damage_received: received[i],
        })
        .collect())
}

/// All rows of a file whose schema must be `expected`, one array per field, rows of every row
/// group concatenated.
fn read_columns<R: Read + Seek>(
    mut file: R,
    name: &str,
    expected: &[Field],
) -> Result<Vec<Vec<Box<dyn Array>>>> {
    let context = || format!("cannot read Parquet file {name}");
    let metadata = pq_read::read_metadata(&mut file).with_context(context)?;
    let schema = pq_read::infer_schema(&metadata).with_context(context)?;
    let names: Vec<(&str, &DataType)> = schema
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.data_type()))
        .collect();
    let wanted: Vec<(&str, &DataType)> = expected
        .iter()
        .map(|f| (f.name.as_str(), f.data_type()))
        .collect();
    ensure!(
        names == wanted,
        "{name}: schema {names:?} is not {wanted:?}"
    );
    let reader = pq_read::FileReader::new(file, metadata.row_groups, schema, None, None, None);
    let mut columns: Vec<Vec<Box<dyn Array>>> = vec![Vec::new(); expected.len()];
    for chunk in reader {
        let chunk: Chunk<Box<dyn Array>> = chunk.with_context(context)?;
        for (i, array) in chunk.into_arrays().into_iter().enumerate() {
            if let Some(column) = columns.get_mut(i) {
                column.push(array);
            }
        }
    }
    Ok(columns)
}

fn utf8_column(columns: &[Vec<Box<dyn Array>>], i: usize) -> Result<Vec<String>> {
    let mut values = Vec::new();
    for array in columns.get(i).into_iter().flatten() {
        let array = array
            .as_any()
            .downcast_ref::<Utf8Array<i32>>()
            .with_context(|| format!("column {i} is not utf8"))?;
        for value in array.iter() {
            values.push(
                value
                    .with_context(|| format!("column {i} holds a null"))?
                    .to_string(),
            );
        }
    }
    Ok(values)
}

fn primitive_column<T: arrow2::types::NativeType>(
    columns: &[Vec<Box<dyn Array>>],
    i: usize,
) -> Result<Vec<T>> {
    let mut values = Vec::new();
    for array in columns.get(i).into_iter().flatten() {
        let array = array
            .as_any()
            .downcast_ref::<PrimitiveArray<T>>()
            .with_context(|| format!("column {i} has an unexpected type"))?;
        for value in array.iter() {
            values.push(*value.with_context(|| format!("column {i} holds a null"))?);
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn round_trip_through_arrow2() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, podium) = rows();
        write_game(dir.path(), "w-1", &game(), &meta, &podium).unwrap();
        let meta_path = file_path(dir.path(), META_TABLE, &game(), "w-1");
        let podium_path = file_path(dir.path(), PODIUM_TABLE, &game(), "w-1");
        assert_eq!(read_meta(&meta_path).unwrap(), meta);
        assert_eq!(read_podium(&podium_path).unwrap(), podium);
        // Twice through the same thread-local buffers gives the same files.
        write_game(dir.path(), "w-1", &game(), &meta, &podium).unwrap();
        assert_eq!(read_podium(&podium_path).unwrap(), podium);
    }

    #[test]
    fn truncated_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, podium) = rows();
        write_game(dir.path(), "w", &game(), &meta, &podium).unwrap();
        let path = file_path(dir.path(), PODIUM_TABLE, &game(), "w");
        let bytes = fs::read(&path).unwrap();
        for cut in [0, 4, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read_podium(&path).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn unsafe_names_write_nothing() {
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
            assert!(write_game(dir.path(), worker, game, &meta, &podium).is_err());
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
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
