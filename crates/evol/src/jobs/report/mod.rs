//! `evol report DIR... -o report.html`: one self-contained HTML file (no
//! network at view time: styles, script and data inline) that shows a run
//! (accepted and rejected evolutions per operation and round, rejection
//! reasons, instruction length and difficulty per round, requests, tokens,
//! cost and throughput, an evolution-tree browser and a searchable,
//! paginated table of the dataset, a conversation row with the turns
//! before its last) and the results of `evol judge` and
//! `evol arena` directories.
//!
//! The data goes in as gzip-compressed JSON in base64 inside a `<script
//! type="application/octet-stream">` element, so no text can close the
//! element; the page's script puts every text in with
//! `textContent`, never as HTML, and a Content-Security-Policy forbids any
//! fetch. Records are stored column by column and long texts shortened, so
//! a report of 100,000 records stays small enough to open at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use evol_store::output::{DATASET, EVOLVED, RATINGS, REJECTED, REPORT_JSON, SEED_SCORES, STATS};
use serde_json::{json, Value};

use crate::observe::Observer;
use crate::results::RunReport;
use crate::settings::ReportSettings;

/// The page, with `/*EVOL_DATA*/` where the data goes.
const PAGE: &str = include_str!("report.html");

/// Instructions are shortened to this many characters in the report (the
/// run's files hold them whole).
const TEXT_LIMIT: usize = 1000;
/// Answers are shortened to this many characters.
const OUTPUT_LIMIT: usize = 160;

/// What a report page shows, and where it was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportPage {
    pub file: PathBuf,
    pub bytes: usize,
    /// The run shown, if one is.
    pub run: Option<PathBuf>,
    /// How many `evol judge` and `evol arena` outputs are shown.
    pub judges: usize,
    pub arenas: usize,
}

/// Writes the report page of the directories (one run, and any judge and
/// arena outputs).
pub fn report(settings: &ReportSettings, observer: &dyn Observer) -> anyhow::Result<ReportPage> {
    let args = settings;
    refuse_target(&args.output)?;
    let mut data = json!({ "title": "evol report", "text_limit": TEXT_LIMIT, "judges": [], "arenas": [] });
    let mut subtitle = Vec::new();
    let mut runs = 0;
    let mut more = None;
    let mut page_of = ReportPage { file: args.output.clone(), bytes: 0, run: None, judges: 0, arenas: 0 };
    for dir in &args.dirs {
        if !dir.is_dir() {
            bail!("`{}` is not a directory (an `evol run`, `evol judge` or `evol arena` output)", dir.display());
        }
        let mut known = false;
        if dir.join(EVOLVED).is_file() {
            runs += 1;
            if runs > 1 {
                bail!("a report shows one run; `{}` is a second", dir.display());
            }
            let (run, rest) = run_data(dir, observer)?;
            data["run"] = run;
            more = Some(rest);
            subtitle.push(format!("run {}", dir.display()));
            page_of.run = Some(dir.clone());
            known = true;
        }
        if dir.join(REPORT_JSON).is_file() {
            let file: crate::jobs::judge::ReportFile = crate::results::read_file(&dir.join(REPORT_JSON))?
                .with_context(|| format!("`{}` is gone", dir.join(REPORT_JSON).display()))?;
            let entry =
                json!({ "candidate": file.candidate, "reference": file.reference, "judge": file.judge, "file": file });
            data["judges"].as_array_mut().expect("an array").push(entry);
            subtitle.push(format!("judge {}", dir.display()));
            page_of.judges += 1;
            known = true;
        }
        if dir.join(RATINGS).is_file() {
            let file: crate::jobs::arena::RatingsFile = crate::results::read_file(&dir.join(RATINGS))?
                .with_context(|| format!("`{}` is gone", dir.join(RATINGS).display()))?;
            // The battles' languages, from the arena's `stats.json` (absent
            // for a refit, which read no answers).
            let stats: Option<Value> = crate::results::read_file(&dir.join(STATS))?;
            let languages = stats.as_ref().and_then(|s| s.get("languages")).cloned();
            data["arenas"].as_array_mut().expect("an array").push(json!({ "file": file, "languages": languages }));
            subtitle.push(format!("arena {}", dir.display()));
            page_of.arenas += 1;
            known = true;
        }
        if !known {
            bail!(
                "`{}` holds no run (`{EVOLVED}`), judgment (`{REPORT_JSON}`) or ratings (`{RATINGS}`)",
                dir.display()
            );
        }
    }
    data["subtitle"] = json!(format!("{} · evol {}", subtitle.join(" · "), env!("CARGO_PKG_VERSION")));
    let html = page(&data, more.as_ref());
    let tmp = args.output.with_extension("html.tmp");
    std::fs::write(&tmp, &html).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, &args.output).with_context(|| format!("cannot write `{}`", args.output.display()))?;
    observer.say(&format!("evol: wrote `{}` ({:.1} MB)", args.output.display(), html.len() as f64 / 1_048_576.0));
    Ok(ReportPage { bytes: html.len(), ..page_of })
}

