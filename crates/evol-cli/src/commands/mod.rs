//! One module per subcommand.

pub mod batch;
pub mod config;
pub mod dedup;
pub mod eval;
pub mod export;
pub mod merge;
pub mod models;
pub mod ops;
pub mod optimize;
pub mod report;
pub mod run;
pub mod score;
pub mod select;
pub mod serve;
pub mod status;
pub mod templates;
