//! Encoding a game's rows as Parquet: a [`Encoder`] keeps the schema descriptors, the Arrow
//! schema footer entry and one reusable gzip encoder; arrow2 encodes each column as one plain
//! page, the page is gzipped, and parquet2 lays out the file in a memory buffer.

use std::io::Cursor;

use anyhow::{bail, Context, Result};
use arrow2::array::{Array, PrimitiveArray, Utf8Array};
use arrow2::datatypes::{DataType, Field, Schema};
use arrow2::io::parquet::write::{
    self as pq_write, CompressedDataPage, CompressedPage, DynIter, DynStreamingIterator, Encoding,
    FallibleStreamingIterator, FileWriter, KeyValue, Page, SchemaDescriptor, Version, WriteOptions,
};

use super::gzip::Gzip;
use super::{MetaRow, PodiumRow};

/// Reusable state for encoding game files: the schemas and a gzip encoder.
pub struct Encoder {
    meta: TableSchema,
    podium: TableSchema,
    gzip: Gzip,
}

/// Everything about a table's layout that does not depend on the rows.
pub(super) struct TableSchema {
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
pub(super) fn arrow_schema_entry(schema: &Schema) -> Result<Vec<KeyValue>> {
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

pub(super) fn meta_fields() -> Vec<Field> {
    vec![
        Field::new("game_token", DataType::Utf8, true),
        Field::new("user_token", DataType::Utf8, true),
        Field::new("superhero_id", DataType::UInt16, true),
    ]
}

pub(super) fn podium_fields() -> Vec<Field> {
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
pub(super) const CREATED_BY: &str = "superhero (arrow2 0.18 + parquet2 0.17)";

pub(super) const WRITE_OPTIONS: WriteOptions = WriteOptions {
    write_statistics: false,
    version: Version::V1,
    // Pages are encoded uncompressed, then gzipped by [`gzip_page`] with the reused encoder.
    compression: pq_write::CompressionOptions::Uncompressed,
    data_pagesize_limit: None,
};

impl Encoder {
    pub fn new() -> Result<Self> {
        Ok(Encoder {
            meta: TableSchema::new(meta_fields())?,
            podium: TableSchema::new(podium_fields())?,
            gzip: Gzip::new(),
        })
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
pub(super) fn encode(
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
pub(super) fn gzip_page(gzip: &mut Gzip, page: Page) -> Result<CompressedPage> {
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
pub(super) struct OnePage {
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

pub(super) fn utf8<'a>(values: impl Iterator<Item = &'a str>) -> Box<dyn Array> {
    Utf8Array::<i32>::from_iter_values(values).boxed()
}