/// Refuses to write over a file that is not an earlier report (the run's
/// own `dataset.jsonl`, a seed file): `-o` names where the page goes, and a
/// slip must not destroy data.
fn refuse_target(output: &Path) -> anyhow::Result<()> {
    if output.is_dir() {
        bail!("`{}` is a directory: name the report's file with -o, e.g. report.html", output.display());
    }
    if !output.exists() {
        return Ok(());
    }
    let mut head = [0u8; 512];
    let n = std::fs::File::open(output).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    if text.starts_with("<!doctype html>") && text.contains("<title>evol report</title>") {
        return Ok(()); // an earlier report: replaced
    }
    bail!(
        "`{}` exists and is not an evol report: name another file with -o (it is never overwritten)",
        output.display()
    )
}

/// The page with the data in it: JSON, gzip-compressed and base64-encoded
/// (the page inflates it with the browser's own `DecompressionStream`), so
/// a big run's report stays small, and no text of it can end the script
/// element or be read as markup: base64 has no `<`, `>` or `&`.
/// `more` is what the page reads after drawing `data` (the answers and
/// the rejected texts), so a big run's page is usable before it is read
/// whole.
pub(crate) fn page(data: &Value, more: Option<&Value>) -> String {
    let packed = |value: &Value| {
        use base64::Engine as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        serde_json::to_writer(&mut gz, value).expect("JSON serializes into memory");
        let bytes = gz.finish().expect("compresses into memory");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let more = more.map(packed).unwrap_or_default();
    PAGE.replacen("/*EVOL_DATA*/", &packed(data), 1).replacen("/*EVOL_MORE*/", &more, 1)
}

fn short(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Reads a JSONL file of the run row by row (the project's row reader),
/// naming the line of a bad record.
fn each_line(path: &Path, mut each: impl FnMut(Value) -> anyhow::Result<()>) -> anyhow::Result<()> {
    for row in evol_io::open_rows(path, evol_io::SeedFormat::Jsonl)? {
        let row = row?;
        let place = || format!("`{}` {}", path.display(), row.place);
        let object = row.object().map_err(|e| anyhow::anyhow!("{}: {e}", place()))?;
        each(Value::Object(object)).with_context(place)?;
    }
    Ok(())
}

fn text_of<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v[key].as_str().with_context(|| format!("`{key}` is missing or not a text"))
}

/// Interns names (operations, reasons) as small numbers.
#[derive(Default)]
struct Names {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Names {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }
}

/// Records by id and by text.
struct Index<'a, T> {
    by_id: &'a HashMap<String, usize>,
    by_text: &'a HashMap<T, usize>,
}

impl<T> Clone for Index<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Index<'_, T> {}

/// Where a dataset row came from: the evolution `i` (as `i`) or the seed
/// `i` (as `-1 - i`), found by the row's id; by its text only in a dataset
/// written before rows had ids (texts can repeat, ids cannot).
fn origin<T: std::borrow::Borrow<str> + std::hash::Hash + Eq>(
    row: &Value,
    evolved: Index<'_, String>,
    seeds: Index<'_, T>,
) -> anyhow::Result<Option<i64>> {
    let (evolution, seed) = (|i: &usize| *i as i64, |i: &usize| -1 - *i as i64);
    Ok(match row["id"].as_str() {
        Some(id) => evolved.by_id.get(id).map(evolution).or_else(|| seeds.by_id.get(id).map(seed)),
        None => {
            let text = text_of(row, "instruction")?;
            evolved.by_text.get(text).map(evolution).or_else(|| seeds.by_text.get(text).map(seed))
        }
    })
}

/// A run's data for the page, and what the page reads after drawing it.
fn run_data(dir: &Path, observer: &dyn Observer) -> anyhow::Result<(Value, Value)> {
    let stats = RunReport::read(dir).unwrap_or_else(|e| {
        observer.say(&format!("warning: {e}; the report shows the run's records without its figures"));
        None
    });
    // The seeds, from the journal (read only); their scores when scored.
    let journal = evol_store::SqliteJournal::open_read_only(dir)?;
    let mut seeds: Vec<(String, String)> = Vec::new();
    let mut after = i64::MIN;
    loop {
        let page = journal.seeds_after(after, 10_000)?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        seeds.extend(page.into_iter().map(|(_, s)| (s.id, s.instruction)));
    }
    drop(journal);
    let seed_index: HashMap<String, usize> = seeds.iter().enumerate().map(|(i, (id, _))| (id.clone(), i)).collect();
    let mut seed_difficulty: Vec<Value> = vec![Value::Null; seeds.len()];
    let scores = dir.join(SEED_SCORES);
    if scores.is_file() {
        each_line(&scores, |v| {
            if let Some(&i) = v["id"].as_str().and_then(|id| seed_index.get(id)) {
                seed_difficulty[i] = v["difficulty"]["score"].clone();
            }
            Ok(())
        })?;
    }

    let mut ops = Names::default();
    // The set's operations first, in its order, so the charts follow it.
    if let Some(stats) = &stats {
        for op in stats.settings.operations.iter() {
            ops.id(&op.name);
        }
    }
    let seed_of = |v: &Value| -> anyhow::Result<usize> {
        let id = text_of(v, "seed_id")?;
        seed_index
            .get(id)
            .copied()
            .with_context(|| format!("the seed `{}` is not in the run's journal", evol_text::shown_inline(id)))
    };
    let (mut e_id, mut e_seed, mut e_parent, mut e_round, mut e_op, mut e_text, mut e_difficulty) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut by_id, mut by_text): (HashMap<String, usize>, HashMap<String, usize>) = Default::default();
    each_line(&dir.join(EVOLVED), |v| {
        let text = text_of(&v, "instruction")?;
        by_id.insert(text_of(&v, "id")?.to_string(), e_id.len());
        by_text.entry(text.to_string()).or_insert(e_id.len());
        e_id.push(json!(text_of(&v, "id")?));
        e_seed.push(json!(seed_of(&v)?));
        e_parent.push(json!(text_of(&v, "parent_id")?));
        e_round.push(v["round"].clone());
        e_op.push(json!(ops.id(text_of(&v, "operation")?)));
        e_text.push(json!(short(text, TEXT_LIMIT)));
        e_difficulty.push(v["difficulty"]["score"].clone());
        Ok(())
    })?;
    let mut reasons = Names::default();
    let (mut r_seed, mut r_parent, mut r_round, mut r_op, mut r_text, mut r_reason) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let rejected = dir.join(REJECTED);
    if rejected.is_file() {
        each_line(&rejected, |v| {
            r_seed.push(json!(seed_of(&v)?));
            r_parent.push(json!(text_of(&v, "parent_id")?));
            r_round.push(v["round"].clone());
            r_op.push(json!(ops.id(text_of(&v, "operation")?)));
            r_text.push(v["instruction"].as_str().map_or(Value::Null, |t| json!(short(t, TEXT_LIMIT))));
            r_reason.push(json!(reasons.id(text_of(&v, "reason")?)));
            Ok(())
        })?;
    }
    // The dataset's rows, pointing at their evolution (or seed, -1-i): by
    // the row's id, or by its text in a dataset written before rows had ids.
    let seed_by_text: HashMap<&str, usize> = seeds.iter().enumerate().map(|(i, (_, t))| (t.as_str(), i)).collect();
    let mut dataset = Vec::new();
    let mut outputs = Vec::new();
    let mut turns = Vec::new();
    let mut unmatched = 0usize;
    let path = dir.join(DATASET);
    if path.is_file() {
        each_line(&path, |v| {
            let evolved = Index { by_id: &by_id, by_text: &by_text };
            let seeds = Index { by_id: &seed_index, by_text: &seed_by_text };
            let Some(at) = origin(&v, evolved, seeds)? else {
                unmatched += 1;
                return Ok(());
            };
            dataset.push(json!([at, outputs.len()]));
            outputs.push(v["output"].as_str().map_or(Value::Null, |o| json!(short(o, OUTPUT_LIMIT))));
            turns.push(conversation(&v["history"]));
            Ok(())
        })?;
    }
    if unmatched > 0 {
        observer.say(&format!(
            "warning: {unmatched} rows of `{}` match no record of the run and are left out of the report",
            path.display()
        ));
    }
    let seeds: Vec<Value> = seeds
        .into_iter()
        .zip(seed_difficulty)
        .map(|((id, text), d)| json!([id, short(&text, TEXT_LIMIT), d]))
        .collect();
    let stats = stats.map(|s| {
        json!({
            "total": s.run.total,
            "rounds": s.run.rounds,
            "operations": s.run.operations,
            "languages": s.run.languages,
            "wall_seconds": s.run.wall_seconds,
        })
    });
    // A conversation's turns go with the answers: loaded after the page
    // is drawn, and only a conversation run has any.
    let turns = match turns.iter().any(|t| !t.is_null()) {
        true => Value::Array(turns),
        false => Value::Null,
    };
    let more = json!({ "outputs": outputs, "rejected_text": r_text, "turns": turns });
    let run = json!({
        "stats": stats,
        "ops": ops.names,
        "reasons": reasons.names,
        "seeds": seeds,
        "evolved": { "id": e_id, "seed": e_seed, "parent": e_parent, "round": e_round, "op": e_op, "text": e_text, "difficulty": e_difficulty },
        "rejected": { "seed": r_seed, "parent": r_parent, "round": r_round, "op": r_op, "reason": r_reason },
        "dataset": dataset,
    });
    Ok((run, more))
}

