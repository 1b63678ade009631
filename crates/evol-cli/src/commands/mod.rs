//! One module per subcommand.

pub mod models;
pub mod run;
pub mod serve;
pub mod templates;
