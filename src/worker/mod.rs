//! The worker (SPEC §7).

pub mod claim;
