//! The Evol-Instruct method, independent of where models run and where data
//! lives.
//!
//! - [`ops`]: the six evolving operations.
//! - [`templates`]: the project's prompt templates (embedded, replaceable).
//! - [`clean`]: turning a reply into an evolved instruction.
//! - [`eliminate`]: the rules that reject a failed evolution.
//! - [`engine`]: the per-seed chains of rounds that drive it all.
//! - [`record`] and [`stats`]: what a run produces.
//! - [`rng`]: deterministic randomness keyed by seed, round and attempt.
//! - [`cost`]: prices, spending and the caps that stop a run.
//! - [`journal`]: where call outcomes are committed, for exact resume.
//!
//! This crate knows nothing about HTTP, files or terminals: models are
//! reached through [`evol_llm::ChatModel`], records leave through
//! [`engine::Sink`].

pub mod clean;
pub mod cost;
pub mod eliminate;
pub mod engine;
pub mod journal;
pub mod ops;
pub mod record;
pub mod rng;
pub mod stats;
pub mod templates;

pub use engine::{Engine, EngineError, Models, Settings, Sink, SinkError};
pub use journal::{Journal, NoJournal};
pub use ops::Operation;
pub use record::{Evolution, Rejection, Seed, SeedAnswer};
pub use stats::{RunStats, StatsRecorder};
pub use templates::Templates;
