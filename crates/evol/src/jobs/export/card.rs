//! The dataset card (`README.md`) of an exported dataset directory: YAML
//! front matter as the Hugging Face Hub reads it (configs, features, split
//! sizes, task and size categories, tags) and a body that says how the
//! data was made, from the run's `stats.json`.
//!
//! The YAML is written by hand: its shape is fixed and small, and every
//! string goes through JSON string quoting, which YAML reads as a
//! double-quoted scalar. No YAML crate would add more than a dependency.

use std::fmt::Write as _;
use std::path::Path;

use arrow_schema::SchemaRef;
use evol_io::Written;
use serde_json::Value;

use super::{Format, Made};
use crate::results::{BackendKind, ResultFileError, RunReport};

/// Where the exported rows came from.
pub(crate) enum Source<'a> {
    /// A run, with its `stats.json` when it has one (or why it could not be
    /// read).
    Run { stats: &'a Result<Option<RunReport>, ResultFileError>, made: &'a Made },
    /// An `evol arena --learn` directory: SFT records or preference pairs.
    Learned { pairs: bool },
    /// Any dataset file (such as `evol score`'s or `evol select`'s).
    Rows { file: &'a Path, made: &'a Made },
    /// The preference pairs of K answers an instruction (`pairs.jsonl`).
    Pairs { file: &'a Path },
}

pub(crate) struct Card<'a> {
    pub format: Format,
    pub plain: bool,
    pub schema: &'a SchemaRef,
    pub written: &'a Written,
    pub source: Source<'a>,
    pub out: &'a Path,
    pub to: &'a Path,
}

