//! Operations as data: an operation is a name, a kind, a template, a weight
//! and the elimination rules that apply to what it makes.
//!
//! The built-in set (Evol-Instruct's five in-depth methods and in-breadth)
//! is defined the same way, in the embedded `templates/operations.toml`, so
//! other sets (code, maths, a user's own) need no new type. Records name an
//! operation by its [`Operation::name`]; a run's identity holds the whole
//! definition of every enabled operation.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::eliminate::Rule;

/// Which family an operation belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Makes the instruction harder (the method's in-depth evolving).
    InDepth,
    /// Makes a new, rarer instruction of the same domain.
    InBreadth,
    /// Another family's kind (a code or maths set, a user's own).
    #[serde(untagged)]
    Other(String),
}

/// One way of evolving an instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// The name that selects it and that records carry.
    pub name: String,
    pub kind: Kind,
    /// The template file that makes the prompt (gets `instruction`, and
    /// `method` when there is one).
    pub template: String,
    /// The template file of the method, rendered into `template`'s `method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Its share of the draw, relative to the other enabled operations.
    #[serde(default = "one")]
    pub weight: f64,
    /// Draws a data format and passes it to the method as `format`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_formats: bool,
    /// The elimination rules that apply to what this operation makes (each
    /// can still be switched off for the whole run).
    #[serde(default = "Rule::all")]
    pub rules: Vec<Rule>,
}

fn one() -> f64 {
    1.0
}

impl Operation {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_in_depth(&self) -> bool {
        self.kind == Kind::InDepth
    }

