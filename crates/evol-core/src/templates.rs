//! Prompt templates: the project's own wording of the evolving, breadth and
//! equality prompts, embedded in the binary and replaceable one file at a
//! time.
//!
//! Templates are minijinja templates; the instruction is always passed as a
//! *value*, never spliced into template source, so braces, `{% %}`, `%s` or
//! `#The Given Prompt#` inside a seed come out literally.

use std::collections::BTreeMap;

use evol_digest::Digest;
use minijinja::{context, AutoEscape, Environment, UndefinedBehavior};
use rand::Rng;

use crate::ops::{Operation, OperationSet, OperatorSet, SetTemplate};

/// The template files, by name, with the variables each must use.
pub const TEMPLATE_FILES: &[(&str, &[&str])] = &[
    ("in_depth.txt", &["method", "instruction"]),
    ("in_breadth.txt", &["instruction"]),
    ("equality.txt", &["first", "second"]),
    ("method_add_constraints.txt", &[]),
    ("method_deepen.txt", &[]),
    ("method_concretize.txt", &[]),
    ("method_reasoning.txt", &[]),
    ("method_complicate_input.txt", &["format"]),
    ("difficulty.txt", &["instruction"]),
    ("deita_complexity.txt", &["items"]),
    ("deita_quality.txt", &["instruction", "items"]),
    ("critique.txt", &["instruction", "answer"]),
    ("improve_answer.txt", &["instruction", "answer", "critique"]),
    ("language.txt", &["language"]),
    ("answer_language.txt", &["language"]),
    ("judge_language.txt", &["language"]),
];

/// The scoring templates: digested apart ([`Templates::score_digest`]), so
/// that they are part of the identity of the runs that score only.
pub const SCORE_FILES: &[&str] = &["difficulty.txt", "deita_complexity.txt", "deita_quality.txt"];

/// The answer-improving templates (Evol-Answer): digested apart too
/// ([`Templates::improve_digest`]), part of the identity of the runs that
/// improve answers only.
pub const IMPROVE_FILES: &[&str] = &["critique.txt", "improve_answer.txt"];

/// The language templates: what a run that keeps each text's language
/// puts before its prompts; digested apart ([`Templates::language_digest`]).
pub const LANGUAGE_FILES: &[&str] = &["language.txt", "answer_language.txt", "judge_language.txt"];

/// The list of data formats for `complicate_input`, one per line.
pub const DATA_FORMATS_FILE: &str = "data_formats.txt";

const DEFAULTS: &[(&str, &str)] = &[
    ("in_depth.txt", include_str!("../templates/in_depth.txt")),
    ("in_breadth.txt", include_str!("../templates/in_breadth.txt")),
    ("equality.txt", include_str!("../templates/equality.txt")),
    ("method_add_constraints.txt", include_str!("../templates/method_add_constraints.txt")),
    ("method_deepen.txt", include_str!("../templates/method_deepen.txt")),
    ("method_concretize.txt", include_str!("../templates/method_concretize.txt")),
    ("method_reasoning.txt", include_str!("../templates/method_reasoning.txt")),
    ("method_complicate_input.txt", include_str!("../templates/method_complicate_input.txt")),
    (DATA_FORMATS_FILE, include_str!("../templates/data_formats.txt")),
    ("difficulty.txt", include_str!("../templates/difficulty.txt")),
    ("deita_complexity.txt", include_str!("../templates/deita_complexity.txt")),
    ("deita_quality.txt", include_str!("../templates/deita_quality.txt")),
    ("critique.txt", include_str!("../templates/critique.txt")),
    ("improve_answer.txt", include_str!("../templates/improve_answer.txt")),
    ("language.txt", include_str!("../templates/language.txt")),
    ("answer_language.txt", include_str!("../templates/answer_language.txt")),
    ("judge_language.txt", include_str!("../templates/judge_language.txt")),
];

