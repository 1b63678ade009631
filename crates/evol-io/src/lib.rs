//! Dataset files: the records of JSONL, JSON arrays, CSV/TSV tables,
//! Parquet and plain text ([`source`]), read as seeds in the Alpaca,
//! ShareGPT or chat-messages layout ([`seeds`]), or as rows kept whole and
//! written back unchanged ([`rows`]); and datasets written in a fixed schema
//! as JSONL, Parquet or a Hugging Face dataset directory ([`table`]). The run directory and its outputs
//! belong to `evol-store`.

pub mod bounded;
mod container;
pub mod layout;
pub mod rows;
pub mod seeds;
mod source;
pub use source::{dataset_parts, input_digest};
pub mod table;

pub use layout::ChatLayout;
pub use rows::{open_rows, Body, Layout, Row, RowReader, RowWriter, TextField};
pub use seeds::{
    chat_turns, field, number, read_seeds, user_turns, Dialogue, Fields, ReadOptions, RecordLayout, SeedError,
    SeedFormat, SeedSet, Speaker, Turn,
};
pub use table::{TableError, TableWriter, Target, Written};
