//! Reads the workers' output with arrow2 and prints the podium of one game.
//!
//! ```sh
//! cargo run --example read_podium -- [OUTPUT_DIR] [GAME_TOKEN]
//! ```
//! OUTPUT_DIR defaults to `./data`; without GAME_TOKEN it shows the most recently written game.
//! This is how any program reads the GAME_PODIUM files: plain Parquet, one file per game.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arrow2::array::{Array, PrimitiveArray, Utf8Array};
use arrow2::io::parquet::read;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let output_dir = PathBuf::from(args.next().unwrap_or_else(|| "./data".into()));
    let game = args.next();
    let podium_dir = output_dir.join("superhero").join("GAME_PODIUM");
    let file = pick_file(&podium_dir, game.as_deref())?;
    println!("{}", file.display());

    let mut reader =
        File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let metadata = read::read_metadata(&mut reader).context("not a Parquet file")?;
    let schema = read::infer_schema(&metadata)?;
    let row_groups = metadata.row_groups;
    let chunks = read::FileReader::new(reader, row_groups, schema.clone(), None, None, None);

    println!(
        "{:>4}  {:<36}  {:>6}  {:>16}  {:>16}",
        "rank", "user_token", "rounds", "damage_delivered", "damage_received"
    );
    let column = |name: &str| {
        schema
            .fields
            .iter()
            .position(|f| f.name == name)
            .with_context(|| format!("no column {name}"))
    };
    let (user, rounds, rank, delivered, received) = (
        column("user_token")?,
        column("rounds")?,
        column("rank")?,
        column("damage_delivered")?,
        column("damage_received")?,
    );
    let mut rows = Vec::new();
    for chunk in chunks {
        let chunk = chunk?;
        let arrays = chunk.arrays();
        let user = downcast::<Utf8Array<i32>>(arrays[user].as_ref())?;
        let rounds = downcast::<PrimitiveArray<u16>>(arrays[rounds].as_ref())?;
        let rank = downcast::<PrimitiveArray<u8>>(arrays[rank].as_ref())?;
        let delivered = downcast::<PrimitiveArray<u64>>(arrays[delivered].as_ref())?;
        let received = downcast::<PrimitiveArray<u64>>(arrays[received].as_ref())?;
        for i in 0..chunk.len() {
            rows.push((
                rank.value(i),
                user.value(i).to_string(),
                rounds.value(i),
                delivered.value(i),
                received.value(i),
            ));
        }
    }
    rows.sort();
    for (rank, user, rounds, delivered, received) in rows {
        println!("{rank:>4}  {user:<36}  {rounds:>6}  {delivered:>16}  {received:>16}");
    }
    Ok(())
}

fn downcast<T: 'static>(array: &dyn Array) -> Result<&T> {
    array
        .as_any()
        .downcast_ref::<T>()
        .context("unexpected column type")
}

/// The game's podium file, or the newest one.
fn pick_file(dir: &Path, game: Option<&str>) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read {} (has a worker written anything?)",
            dir.display()
        )
    })?;
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gz"))
        .filter(|p| {
            game.is_none_or(|g| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(g))
            })
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    files.sort();
    match files.pop() {
        Some((_, path)) => Ok(path),
        None => bail!("no podium file in {}", dir.display()),
    }
}
