//! Every job `evol` runs, each a function of its settings, an observer and
//! (for those that call models) a shutdown.

pub mod answer;
pub mod arena;
pub mod judge;
pub mod optimize;
pub mod score;
pub mod select;
pub mod testset;

pub use answer::answer;
pub use arena::arena;
pub use judge::judge;
pub use optimize::optimize;
pub use score::score;
pub use select::select;
