//! Operations as data: an operation is a name, a kind, a template, a weight
//! and the elimination rules that apply to what it makes.
//!
//! Operations come in operator sets, TOML files of `[[operator]]` tables
//! and a `[templates]` table. The built-in sets (`evol`: Evol-Instruct's
//! five in-depth methods and in-breadth; `code`: Code Evol-Instruct;
//! `math`: upward and downward maths evolution; `auto`: Auto
//! Evol-Instruct's universal method) are shipped as such files and embedded
//! in the binary; a user's own file is read the same way. Records name an
//! operation by its [`Operation::name`]; a run's identity holds the whole
//! definition of every enabled operation, and the templates' digest their
//! texts.

use std::collections::BTreeMap;
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
    /// Another family's kind (`upward`, `downward`, a user's own).
    #[serde(untagged)]
    Other(String),
}

impl Kind {
    /// The kind's name, as files write it and `--ops` selects it.
    pub fn name(&self) -> &str {
        match self {
            Kind::InDepth => "in_depth",
            Kind::InBreadth => "in_breadth",
            Kind::Other(name) => name,
        }
    }
}

/// One way of evolving an instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// The name that selects it and that records carry.
    pub name: String,
    pub kind: Kind,
    /// The template that makes the prompt (gets `instruction`, and
    /// `method` when there is one): a built-in file's name or one of the
    /// set's templates.
    pub template: String,
    /// The template of the method, rendered into `template`'s `method`.
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
    /// The words of its prompt that must not show up in what it makes
    /// (lower case; the `copied_prompt` rule), and that are stripped when a
    /// reply begins with one. Empty: the words of the `evol` set's prompts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<String>,
    /// The evolved instruction is what follows the last occurrence of this
    /// text in the reply; a reply without it failed
    /// (`unparsable_evolution`). None: the whole reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_marker: Option<String>,
    /// The constraint kinds (IFEval's ids) it draws one from, to add to the
    /// instruction as a requirement its answer is checked against; the
    /// template gets the drawn one's wording as `constraint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Tree-Instruct: the numbers of nodes it may add to the instruction's
    /// tree, one drawn per step and passed to the template as `nodes`
    /// (recorded with the evolution).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<u32>,
}

/// The most nodes one step may add.
pub const MAX_NODES: u32 = 50;

/// A list of node counts that is not usable, or the reason.
pub fn check_nodes(nodes: &[u32]) -> Result<(), String> {
    match nodes.iter().find(|n| **n == 0 || **n > MAX_NODES) {
        Some(n) => Err(format!("{n} nodes: a step adds from 1 to {MAX_NODES}")),
        None => Ok(()),
    }
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

    /// Whether it writes the next user turn of a conversation (kind
    /// `follow_up`): its template gets the conversation so far.
    pub fn is_follow_up(&self) -> bool {
        self.kind.name() == "follow_up"
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
    #[error("unknown operation `{name}` (expected a comma-separated list of {known}, `all`, or a kind: {kinds})")]
    Unknown { name: String, known: String, kinds: String },
    #[error("unknown operator set `{name}` (built in: {known})")]
    UnknownSet { name: String, known: String },
    #[error("no operation is selected")]
    Empty,
    #[error("`{item}`: the weight must be a positive number")]
    Weight { item: String },
    /// A definition file that is not right; names the operator and the
    /// field when the mistake is in one.
    #[error("{}{message}", place(operator, field))]
    Definition { operator: Option<String>, field: Option<String>, message: String },
}

fn place(operator: &Option<String>, field: &Option<String>) -> String {
    match (operator, field) {
        (Some(op), Some(field)) => format!("operator {op}, field `{field}`: "),
        (Some(op), None) => format!("operator {op}: "),
        (None, Some(field)) => format!("field `{field}`: "),
        (None, None) => String::new(),
    }
}

fn definition(operator: Option<String>, field: Option<&str>, message: impl Into<String>) -> OperationError {
    OperationError::Definition { operator, field: field.map(String::from), message: message.into() }
}

/// A template an operator set defines: template source (minijinja, which
/// gets the instruction and the method as values), or literal text passed
/// as a value as it is (`{ literal = "..." }`: what a model wrote, such as
/// an optimised method, is never run as template code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetTemplate {
    Source(String),
    Literal(String),
}

