//! `evol score IN -o OUT`: scores a dataset's rows with a model.
//!
//! The rows are read whole (they are grouped before any call), turned into
//! jobs (one call each: a row's difficulty, a group's complexity, a group's
//! quality), and every job is a call through one journaled
//! [`Caller`] over OUT's journal, so a rerun resumes, budgets and rate
//! control hold, and progress shows. Call keys are the row's (or group's
//! first row's) position and the measure; the job's identity (input
//! digest, settings, model, prompts) is kept in the journal, and a rerun
//! with other settings or another input is refused.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use evol_core::score::{parse_scores, Measure, Scored};
use evol_core::stats::{ScoreTally, Slice};
use evol_core::{CallError, CallKey, CallSpec, Prompt, Role, Templates};
use evol_io::{open_rows, Row, TextField};
use evol_store::output::{SCORED, STATS};
use evol_store::{JobKind, RunState};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::observe::{human, Observer};
use crate::results::CallSummary;
use crate::session::{drain, Session};
use crate::settings::ScoreSettings;
use crate::shutdown::Shutdown;

/// The journal fact holding the job's identity.
const IDENTITY: &str = "score_identity";

/// A row as read, with what scoring needs of it.
struct Item {
    /// A JSONL row's line as read, kept so the scores can be added to it
    /// without reordering its fields.
    line: Option<String>,
    object: Map<String, Value>,
    instruction: Option<String>,
    response: Option<String>,
    group: Option<String>,
    round: Option<f64>,
}

/// One call: a measure over one row or a group of rows.
struct Job {
    measure: Measure,
    /// The rows, by position, in the order they are shown to the model.
    rows: Vec<usize>,
    /// The call's item key: the first row's position.
    key: String,
    prompt: String,
}

/// What makes a scoring job's results what they are.
#[derive(Serialize, PartialEq)]
struct Identity<'a> {
    input: String,
    measures: &'a [Measure],
    field: String,
    response_field: &'a Option<String>,
    group_field: &'a str,
    group_size: usize,
    model: String,
    sampling: evol_llm::Sampling,
    templates: &'a str,
}

