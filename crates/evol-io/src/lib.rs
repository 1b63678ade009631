//! Seed files in: JSONL, a JSON array in the Alpaca layout, or plain text,
//! read record by record ([`seeds`]). The run directory and its outputs
//! belong to `evol-store`.

pub mod seeds;

pub use seeds::{read_seeds, ReadOptions, SeedError, SeedFormat, SeedSet};