/// A template that does not compile, renders badly or misses a variable.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template `{name}`: {source}")]
    Syntax {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("template `{name}` must use the variable `{{{{ {variable} }}}}`")]
    MissingVariable { name: String, variable: String },
    #[error("unknown template file `{0}` (known: {known})", known = known_names())]
    Unknown(String),
    #[error("`{DATA_FORMATS_FILE}` lists no data format")]
    NoDataFormats,
    #[error("the template `{0}` is replaced twice: by the operator set and by the templates directory")]
    Conflict(String),
    #[error("operator `{operator}`: {message}")]
    Operator { operator: String, message: String },
}

fn known_names() -> String {
    DEFAULTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The compiled set of templates a run uses.
#[derive(Debug, Clone)]
pub struct Templates {
    env: Environment<'static>,
    /// An operator set's literal texts, by name: passed as values, never
    /// compiled.
    literals: BTreeMap<String, String>,
    data_formats: Vec<String>,
    digest: String,
    score_digest: String,
    improve_digest: String,
    language_digest: String,
}

/// What a step adds to an evolving prompt beyond the instruction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra<'a> {
    /// A drawn constraint's wording (`constraint`: the `verifiable` set).
    pub constraint: Option<&'a str>,
    /// The conversation so far as a transcript (`conversation`: a
    /// follow-up operation's), the instruction being its last user turn.
    pub conversation: Option<&'a str>,
}

/// A rendered evolving prompt and what was drawn to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvolvePrompt {
    pub text: String,
    /// The data format drawn for `complicate_input`.
    pub data_format: Option<String>,
    /// The number of nodes drawn for a Tree-Instruct operation.
    pub nodes: Option<u32>,
}

impl Templates {
    /// The project's own templates.
    pub fn builtin() -> Templates {
        Templates::with_overrides(BTreeMap::new()).expect("built-in templates are valid")
    }

    /// The built-in template files the set's operators name and the set
    /// does not define itself (and the data formats, when an operator draws
    /// one): what a set file written stand-alone must carry.
    pub fn builtin_used_by(set: &OperatorSet) -> BTreeMap<String, String> {
        let mut used: Vec<&str> = Vec::new();
        for op in set.operations.iter() {
            used.extend([Some(op.template.as_str()), op.method.as_deref()].into_iter().flatten());
            if op.data_formats {
                used.push(DATA_FORMATS_FILE);
            }
        }
        Templates::builtin_sources()
            .filter(|(name, _)| used.contains(name) && !set.templates.contains_key(*name))
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect()
    }

    /// The built-in texts of every template file, by file name.
    pub fn builtin_sources() -> impl Iterator<Item = (&'static str, &'static str)> {
        DEFAULTS.iter().copied()
    }

    /// The built-in templates with some files replaced (file name -> text),
    /// for the `evol` set.
    pub fn with_overrides(overrides: BTreeMap<String, String>) -> Result<Templates, TemplateError> {
        let set = OperatorSet::builtin("evol").expect("built in");
        let enabled = set.operations.clone();
        Templates::new(overrides, &set, &enabled)
    }

