//! Dataset files: seed files read record by record ([`seeds`]: JSONL, a
//! JSON array in the Alpaca layout, or plain text), and any dataset read
//! and written back row by row, unchanged ([`rows`]). The run directory
//! and its outputs belong to `evol-store`.

pub mod rows;
pub mod seeds;

pub use rows::{open_rows, Body, Layout, Row, RowReader, RowWriter, TextField};
pub use seeds::{read_seeds, ReadOptions, SeedError, SeedFormat, SeedSet};
