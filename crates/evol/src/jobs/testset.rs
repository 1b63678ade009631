//! What the evaluation jobs (`answer`, `judge`, `arena`) read: test sets
//! (any container and layout `evol_io` reads: an instruction, a question,
//! turns, a chat) and answers files (`evol answer`'s rows and the common
//! shapes of others), each checked as it is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use evol_io::{open_rows, ChatLayout, SeedFormat};
use rand::RngCore;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::settings::EvalModel;

/// One question of a test set.
#[derive(Debug, Clone)]
pub struct Question {
    pub id: String,
    /// The user's turns (one, or a conversation's).
    pub turns: Vec<String>,
    /// The row gave `turns` (a conversation), not one instruction.
    pub conversation: bool,
    pub skill: Option<String>,
    pub difficulty: Option<f64>,
    /// The reference answer, from the field a command names.
    pub reference: Option<String>,
}

/// The value of the first of `names` the object has (any case).
pub fn field<'a>(object: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// A record's id as text: a non-blank string, or a number.
pub(crate) fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn texts(v: &Value) -> Option<Vec<String>> {
    let items = v.as_array()?;
    let texts: Vec<String> = items.iter().map(|t| t.as_str().map(String::from)).collect::<Option<_>>()?;
    (!texts.is_empty() && texts.iter().all(|t| !t.trim().is_empty())).then_some(texts)
}

/// A short digest of a file's bytes (or a dataset directory's).
fn file_digest(path: &Path) -> anyhow::Result<String> {
    let digest = evol_io::input_digest(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(digest[..16].to_string())
}

/// Reads a test set: every row a question, ids unique (a row without one
/// is named by its row number).
pub fn read_testset(path: &Path, format: SeedFormat, limit: Option<usize>) -> anyhow::Result<Vec<Question>> {
    read_testset_with(path, format, limit, None)
}

/// [`read_testset`], each question with its reference answer from the
/// field `reference` (a row without one is an error naming it).
pub fn read_testset_with(
    path: &Path,
    format: SeedFormat,
    limit: Option<usize>,
    reference: Option<&str>,
) -> anyhow::Result<Vec<Question>> {
    let mut questions = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (n, row) in open_rows(path, format)?.enumerate() {
        if limit.is_some_and(|l| questions.len() >= l) {
            break;
        }
        let row = row?;
        let place = format!("`{}` {}", path.display(), row.place);
        let object = row.object().map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
        let id = match field(&object, &["idx", "id", "question_id"]) {
            Some(v) => id_text(v).ok_or_else(|| anyhow::anyhow!("{place}: the id must be a number or a text"))?,
            None => (n + 1).to_string(),
        };
        let (turns, conversation) = match field(&object, &["turns"]) {
            Some(v) => {
                (texts(v).ok_or_else(|| anyhow::anyhow!("{place}: `turns` must be a list of non-empty texts"))?, true)
            }
            None => match (
                field(&object, &["instruction", "question", "prompt"]),
                field(&object, &[ChatLayout::ShareGpt.field()]),
                field(&object, &[ChatLayout::Messages.field()]),
            ) {
                (Some(Value::String(s)), None, None) if !s.trim().is_empty() => (vec![s.clone()], false),
                (Some(Value::String(_)), None, None) => bail!("{place}: the question is empty"),
                // A chat (ShareGPT `conversations`, `messages`, or TRL's
                // `prompt` as turns): every user turn is a turn to answer.
                (Some(v @ Value::Array(_)), None, None) => chat_turns(v, "prompt", &place)?,
                (None, Some(v), None) => chat_turns(v, ChatLayout::ShareGpt.field(), &place)?,
                (None, None, Some(v)) => chat_turns(v, ChatLayout::Messages.field(), &place)?,
                (None, None, None) => bail!(
                    "{place}: no question (`Instruction`, `instruction`, `question`, `prompt`, `turns`, `conversations` or `messages`); {}",
                    evol_io::seeds::fields_found(&object)
                ),
                (Some(_), None, None) => bail!("{place}: the question is not a text"),
                _ => bail!("{place}: the record holds its question in more than one field (a text and a chat)"),
            },
        };
        let skill = match field(&object, &["skill", "category"]) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => None,
        };
        let difficulty = field(&object, &["difficulty"]).and_then(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let reference = match reference {
            None => None,
            Some(name) => match field(&object, &[name]) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => bail!("{place}: no reference answer in `{name}` (a non-empty text or a number)"),
            },
        };
        if let Some(earlier) = seen.insert(id.clone(), place.clone()) {
            bail!("{place}: the id `{id}` is already used at {earlier}");
        }
        questions.push(Question { id, turns, conversation, skill, difficulty, reference });
    }
    if questions.is_empty() {
        bail!("`{}` holds no question", path.display());
    }
    Ok(questions)
}

