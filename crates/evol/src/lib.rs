//! `evol` as a library: the API boundary every front end stands on.
//!
//! A job is a plain settings value (see [`settings`]) handed to a function
//! of [`jobs`] with an [`Observer`] (what to tell the user) and a
//! [`Shutdown`] (when to stop). The job opens its output directory
//! (locked, with its journal), connects its backend ([`backend`]: servers,
//! provider batches or the embedded engine, each checked before any work),
//! makes every model call through one journaled `Caller` (resumable,
//! budgeted, rate-controlled), and returns a typed report; how it ended
//! (done, interrupted, stalled, capped) is decided in one place,
//! [`session`]. No job reads an OS signal, writes to a terminal or parses a
//! flag.

pub mod backend;
pub mod engine;
pub mod jobs;
pub mod observe;
pub mod results;
pub mod session;
pub mod settings;
pub mod shutdown;

pub use observe::{Observer, Silent};
pub use shutdown::Shutdown;

/// A mistake in how a job was asked for (exit code 2 in the binary): a
/// setting that cannot work, found before any file is touched or call made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
