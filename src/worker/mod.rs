//! The worker role: turns each finished game into Parquet files.

pub mod etl;