/// Scores every row of the input (a rerun replays what OUT's journal
/// holds) and writes the rows with their scores, and `stats.json`.
pub async fn score(
    settings: ScoreSettings,
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<ScoreReport> {
    let (items, digest, unreadable) = read_items(&settings)?;
    let templates = Templates::builtin();
    let jobs = plan(&settings, &items, &templates)?;
    let n = jobs.len() as u64;
    let session = Session::open(
        (&settings.output, settings.fresh, JobKind::Score),
        &settings.model,
        &settings.execution,
        Role::Score,
        n,
        observer,
    )
    .await?;
    let Session { out, journal, connected, model, caller, stats, .. } = &session;
    let field = match &settings.field {
        TextField::Instruction => "instruction".to_string(),
        TextField::Named(name) => name.clone(),
    };
    let identity = Identity {
        input: digest,
        measures: &settings.measures,
        field,
        response_field: &settings.response_field,
        group_field: &settings.group_field,
        group_size: settings.group_size,
        model: model.name().to_string(),
        sampling: settings.sampling,
        templates: templates.score_digest(),
    };
    session.begin(IDENTITY, &identity, "a scoring job")?;
    observer.say(&format!(
        "evol: scoring {} rows ({}) with `{}`: {} calls -> `{}`",
        items.len(),
        settings.measures.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "),
        model.name(),
        jobs.len(),
        out.root().display()
    ));
    let results: std::sync::Mutex<Vec<Option<Vec<Scored>>>> = std::sync::Mutex::new(vec![None; jobs.len()]);
    let work = {
        let calls = futures::stream::iter(jobs.iter().enumerate())
            .map(|(i, job)| {
                let settings = &settings;
                async move {
                    let slice = Slice { round: 0, operation: job.measure.name() };
                    let key = CallKey { item: &job.key, round: 0, stage: job.measure.name() };
                    let spec = CallSpec::new(model, key, Prompt::User(&job.prompt), settings.sampling)
                        .counted_as(slice)
                        .tagged("score")
                        .priority(i as u64);
                    let outcome = caller.call(spec).await?;
                    stats.outcome(slice, None);
                    Ok::<_, CallError>((i, read_reply(job, outcome)))
                }
            })
            .buffer_unordered(connected.admitted.max(1));
        drain(calls, caller, |(i, scores)| results.lock().unwrap()[i] = Some(scores))
    };
    let ended = session.run(work, (n, "calls"), &mut shutdown, observer).await;
    let results = results.into_inner().unwrap();

    // Whatever happened, what was scored is written out.
    let (rows, tallies) = merge(&settings.measures, &jobs, &results, items);
    let mut writer = evol_io::RowWriter::create(&out.path(SCORED), evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", out.path(SCORED).display()))?;
    for row in &rows {
        writer.write_line(row).with_context(|| format!("cannot write `{}`", out.path(SCORED).display()))?;
    }
    writer.finish().with_context(|| format!("cannot write `{}`", out.path(SCORED).display()))?;
    let done = results.iter().filter(|r| r.is_some()).count();
    let state = ended.state(done == jobs.len());
    journal.set_state(state)?;
    let snapshot = stats.snapshot();
    let report = ScoreReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        state,
        rows: rows.len(),
        unreadable_rows: unreadable,
        calls: jobs.len(),
        calls_done: done,
        scores: tallies.clone(),
        calls_made: CallSummary::of(&snapshot, journal)?,
        model: model.name().to_string(),
        identity: serde_json::to_value(&identity)?,
    };
    out.write_json(STATS, &report)?;
    {
        let pending = pending_rows(&jobs, &results, rows.len());
        let done_rows = if pending == 0 {
            format!("{} rows", rows.len())
        } else {
            format!(
                "{} of {} rows ({pending} not scored: {} of {} calls were not made; rerun the same command to finish, they carry `_not_scored`)",
                rows.len() - pending,
                rows.len(),
                jobs.len() - done,
                jobs.len()
            )
        };
        let mut line = format!(
            "evol: scored {done_rows} in {}:",
            human(std::time::Duration::from_secs_f64(snapshot.wall_seconds))
        );
        for (measure, t) in &tallies {
            let mean = t.mean.map_or("-".to_string(), |m| format!("{m:.2} ± {:.2}", t.std.unwrap_or(0.0)));
            line.push_str(&format!(
                " {measure} {mean} (n {}, {} unreadable, {} failed);",
                t.scored, t.unreadable, t.failed
            ));
        }
        line.pop();
        observer.say(&line);
        observer.say(&format!("evol: wrote {}, {}", out.path(SCORED).display(), out.path(STATS).display()));
    }
    let scored: u64 = tallies.values().map(|t| t.scored).sum();
    let what = format!("no score could be read from {} calls", jobs.len());
    ended.exit_producing(session.stall_after(), session.out_name(), scored > 0, &what).map(|()| report)
}

/// What a scoring job did: its report, and what `stats.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ScoreReport {
    pub evol_version: String,
    pub state: RunState,
    pub rows: usize,
    /// Rows left unscored because their text could not be read
    /// (`--skip-invalid`).
    pub unreadable_rows: usize,
    pub calls: usize,
    pub calls_done: usize,
    /// Per measure: scores read, replies unreadable, calls failed, mean
    /// and standard deviation of the scores read.
    pub scores: BTreeMap<Measure, ScoreTally>,
    /// The calls: replayed, made by this attempt, and held by the journal.
    #[serde(flatten)]
    pub calls_made: CallSummary,
    pub model: String,
    /// What the job's calls were asked with (the rerun policy compares it).
    pub identity: serde_json::Value,
}

/// Reads every row; returns them, a digest of the file's bytes and how
/// many rows were left out as unreadable.
fn read_items(settings: &ScoreSettings) -> anyhow::Result<(Vec<Item>, String, usize)> {
    let digest = evol_io::input_digest(&settings.input)
        .with_context(|| format!("cannot read `{}`", settings.input.display()))?;
    let mut items = Vec::new();
    let mut unreadable = 0;
    for row in open_rows(&settings.input, settings.format)? {
        let row: Row = row?;
        let read = row.object().and_then(|object| {
            let (instruction, _) = row.text(&settings.field)?;
            Ok((object, instruction))
        });
        let (object, instruction) = match read {
            Ok((object, instruction)) => (object, Some(instruction)),
            Err(_) if settings.skip_invalid => {
                unreadable += 1;
                continue;
            }
            Err(message) => bail!("`{}` {}: {message}", settings.input.display(), row.place),
        };
        let response = match &settings.response_field {
            Some(name) => string_field(&object, name),
            None => string_field(&object, "output").or_else(|| string_field(&object, "response")),
        };
        let group = match object.get(&settings.group_field) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let round = object.get("round").and_then(Value::as_f64);
        let line = match &row.body {
            evol_io::Body::Line(line) => Some(line.trim_end().to_string()),
            _ => None,
        };
        items.push(Item { line, object, instruction, response, group, round });
    }
    if items.is_empty() {
        bail!("`{}` holds no row to score", settings.input.display());
    }
    Ok((items, digest, unreadable))
}

