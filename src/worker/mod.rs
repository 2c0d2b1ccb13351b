//! The worker (SPEC §7).

pub mod claim;
pub mod etl;