/// The Hub's size category for a row count.
fn size_category(rows: u64) -> &'static str {
    match rows {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        1_000_000..10_000_000 => "1M<n<10M",
        10_000_000..100_000_000 => "10M<n<100M",
        _ => "100M<n<1B",
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn feature_yaml(out: &mut String, feature: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    let name = feature["name"].as_str().unwrap_or_default();
    let _ = writeln!(out, "{pad}- name: {}", q(name));
    if let Some(dtype) = feature["dtype"].as_str() {
        let _ = writeln!(out, "{pad}  dtype: {dtype}");
    } else if let Some(list) = feature["list"].as_array() {
        let _ = writeln!(out, "{pad}  list:");
        for f in list {
            feature_yaml(out, f, indent + 2);
        }
    } else if let Some(dtype) = feature["sequence"].as_str() {
        let _ = writeln!(out, "{pad}  sequence: {dtype}");
    }
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

pub(crate) fn card(card: &Card) -> String {
    let mut s = String::new();
    let rows = card.written.rows;
    s.push_str("---\n");
    s.push_str("# license: choose the licence that the seeds and the models' terms allow\n");
    s.push_str("task_categories:\n- text-generation\n");
    s.push_str("annotations_creators:\n- machine-generated\n");
    s.push_str("language_creators:\n- machine-generated\n");
    // The languages of a run that kept each text's language, as the Hub
    // reads them (ISO 639-1 codes).
    if let Source::Run { stats: Ok(Some(stats)), .. } = &card.source {
        let codes: Vec<&String> =
            stats.run.languages.keys().filter(|c| c.as_str() != evol_core::engine::UNDETERMINED).collect();
        if !codes.is_empty() {
            s.push_str("language:\n");
            for code in codes {
                let _ = writeln!(s, "- {code}");
            }
        }
    }
    let _ = writeln!(s, "size_categories:\n- {}", size_category(rows));
    s.push_str("tags:\n- synthetic\n- evol-instruct\n");
    if matches!(card.source, Source::Learned { pairs: true, .. } | Source::Pairs { .. }) {
        s.push_str("- dpo\n");
    }
    s.push_str("configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n");
    s.push_str("dataset_info:\n  features:\n");
    for feature in evol_io::table::hub_features(card.schema) {
        feature_yaml(&mut s, &feature, 2);
    }
    let _ = writeln!(s, "  splits:\n  - name: train\n    num_bytes: {}\n    num_examples: {rows}", card.written.bytes);
    let _ = writeln!(s, "  download_size: {}\n  dataset_size: {}", card.written.bytes, card.written.bytes);
    s.push_str("---\n\n");

    let version = env!("CARGO_PKG_VERSION");
    let title = card.to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
    let _ = writeln!(s, "# {}\n", md(&title));
    match &card.source {
        Source::Run { stats, made } => run_body(&mut s, card, stats, made),
        Source::Rows { file, made } => {
            let _ = writeln!(
                s,
                "{rows} instructions exported from {}, with its other fields (such as `evol score`'s difficulty, complexity and quality) as columns{}.\n",
                code(&file.display().to_string()),
                if made.unanswered > 0 { format!("; {} rows have no answer", made.unanswered) } else { String::new() }
            );
        }
        Source::Pairs { file } => {
            let _ = writeln!(
                s,
                "{rows} preference pairs (`prompt`, `chosen`, `rejected`, TRL's layout) from {}: for each instruction answered K times, the answer kept is chosen and the worst one rejected (one a rule rejected or a wrong one, else the lowest scored); `margin` is the score difference where both are scored.\n",
                code(&file.display().to_string()),
            );
        }
        Source::Learned { pairs, .. } => {
            let what =
                if *pairs { "preference pairs (`prompt`, `chosen`, `rejected`, TRL's layout)" } else { "SFT records" };
            let _ = writeln!(
                s,
                "{rows} {what} from the battles of `evol arena`: for each question a target model lost, the winning answer{}.\n",
                if *pairs { " is chosen and the target's rejected" } else { "" }
            );
        }
    }
    let _ = writeln!(s, "## Files\n");
    let _ = writeln!(
        s,
        "{} Parquet file{} (zstd), {} in all, {rows} rows in the `{}` layout{}.\n",
        card.written.files.len(),
        if card.written.files.len() == 1 { "" } else { "s" },
        human_bytes(card.written.bytes),
        card.format.name(),
        if card.plain { "" } else { ", with the lineage and score columns" }
    );
    s.push_str("```python\nfrom datasets import load_dataset\n\nds = load_dataset(\"path/to/this/directory\")  # or the Hub repository's name\n```\n\n");
    let _ = writeln!(s, "## How to make it again\n");
    s.push_str("```sh\n");
    if let Source::Run { stats: Ok(Some(stats)), .. } = &card.source {
        let _ = writeln!(s, "{}", run_command(stats, card.out));
    }
    let _ = writeln!(
        s,
        "evol export {} --format {}{} --to {}",
        shell(&card.out.display().to_string()),
        card.format.name(),
        if card.plain { " --plain" } else { "" },
        shell(&card.to.display().to_string())
    );
    s.push_str("```\n\n");
    let _ = writeln!(s, "Made with evol {version}, an implementation of Evol-Instruct (WizardLM, Xu et al. 2023).");
    s
}

/// Text in a Markdown code span (where backslashes do not escape).
fn code(text: &str) -> String {
    format!("`{}`", evol_text::shown_inline(text).replace('`', "'"))
}

/// Text from files and settings, shown in Markdown as text.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in evol_text::shown_inline(text).chars() {
        if matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn shell(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A number as `stats.json` writes it (`1.0`, not `1`).
fn num(v: impl serde::Serialize) -> String {
    serde_json::to_string(&v).expect("a number serializes")
}

/// Flags whose value is a file: the card names the file, not where it was
/// on the machine that ran the job.
const FILE_FLAGS: [&str; 6] = ["--config", "--ops-file", "--templates", "--model-path", "--chat-template", "--prices"];
/// Flags whose value is a server's address: the card does not publish it.
const URL_FLAGS: [&str; 1] = ["--endpoint"];
/// Flags that say how one attempt ran, not what it made.
const ATTEMPT_FLAGS: [&str; 5] = ["--fresh", "--dry-run", "-q", "--quiet", "--retry-failed"];

/// The `evol run` command line that makes the run again: the recorded one
/// (the seed file and other files by name, server addresses as `URL`, the
/// output as exported), else one rebuilt from the settings of an older run.
fn run_command(stats: &RunReport, out: &Path) -> String {
    let words: Vec<&str> = stats.command.iter().map(String::as_str).collect();
    match words.first() {
        Some(&"run") => recorded_command(&words, &stats.input.file, out),
        _ => rebuilt_command(stats, out),
    }
}

fn file_name(path: &str) -> String {
    Path::new(path).file_name().map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

fn recorded_command(words: &[&str], seeds: &str, out: &Path) -> String {
    let mut shown = vec!["evol".to_string()];
    let mut words = words.iter().copied().peekable();
    let mut after_flags = false;
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") && !after_flags => (flag, Some(value)),
            _ => (word, None),
        };
        if word == "--" {
            after_flags = true;
            shown.push(word.to_string());
            continue;
        }
        if !after_flags && ATTEMPT_FLAGS.contains(&flag) {
            continue;
        }
        let rewrite: Option<fn(&str, &Path) -> String> = match flag {
            "-o" | "--output" if !after_flags => Some(|_, out| shell(&out.display().to_string())),
            f if !after_flags && FILE_FLAGS.contains(&f) => Some(|v, _| shell(&file_name(v))),
            f if !after_flags && URL_FLAGS.contains(&f) => Some(|_, _| "URL".to_string()),
            _ => None,
        };
        match (rewrite, inline) {
            (Some(rewrite), Some(value)) => shown.push(format!("{flag}={}", rewrite(value, out))),
            (Some(rewrite), None) => {
                shown.push(flag.to_string());
                if let Some(value) = words.next() {
                    shown.push(rewrite(value, out));
                }
            }
            (None, _) if !seeds.is_empty() && word == seeds => shown.push(shell(&file_name(word))),
            (None, _) => shown.push(shell(word)),
        }
    }
    shown.join(" ")
}

/// The command rebuilt from a run's settings (a run whose command line was
/// not recorded).
fn rebuilt_command(stats: &RunReport, out: &Path) -> String {
    let settings = &stats.settings;
    let mut words = vec!["evol".to_string(), "run".to_string()];
    words.push(shell(&file_name(&stats.input.file)));
    words.push("-o".into());
    words.push(shell(&out.display().to_string()));
    words.push(format!("--rounds {}", settings.rounds));
    words.push(format!("--seed {}", settings.run_seed));
    let list: Vec<String> = settings.operations.iter().map(|o| format!("{}={}", o.name, num(o.weight))).collect();
    if !list.is_empty() {
        words.push(format!("--ops {}", shell(&list.join(","))));
    }
    let models = &stats.models;
    match models.backend() {
        Some(BackendKind::Server) => words.push("--endpoint URL".to_string()),
        Some(BackendKind::Servers) => words.push("--config SERVERS.toml".into()),
        Some(BackendKind::Embedded) | None => {}
    }
    let evolve = if models.evolve.is_empty() { "MODEL" } else { &models.evolve };
    words.push(format!("--model {}", shell(evolve)));
    for (model, flag) in [(&models.judge, "--judge-model"), (&models.answer, "--answer-model")] {
        if !model.is_empty() && model != evolve {
            words.push(format!("{flag} {}", shell(model)));
        }
    }
    if settings.dedup.is_none() {
        words.push("--no-dedup".into());
    }
    if let Some(shard) = &stats.input.shard {
        words.push(format!("--shard {shard}"));
    }
    words.join(" ")
}

fn run_body(s: &mut String, card: &Card, stats: &Result<Option<RunReport>, ResultFileError>, made: &Made) {
    let rows = card.written.rows;
    let stats = match stats {
        Ok(Some(stats)) => stats,
        Ok(None) => {
            let _ = writeln!(s, "{rows} instructions evolved with Evol-Instruct by evol. (The run's `stats.json` was not found, so how it was made is not told here.)\n");
            return;
        }
        Err(e) => {
            let _ = writeln!(s, "{rows} instructions evolved with Evol-Instruct by evol. (The run's `stats.json` could not be read, so how it was made is not told here: {}.)\n", md(&e.to_string()));
            return;
        }
    };
    let settings = &stats.settings;
    let models = &stats.models;
    let total = &stats.run.total;
    let _ = writeln!(
        s,
        "{rows} instructions made with Evol-Instruct by evol: {} seeds from {} ({}) evolved through {} rounds, each step rewriting an instruction with one operation, failed evolutions eliminated, and what survived answered.\n",
        stats.input.seeds,
        code(&stats.input.file),
        md(stats.input.layout.as_deref().unwrap_or("layout not recorded")),
        settings.rounds
    );
    let or_unknown = |name: &str| code(if name.is_empty() { "?" } else { name });
    let _ = writeln!(s, "## Models\n");
    let _ = writeln!(s, "- Evolving: {}", or_unknown(&models.evolve));
    let _ = writeln!(s, "- Judging information gain: {}", or_unknown(&models.judge));
    let _ = writeln!(s, "- Answering: {}", or_unknown(&models.answer));
    let _ = writeln!(s, "- Served by: {}", or_unknown(&models.endpoint));
    if stats.endpoints.len() > 1 {
        let _ = writeln!(s, "  ({} servers)", stats.endpoints.len());
    }
    let sampling = &settings.evolve_sampling;
    if made.traced > 0 || made.traces != crate::settings::TraceExport::None {
        let place = match made.traces {
            crate::settings::TraceExport::Inline => {
                "written inline, `<think>\\n...\\n</think>\\n\\n` before the answer".to_string()
            }
            crate::settings::TraceExport::Field => "in the `reasoning_content` column".to_string(),
            crate::settings::TraceExport::None => {
                "left out (`evol export --reasoning inline` or `field` keeps them)".to_string()
            }
        };
        let _ = writeln!(s, "- Thinking traces: {} of {rows} answers have one, {place}", made.traced);
    }
    if made.constrained > 0 {
        let kinds: Vec<String> = made.constraint_kinds.iter().map(|(id, n)| format!("`{id}` {n}")).collect();
        let _ = writeln!(
            s,
            "- Constraints checked by code: {} of {rows} rows state some, and their answers keep every one; \
             the `ground_truth` column holds them in the layout of open-instruct's IFEval verifier ({})",
            made.constrained,
            kinds.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "- Sampling: temperature {}, top-p {}, at most {} tokens per reply{}\n",
        num(sampling.temperature),
        num(sampling.top_p),
        sampling.max_tokens,
        if settings.request_seeds { ", a seeded request per call" } else { "" }
    );

    let _ = writeln!(s, "## Operations\n");
    s.push_str("| Operation | Kind | Weight | Attempted | Accepted |\n|---|---|---:|---:|---:|\n");
    for op in settings.operations.iter() {
        let counts = stats.run.operations.get(&op.name).cloned().unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            md(&op.name),
            md(op.kind.name()),
            num(op.weight),
            counts.attempted,
            counts.accepted
        );
    }
    s.push('\n');

    let _ = writeln!(s, "## Rounds and elimination\n");
    s.push_str(
        "| Round | Attempted | Accepted | Rejected | Rows here | Mean difficulty |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut keys: Vec<u32> = stats.run.rounds.keys().copied().collect();
    if made.rounds.contains_key(&0) && !keys.contains(&0) {
        keys.insert(0, 0);
    }
    for round in keys {
        let r = stats.run.rounds.get(&round).cloned().unwrap_or_default();
        let difficulty = made
            .difficulty
            .get(&round)
            .map(|(sum, n)| format!("{:.2} ({n} scored)", sum / *n as f64))
            .unwrap_or_else(|| "not scored".into());
        let label = if round == 0 { "seeds".to_string() } else { round.to_string() };
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} | {difficulty} |",
            r.attempted,
            r.accepted,
            r.rejected_total(),
            made.rounds.get(&round).copied().unwrap_or(0)
        );
    }
    s.push('\n');
    if !total.rejected.is_empty() {
        s.push_str("Rejected evolutions by reason:\n\n");
        for (reason, n) in &total.rejected {
            let _ = writeln!(s, "- {}: {n}", md(reason));
        }
        s.push('\n');
    }
    if !stats.run.languages.is_empty() {
        s.push_str("By language (the seed's, or the run's target; `und`: not told):\n\n| Language | Seeds | Attempted | Accepted | Left in another language | Not told |\n|---|---:|---:|---:|---:|---:|\n");
        for (code, t) in &stats.run.languages {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                md(code),
                t.seeds,
                t.attempted,
                t.accepted,
                t.rejected.get("language_changed").copied().unwrap_or(0),
                t.undetermined
            );
        }
        s.push('\n');
    }
    let rules = settings.rules;
    let all = [
        ("equality", rules.equality),
        ("sorry", rules.sorry),
        ("stop_words", rules.stop_words),
        ("copied_prompt", rules.copied_prompt),
        ("asks_for_input", rules.asks_for_input),
    ];
    let list = |on: bool| {
        let names: Vec<&str> = all.iter().filter(|(_, v)| *v == on).map(|(k, _)| *k).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let _ = writeln!(s, "Elimination rules on: {}; off: {}.\n", list(true), list(false));
    match &settings.dedup {
        Some(d) => {
            let _ = writeln!(
                s,
                "Near-duplicate removal: MinHash over {}-word shingles, {} hashes in {} bands, threshold {}; {} exact and {} near duplicates left out of the dataset.\n",
                d.shingle,
                d.hashes,
                d.bands,
                num(d.threshold),
                stats.dataset.exact_duplicates,
                stats.dataset.near_duplicates
            );
        }
        None => s.push_str("Near-duplicate removal: off.\n\n"),
    }
    if let Some(c) = &settings.contamination {
        let _ = writeln!(
            s,
            "Benchmark decontamination: evolutions sharing a run of {} words with any of {} benchmark items were rejected (`contaminated`: {}).\n",
            c.ngram,
            c.items,
            total.rejected.get("contaminated").copied().unwrap_or(0)
        );
    }
    if let (Some(b), Some(t)) = (&settings.best_of, &stats.run.best_of) {
        let how = match b.pick {
            evol_core::best_of::Pick::Score => "the one the score model ranked highest (DEITA quality, 1 to 6)",
            evol_core::best_of::Pick::First => "the first",
            evol_core::best_of::Pick::Shortest => "the shortest",
        };
        let _ = writeln!(
            s,
            "Answers: each instruction was answered {} times and the row keeps {how} of those the answer rules pass ({} answers made, {} rejected by a rule, {} instructions with none to keep); {} preference pairs (the kept answer against the worst) were written beside the data.\n",
            b.answers,
            t.answers,
            t.rejected.values().sum::<u64>(),
            t.none_kept,
            stats.dataset.pairs
        );
    }
    if let Some(t) = &stats.run.improve {
        let _ = writeln!(
            s,
            "Answer improvement (Evol-Answer): up to {} rounds an answer of a critique by the score model, a rewrite by the answering model, and a comparison that keeps the rewrite only if it scores higher: {} rounds, {} rewrites kept, {} answers improved.\n",
            settings.improve_answers,
            t.rounds,
            t.kept,
            t.improved_answers
        );
    }
    if made.unanswered > 0 {
        let _ = writeln!(s, "{} rows have no answer (answering was off or failed for them).\n", made.unanswered);
    }
    s.push_str("No selection was applied (`evol select` picks a subset by score and diversity).\n\n");

    let _ = writeln!(s, "## Calls and cost\n");
    let _ = writeln!(
        s,
        "{} requests ({} retries, {} failures), {} prompt and {} completion tokens, cost {:.4} (by the prices the run was given), in {:.1} s.\n",
        total.requests,
        total.retries,
        total.failures,
        total.prompt_tokens,
        total.completion_tokens,
        total.cost,
        stats.run.wall_seconds
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::RunModels;

    /// A run's report with these input file, command and models.
    fn report(file: &str, command: &[&str], models: crate::results::RunModels) -> RunReport {
        use evol_core::eliminate::Rules;
        use evol_llm::Sampling;
        let sampling =
            Sampling { temperature: 1.0, top_p: 0.9, max_tokens: 64, seed: None, thinking: Default::default() };
        let method = evol_core::Method {
            rounds: 2,
            operations: evol_core::OperationSet::builtin(),
            run_seed: 7,
            rules: Rules::default(),
            answer: true,
            answer_seeds: false,
            evolve_sampling: sampling,
            answer_sampling: sampling,
            judge_sampling: sampling,
            request_seeds: true,
            dedup: None,
            difficulty: None,
            contamination: None,
            best_of: None,
            improve_answers: 0,
            language: None,
            refusals: None,
            conversation: false,
        };
        RunReport {
            evol_version: "0.1.0".into(),
            completed: true,
            state: evol_store::RunState::Completed,
            run: evol_core::RunStats::default(),
            input: crate::results::RunInput {
                file: file.into(),
                seeds: 1,
                shard: None,
                skipped_invalid: 0,
                skipped_empty: 0,
                layout: None,
            },
            dataset: evol_store::Exported::default(),
            models,
            budget: crate::results::RunBudget { caps: Default::default(), prices: Default::default() },
            settings: method.clone(),
            execution: crate::results::RunExecution {
                concurrency: 1,
                servers: Vec::new(),
                timeout_seconds: None,
                max_retries: None,
                adaptive: None,
                batch_api: None,
                retry_failed: false,
            },
            endpoints: Vec::new(),
            journal: Default::default(),
            engine: None,
            identity: evol_store::RunIdentity {
                seeds: "d".into(),
                seed_count: 1,
                shard: None,
                settings: method,
                models: Default::default(),
                templates: "t".into(),
                score_templates: None,
                improve_templates: None,
                language_templates: None,
                include_seeds: false,
            },
            command: command.iter().map(|w| w.to_string()).collect(),
        }
    }

    fn models(endpoint: &str, backend: Option<BackendKind>, [evolve, judge, answer]: [&str; 3]) -> RunModels {
        RunModels {
            endpoint: endpoint.into(),
            backend,
            evolve: evolve.into(),
            judge: judge.into(),
            answer: answer.into(),
        }
    }

    #[test]
    fn the_recorded_command_names_files_and_hides_addresses() {
        let stats = report(
            "/home/someone/data/my seeds.jsonl",
            &[
                "run",
                "/home/someone/data/my seeds.jsonl",
                "-o",
                "/tmp/x/out",
                "--ops-file",
                "/home/someone/ops.toml",
                "--templates=/srv/t",
                "--endpoint",
                "http://10.1.2.3:8000/v1",
                "--include-seeds",
                "--temperature",
                "0.9",
                "--fresh",
                "--rounds",
                "3",
            ],
            RunModels::default(),
        );
        let shown = run_command(&stats, Path::new("runs/out"));
        assert_eq!(
            shown,
            "evol run 'my seeds.jsonl' -o runs/out --ops-file ops.toml --templates=t --endpoint URL \
             --include-seeds --temperature 0.9 --rounds 3"
        );
        assert!(!shown.contains("/home") && !shown.contains("10.1.2.3"), "{shown}");
    }

    #[test]
    fn an_older_run_gets_a_rebuilt_command_without_paths_or_addresses() {
        let stats = report("/abs/seeds.jsonl", &[], models("http://10.1.2.3:8000/v1", None, ["m", "m", "m"]));
        let shown = run_command(&stats, Path::new("out"));
        assert!(shown.starts_with("evol run seeds.jsonl -o out --rounds 2 --seed 7 --ops "), "{shown}");
        assert!(shown.contains("deepen=1.0"), "weights as the run wrote them: {shown}");
        assert!(shown.ends_with("--endpoint URL --model m --no-dedup"), "one model for every role: {shown}");
    }

    #[test]
    fn the_backend_is_read_as_recorded_not_from_its_words() {
        let stats = report("s.jsonl", &[], models("2 servers", Some(BackendKind::Embedded), ["qwen", "qwen", "a b"]));
        let shown = run_command(&stats, Path::new("out"));
        assert!(!shown.contains("URL") && !shown.contains("--config"), "{shown}");
        assert!(shown.contains("--model qwen --answer-model 'a b'") && !shown.contains("--judge-model"), "{shown}");
        let stats = report("s.jsonl", &[], models("http://h/v1", Some(BackendKind::Servers), ["m", "", ""]));
        let shown = run_command(&stats, Path::new("out"));
        assert!(shown.contains("--config SERVERS.toml --model m") && !shown.contains("--endpoint"), "{shown}");
    }

    #[test]
    fn a_run_report_reads_back_as_written() {
        let mut stats = report("种子.jsonl", &["run", "种子.jsonl"], models("e", Some(BackendKind::Server), ["m"; 3]));
        let mut round = evol_core::stats::Tally::default();
        round.attempted = 3;
        round.rejected.insert("equal".into(), 1);
        stats.run.rounds.insert(1, round);
        stats.run.wall_seconds = 0.1 + 0.2;
        let text = serde_json::to_string_pretty(&stats).unwrap();
        let back: RunReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, stats);
        assert_eq!(serde_json::to_string_pretty(&back).unwrap(), text, "written again byte for byte");
    }

    #[test]
    fn size_categories_and_quoting() {
        assert_eq!(size_category(0), "n<1K");
        assert_eq!(size_category(999), "n<1K");
        assert_eq!(size_category(1_000), "1K<n<10K");
        assert_eq!(size_category(250_000), "100K<n<1M");
        assert_eq!(q("a \"b\": c\n"), "\"a \\\"b\\\": c\\n\"");
        assert_eq!(md("<script>*x*"), "\\<script\\>\\*x\\*");
        assert_eq!(shell("seeds.jsonl"), "seeds.jsonl");
        assert_eq!(shell("my seeds's.jsonl"), "'my seeds'\\''s.jsonl'");
    }
}