    /// Whether `rule` applies to what this operation makes.
    pub fn applies(&self, rule: Rule) -> bool {
        self.rules.contains(&rule)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A set of operations a run draws from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperationSet(Vec<Operation>);

/// A set that cannot be used: a bad definition file or selection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    #[error("unknown operation `{name}` (expected a comma-separated list of {known}, or `all` / `in-depth`)")]
    Unknown { name: String, known: String },
    #[error("no operation is selected")]
    Empty,
    #[error("the operation definitions: {0}")]
    Definition(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefinitionFile {
    operation: Vec<Operation>,
}

impl OperationSet {
    /// The built-in set of six.
    pub fn builtin() -> OperationSet {
        OperationSet::from_toml(include_str!("../templates/operations.toml")).expect("the built-in set is valid")
    }

    /// A set from its TOML definition (`[[operation]]` tables).
    pub fn from_toml(text: &str) -> Result<OperationSet, OperationError> {
        let file: DefinitionFile = toml::from_str(text).map_err(|e| OperationError::Definition(e.to_string()))?;
        let mut names = std::collections::BTreeSet::new();
        for op in &file.operation {
            if op.name.trim().is_empty() {
                return Err(OperationError::Definition("an operation without a name".into()));
            }
            if !names.insert(op.name.as_str()) {
                return Err(OperationError::Definition(format!("the operation `{}` is defined twice", op.name)));
            }
            if !(op.weight.is_finite() && op.weight > 0.0) {
                return Err(OperationError::Definition(format!("`{}`: weight must be a positive number", op.name)));
            }
        }
        if file.operation.is_empty() {
            return Err(OperationError::Empty);
        }
        Ok(OperationSet(file.operation))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Operation> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|op| op.name.as_str()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Operation> {
        self.0.iter().find(|op| op.name == name)
    }

    /// The operations a comma-separated list such as `deepen,breadth`
    /// selects, in the set's order; `all` and `in-depth` are shorthands.
    /// Names are matched without regard to case, `-` standing for `_`.
    pub fn select(&self, list: &str) -> Result<OperationSet, OperationError> {
        let mut chosen = vec![false; self.0.len()];
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let normalized = name.to_ascii_lowercase().replace('-', "_");
            match normalized.as_str() {
                "all" => chosen.iter_mut().for_each(|c| *c = true),
                "in_depth" => {
                    for (c, op) in chosen.iter_mut().zip(&self.0) {
                        *c |= op.is_in_depth();
                    }
                }
                _ => match self.0.iter().position(|op| op.name == normalized) {
                    Some(i) => chosen[i] = true,
                    None => {
                        return Err(OperationError::Unknown { name: name.to_string(), known: self.names().join(", ") })
                    }
                },
            }
        }
        let ops: Vec<Operation> = self.0.iter().zip(chosen).filter(|(_, c)| *c).map(|(op, _)| op.clone()).collect();
        if ops.is_empty() {
            return Err(OperationError::Empty);
        }
        Ok(OperationSet(ops))
    }

    /// Draws an operation by weight, as its position in the set. With equal
    /// weights this is one uniform draw of an index, as the method describes.
    pub fn draw_index(&self, rng: &mut impl Rng) -> usize {
        let first = self.0[0].weight;
        if self.0.iter().all(|op| op.weight == first) {
            return rng.random_range(0..self.0.len());
        }
        let total: f64 = self.0.iter().map(|op| op.weight).sum();
        let mut x = rng.random::<f64>() * total;
        for (i, op) in self.0.iter().enumerate() {
            if x < op.weight {
                return i;
            }
            x -= op.weight;
        }
        self.0.len() - 1
    }

    /// The operation at a position of the set.
    pub fn at(&self, index: usize) -> &Operation {
        &self.0[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_set_has_the_six_operations() {
        let set = OperationSet::builtin();
        assert_eq!(
            set.names(),
            ["add_constraints", "deepen", "concretize", "reasoning", "complicate_input", "breadth"]
        );
        assert_eq!(set.iter().filter(|op| op.is_in_depth()).count(), 5);
        assert!(set.get("complicate_input").unwrap().data_formats);
        assert!(set.iter().all(|op| op.rules == Rule::all() && op.weight == 1.0));
    }

    #[test]
    fn select_handles_shorthands_case_and_duplicates() {
        let set = OperationSet::builtin();
        assert_eq!(set.select("all").unwrap(), set);
        assert_eq!(set.select("in-depth").unwrap().len(), 5);
        assert_eq!(set.select("breadth, Deepen,deepen").unwrap().names(), ["deepen", "breadth"]);
        assert_eq!(set.select("Add-Constraints").unwrap().names(), ["add_constraints"]);
        let err = set.select("deepen,flatten").unwrap_err();
        assert!(err.to_string().contains("`flatten`") && err.to_string().contains("breadth"), "{err}");
        assert_eq!(set.select(" , ").unwrap_err(), OperationError::Empty);
    }

    #[test]
    fn definitions_are_checked() {
        let bad = |text: &str| OperationSet::from_toml(text).unwrap_err().to_string();
        let op = "[[operation]]\nname = \"x\"\nkind = \"code\"\ntemplate = \"t.txt\"\n";
        assert!(bad(&format!("{op}{op}")).contains("defined twice"));
        assert!(bad(&format!("{op}weight = 0\n")).contains("weight"));
        assert!(bad(&format!("{op}colour = 1\n")).contains("colour"));
        let set = OperationSet::from_toml(op).unwrap();
        assert_eq!(set.get("x").unwrap().kind, Kind::Other("code".into()));
    }

    #[test]
    fn weights_shift_the_draw() {
        let text = "[[operation]]\nname = \"a\"\nkind = \"in_depth\"\ntemplate = \"t\"\nweight = 3\n\
                    [[operation]]\nname = \"b\"\nkind = \"in_depth\"\ntemplate = \"t\"\n";
        let set = OperationSet::from_toml(text).unwrap();
        let mut rng = crate::rng::keyed_rng(1, &[b"draw"]);
        let a = (0..4000).filter(|_| set.at(set.draw_index(&mut rng)).name == "a").count();
        // 3000 expected; 4 sigma is about 110.
        assert!((2890..=3110).contains(&a), "{a}");
    }
}
