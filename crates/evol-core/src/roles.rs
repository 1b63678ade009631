//! Roles: the named jobs models do (evolve, judge, answer, score, optimize;
//! later embedder, pairwise judge), each resolved to one model.
//!
//! Commands and backends speak of roles by name, never by position, so a
//! new role is one more variant here and one more entry where models are
//! resolved.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use evol_llm::ChatModel;
use serde::{Deserialize, Serialize};

/// A job a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Rewrites instructions.
    Evolve,
    /// Says whether an evolution gained anything over its parent (the
    /// equality check of `evol run`).
    Judge,
    /// Answers instructions.
    Answer,
    /// Scores instructions and responses (difficulty, complexity, quality).
    Score,
    /// Improves the evolving method (Auto Evol-Instruct).
    Optimize,
    /// Compares two answers to one question and scores each (`evol judge`,
    /// `evol arena`): a pairwise judge, not the equality check.
    Compare,
}

impl Role {
    /// The roles of `evol run`.
    pub const RUN: [Role; 3] = [Role::Evolve, Role::Judge, Role::Answer];

    pub fn name(self) -> &'static str {
        match self {
            Role::Evolve => "evolve",
            Role::Judge => "judge",
            Role::Answer => "answer",
            Role::Score => "score",
            Role::Optimize => "optimize",
            Role::Compare => "compare",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The model of each role.
#[derive(Clone, Default)]
pub struct Roles(BTreeMap<Role, Arc<dyn ChatModel>>);

/// A role a command needs has no model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no model for the role `{0}`")]
pub struct MissingRole(pub Role);

impl Roles {
    pub fn new() -> Roles {
        Roles::default()
    }

    /// One model for every role of `roles`.
    pub fn all(roles: &[Role], model: Arc<dyn ChatModel>) -> Roles {
        Roles(roles.iter().map(|r| (*r, model.clone())).collect())
    }

    pub fn with(mut self, role: Role, model: Arc<dyn ChatModel>) -> Roles {
        self.0.insert(role, model);
        self
    }

    pub fn get(&self, role: Role) -> Result<&Arc<dyn ChatModel>, MissingRole> {
        self.0.get(&role).ok_or(MissingRole(role))
    }

    /// Each role's model name, as records and the run's identity name them.
    pub fn names(&self) -> BTreeMap<Role, String> {
        self.0.iter().map(|(r, m)| (*r, m.name().to_string())).collect()
    }
}