impl SetTemplate {
    pub fn text(&self) -> &str {
        match self {
            SetTemplate::Source(text) | SetTemplate::Literal(text) => text,
        }
    }
}

/// A whole operator set: its operators and the templates they use.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSet {
    pub name: String,
    pub description: String,
    pub operations: OperationSet,
    /// The set's own templates, by name (a built-in file's name replaces
    /// that file for the runs that use the set).
    pub templates: BTreeMap<String, SetTemplate>,
}

/// The built-in operator sets, by name, as shipped.
pub const BUILTIN_SETS: &[(&str, &str)] = &[
    ("evol", include_str!("../sets/evol.toml")),
    ("code", include_str!("../sets/code.toml")),
    ("math", include_str!("../sets/math.toml")),
    ("auto", include_str!("../sets/auto.toml")),
    ("verifiable", include_str!("../sets/verifiable.toml")),
    ("tree", include_str!("../sets/tree.toml")),
    ("conversation", include_str!("../sets/conversation.toml")),
];

impl OperatorSet {
    /// A built-in set by name.
    pub fn builtin(name: &str) -> Option<OperatorSet> {
        let (_, text) = BUILTIN_SETS.iter().find(|(n, _)| *n == name)?;
        Some(OperatorSet::parse(text).expect("the built-in sets are valid"))
    }

