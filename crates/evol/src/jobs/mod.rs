//! Every job `evol` runs, each a function of its settings, an observer and
//! (for those that call models) a shutdown.

pub mod answer;
pub mod arena;
pub mod decontaminate;
pub mod dedup;
pub mod estimate;
pub mod export;
pub mod judge;
pub mod magpie;
pub mod merge;
pub mod optimize;
pub mod report;
pub mod run;
pub mod score;
pub mod select;
pub mod status;
pub mod testset;

pub use answer::answer;
pub use arena::arena;
pub use export::export;
pub use judge::judge;
pub use magpie::magpie;
pub use optimize::optimize;
pub use run::run;
pub use score::score;
pub use select::select;
pub use status::status;
