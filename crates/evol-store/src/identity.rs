//! A run's identity and state, typed.
//!
//! The identity is everything that makes a run's results what they are:
//! its seeds (digest and count), its shard, its [`Method`], the model of
//! each role, the prompt templates' digest and whether the dataset includes
//! the seeds. It is built from those values, so a setting added to the
//! method is part of it without anyone listing it; settings that may change
//! between attempts never reach it. A journal only resumes a run of the
//! same identity; `evol merge` joins shards whose identities differ only in
//! the shard.

use std::collections::BTreeMap;

use evol_core::{Method, Role, Shard};
use serde::{Deserialize, Serialize};

/// What makes a run's results what they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunIdentity {
    /// The digest of every seed of the file (within `--limit`), all shards.
    pub seeds: String,
    /// How many seeds the file has (within `--limit`), all shards.
    pub seed_count: u64,
    pub shard: Option<Shard>,
    pub settings: Method,
    /// The model of each role.
    pub models: BTreeMap<Role, String>,
    /// The digest of the prompt templates.
    pub templates: String,
    /// The digest of the scoring templates, for a run that scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_templates: Option<String>,
    /// The digest of the answer-improving templates, for a run that
    /// improves answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub improve_templates: Option<String>,
    /// The digest of the language templates, for a run that keeps each
    /// text's language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_templates: Option<String>,
    pub include_seeds: bool,
}

impl RunIdentity {
    /// The fields whose values differ from `other`'s, by name (a method
    /// setting by its own name, another part as `part.field`).
    pub fn differences(&self, other: &RunIdentity) -> Vec<String> {
        let (now, then) = (to_object(self), to_object(other));
        let mut changed = Vec::new();
        for (key, value) in &now {
            match (value, then.get(key)) {
                (serde_json::Value::Object(a), Some(serde_json::Value::Object(b))) => {
                    for (sub, v) in a {
                        if b.get(sub) != Some(v) {
                            changed.push(if key == "settings" { sub.clone() } else { format!("{key}.{sub}") });
                        }
                    }
                    for sub in b.keys().filter(|k| !a.contains_key(*k)) {
                        changed.push(format!("{key}.{sub}"));
                    }
                }
                (a, b) if Some(a) != b => changed.push(key.clone()),
                _ => {}
            }
        }
        changed
    }

    /// The same identity without its shard (what all shards of a run share).
    pub fn unsharded(&self) -> RunIdentity {
        RunIdentity { shard: None, ..self.clone() }
    }

    /// The model of a role, or `?` when the run has none for it.
    pub fn model(&self, role: Role) -> &str {
        self.models.get(&role).map_or("?", String::as_str)
    }
}

impl RunIdentity {
    /// Reads an identity as any release wrote it: the layout of evol 0.1.0
    /// (operations by name) is brought to this one's.
    pub fn from_json(mut value: serde_json::Value) -> Result<RunIdentity, String> {
        upgrade_v0(&mut value)?;
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// evol 0.1.0 named the built-in operations of a run (`settings.ops`);
/// identities now hold their definitions (`settings.operations`).
pub(crate) fn upgrade_v0(value: &mut serde_json::Value) -> Result<(), String> {
    let Some(settings) = value.get_mut("settings").and_then(|s| s.as_object_mut()) else {
        return Ok(());
    };
    if let Some(ops) = settings.remove("ops") {
        let names: Vec<String> = serde_json::from_value(ops).map_err(|e| e.to_string())?;
        let set = evol_core::OperationSet::builtin().select(&names.join(",")).map_err(|e| e.to_string())?;
        settings.insert("operations".into(), serde_json::to_value(set).map_err(|e| e.to_string())?);
    }
    Ok(())
}

fn to_object(identity: &RunIdentity) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(identity).expect("serializable") {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an identity is an object"),
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Running now, or killed without a clean exit.
    Running,
    Completed,
    /// Stopped by Ctrl-C or SIGTERM; rerun the command to resume.
    Interrupted,
    /// Stopped by a budget cap; raise it and rerun to continue.
    Capped,
    /// Stopped by an error.
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Interrupted => "interrupted",
            RunState::Capped => "capped",
            RunState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        [RunState::Running, RunState::Completed, RunState::Interrupted, RunState::Capped, RunState::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