    /// The names of the built-in sets.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN_SETS.iter().map(|(n, _)| *n).collect()
    }

    /// A set from its TOML text. A mistake names the operator (by name,
    /// or by position when it has none) and the field.
    pub fn parse(text: &str) -> Result<OperatorSet, OperationError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| definition(None, None, e.to_string().trim_end()))?;
        for key in table.keys() {
            if !["name", "description", "templates", "operator"].contains(&key.as_str()) {
                return Err(definition(
                    None,
                    Some(key),
                    "unknown field (expected `name`, `description`, `[templates]` or `[[operator]]`)",
                ));
            }
        }
        let string = |key: &str| match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(definition(None, Some(key), "must be a string")),
        };
        if string("name")?.is_some_and(|n| n.chars().any(|c| c.is_control() || is_format_control(c))) {
            return Err(definition(None, Some("name"), "must not hold control characters"));
        }
        let name = string("name")?.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
            definition(None, Some("name"), "the set needs a name (`name = \"...\"` at the top of the file)")
        })?;
        let description = string("description")?.unwrap_or_default();

        let mut templates = BTreeMap::new();
        match table.get("templates") {
            None => {}
            Some(toml::Value::Table(entries)) => {
                for (key, value) in entries {
                    let template = match value {
                        toml::Value::String(text) => SetTemplate::Source(text.clone()),
                        toml::Value::Table(t) if t.len() == 1 && t.get("literal").is_some_and(|v| v.is_str()) => {
                            SetTemplate::Literal(t["literal"].as_str().unwrap_or_default().to_string())
                        }
                        _ => return Err(definition(
                            None,
                            Some(&format!("templates.{key}")),
                            "a template is a string (template source) or `{ literal = \"...\" }` (text used as it is)",
                        )),
                    };
                    templates.insert(key.clone(), template);
                }
            }
            Some(_) => return Err(definition(None, Some("templates"), "must be a table of templates")),
        }

        let entries = match table.get("operator") {
            Some(toml::Value::Array(entries)) if !entries.is_empty() => entries,
            Some(toml::Value::Array(_)) | None => {
                return Err(definition(None, Some("operator"), "the set defines no operator (`[[operator]]` tables)"))
            }
            Some(_) => return Err(definition(None, Some("operator"), "must be `[[operator]]` tables")),
        };
        let mut operations: Vec<Operation> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let label = match entry.get("name").and_then(|n| n.as_str()) {
                Some(name) if !name.trim().is_empty() => format!("`{name}`"),
                _ => format!("number {}", i + 1),
            };
            let op: Operation = serde_path_to_error::deserialize(entry.clone()).map_err(|e| {
                let path = e.path().to_string();
                let field = (path != "." && !path.is_empty()).then_some(path);
                definition(Some(label.clone()), field.as_deref(), e.into_inner().to_string().trim_end())
            })?;
            let bad = |field: &str, message: &str| Err(definition(Some(label.clone()), Some(field), message));
            if op.name.trim().is_empty() {
                return bad("name", "must not be empty");
            }
            if op.name.chars().any(|c| c.is_control() || is_format_control(c)) {
                return bad("name", "must not hold control characters");
            }
            if op.name.contains([',', '=', ':']) || op.name.chars().any(char::is_whitespace) {
                return bad("name", "must not contain spaces, `,`, `=` or `:` (it is selected by `--ops`)");
            }
            if operations.iter().any(|o| o.name == op.name) {
                return bad("name", "is defined twice in the set");
            }
            if !(op.weight.is_finite() && op.weight > 0.0) {
                return bad("weight", "must be a positive number");
            }
            if op.markers.iter().any(|m| m.trim().is_empty()) {
                return bad("markers", "must not hold an empty text");
            }
            if op.final_marker.as_deref().is_some_and(|m| m.trim().is_empty()) {
                return bad("final_marker", "must not be empty");
            }
            if let Some(id) = op.constraints.iter().find(|id| !crate::constrain::drawable(id)) {
                let message = if evol_constraints::IDS.contains(&id.as_str()) {
                    format!("`{id}` cannot be drawn: its argument is the request itself, which the rewrite changes")
                } else {
                    format!("unknown constraint id `{id}` (known: {})", evol_constraints::IDS.join(", "))
                };
                return bad("constraints", &message);
            }
            if let Err(message) = check_nodes(&op.nodes) {
                return bad("nodes", &message);
            }
            operations.push(op);
        }
        Ok(OperatorSet { name, description, operations: OperationSet(operations), templates })
    }

    /// The set and the operations that `--ops SPEC` chooses: `SET`,
    /// `SET:LIST` or `LIST`, where SET is a built-in set or the name of
    /// `file` (the set a `--ops-file` defines, the default when given; else
    /// `evol`) and LIST is what [`OperationSet::select`] takes.
    pub fn choose(spec: &str, file: Option<OperatorSet>) -> Result<(OperatorSet, OperationSet), OperationError> {
        let spec = spec.trim();
        let is_set =
            |name: &str| file.as_ref().is_some_and(|f| f.name == name) || BUILTIN_SETS.iter().any(|(n, _)| *n == name);
        let (set_name, list) = match spec.split_once(':') {
            Some((set, list)) => (Some(set.trim()), list),
            None if is_set(spec) => (Some(spec), "all"),
            None => (None, spec),
        };
        let set = match (set_name, file) {
            (Some(name), Some(file)) if file.name == name => file,
            (Some(name), _) => OperatorSet::builtin(name).ok_or_else(|| OperationError::UnknownSet {
                name: name.to_string(),
                known: OperatorSet::builtin_names().join(", "),
            })?,
            (None, Some(file)) => file,
            (None, None) => OperatorSet::builtin("evol").expect("built in"),
        };
        let chosen = set.operations.select(list)?;
        Ok((set, chosen))
    }

    /// The set as a TOML file that [`OperatorSet::parse`] reads back into
    /// the same set; `extra` templates (the built-in files its operators
    /// name) are written into its `[templates]` table, so the file stands
    /// alone.
    pub fn to_toml(&self, extra: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        out.push_str(&format!("name = {}\n", toml_string(&self.name)));
        if !self.description.is_empty() {
            out.push_str(&format!("description = {}\n", toml_string(&self.description)));
        }
        for op in self.operations.iter() {
            out.push_str("\n[[operator]]\n");
            out.push_str(&format!("name = {}\n", toml_string(&op.name)));
            out.push_str(&format!("kind = {}\n", toml_string(op.kind.name())));
            out.push_str(&format!("template = {}\n", toml_string(&op.template)));
            if let Some(method) = &op.method {
                out.push_str(&format!("method = {}\n", toml_string(method)));
            }
            if op.weight != 1.0 {
                out.push_str(&format!("weight = {:?}\n", op.weight));
            }
            if op.data_formats {
                out.push_str("data_formats = true\n");
            }
            if let Some(marker) = &op.final_marker {
                out.push_str(&format!("final_marker = {}\n", toml_string(marker)));
            }
            if !op.markers.is_empty() {
                let markers: Vec<String> = op.markers.iter().map(|m| toml_string(m)).collect();
                out.push_str(&format!("markers = [{}]\n", markers.join(", ")));
            }
            if !op.constraints.is_empty() {
                let ids: Vec<String> = op.constraints.iter().map(|id| toml_string(id)).collect();
                out.push_str(&format!("constraints = [{}]\n", ids.join(", ")));
            }
            if !op.nodes.is_empty() {
                let nodes: Vec<String> = op.nodes.iter().map(u32::to_string).collect();
                out.push_str(&format!("nodes = [{}]\n", nodes.join(", ")));
            }
            if op.rules != Rule::all() {
                let rules: Vec<String> = op.rules.iter().map(|r| toml_string(r.name())).collect();
                out.push_str(&format!("rules = [{}]\n", rules.join(", ")));
            }
        }
        let mut sources: BTreeMap<&str, &str> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut literals = BTreeMap::new();
        for (name, template) in &self.templates {
            match template {
                SetTemplate::Source(text) => sources.insert(name, text),
                SetTemplate::Literal(text) => literals.insert(name.as_str(), text.as_str()),
            };
        }
        if !sources.is_empty() {
            out.push_str("\n[templates]\n");
            for (name, text) in sources {
                out.push_str(&format!("{} = {}\n", toml_key(name), toml_text(text)));
            }
        }
        for (name, text) in literals {
            out.push_str(&format!("\n[templates.{}]\nliteral = {}\n", toml_key(name), toml_text(text)));
        }
        out
    }
}