/// The turns before a conversation row's last (its `history`), for the
/// page: `[role, text]` pairs, each text shortened as answers are; null
/// for a row that is no conversation.
fn conversation(history: &Value) -> Value {
    let Some(messages) = history.as_array().filter(|m| !m.is_empty()) else { return Value::Null };
    messages
        .iter()
        .map(|m| {
            json!([m["role"].as_str().unwrap_or("?"), short(m["content"].as_str().unwrap_or_default(), OUTPUT_LIMIT)])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_text_can_close_the_data_element() {
        use base64::Engine as _;
        use std::io::Read as _;
        let data = json!({ "t": "</script><script>alert(1)</script> & <img src=x onerror=alert(1)> \u{2028}" });
        let html = page(&data, None);
        let start = html.find("id=\"evol-data\">").unwrap() + "id=\"evol-data\">".len();
        let end = html[start..].find("</script>").unwrap() + start;
        let inside = &html[start..end];
        assert!(inside.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)), "{inside}");
        let packed = base64::engine::general_purpose::STANDARD.decode(inside).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&packed[..]).read_to_string(&mut text).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, data, "the data reads back the same");
    }

    #[test]
    fn a_dataset_row_is_traced_by_its_id_even_when_texts_repeat() {
        let ids = |pairs: &[(&str, usize)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<HashMap<_, _>>();
        let (e_ids, e_texts) = (ids(&[("s1.r1", 0), ("s2.r1", 1)]), ids(&[("用三句话解释引力。", 0)]));
        let (s_ids, s_texts) = (ids(&[("s1", 0), ("s2", 1)]), ids(&[("用三句话解释引力。", 1)]));
        let evolved = Index { by_id: &e_ids, by_text: &e_texts };
        let seeds = Index { by_id: &s_ids, by_text: &s_texts };
        let row = |v: Value| origin(&v, evolved, seeds).unwrap();
        // Two rows with one text: each goes to its own record.
        assert_eq!(row(json!({"id": "s2.r1", "instruction": "用三句话解释引力。"})), Some(1));
        assert_eq!(row(json!({"id": "s2", "instruction": "用三句话解释引力。"})), Some(-2));
        assert_eq!(row(json!({"id": "elsewhere", "instruction": "用三句话解释引力。"})), None);
        // A dataset written before rows had ids: by text.
        assert_eq!(row(json!({"instruction": "用三句话解释引力。"})), Some(0));
        assert!(origin(&json!({"output": "x"}), evolved, seeds).is_err());
    }

    #[test]
    fn a_conversation_row_carries_its_turns_shortened() {
        let long = "ช".repeat(OUTPUT_LIMIT + 5);
        let history = json!([{"role": "user", "content": "مرحبا"}, {"role": "assistant", "content": long}]);
        let turns = conversation(&history);
        assert_eq!(turns[0], json!(["user", "مرحبا"]));
        assert_eq!(turns[1][0], "assistant");
        assert_eq!(turns[1][1].as_str().unwrap().chars().count(), OUTPUT_LIMIT + 1, "shortened, with its ellipsis");
        assert_eq!(conversation(&json!([])), Value::Null);
        assert_eq!(conversation(&Value::Null), Value::Null);
    }

    #[test]
    fn texts_are_shortened_on_a_character_boundary() {
        assert_eq!(short("héllo", 2), "hé…");
        assert_eq!(short("hé", 2), "hé");
    }
}