    /// The templates of a run that draws `enabled` from `set`: the
    /// built-in files, some replaced (`overrides`, file name -> text), and
    /// the set's own templates (which may replace a built-in file too).
    /// Every enabled operation is checked: its templates exist and use
    /// their variables, and it renders.
    pub fn new(
        mut overrides: BTreeMap<String, String>,
        set: &OperatorSet,
        enabled: &OperationSet,
    ) -> Result<Templates, TemplateError> {
        for name in overrides.keys() {
            if !DEFAULTS.iter().any(|(n, _)| n == name) {
                return Err(TemplateError::Unknown(name.clone()));
            }
        }
        let is_builtin = |name: &str| DEFAULTS.iter().any(|(n, _)| *n == name);
        for (name, template) in &set.templates {
            if !is_builtin(name) {
                continue;
            }
            match template {
                SetTemplate::Source(text) => {
                    if overrides.insert(name.clone(), text.clone()).is_some() {
                        return Err(TemplateError::Conflict(name.clone()));
                    }
                }
                SetTemplate::Literal(_) => {
                    return Err(TemplateError::Operator {
                        operator: "-".into(),
                        message: format!("the built-in template `{name}` can only be replaced by template source"),
                    })
                }
            }
        }
        let overrides = overrides;
        let source = |name: &str| -> String {
            overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, t)| t.to_string()).unwrap())
        };

        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        for (name, variables) in TEMPLATE_FILES {
            let text = source(name);
            env.add_template_owned(name.to_string(), text)
                .map_err(|e| TemplateError::Syntax { name: name.to_string(), source: e })?;
            let template = env.get_template(name).expect("just added");
            let used = template.undeclared_variables(false);
            for variable in *variables {
                if !used.contains(*variable) {
                    return Err(TemplateError::MissingVariable {
                        name: name.to_string(),
                        variable: variable.to_string(),
                    });
                }
            }
        }
        let mut literals = BTreeMap::new();
        for (name, template) in set.templates.iter().filter(|(name, _)| !is_builtin(name)) {
            match template {
                SetTemplate::Source(text) => env
                    .add_template_owned(name.clone(), text.clone())
                    .map_err(|e| TemplateError::Syntax { name: name.clone(), source: e })?,
                SetTemplate::Literal(text) => {
                    literals.insert(name.clone(), text.clone());
                }
            }
        }
        for op in enabled.iter() {
            let fail = |message: String| TemplateError::Operator { operator: op.name.clone(), message };
            let known = || {
                let mut names: Vec<&str> = DEFAULTS.iter().map(|(n, _)| *n).collect();
                names.extend(set.templates.keys().map(String::as_str));
                names.join(", ")
            };
            if literals.contains_key(&op.template) {
                return Err(fail(format!(
                    "the template `{}` is literal text, but an operator's template must use `{{{{ instruction }}}}`",
                    op.template
                )));
            }
            let Ok(template) = env.get_template(&op.template) else {
                return Err(fail(format!("no template `{}` (known: {})", op.template, known())));
            };
            let used = template.undeclared_variables(false);
            // A follow-up's conversation holds its instruction (the last
            // user message).
            let mut needed = if op.is_follow_up() { vec![] } else { vec!["instruction"] };
            if let Some(method) = &op.method {
                if !literals.contains_key(method) && env.get_template(method).is_err() {
                    return Err(fail(format!("no method template `{method}` (known: {})", known())));
                }
                needed.push("method");
            }
            if !op.constraints.is_empty() {
                needed.push("constraint");
            }
            if !op.nodes.is_empty() {
                needed.push("nodes");
            }
            if op.is_follow_up() {
                needed.push("conversation");
            }
            if let Some(missing) = needed.into_iter().find(|v| !used.contains(*v)) {
                return Err(fail(format!("the template `{}` must use `{{{{ {missing} }}}}`", op.template)));
            }
            // A drawn data format goes into the method: a method that never
            // uses it would lose it silently.
            if op.data_formats {
                let uses_format = op
                    .method
                    .as_ref()
                    .filter(|m| !literals.contains_key(*m))
                    .and_then(|m| env.get_template(m).ok())
                    .is_some_and(|t| t.undeclared_variables(false).contains("format"));
                if !uses_format {
                    return Err(fail(
                        "`data_formats = true` needs a method template that uses `{{ format }}` (the drawn format goes there)"
                            .to_string(),
                    ));
                }
            }
        }
        let data_formats: Vec<String> = source(DATA_FORMATS_FILE)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        if data_formats.is_empty() {
            return Err(TemplateError::NoDataFormats);
        }
        // Each group of files is digested apart: the evolving ones, the
        // scoring ones and the answer-improving ones.
        let group = |name: &str| {
            if SCORE_FILES.contains(&name) {
                1
            } else if IMPROVE_FILES.contains(&name) {
                2
            } else if LANGUAGE_FILES.contains(&name) {
                3
            } else {
                0
            }
        };
        let digest_of = |wanted: u8| {
            let mut digest = Digest::new();
            for (name, _) in DEFAULTS.iter().filter(|(name, _)| group(name) == wanted) {
                digest = digest.part(name).part(source(name));
            }
            if wanted == 0 {
                // The set's own templates (none for the `evol` set, whose
                // runs keep the digest they always had).
                for (name, template) in set.templates.iter().filter(|(name, _)| !is_builtin(name)) {
                    let kind: &[u8] = match template {
                        SetTemplate::Source(_) => b"source",
                        SetTemplate::Literal(_) => b"literal",
                    };
                    digest = digest.part(name).part(kind).part(template.text());
                }
            }
            digest.full_hex()
        };
        let (digest, score_digest) = (digest_of(0), digest_of(1));
        let (improve_digest, language_digest) = (digest_of(2), digest_of(3));
        let templates =
            Templates { env, literals, data_formats, digest, score_digest, improve_digest, language_digest };
        // Render each once so that errors surface before any model call.
        for op in enabled.iter() {
            templates
                .evolve_prompt(
                    op,
                    "x",
                    Extra {
                        constraint: (!op.constraints.is_empty()).then_some("x"),
                        conversation: op.is_follow_up().then_some("x"),
                    },
                    &mut crate::rng::step_rng(0, "", 0, 0),
                )
                .map_err(|e| TemplateError::Operator { operator: op.name.clone(), message: e.to_string() })?;
        }
        templates.equality_prompt("x", "y")?;
        templates.difficulty_prompt("x")?;
        templates.complexity_prompt(&["x", "y"])?;
        templates.quality_prompt("x", &["y"])?;
        templates.critique_prompt("x", "y")?;
        templates.improve_prompt("x", "y", "z")?;
        templates.language_note(Some("en"), "hi")?;
        templates.answer_language_note("hi")?;
        templates.judge_language_note("hi", true)?;
        Ok(templates)
    }

    /// A digest of every evolving template's text: runs with different
    /// prompts have different digests.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// A digest of the answer-improving templates' text.
    pub fn improve_digest(&self) -> &str {
        &self.improve_digest
    }

    /// A digest of the language templates' text.
    pub fn language_digest(&self) -> &str {
        &self.language_digest
    }

    /// What goes before a prompt whose reply must be in `language` (an ISO
    /// 639-1 code), the instruction being in `source` (when known).
    pub fn language_note(&self, source: Option<&str>, language: &str) -> Result<String, TemplateError> {
        let source = source.map(evol_lang::name);
        self.render("language.txt", context! { source, language => evol_lang::name(language) })
    }

    /// The system message that asks for an answer in `language`.
    pub fn answer_language_note(&self, language: &str) -> Result<String, TemplateError> {
        self.render("answer_language.txt", context! { language => evol_lang::name(language) })
    }

    /// The note put before a judging prompt (equality, ranking, comparing)
    /// whose texts are in `language`: it names the language, says that an
    /// answer in another one fails its reader (`answers`), and asks for the
    /// verdict in the form the prompt names.
    pub fn judge_language_note(&self, language: &str, answers: bool) -> Result<String, TemplateError> {
        self.render("judge_language.txt", context! { language => evol_lang::name(language), answers })
    }

    /// The prompt that asks a judge to critique `answer` (Evol-Answer).
    pub fn critique_prompt(&self, instruction: &str, answer: &str) -> Result<String, TemplateError> {
        self.render("critique.txt", context! { instruction, answer })
    }

    /// The prompt that asks for a better answer, with the critique of the
    /// current one (Evol-Answer).
    pub fn improve_prompt(&self, instruction: &str, answer: &str, critique: &str) -> Result<String, TemplateError> {
        self.render("improve_answer.txt", context! { instruction, answer, critique })
    }

    /// A digest of the scoring templates' text.
    pub fn score_digest(&self) -> &str {
        &self.score_digest
    }

    /// The prompt that asks for an instruction's difficulty, 1 to 10.
    pub fn difficulty_prompt(&self, instruction: &str) -> Result<String, TemplateError> {
        self.render("difficulty.txt", context! { instruction })
    }

    /// The prompt that asks for the complexity of each version of an
    /// instruction, ranked together, 1 to 6 (DEITA).
    pub fn complexity_prompt(&self, items: &[&str]) -> Result<String, TemplateError> {
        self.render("deita_complexity.txt", context! { items })
    }

    /// The prompt that asks for the quality of each response to an
    /// instruction, ranked together, 1 to 6 (DEITA).
    pub fn quality_prompt(&self, instruction: &str, items: &[&str]) -> Result<String, TemplateError> {
        self.render("deita_quality.txt", context! { instruction, items })
    }

    /// The formats `complicate_input` draws from.
    pub fn data_formats(&self) -> &[String] {
        &self.data_formats
    }

    /// The prompt that asks a model to evolve `instruction` with `op`: its
    /// method (with a data format drawn from the list, for an operation
    /// that draws one) rendered into its template.
    /// What `extra` holds goes to the template too.
    pub fn evolve_prompt(
        &self,
        op: &Operation,
        instruction: &str,
        extra: Extra<'_>,
        rng: &mut impl Rng,
    ) -> Result<EvolvePrompt, TemplateError> {
        let Extra { constraint, conversation } = extra;
        let draw_nodes =
            |rng: &mut dyn rand::RngCore| (!op.nodes.is_empty()).then(|| op.nodes[rng.random_range(0..op.nodes.len())]);
        let Some(method_file) = &op.method else {
            let nodes = draw_nodes(rng);
            let text = self.render(&op.template, context! { instruction, constraint, conversation, nodes })?;
            return Ok(EvolvePrompt { text, data_format: None, nodes });
        };
        let data_format =
            op.data_formats.then(|| self.data_formats[rng.random_range(0..self.data_formats.len())].clone());
        let nodes = draw_nodes(rng);
        let method = self.render(method_file, context! { format => data_format.as_deref(), nodes })?;
        let text = self
            .render(&op.template, context! { method => method.trim(), instruction, constraint, conversation, nodes })?;
        Ok(EvolvePrompt { text, data_format, nodes })
    }

    /// The prompt of `op` with another method's text in it (a candidate
    /// method of an optimisation), passed as a value.
    pub fn evolve_prompt_with(&self, op: &Operation, method: &str, instruction: &str) -> Result<String, TemplateError> {
        self.render(&op.template, context! { method => method.trim(), instruction })
    }

    /// The text of a template or literal, rendered with `ctx`'s values.
    pub fn render_named(&self, name: &str, ctx: impl serde::Serialize) -> Result<String, TemplateError> {
        self.render(name, minijinja::Value::from_serialize(ctx))
    }

    /// The prompt that asks a judge whether `second` adds anything to `first`.
    pub fn equality_prompt(&self, first: &str, second: &str) -> Result<String, TemplateError> {
        self.render("equality.txt", context! { first, second })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, TemplateError> {
        if let Some(text) = self.literals.get(name) {
            return Ok(text.clone());
        }
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| TemplateError::Syntax { name: name.to_string(), source: e })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_formats_need_a_method_that_uses_the_format() {
        let set = |method: &str| {
            format!(
                "name = \"s\"\n[[operator]]\nname = \"a\"\nkind = \"in-depth\"\ntemplate = \"t\"\nmethod = \"m\"\ndata_formats = true\n[templates]\nt = \"{{{{ method }}}} {{{{ instruction }}}}\"\nm = \"{method}\"\n"
            )
        };
        let build = |method: &str| {
            let set = OperatorSet::parse(&set(method)).unwrap();
            Templates::new(BTreeMap::new(), &set, &set.operations)
        };
        let Err(err) = build("Add a table.") else { panic!("the format is never used") };
        let err = err.to_string();
        assert!(err.contains("{{ format }}"), "{err}");
        assert!(build("Add data as {{ format }}.").is_ok());
    }

    use super::*;
    use crate::rng::step_rng;

    const HOSTILE: &str = "Explain {{ secret }} and {% if x %}y{% endif %} with {0} %s {} \
                           #The Given Prompt#: {# c #} ${HOME} \\n";

    #[test]
    fn hostile_instruction_is_inserted_literally() {
        let t = Templates::builtin();
        for op in OperationSet::builtin().iter() {
            let p = t.evolve_prompt(op, HOSTILE, Extra::default(), &mut step_rng(1, "a", 1, 0)).unwrap();
            assert!(p.text.contains(HOSTILE), "{op}: {}", p.text);
            assert_eq!(p.text.matches(HOSTILE).count(), 1);
        }
        let eq = t.equality_prompt(HOSTILE, "{{ first }}").unwrap();
        assert!(eq.contains(HOSTILE));
        assert!(eq.contains("{{ first }}"));
    }

    /// Every built-in set, rendered with hostile text (template syntax,
    /// and each scaffold's own marker words): the text stays literal,
    /// once, and the prompt still ends with the set's marker.
    #[test]
    fn every_set_keeps_hostile_text_literal() {
        for name in OperatorSet::builtin_names() {
            let set = OperatorSet::builtin(name).unwrap();
            let t = Templates::new(BTreeMap::new(), &set, &set.operations).unwrap();
            assert_eq!(t.digest() == Templates::builtin().digest(), name == "evol", "{name}");
            for op in set.operations.iter() {
                let hostile = format!(
                    "{HOSTILE} {{{{ method }}}} #Original Question#: #Harder Question#: #New Problem#: \
                     #Finally Rewritten Instruction#: {{% raw %}} {}",
                    op.markers.join(" ")
                );
                // A constraint's wording holds text of the instruction
                // (keywords): it stays literal too.
                let wording = "Include \"{{ instruction }}\".".to_string();
                let constraint = (!op.constraints.is_empty()).then_some(wording.as_str());
                // A follow-up's instruction reaches it inside the conversation.
                let said = format!("User: {hostile}");
                let extra = Extra { constraint, conversation: op.is_follow_up().then_some(said.as_str()) };
                let p = t.evolve_prompt(op, &hostile, extra, &mut step_rng(1, "a", 1, 0)).unwrap();
                assert_eq!(p.text.matches(&hostile).count(), 1, "{name}/{op}: {}", p.text);
                assert_eq!(p.text.contains(&wording), constraint.is_some(), "{name}/{op}");
                let planted = hostile.matches("{{").count() + constraint.map_or(0, |c| c.matches("{{").count());
                assert!(!p.text.contains("{{") || p.text.matches("{{").count() == planted);
                match name {
                    "code" => assert!(p.text.trim_end().ends_with("#Harder Question#:"), "{op}"),
                    "math" => assert!(p.text.trim_end().ends_with("#New Problem#:"), "{op}"),
                    "auto" => {
                        let heading = p.text.rfind("#Instruction#:\n").unwrap();
                        assert_eq!(p.text[heading + 15..].trim_end(), hostile.trim_end(), "{op}");
                        assert!(p.text[..heading].contains("\"#Finally Rewritten Instruction#:\""));
                    }
                    "verifiable" => assert!(p.text.trim_end().ends_with("#New Instruction#:"), "{op}"),
                    _ => {}
                }
                if op.method.is_none() || op.is_follow_up() {
                    continue;
                }
                let with = t.evolve_prompt_with(op, "{{ instruction }} {% if %}", "Q").unwrap();
                assert!(op.method.is_none() || with.contains("{{ instruction }} {% if %}"), "{name}/{op}");
            }
        }
    }

    #[test]
    fn a_sets_templates_are_checked_per_operator() {
        let set = |templates: &str, op: &str| {
            let set = OperatorSet::parse(&format!(
                "name = \"s\"\n[[operator]]\nname = \"x\"\nkind = \"k\"\n{op}\n[templates]\n{templates}"
            ))
            .unwrap();
            Templates::new(BTreeMap::new(), &set, &set.operations).map(|_| ()).unwrap_err().to_string()
        };
        let e = set("t = \"no variable\"", "template = \"t\"");
        assert_eq!(e, "operator `x`: the template `t` must use `{{ instruction }}`");
        let e = set("t = \"{{ instruction }}\"", "template = \"u\"");
        assert!(e.starts_with("operator `x`: no template `u` (known: in_depth.txt"), "{e}");
        let e = set("t = \"{{ instruction }}\"", "template = \"t\"\nmethod = \"m\"");
        assert!(e.starts_with("operator `x`: no method template `m`"), "{e}");
        let e = set("t = \"{{ instruction }}\"\nm = \"x\"", "template = \"t\"\nmethod = \"m\"");
        assert!(e.contains("must use `{{ method }}`"), "{e}");
        let e = set("t = \"{{ instruction }\"", "template = \"t\"");
        assert!(e.contains("template `t`"), "{e}");
        let e = set("t.literal = \"{{ instruction }}\"", "template = \"t\"");
        assert!(e.contains("literal text"), "{e}");
    }

    #[test]
    fn in_depth_prompts_end_with_the_rewrite_marker() {
        let t = Templates::builtin();
        for op in OperationSet::builtin().iter() {
            let p = t.evolve_prompt(op, "Name a colour.", Extra::default(), &mut step_rng(1, "a", 1, 0)).unwrap();
            let marker = if op.is_in_depth() { "#Rewritten Prompt#:" } else { "#Created Prompt#:" };
            assert!(p.text.trim_end().ends_with(marker), "{op}");
            assert!(p.text.contains("Name a colour."));
            assert_eq!(p.data_format.is_some(), op.name == "complicate_input");
        }
    }

    #[test]
    fn complicate_input_names_the_drawn_format() {
        let t = Templates::builtin();
        let p = t
            .evolve_prompt(
                OperationSet::builtin().get("complicate_input").unwrap(),
                "Sort numbers.",
                Extra::default(),
                &mut step_rng(3, "b", 2, 0),
            )
            .unwrap();
        let format = p.data_format.unwrap();
        assert!(t.data_formats().contains(&format));
        assert!(p.text.contains(&format));
    }

    #[test]
    fn methods_differ_between_operations() {
        let t = Templates::builtin();
        let texts: std::collections::BTreeSet<String> = OperationSet::builtin()
            .iter()
            .map(|op| t.evolve_prompt(op, "Q", Extra::default(), &mut step_rng(1, "a", 1, 0)).unwrap().text)
            .collect();
        assert_eq!(texts.len(), 6);
    }

    #[test]
    fn overrides_are_validated() {
        let mut o = BTreeMap::new();
        o.insert("in_breadth.txt".to_string(), "Invent something.".to_string());
        let err = Templates::with_overrides(o).unwrap_err();
        assert!(err.to_string().contains("instruction"), "{err}");

        let mut o = BTreeMap::new();
        o.insert("nope.txt".to_string(), "x".to_string());
        assert!(matches!(Templates::with_overrides(o), Err(TemplateError::Unknown(_))));

        let mut o = BTreeMap::new();
        o.insert("equality.txt".to_string(), "{{ first }} {{ second }".to_string());
        assert!(matches!(Templates::with_overrides(o), Err(TemplateError::Syntax { .. })));

        let mut o = BTreeMap::new();
        o.insert("in_breadth.txt".to_string(), "NEW: {{ instruction }}\n#Created Prompt#:".to_string());
        let t = Templates::with_overrides(o).unwrap();
        let p = t
            .evolve_prompt(
                OperationSet::builtin().get("breadth").unwrap(),
                "Q?",
                Extra::default(),
                &mut step_rng(0, "", 0, 0),
            )
            .unwrap();
        assert_eq!(p.text, "NEW: Q?\n#Created Prompt#:");
    }
}