/// A TOML basic string: JSON's string escapes are all TOML escapes.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn toml_key(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        s.to_string()
    } else {
        toml_string(s)
    }
}

/// A long text as a multi-line literal string when it can be one (no
/// `'''` and no control characters but newlines and tabs), else a basic
/// string. The newline after the opening quotes is not part of the text.
fn toml_text(s: &str) -> String {
    let plain =
        !s.contains("'''") && !s.ends_with('\'') && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if plain && s.contains('\n') {
        format!("'''\n{s}'''")
    } else {
        toml_string(s)
    }
}

impl OperationSet {
    /// The built-in `evol` set of six.
    pub fn builtin() -> OperationSet {
        OperatorSet::builtin("evol").expect("built in").operations
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

    /// The operations a comma-separated list such as `deepen,breadth=2`
    /// selects, in the set's order. An item is an operation's name, `all`,
    /// or a kind (`in-depth`, `in-breadth`, `upward`...), each optionally
    /// with `=WEIGHT`, which replaces the weight of what it selects. Names
    /// are matched without regard to case, `-` standing for `_`.
    pub fn select(&self, list: &str) -> Result<OperationSet, OperationError> {
        let mut chosen: Vec<Option<f64>> = vec![None; self.0.len()];
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = match item.split_once('=') {
                Some((name, weight)) => {
                    let w: f64 = weight
                        .trim()
                        .parse()
                        .ok()
                        .filter(|w: &f64| w.is_finite() && *w > 0.0)
                        .ok_or_else(|| OperationError::Weight { item: item.to_string() })?;
                    (name.trim(), Some(w))
                }
                None => (item, None),
            };
            let normalized = name.to_ascii_lowercase().replace('-', "_");
            let matches: Vec<usize> = match self.0.iter().position(|op| op.name == normalized) {
                Some(i) => vec![i],
                None if normalized == "all" => (0..self.0.len()).collect(),
                None => (0..self.0.len()).filter(|&i| self.0[i].kind.name() == normalized).collect(),
            };
            if matches.is_empty() {
                let mut kinds: Vec<&str> = self.0.iter().map(|op| op.kind.name()).collect();
                kinds.dedup();
                return Err(OperationError::Unknown {
                    name: name.to_string(),
                    known: self.names().join(", "),
                    kinds: kinds.iter().map(|k| k.replace('_', "-")).collect::<Vec<_>>().join(", "),
                });
            }
            for i in matches {
                chosen[i] = Some(weight.or(chosen[i]).unwrap_or(self.0[i].weight));
            }
        }
        let ops: Vec<Operation> = self
            .0
            .iter()
            .zip(chosen)
            .filter_map(|(op, weight)| weight.map(|weight| Operation { weight, ..op.clone() }))
            .collect();
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

    /// The set with every operation that adds nodes (Tree-Instruct)
    /// drawing from `nodes` instead; an error when none adds any.
    pub fn with_nodes(&self, nodes: &[u32]) -> Result<OperationSet, String> {
        check_nodes(nodes)?;
        if nodes.is_empty() || !self.0.iter().any(|op| !op.nodes.is_empty()) {
            return Err("no selected operation adds nodes (`--ops tree` has them)".into());
        }
        let ops = self
            .0
            .iter()
            .map(|op| match op.nodes.is_empty() {
                true => op.clone(),
                false => Operation { nodes: nodes.to_vec(), ..op.clone() },
            })
            .collect();
        Ok(OperationSet(ops))
    }
}

/// Bidirectional overrides and invisible format characters: a name with
/// them shows as another name.
fn is_format_control(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_with_control_characters_are_refused() {
        let op = |name: &str| {
            format!("name = \"s\"\n[[operator]]\nname = \"{name}\"\nkind = \"in-depth\"\ntemplate = \"deepen.txt\"\n")
        };
        for name in ["a\\u001b[2J", "a\\u202eb"] {
            let err = OperatorSet::parse(&op(name)).unwrap_err().to_string();
            assert!(err.contains("control characters"), "{err}");
        }
        let set = "name = \"x\\u0007\"\n[[operator]]\nname = \"a\"\nkind = \"in-depth\"\ntemplate = \"deepen.txt\"\n";
        assert!(OperatorSet::parse(set).unwrap_err().to_string().contains("control characters"));
    }

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
        assert_eq!(set.select("deepen=2.5").unwrap().at(0).weight, 2.5);
        assert_eq!(set.select(" , ").unwrap_err(), OperationError::Empty);
    }

