//! The Evol-Instruct method, independent of where models run and where data
//! lives.
//!
//! - [`ops`]: operations as data (the built-in six and any other set).
//! - [`method`]: the settings that change a run's results, and the calls
//!   each step makes.
//! - [`roles`]: the named jobs models do (evolve, judge, answer).
//! - [`caller`]: the journaled caller every model call goes through.
//! - [`templates`]: the project's prompt templates (embedded, replaceable).
//! - [`clean`]: turning a reply into an evolved instruction.
//! - [`eliminate`]: the rules that reject a failed evolution.
//! - [`dedup`]: near duplicates of an ancestor or a seed.
//! - [`best_of`]: which of K answers a row keeps, and the pair they make.
//! - [`engine`]: the per-seed chains of rounds that drive it all.
//! - [`record`] and [`stats`]: what a run produces.
//! - [`rng`]: deterministic randomness keyed by seed, round and attempt.
//! - [`cost`]: prices, spending and the caps that stop a run.
//! - [`journal`]: where call outcomes are committed, for exact resume.
//!
//! This crate knows nothing about HTTP, files or terminals: models are
//! reached through [`evol_llm::ChatModel`], records leave through
//! [`engine::Sink`].

pub mod best_of;
pub mod caller;
pub mod clean;
pub mod constrain;
pub mod cost;
pub mod dedup;
pub mod eliminate;
pub mod engine;
pub mod journal;
pub mod method;
pub mod ops;
pub mod optimize;
pub mod record;
pub mod rng;
pub mod roles;
pub mod score;
pub mod shard;
mod slots;
pub mod stats;
pub mod templates;

pub use caller::{CallError, CallKey, CallSpec, Caller, CallerSettings, EmbedSpec, Prompt};
pub use engine::{Engine, EngineError, SeedSourceError, Sink, SinkError};
pub use journal::{Journal, NoJournal};
pub use method::{Method, PlannedCall, Stage};
pub use ops::{Operation, OperationSet, OperatorSet};
pub use record::{AnswerCandidate, Evolution, Improvement, Lineage, Rejection, Seed, SeedAnswer, SeedScore};
pub use roles::{Role, Roles};
pub use shard::{Shard, ShardSpec};
pub use stats::{RunStats, StatsRecorder};
pub use templates::Templates;
