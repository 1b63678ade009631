//! The six evolving operations and how `--ops` names them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One way of evolving an instruction: five in-depth methods and in-breadth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// In-depth: add one more constraint or requirement.
    AddConstraints,
    /// In-depth: widen and deepen the inquiry.
    Deepen,
    /// In-depth: replace general concepts with specific ones.
    Concretize,
    /// In-depth: ask explicitly for multi-step reasoning.
    Reasoning,
    /// In-depth: add input data in a format drawn from a list.
    ComplicateInput,
    /// In-breadth: a new, rarer instruction of the same domain.
    Breadth,
}

impl Operation {
    /// Every operation, in the order `--ops` documents them.
    pub const ALL: [Operation; 6] = [
        Operation::AddConstraints,
        Operation::Deepen,
        Operation::Concretize,
        Operation::Reasoning,
        Operation::ComplicateInput,
        Operation::Breadth,
    ];

    /// The name used in flags and output files.
    pub fn name(self) -> &'static str {
        match self {
            Operation::AddConstraints => "add_constraints",
            Operation::Deepen => "deepen",
            Operation::Concretize => "concretize",
            Operation::Reasoning => "reasoning",
            Operation::ComplicateInput => "complicate_input",
            Operation::Breadth => "breadth",
        }
    }

    /// Whether this is one of the in-depth methods (shared scaffold).
    pub fn is_in_depth(self) -> bool {
        self != Operation::Breadth
    }

    /// Parses a comma-separated list such as `deepen,breadth`; `all` and
    /// `in-depth` are accepted as shorthands. Duplicates are dropped.
    pub fn parse_list(list: &str) -> Result<Vec<Operation>, UnknownOperation> {
        let mut ops = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let more: Vec<Operation> = match name {
                "all" => Operation::ALL.to_vec(),
                "in-depth" | "in_depth" => Operation::ALL[..5].to_vec(),
                _ => vec![name.parse()?],
            };
            for op in more {
                if !ops.contains(&op) {
                    ops.push(op);
                }
            }
        }
        if ops.is_empty() {
            return Err(UnknownOperation(list.to_string()));
        }
        Ok(ops)
    }
}

/// An operation name that is not one of [`Operation::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operation `{0}` (expected a comma-separated list of add_constraints, deepen, concretize, reasoning, complicate_input, breadth, or `all` / `in-depth`)")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Operation, UnknownOperation> {
        let normalized = s.trim().to_ascii_lowercase().replace('-', "_");
        Operation::ALL.into_iter().find(|op| op.name() == normalized).ok_or_else(|| UnknownOperation(s.to_string()))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(op.name().parse::<Operation>().unwrap(), op);
        }
        assert_eq!("Add-Constraints".parse::<Operation>().unwrap(), Operation::AddConstraints);
    }

    #[test]
    fn parse_list_handles_shorthands_and_duplicates() {
        assert_eq!(Operation::parse_list("all").unwrap(), Operation::ALL);
        assert_eq!(Operation::parse_list("in-depth").unwrap().len(), 5);
        assert_eq!(
            Operation::parse_list("deepen, breadth,deepen").unwrap(),
            vec![Operation::Deepen, Operation::Breadth]
        );
        assert!(Operation::parse_list("deepen,flatten").is_err());
        assert!(Operation::parse_list(" , ").is_err());
    }
}