    fn op(name: &str, extra: &str) -> String {
        format!("[[operator]]\nname = \"{name}\"\nkind = \"code\"\ntemplate = \"t\"\n{extra}")
    }

    fn bad(text: &str) -> String {
        OperatorSet::parse(&format!("name = \"mine\"\n{text}")).unwrap_err().to_string()
    }

    #[test]
    fn definitions_are_checked_and_errors_name_the_operator_and_field() {
        let a = op("a", "");
        assert_eq!(bad(&format!("{a}{a}")), "operator `a`, field `name`: is defined twice in the set");
        assert_eq!(bad(&op("a", "weight = 0\n")), "operator `a`, field `weight`: must be a positive number");
        let e = bad(&op("a", "weight = \"two\"\n"));
        assert!(e.starts_with("operator `a`, field `weight`: invalid type: string"), "{e}");
        let e = bad(&op("a", "colour = 1\n"));
        assert!(e.starts_with("operator `a`, field `colour`: unknown field `colour`"), "{e}");
        let e = bad(&op("a", "rules = [\"sorry\", \"nice\"]\n"));
        assert!(e.starts_with("operator `a`, field `rules[1]`: unknown variant `nice`"), "{e}");
        let e = bad("[[operator]]\nkind = \"x\"\ntemplate = \"t\"\n");
        assert_eq!(e, "operator number 1: missing field `name`");
        assert!(bad(&op("a b", "")).contains("field `name`: must not contain spaces"));
        assert!(bad(&op("a", "markers = [\" \"]\n")).contains("field `markers`"));
        assert!(bad(&op("a", "final_marker = \"\"\n")).contains("field `final_marker`"));
        assert!(bad("").contains("field `operator`: the set defines no operator"));
        assert!(bad(&format!("colour = 1\n{a}")).contains("field `colour`: unknown field"));
        assert!(bad(&format!("[templates]\nx = 3\n{a}")).contains("field `templates.x`"));
        assert!(bad(&format!("[templates.x]\nliteral = \"t\"\nother = 1\n{a}")).contains("field `templates.x`"));
        let e = OperatorSet::parse(&a).unwrap_err().to_string();
        assert!(e.starts_with("field `name`: the set needs a name"), "{e}");
        let e = bad("[[operator]\n");
        assert!(e.contains("line 2"), "a syntax error names its line: {e}");
        let set = OperatorSet::parse(&format!("name = \"mine\"\n{a}")).unwrap();
        assert_eq!(set.operations.get("a").unwrap().kind, Kind::Other("code".into()));
    }

