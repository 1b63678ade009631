//! Files in and out of `evol`: seed files ([`seeds`]) and a run's output
//! directory ([`output`]). The only crate besides the CLI that touches the
//! file system.

pub mod output;
pub mod seeds;

pub use output::{OutputDir, OutputError};
pub use seeds::{read_seeds, ReadOptions, SeedError, SeedFormat, SeedSet};