fn string_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    match object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        Some((_, Value::String(s))) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The calls to make: per row for difficulty; per group (rows sharing the
/// group field, by round, at most `group_size` together) for complexity;
/// per group of responses to the same instruction for quality.
fn plan(settings: &ScoreSettings, items: &[Item], templates: &Templates) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for &measure in &settings.measures {
        let groups: Vec<Vec<usize>> = match measure {
            Measure::Difficulty => (0..items.len()).map(|i| vec![i]).collect(),
            Measure::Complexity => group_by(
                items,
                settings.group_size,
                |item| item.group.clone(),
                |a, b| a.round.unwrap_or(0.0).total_cmp(&b.round.unwrap_or(0.0)),
            ),
            Measure::Quality => group_by(
                items,
                settings.group_size,
                |item| item.response.as_ref().and(item.instruction.clone()),
                |_, _| std::cmp::Ordering::Equal,
            )
            .into_iter()
            .filter(|g| items[g[0]].response.is_some())
            .collect(),
        };
        for rows in groups {
            let texts: Vec<&str> = rows.iter().map(|&i| items[i].instruction.as_deref().unwrap_or("")).collect();
            let prompt = match measure {
                Measure::Difficulty => templates.difficulty_prompt(texts[0])?,
                Measure::Complexity => templates.complexity_prompt(&texts)?,
                Measure::Quality => {
                    let responses: Vec<&str> =
                        rows.iter().map(|&i| items[i].response.as_deref().unwrap_or("")).collect();
                    templates.quality_prompt(texts[0], &responses)?
                }
            };
            jobs.push(Job { measure, key: format!("row{}", rows[0]), rows, prompt });
        }
    }
    Ok(jobs)
}

/// Rows grouped by `key` (rows without one alone), each group in `order`
/// then file order, cut into groups of at most `size`; groups in the order
/// of their first row.
fn group_by(
    items: &[Item],
    size: usize,
    key: impl Fn(&Item) -> Option<String>,
    order: impl Fn(&Item, &Item) -> std::cmp::Ordering,
) -> Vec<Vec<usize>> {
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match key(item) {
            Some(k) => by_key.entry(k).or_default().push(i),
            None => groups.push(vec![i]),
        }
    }
    for mut rows in by_key.into_values() {
        rows.sort_by(|&a, &b| order(&items[a], &items[b]).then(a.cmp(&b)));
        groups.extend(rows.chunks(size).map(<[usize]>::to_vec));
    }
    groups.sort_by_key(|g| g.iter().min().copied());
    groups
}

/// The scores a reply gives each of a job's rows.
fn read_reply(job: &Job, outcome: Result<evol_llm::ChatResponse, String>) -> Vec<Scored> {
    let reply = match outcome {
        Ok(reply) => reply.text,
        Err(e) => return vec![Scored::failed(e); job.rows.len()],
    };
    if job.measure == Measure::Difficulty {
        return vec![Scored::read(&reply, job.measure)];
    }
    let (low, high) = job.measure.range();
    parse_scores(&reply, job.rows.len(), low, high).into_iter().map(|score| Scored::of(score, &reply)).collect()
}

/// Each row with its scores (null, with the reply or the error, when
/// there is none; absent when its call was not made yet) as a JSON line,
/// and the tallies per measure. A JSONL row keeps its line, the scores
/// added at its end; a row that already has a field of those names is
/// written from its parsed fields instead.
/// How many rows lack a score because their call was not made.
fn pending_rows(jobs: &[Job], results: &[Option<Vec<Scored>>], rows: usize) -> usize {
    let mut pending = vec![false; rows];
    for (job, result) in jobs.iter().zip(results) {
        if result.is_none() {
            for &row in &job.rows {
                pending[row] = true;
            }
        }
    }
    pending.iter().filter(|p| **p).count()
}

