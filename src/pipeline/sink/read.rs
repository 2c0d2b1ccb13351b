//! Reading game files back (for `report`, `demo` and tests), checking that the schema is the
//! documented one.

use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::Path;

use anyhow::{ensure, Context, Result};
use arrow2::array::{Array, PrimitiveArray, Utf8Array};
use arrow2::chunk::Chunk;
use arrow2::datatypes::{DataType, Field};
use arrow2::io::parquet::read as pq_read;

use super::encode::{meta_fields, podium_fields};
use super::{MetaRow, PodiumRow};

/// The columns of a file, one array per field, rows of every row group concatenated.
type Columns = Vec<Vec<Box<dyn Array>>>;

/// Reads a GAME_META file back.
pub fn read_meta(path: &Path) -> Result<Vec<MetaRow>> {
    read_rows(
        open(path)?,
        &path.display().to_string(),
        &meta_fields(),
        meta_rows,
    )
}

/// Reads GAME_META rows from a file's bytes.
pub fn meta_from_bytes(bytes: Vec<u8>) -> Result<Vec<MetaRow>> {
    read_rows(Cursor::new(bytes), "object", &meta_fields(), meta_rows)
}

/// Reads a GAME_PODIUM file back.
pub fn read_podium(path: &Path) -> Result<Vec<PodiumRow>> {
    read_rows(
        open(path)?,
        &path.display().to_string(),
        &podium_fields(),
        podium_rows,
    )
}

/// Reads GAME_PODIUM rows from a file's bytes.
pub fn podium_from_bytes(bytes: Vec<u8>) -> Result<Vec<PodiumRow>> {
    read_rows(Cursor::new(bytes), "object", &podium_fields(), podium_rows)
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot read Parquet file {}", path.display()))
}

/// The rows of a file (named `name` in errors) whose schema must be `expected`.
fn read_rows<T>(
    file: impl Read + Seek,
    name: &str,
    expected: &[Field],
    rows: fn(&Columns) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    rows(&read_columns(file, name, expected)?)
}

fn meta_rows(columns: &Columns) -> Result<Vec<MetaRow>> {
    let game = utf8_column(columns, 0)?;
    let user = utf8_column(columns, 1)?;
    let hero = primitive_column::<u16>(columns, 2)?;
    Ok((0..game.len())
        .map(|i| MetaRow {
            game_token: game[i].clone(),
            user_token: user[i].clone(),
            superhero_id: hero[i],
        })
        .collect())
}

fn podium_rows(columns: &Columns) -> Result<Vec<PodiumRow>> {
    let game = utf8_column(columns, 0)?;
    let user = utf8_column(columns, 1)?;
    let rounds = primitive_column::<u16>(columns, 2)?;
    let rank = primitive_column::<u8>(columns, 3)?;
    let delivered = primitive_column::<u64>(columns, 4)?;
    let received = primitive_column::<u64>(columns, 5)?;
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
fn read_columns<R: Read + Seek>(mut file: R, name: &str, expected: &[Field]) -> Result<Columns> {
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
    let mut columns: Columns = vec![Vec::new(); expected.len()];
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