    #[test]
    fn the_builtin_sets_parse_and_write_back_the_same() {
        for name in OperatorSet::builtin_names() {
            let set = OperatorSet::builtin(name).unwrap();
            assert_eq!(set.name, name);
            assert!(!set.description.is_empty());
            let mut extra = BTreeMap::new();
            extra.insert("in_depth.txt".to_string(), "Hostile \'\'\' text {{ instruction }}\n".to_string());
            let text = set.to_toml(&extra);
            let back = OperatorSet::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert_eq!(back.operations, set.operations, "{name}");
            for (k, v) in &set.templates {
                assert_eq!(back.templates.get(k), Some(v), "{name}: {k}");
            }
            assert_eq!(back.templates["in_depth.txt"], SetTemplate::Source(extra["in_depth.txt"].clone()));
        }
        let code = OperatorSet::builtin("code").unwrap();
        assert_eq!(
            code.operations.names(),
            ["add_constraints", "rarer_requirement", "more_reasoning", "misleading_code", "complexity"]
        );
        assert!(code.operations.iter().all(|op| op.is_in_depth() && !op.markers.is_empty()));
        assert!(code.operations.get("complexity").unwrap().weight < 1.0, "drawn rarely");
        let math = OperatorSet::builtin("math").unwrap();
        assert_eq!(math.operations.select("upward").unwrap().len(), 3);
        assert_eq!(math.operations.select("downward").unwrap().names(), ["simplify", "easier_topic"]);
        let auto = OperatorSet::builtin("auto").unwrap();
        assert!(auto.operations.at(0).applies(Rule::AsksForInput));
        assert!(matches!(auto.templates["auto_method"], SetTemplate::Literal(_)));
    }

    #[test]
    fn choose_picks_the_set_then_the_operations() {
        let (set, ops) = OperatorSet::choose("all", None).unwrap();
        assert_eq!((set.name.as_str(), ops.len()), ("evol", 6));
        let (set, ops) = OperatorSet::choose("code", None).unwrap();
        assert_eq!((set.name.as_str(), ops.len()), ("code", 5));
        let (set, ops) = OperatorSet::choose("math:downward", None).unwrap();
        assert_eq!((set.name.as_str(), ops.names()), ("math", vec!["simplify", "easier_topic"]));
        let (_, ops) = OperatorSet::choose("add_constraints=2,breadth=1", None).unwrap();
        assert_eq!(ops.iter().map(|op| op.weight).collect::<Vec<_>>(), [2.0, 1.0]);
        let mine = OperatorSet::parse(&format!("name = \"mine\"\n{}", op("x", ""))).unwrap();
        let (set, ops) = OperatorSet::choose("all", Some(mine.clone())).unwrap();
        assert_eq!((set.name.as_str(), ops.names()), ("mine", vec!["x"]));
        let (set, _) = OperatorSet::choose("mine:x=3", Some(mine.clone())).unwrap();
        assert_eq!(set.name, "mine");
        let (set, _) = OperatorSet::choose("code", Some(mine)).unwrap();
        assert_eq!(set.name, "code");
        let e = OperatorSet::choose("poetry:all", None).unwrap_err().to_string();
        assert!(e.contains("`poetry`") && e.contains("code"), "{e}");
        let e = OperatorSet::choose("code:breadth", None).unwrap_err().to_string();
        assert!(e.contains("`breadth`") && e.contains("misleading_code") && e.contains("in-depth"), "{e}");
        assert!(OperatorSet::choose("deepen=0", None).unwrap_err().to_string().contains("weight"));
        assert!(OperatorSet::choose("deepen=x", None).unwrap_err().to_string().contains("weight"));
        assert_eq!(OperatorSet::choose("in-breadth", None).unwrap().1.names(), ["breadth"]);
    }