fn merge(
    measures: &[Measure],
    jobs: &[Job],
    results: &[Option<Vec<Scored>>],
    items: Vec<Item>,
) -> (Vec<String>, BTreeMap<Measure, ScoreTally>) {
    let mut tallies: BTreeMap<Measure, ScoreTally> = measures.iter().map(|m| (*m, ScoreTally::default())).collect();
    let mut added: Vec<Vec<(String, Value)>> = vec![Vec::new(); items.len()];
    for (job, result) in jobs.iter().zip(results) {
        let Some(scores) = result else {
            // A call the job stopped before: its rows say so, never a
            // silent gap.
            for &row in &job.rows {
                added[row].push((job.measure.name().to_string(), Value::Null));
                added[row].push((format!("{}_not_scored", job.measure.name()), Value::Bool(true)));
            }
            continue;
        };
        for (&row, scored) in job.rows.iter().zip(scores) {
            tallies.get_mut(&job.measure).expect("a measure asked for").add(scored);
            let name = job.measure.name();
            let fields = &mut added[row];
            fields.push((name.to_string(), scored.score.map_or(Value::Null, Value::from)));
            if let Some(reply) = &scored.unreadable {
                fields.push((format!("{name}_unreadable"), Value::String(reply.clone())));
            }
            if let Some(error) = &scored.error {
                fields.push((format!("{name}_error"), Value::String(error.clone())));
            }
        }
    }
    let rows = items
        .into_iter()
        .zip(added)
        .map(|(item, fields)| {
            let clash = fields.iter().any(|(k, _)| item.object.contains_key(k));
            match item.line {
                Some(line) if !clash && line.ends_with('}') => {
                    let mut line = line;
                    line.pop();
                    let empty = item.object.is_empty();
                    for (i, (k, v)) in fields.iter().enumerate() {
                        if !(empty && i == 0) {
                            line.push(',');
                        }
                        line.push_str(&serde_json::to_string(k).expect("a string"));
                        line.push(':');
                        line.push_str(&v.to_string());
                    }
                    line.push('}');
                    line
                }
                _ => {
                    let mut object = item.object;
                    object.extend(fields);
                    Value::Object(object).to_string()
                }
            }
        })
        .collect();
    (rows, tallies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(group: Option<&str>, round: Option<f64>) -> Item {
        Item {
            line: None,
            object: Map::new(),
            instruction: Some("q".into()),
            response: None,
            group: group.map(String::from),
            round,
        }
    }

    #[test]
    fn groups_keep_file_order_rank_by_round_and_are_cut_to_size() {
        let items = [
            item(Some("a"), Some(2.0)),
            item(None, None),
            item(Some("a"), Some(1.0)),
            item(Some("b"), Some(1.0)),
            item(Some("a"), Some(3.0)),
        ];
        let groups = group_by(&items, 2, |i| i.group.clone(), |a, b| a.round.unwrap().total_cmp(&b.round.unwrap()));
        assert_eq!(groups, [vec![2, 0], vec![1], vec![3], vec![4]]);
        let groups = group_by(&items, 6, |i| i.group.clone(), |a, b| a.round.unwrap().total_cmp(&b.round.unwrap()));
        assert_eq!(groups, [vec![2, 0, 4], vec![1], vec![3]]);
    }

    #[test]
    fn rows_whose_call_was_not_made_are_marked() {
        let job = |rows: Vec<usize>| Job { measure: Measure::Difficulty, rows, key: "k".into(), prompt: "p".into() };
        let jobs = [job(vec![0]), job(vec![1])];
        let scored = Scored { score: Some(7.0), unreadable: None, error: None };
        let results = [Some(vec![scored]), None];
        let mut items = vec![item(None, None), item(None, None)];
        items[1].line = Some("{\"instruction\":\"q\"}".into());
        items[1].object.insert("instruction".into(), "q".into());
        let (rows, tallies) = merge(&[Measure::Difficulty], &jobs, &results, items);
        assert_eq!(rows[0], "{\"difficulty\":7.0}");
        assert_eq!(rows[1], "{\"instruction\":\"q\",\"difficulty\":null,\"difficulty_not_scored\":true}");
        assert_eq!(tallies[&Measure::Difficulty].scored, 1);
        assert_eq!(pending_rows(&jobs, &results, 2), 1);
    }
}