/// A chat's user turns, the turns of a question (a conversation when more
/// than one).
fn chat_turns(value: &Value, name: &str, place: &str) -> anyhow::Result<(Vec<String>, bool)> {
    let turns = evol_io::user_turns(value, name).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
    if turns.is_empty() || turns.iter().any(|t| t.trim().is_empty()) {
        bail!("{place}: `{name}` has no user turn, or an empty one");
    }
    let conversation = turns.len() > 1;
    Ok((turns, conversation))
}

/// One model's answer to one question, as an answers file holds it.
#[derive(Debug, Clone)]
pub struct Answered {
    /// One answer per turn; empty when the answer failed.
    pub answers: Vec<String>,
    /// The question as the answers file states it (to check it is the
    /// test set's).
    pub turns: Option<Vec<String>>,
    pub skill: Option<String>,
    pub error: Option<String>,
}

/// One model's answers.
#[derive(Debug)]
pub struct AnswerFile {
    pub path: PathBuf,
    /// The name the rows give (`model`, `model_id` or `generator`).
    pub model: Option<String>,
    pub rows: BTreeMap<String, Answered>,
    /// Ids in file order.
    pub order: Vec<String>,
    pub digest: String,
}

/// Reads an answers file (or the `answers.jsonl` of an `evol answer`
/// directory): `evol answer`'s rows, and the common shapes of others
/// (`output` / `response` with `instruction`, AlpacaEval's `generator`,
/// FastChat's `choices[0].turns`).
pub fn read_answers(given: &Path) -> anyhow::Result<AnswerFile> {
    // An `evol answer` directory, an answers file, or a dataset directory.
    let path = match given.is_dir() && !given.join(evol_store::output::ANSWERS).is_file() {
        true if evol_io::dataset_parts(given).is_some() => given.to_path_buf(),
        _ if given.is_dir() => given.join(evol_store::output::ANSWERS),
        _ => given.to_path_buf(),
    };
    if !path.is_file() && !path.is_dir() {
        bail!("no answers at `{}` (an `evol answer` directory or an answers file)", given.display());
    }
    let digest = file_digest(&path)?;
    let mut model: Option<String> = None;
    let mut rows = BTreeMap::new();
    let mut order = Vec::new();
    for (n, row) in open_rows(&path, SeedFormat::Auto)?.enumerate() {
        let row = row?;
        let place = format!("`{}` {}", path.display(), row.place);
        let object = row.object().map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
        let id = match field(&object, &["id", "idx", "question_id"]) {
            Some(v) => id_text(v).ok_or_else(|| anyhow::anyhow!("{place}: the id must be a number or a text"))?,
            None => (n + 1).to_string(),
        };
        if let Some(name) = field(&object, &["model", "model_id", "generator"]).and_then(Value::as_str) {
            match &model {
                Some(m) if m != name => {
                    bail!("{place}: the model `{name}`, where earlier rows name `{m}` (one model a file)")
                }
                _ => model = Some(name.to_string()),
            }
        }
        let error = field(&object, &["error"]).and_then(Value::as_str).map(String::from);
        let answers = match field(&object, &["answers"]).and_then(texts) {
            Some(a) => a,
            None => match field(&object, &["answer", "output", "response"]) {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Null) | None if error.is_some() => Vec::new(),
                found => {
                    match object.get("choices").and_then(|c| c.get(0)).and_then(|c| c.get("turns")).and_then(texts) {
                        Some(t) => t,
                        None => match found.or_else(|| field(&object, &["answers"])) {
                            Some(v) if !v.is_null() => bail!(
                                "{place}: the answer must be a text (or `answers` a list of texts), found {}",
                                evol_io::seeds::kind(v)
                            ),
                            _ => bail!("{place}: no answer (`answer`, `answers`, `output` or `response`)"),
                        },
                    }
                }
            },
        };
        let turns = match field(&object, &["turns"]).and_then(texts) {
            Some(t) => Some(t),
            None => field(&object, &["instruction", "question", "prompt"])
                .and_then(Value::as_str)
                .map(|s| vec![s.to_string()]),
        };
        let skill = field(&object, &["skill", "category"]).and_then(Value::as_str).map(String::from);
        if rows.insert(id.clone(), Answered { answers, turns, skill, error }).is_some() {
            bail!("{place}: a second answer to the question `{id}`");
        }
        order.push(id);
    }
    if rows.is_empty() {
        bail!("`{}` holds no answer", path.display());
    }
    Ok(AnswerFile { path, model, rows, order, digest })
}