    /// The draw follows the weights: a chi-square test over 20,000 draws of
    /// weights 4:2:1:1 with a fixed seed (7.81 is the 5% critical value
    /// for 3 degrees of freedom; with the seed fixed the test is exact
    /// and repeatable, and a draw that ignored the weights is far above).
    #[test]
    fn weights_are_drawn_in_proportion() {
        let (_, set) =
            OperatorSet::choose("code:add_constraints=4,rarer_requirement=2,more_reasoning,misleading_code", None)
                .unwrap();
        let weights: Vec<f64> = set.iter().map(|op| op.weight).collect();
        assert_eq!(weights, [4.0, 2.0, 1.0, 1.0]);
        let n = 20_000;
        let mut counts = [0usize; 4];
        let mut rng = crate::rng::keyed_rng(7, &[b"weights"]);
        for _ in 0..n {
            counts[set.draw_index(&mut rng)] += 1;
        }
        let total: f64 = weights.iter().sum();
        let chi2: f64 = counts
            .iter()
            .zip(&weights)
            .map(|(&c, w)| {
                let expected = n as f64 * w / total;
                (c as f64 - expected).powi(2) / expected
            })
            .sum();
        assert!(chi2 < 7.81, "chi-square {chi2:.2} for {counts:?}");
        // The same counts against equal weights are far off.
        let uniform: f64 = counts.iter().map(|&c| (c as f64 - n as f64 / 4.0).powi(2) / (n as f64 / 4.0)).sum();
        assert!(uniform > 1000.0, "{uniform}");
    }

    #[test]
    fn node_counts_are_checked_replaced_and_written_back() {
        let tree = OperatorSet::builtin("tree").unwrap();
        assert_eq!(tree.operations.at(0).nodes, vec![3, 6, 10]);
        let chosen = tree.operations.with_nodes(&[4]).unwrap();
        assert_eq!(chosen.at(0).nodes, vec![4]);
        assert!(tree.operations.with_nodes(&[0]).unwrap_err().contains("0 nodes"));
        assert!(OperationSet::builtin().with_nodes(&[3]).unwrap_err().contains("no selected operation adds nodes"));
        let back = OperatorSet::parse(&tree.to_toml(&BTreeMap::new())).unwrap();
        assert_eq!(back.operations, tree.operations);
        let bad = tree.to_toml(&BTreeMap::new()).replace("nodes = [3, 6, 10]", "nodes = [3, 99]");
        let err = OperatorSet::parse(&bad).unwrap_err().to_string();
        assert_eq!(err, "operator `add_nodes`, field `nodes`: 99 nodes: a step adds from 1 to 50");
        let verifiable = OperatorSet::builtin("verifiable").unwrap();
        assert_eq!(
            OperatorSet::parse(&verifiable.to_toml(&BTreeMap::new())).unwrap().operations,
            verifiable.operations
        );
        let unknown = verifiable.to_toml(&BTreeMap::new()).replace("punctuation:no_comma", "punctuation:no_dots");
        assert!(OperatorSet::parse(&unknown)
            .unwrap_err()
            .to_string()
            .contains("unknown constraint id `punctuation:no_dots`"));
    }
}