/// Whether an answers file's statement of a question is the test set's
/// (same turns, whitespace aside).
pub fn same_question(a: &[String], b: &[String]) -> bool {
    let same = |x: &String, y: &String| x == y || x.split_whitespace().eq(y.split_whitespace());
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

/// A request seed for a call, keyed by the job's seed and the call's key;
/// none when request seeds are off.
pub fn request_seed(eval: &EvalModel, key: &[&[u8]]) -> Option<u64> {
    eval.model.request_seeds.then(|| evol_core::rng::keyed_rng(eval.seed, key).next_u64())
}

/// What an evaluation's calls are asked with, recorded in its journal: a
/// rerun with another value is refused, naming it (other inputs are
/// welcome: a call whose prompt changed is made again, never replayed).
#[derive(Serialize)]
pub struct Asked<'a> {
    pub model: &'a str,
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: u32,
    /// The run seed, when request seeds are sent.
    pub seed: Option<u64>,
    /// What the job adds (`system`, `single_order`, `pairs_per_question`).
    #[serde(flatten)]
    pub job: Value,
}

impl<'a> Asked<'a> {
    pub fn new(model: &'a str, eval: &EvalModel, job: Value) -> Asked<'a> {
        let sampling = eval.sampling;
        Asked {
            model,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            max_tokens: sampling.max_tokens,
            seed: eval.model.request_seeds.then_some(eval.seed),
            job,
        }
    }
}

/// Text for one cell of a markdown table: shown safely (no control
/// characters), pipes escaped, on one line.
pub fn cell(text: &str) -> String {
    evol_text::shown_inline(text).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(text: &str) -> anyhow::Result<AnswerFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("answers.jsonl");
        std::fs::write(&path, text).unwrap();
        read_answers(&path)
    }

    #[test]
    fn answers_are_read_in_the_common_shapes() {
        let file = answers(concat!(
            "{\"id\": 1, \"output\": \"a\", \"generator\": \"m\"}\n",
            "{\"question_id\": \"q2\", \"choices\": [{\"turns\": [\"b1\", \"b2\"]}]}\n",
            "{\"idx\": 3, \"answer\": null, \"error\": \"timeout\"}\n",
            "{\"ID\": 4, \"Response\": \"उत्तर\", \"instruction\": \"प्रश्न\"}\n",
        ))
        .unwrap();
        assert_eq!(file.order, ["1", "q2", "3", "4"]);
        assert_eq!(file.model.as_deref(), Some("m"));
        assert_eq!(file.rows["q2"].answers, ["b1", "b2"]);
        assert!(file.rows["3"].answers.is_empty() && file.rows["3"].error.as_deref() == Some("timeout"));
        assert_eq!(file.rows["4"].answers, ["उत्तर"]);
        assert_eq!(file.rows["4"].turns.as_deref(), Some(&["प्रश्न".to_string()][..]));
    }

    #[test]
    fn an_answer_that_is_not_text_names_its_type_and_line() {
        let e = answers("{\"id\": 1, \"output\": \"a\"}\n{\"id\": 2, \"output\": 42}\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("must be a text") && e.contains("a number"), "{e}");
        let e = answers("{\"id\": 1, \"answer\": {\"text\": \"a\"}}\n").unwrap_err().to_string();
        assert!(e.contains("an object"), "{e}");
        let e = answers("{\"id\": 1}\n").unwrap_err().to_string();
        assert!(e.contains("no answer"), "{e}");
        let e = answers("{\"id\": 1, \"output\": \"a\"}\n{\"id\": 1, \"output\": \"b\"}\n").unwrap_err().to_string();
        assert!(e.contains("a second answer to the question `1`"), "{e}");
        let e = answers("{\"output\": \"a\", \"model\": \"x\"}\n{\"output\": \"b\", \"model\": \"y\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("one model a file"), "{e}");
    }
}
