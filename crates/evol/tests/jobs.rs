//! Jobs run in-process through the library, against the simulator on
//! loopback: what a program embedding `evol` sees.

#[path = "../examples/in_process.rs"]
mod example;

use std::sync::Mutex;
use std::time::Duration;

use evol::session::Interrupted;
use evol::Observer;

/// Keeps every line a job says.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Observer for Lines {
    fn say(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

fn testset(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("questions.jsonl");
    let rows: String =
        (1..=n).map(|i| format!("{{\"id\": {i}, \"instruction\": \"Say something about {i}.\"}}\n")).collect();
    std::fs::write(&path, rows).unwrap();
    path
}

/// A value as JSON (a `Tally`'s in-memory span is not written).
fn as_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_by_a_future_keeps_its_work_and_resumes() {
    let config = evol_mock::MockConfig { latency_median_ms: 150.0, ..Default::default() };
    let url = evol_mock::spawn(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let set = testset(dir.path(), 300);
    let out = dir.path().join("out");

    let said = Lines::default();
    let err = example::answer(&url, &set, &out, Some(Duration::from_millis(400)), &said).await.unwrap_err();
    assert!(err.is::<Interrupted>(), "{err}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["state"], "interrupted");
    let first = lines(&out.join("answers.jsonl")).len();
    assert!(first > 0 && first < 300, "some answered before the stop: {first}");
    assert!(said.0.lock().unwrap().iter().any(|l| l.contains("stopping")), "the stop is told");

    let report = example::answer(&url, &set, &out, None, &evol::Silent).await.unwrap();
    let answers = lines(&out.join("answers.jsonl"));
    assert_eq!(answers.len(), 300);
    assert_eq!((report.questions, report.answered, report.failed), (300, 300, 0), "{report:?}");
    let written: evol::jobs::answer::AnswerReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(as_json(&written), as_json(&report), "stats.json is the report");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["state"], "completed");
    assert!(stats["replayed_calls"].as_u64().unwrap() >= first as u64, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_other_settings_is_refused_naming_each_and_another_input_is_welcome() {
    use evol::settings::{AnswerSettings, Backend, EvalModel, ModelSettings, Servers};
    let url = evol_mock::spawn(evol_mock::MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let settings = |set: &std::path::Path, temperature: f32, system: Option<&str>| {
        let model = ModelSettings::new(Backend::Servers(Servers::at(&[&url])), Some("mock"));
        let sampling =
            evol_llm::Sampling { temperature, top_p: 1.0, max_tokens: 64, seed: None, thinking: Default::default() };
        AnswerSettings {
            system: system.map(String::from),
            ..AnswerSettings::new(set.to_path_buf(), out.clone(), EvalModel::new(model, sampling, 0))
        }
    };
    let set = testset(dir.path(), 3);
    evol::jobs::answer(settings(&set, 0.7, None), &evol::Silent, evol::Shutdown::never()).await.unwrap();
    let answers = std::fs::read_to_string(out.join("answers.jsonl")).unwrap();

    let err = evol::jobs::answer(settings(&set, 0.2, Some("Be brief.")), &evol::Silent, evol::Shutdown::never())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("temperature (0.7 -> 0.2)") && err.contains("system (none -> `Be brief.`)"), "{err}");
    assert!(err.contains("--fresh"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("answers.jsonl")).unwrap(), answers, "nothing is touched");

    // One more question, same settings: only it is asked.
    let bigger = dir.path().join("more");
    std::fs::create_dir(&bigger).unwrap();
    let bigger = testset(&bigger, 4);
    evol::jobs::answer(settings(&bigger, 0.7, None), &evol::Silent, evol::Shutdown::never()).await.unwrap();
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!((stats["answered"].as_u64(), stats["replayed_calls"].as_u64()), (Some(4), Some(3)), "{stats}");
}

fn export_to(source: &std::path::Path, to: &std::path::Path, format: &str) -> anyhow::Result<()> {
    export_with(source, to, format, true, false)
}

fn export_with(
    source: &std::path::Path,
    to: &std::path::Path,
    format: &str,
    plain: bool,
    drop_truncated: bool,
) -> anyhow::Result<()> {
    let settings = evol::settings::ExportSettings {
        output: source.to_path_buf(),
        to: Some(to.to_path_buf()),
        format: format.parse().map_err(anyhow::Error::msg)?,
        plain,
        drop_truncated,
        reasoning: Default::default(),
        max_file_bytes: 1 << 30,
    };
    evol::jobs::export(settings, &evol::Silent).map(|_| ())
}

#[test]
fn an_export_carries_every_turn_of_a_chat_or_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let chats = dir.path().join("chats.jsonl");
    let rows = [
        serde_json::json!({"id": "a", "conversations": [
            {"from": "system", "value": "Réponds en français."},
            {"from": "human", "value": "Bonjour ?"},
            {"from": "gpt", "value": "Bonjour !"},
            {"from": "human", "value": "日本語で？"},
            {"from": "gpt", "value": "こんにちは。"}
        ]}),
        serde_json::json!({"id": "b", "conversations": [
            {"from": "human", "value": "नमस्ते"}, {"from": "gpt", "value": "नमस्ते, कैसे हैं?"}
        ]}),
    ];
    std::fs::write(&chats, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();

    // ShareGPT to messages, then back to ShareGPT: every turn survives both.
    let messages = dir.path().join("messages.jsonl");
    export_to(&chats, &messages, "messages").unwrap();
    let written = lines(&messages);
    let turns: Vec<(String, String)> = written[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["role"].as_str().unwrap().into(), t["content"].as_str().unwrap().into()))
        .collect();
    assert_eq!(turns.len(), 5, "{turns:?}");
    assert_eq!(turns[0], ("system".into(), "Réponds en français.".into()));
    assert_eq!(turns[4], ("assistant".into(), "こんにちは。".into()));
    let back = dir.path().join("back.jsonl");
    export_to(&messages, &back, "sharegpt").unwrap();
    assert_eq!(lines(&back)[0]["conversations"], rows[0]["conversations"], "a round trip changes nothing");
    assert_eq!(lines(&back)[1]["conversations"], rows[1]["conversations"]);

    // What would lose content is refused, and nothing is written.
    let alpaca = dir.path().join("alpaca.jsonl");
    let err = format!("{:#}", export_to(&chats, &alpaca, "alpaca").unwrap_err());
    assert!(err.contains("conversation of 2 exchanges") || err.contains("system prompt"), "{err}");
    assert!(!alpaca.exists());
    // The input itself, or any existing file, is never overwritten.
    let err = export_to(&messages, &messages, "messages").unwrap_err().to_string();
    assert!(err.contains("is the input"), "{err}");
    let err = export_to(&chats, &back, "messages").unwrap_err().to_string();
    assert!(err.contains("exists"), "{err}");
    assert_eq!(lines(&back).len(), 2);
}

#[test]
fn answers_cut_off_by_the_token_limit_stay_flagged_or_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset.jsonl");
    let rows = [
        serde_json::json!({"instruction": "Explique la photosynthèse.", "output": "La lumière", "answer_truncated": true}),
        serde_json::json!({"instruction": "用一句话解释引力。", "output": "质量相互吸引。"}),
    ];
    std::fs::write(&dataset, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();

    let kept = dir.path().join("kept.jsonl");
    export_with(&dataset, &kept, "alpaca", false, false).unwrap();
    let kept = lines(&kept);
    assert_eq!(kept.len(), 2, "kept unless asked: {kept:?}");
    assert_eq!(kept[0]["answer_truncated"], serde_json::json!(true), "the flag travels with the row: {kept:?}");

    let dropped = dir.path().join("dropped.jsonl");
    export_with(&dataset, &dropped, "alpaca", true, true).unwrap();
    let dropped = lines(&dropped);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0]["instruction"], "用一句话解释引力。");
}

/// Keeps the stages shown.
#[derive(Default)]
struct Stages(Mutex<Vec<(&'static str, u64, Option<u64>)>>, Mutex<usize>);

impl Observer for Stages {
    fn say(&self, _line: &str) {}
    fn stage(&self, unit: &'static str, done: u64, total: Option<u64>) {
        self.0.lock().unwrap().push((unit, done, total));
    }
    fn stage_done(&self) {
        *self.1.lock().unwrap() += 1;
    }
}

#[test]
fn dedup_of_a_large_file_shows_how_far_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let rows: String = (0..40_000).map(|i| format!("{{\"instruction\": \"row {i} of many\"}}\n")).collect();
    std::fs::write(&input, rows).unwrap();
    let settings = evol::settings::DedupSettings {
        files: Some(evol::settings::DedupFiles {
            input,
            output: dir.path().join("out.jsonl"),
            clusters: dir.path().join("out.clusters.jsonl"),
        }),
        against: Vec::new(),
        field: evol_io::TextField::Instruction,
        format: evol_io::SeedFormat::Auto,
        params: evol_dedup::Params::default(),
        exact_only: true,
        skip_invalid: false,
        explain: false,
    };
    let stages = Stages::default();
    let report = evol::jobs::dedup::dedup(&settings, &stages).unwrap();
    assert_eq!(report.read, 40_000);
    let shown = stages.0.lock().unwrap().clone();
    assert!(shown.len() >= 3 && shown.iter().all(|(unit, _, _)| *unit == "rows read"), "{shown:?}");
    assert!(shown.windows(2).all(|w| w[0].1 < w[1].1), "rising: {shown:?}");
    assert_eq!(shown.last().unwrap().1, 40_000);
    assert!(*stages.1.lock().unwrap() >= 1, "the stage is ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_returns_its_report_and_stats_read_back_as_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scored.jsonl");
    let rows = [
        serde_json::json!({"instruction": "用三句话解释引力是如何让行星绕着恒星运行的。", "quality": 5}),
        serde_json::json!({"instruction": "用三句话解释引力是如何让行星绕着恒星运行的。", "quality": 4}),
        serde_json::json!({"instruction": "सूर्य ग्रहण कैसे होता है, सरल शब्दों में समझाइए।", "quality": "3"}),
        serde_json::json!({"instruction": "Write a haiku about rain on a tin roof.", "quality": null}),
    ];
    std::fs::write(&input, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let settings = evol::settings::SelectSettings {
        input,
        output: dir.path().join("out"),
        fresh: false,
        budget: 3,
        by: vec!["Quality".into()],
        threshold: 0.9,
        embeddings: evol::settings::Embeddings::Lexical,
        embed_batch: 64,
        concurrency: 4,
        caps: Default::default(),
        field: evol_io::TextField::Instruction,
        format: evol_io::SeedFormat::Auto,
    };
    let report = evol::jobs::select(settings, &evol::Silent, evol::Shutdown::never()).await.unwrap();
    assert_eq!((report.rows, report.scored, report.unscored), (4, 3, 1), "{report:?}");
    assert_eq!((report.taken, report.similar), (2, 1), "the repeated question is taken once: {report:?}");
    assert_eq!(report.taken_scores, Some((3.0, 5.0)));
    let stats: evol::jobs::select::SelectReport =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/stats.json")).unwrap()).unwrap();
    assert_eq!(stats, report, "stats.json is the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoring_job_returns_its_report_and_stats_read_back_as_it() {
    use evol::settings::{Backend, Execution, ModelSettings, ScoreSettings, Servers};
    let url = evol_mock::spawn(evol_mock::MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.jsonl");
    let rows = ["Explique la photosynthèse.", "用三句话解释引力。", "सूर्य ग्रहण कैसे होता है?"];
    std::fs::write(
        &input,
        rows.iter().map(|r| serde_json::json!({ "instruction": r }).to_string() + "\n").collect::<String>(),
    )
    .unwrap();
    let settings = ScoreSettings {
        input,
        output: dir.path().join("out"),
        fresh: false,
        measures: vec![evol_core::score::Measure::Difficulty],
        field: evol_io::TextField::Instruction,
        response_field: None,
        group_field: "group".into(),
        group_size: 6,
        format: evol_io::SeedFormat::Auto,
        skip_invalid: false,
        sampling: evol_llm::Sampling {
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 64,
            seed: None,
            thinking: Default::default(),
        },
        model: ModelSettings::new(Backend::Servers(Servers::at(&[&url])), Some("mock")),
        execution: Execution {
            concurrency: 4,
            retry_failed: false,
            caps: Default::default(),
            prices: Default::default(),
            default_price: None,
        },
    };
    let report = evol::jobs::score(settings, &evol::Silent, evol::Shutdown::never()).await.unwrap();
    assert_eq!((report.rows, report.calls, report.calls_done), (3, 3, 3), "{report:?}");
    let difficulty = report.scores[&evol_core::score::Measure::Difficulty];
    assert_eq!(difficulty.scored + difficulty.unreadable + difficulty.failed, 3, "{difficulty:?}");
    let written: evol::jobs::score::ScoreReport =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/stats.json")).unwrap()).unwrap();
    assert_eq!(as_json(&written), as_json(&report), "stats.json is the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_over_embeddings_stopped_by_a_future_keeps_its_vectors_and_resumes() {
    let config = evol_mock::MockConfig { latency_median_ms: 300.0, ..Default::default() };
    let url = evol_mock::spawn(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scored.jsonl");
    let rows: String = (0..40)
        .map(|i| {
            serde_json::json!({"instruction": format!("第{i}个问题：解释 topic{i} 的原理"), "quality": i % 5})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&input, rows).unwrap();
    let settings = || evol::settings::SelectSettings {
        input: input.clone(),
        output: dir.path().join("out"),
        fresh: false,
        budget: 10,
        by: vec!["quality".into()],
        threshold: 0.95,
        embeddings: evol::settings::Embeddings::Server { url: url.clone(), model: "embedder".into(), api_key: None },
        embed_batch: 4,
        concurrency: 2,
        caps: Default::default(),
        field: evol_io::TextField::Instruction,
        format: evol_io::SeedFormat::Auto,
    };
    // Stopped while the first requests are in flight: they finish and are
    // kept; nothing is selected.
    let stop = evol::Shutdown::on(tokio::time::sleep(Duration::from_millis(100)));
    let err = evol::jobs::select(settings(), &evol::Silent, stop).await.unwrap_err();
    assert!(err.is::<Interrupted>(), "{err}");
    assert!(!dir.path().join("out/selected.jsonl").exists());
    let report = evol::jobs::select(settings(), &evol::Silent, evol::Shutdown::never()).await.unwrap();
    assert!(report.cached > 0, "the vectors of the stopped run are kept: {report:?}");
    assert_eq!(report.cached + report.embedded, 40, "{report:?}");
    assert_eq!(report.requests.requests as usize, report.embedded.div_ceil(4), "{report:?}");
    assert_eq!(report.taken, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reasoning_models_answers_keep_their_traces_apart() {
    for shape in [evol_mock::TraceShape::Field, evol_mock::TraceShape::Opened] {
        let config = evol_mock::MockConfig { trace: Some(shape), ..Default::default() };
        let url = evol_mock::spawn(config).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let set = testset(dir.path(), 5);
        let out = dir.path().join("out");
        example::answer(&url, &set, &out, None, &evol::Silent).await.unwrap();
        let rows = lines(&out.join("answers.jsonl"));
        assert_eq!(rows.len(), 5);
        for row in &rows {
            let (answer, trace) = (row["answer"].as_str().unwrap(), row["reasoning"].as_str().unwrap());
            assert!(!answer.contains("think") && !answer.contains("Okay, let me"), "{shape:?}: {answer}");
            assert!(trace.len() > 40 && !trace.contains("</think>"), "{shape:?}: {trace}");
            assert!(row["usage"]["reasoning_tokens"].as_u64().unwrap() > 0, "{shape:?}: {row}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_sampled_answers_are_checked_against_the_reference_and_give_pairs() {
    use evol::settings::{AnswerSettings, Backend, EvalModel, ModelSettings, Pick, Servers};
    let config = evol_mock::MockConfig { maths: Some(0.5), ..Default::default() };
    let url = evol_mock::spawn(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("maths.jsonl");
    let rows: String = (1..=30)
        .map(|i| serde_json::json!({"id": i, "question": format!("计算 {} + {}。", i * 7, i), "answer": format!("#### {}", i * 8)}).to_string() + "\n")
        .collect();
    std::fs::write(&set, rows).unwrap();
    let out = dir.path().join("out");
    let settings = || {
        let model = ModelSettings::new(Backend::Servers(Servers::at(&[&url])), Some("mock"));
        AnswerSettings {
            samples: 4,
            reference_field: Some("answer".into()),
            pick: Pick::Shortest,
            ..AnswerSettings::new(
                set.clone(),
                out.clone(),
                EvalModel::new(model, evol_llm::Sampling::new(0.7, 1.0, 64), 1),
            )
        }
    };
    let report = evol::jobs::answer(settings(), &evol::Silent, evol::Shutdown::never()).await.unwrap();
    let v = report.verification.clone().expect("checked");
    assert_eq!(v.correct + v.wrong + v.unreadable + v.failed, 120, "{v:?}");
    assert!(v.correct > 30 && v.wrong > 30, "about half each: {v:?}");
    let answers = lines(&out.join("answers.jsonl"));
    let mut none_correct = 0;
    for row in &answers {
        let samples = row["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 4);
        match row["answer"].as_str() {
            Some(answer) => {
                assert!(samples.iter().any(|s| s["answer"] == answer && s["verdict"] == "correct"), "{row}");
                let id = row["id"].as_str().unwrap().parse::<i64>().unwrap();
                assert!(answer.contains(&format!("\\boxed{{{}}}", id * 8)), "the kept answer is right: {row}");
            }
            None => {
                none_correct += 1;
                assert!(samples.iter().all(|s| s["verdict"] != "correct"), "{row}");
                assert!(row["error"].as_str().unwrap().starts_with("no_correct_answer"), "{row}");
            }
        }
    }
    assert_eq!(none_correct, v.none_correct);
    let pairs = lines(&out.join("pairs.jsonl"));
    assert_eq!(pairs.len(), v.pairs);
    for p in &pairs {
        assert!(p["prompt"].is_string() && p["chosen"].is_string() && p["rejected"].is_string(), "{p}");
        assert_ne!(p["chosen"], p["rejected"]);
    }
    // The same command again sends nothing: every sample is journaled.
    let again = evol::jobs::answer(settings(), &evol::Silent, evol::Shutdown::never()).await.unwrap();
    assert_eq!(again.calls_made.total.requests - again.calls_made.replayed_calls, 0, "{again:?}");
    assert_eq!(again.verification, report.verification);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_answers_without_a_reference_are_ranked_by_the_judge_and_the_best_kept() {
    use evol::settings::{AnswerSettings, Backend, EvalModel, ModelSettings, Pick, Servers};
    let config =
        evol_mock::MockConfig { sorry_rate: 0.0, models: vec!["mock".into(), "judge".into()], ..Default::default() };
    let url = evol_mock::spawn(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("questions.jsonl");
    let rows: String = (1..=12)
        .map(|i| {
            serde_json::json!({"id": i, "question": format!("Explain topic number {i} to a student.")}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&set, rows).unwrap();
    let out = dir.path().join("out");
    let settings = || {
        let model = ModelSettings::new(Backend::Servers(Servers::at(&[&url])), Some("mock"));
        AnswerSettings {
            samples: 3,
            pick: Pick::Score,
            judge_model: Some("judge".into()),
            ..AnswerSettings::new(
                set.clone(),
                out.clone(),
                EvalModel::new(model, evol_llm::Sampling::new(0.7, 1.0, 256), 1),
            )
        }
    };
    let report = evol::jobs::answer(settings(), &evol::Silent, evol::Shutdown::never()).await.unwrap();
    let v = report.verification.clone().expect("sampled");
    assert_eq!((v.answered, v.ranked + v.unreadable_rankings), (36, 12), "{v:?}");
    let answers = lines(&out.join("answers.jsonl"));
    for row in &answers {
        let samples = row["samples"].as_array().unwrap();
        assert!(samples.iter().all(|s| s["verdict"] == "answered"), "{row}");
        let scores: Vec<Option<f64>> = samples.iter().map(|s| s["score"].as_f64()).collect();
        if scores.iter().all(Option::is_some) {
            let best = scores.iter().flatten().fold(0.0, |a: f64, b| a.max(*b));
            let kept = samples.iter().find(|s| s["answer"] == row["answer"]).unwrap();
            assert_eq!(kept["score"].as_f64(), Some(best), "the highest scored is kept: {row}");
        } else {
            assert!(row["ranking"].is_string(), "an unreadable ranking is kept: {row}");
        }
    }
    // Pairs where some answer scored lower: the kept one against the lowest.
    let pairs = lines(&out.join("pairs.jsonl"));
    assert_eq!(pairs.len(), v.pairs);
    assert!(!pairs.is_empty());
    for p in &pairs {
        assert!(p["margin"].as_f64().unwrap() > 0.0, "{p}");
        assert_eq!(p["rejected_verdict"], "answered");
    }
    let again = evol::jobs::answer(settings(), &evol::Silent, evol::Shutdown::never()).await.unwrap();
    assert_eq!(again.calls_made.total.requests - again.calls_made.replayed_calls, 0, "{again:?}");
}

/// Hindi and Chinese questions (each "Explain in a few sentences why N
/// matters to people."), with answers in the question's language or, for
/// every third question, in English.
fn multilingual_answers(dir: &std::path::Path, name: &str, english_every: usize) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.jsonl"));
    let rows: String = (1..=12)
        .map(|i| {
            let (question, native) = if i % 2 == 0 {
                (
                    format!("कृपया कुछ वाक्यों में समझाइए कि विषय संख्या {i} लोगों के लिए क्यों महत्वपूर्ण है।"),
                    // "This subject matters because it shapes how people live and work every day."
                    "यह विषय इसलिए महत्वपूर्ण है क्योंकि यह लोगों के रोज़ के जीवन और काम करने के तरीके को प्रभावित करता है।",
                )
            } else {
                (
                    format!("请用几句话解释为什么第{i}个主题对人们很重要。"),
                    // The same, in Chinese.
                    "这个主题很重要，因为它影响着人们每天的生活方式和工作方式，也影响着社会的发展。",
                )
            };
            let english = "This subject matters because it shapes the way that people live and work every single day, and it changes how societies grow.";
            let answer = if english_every > 0 && i % english_every == 0 { english } else { native };
            serde_json::json!({"id": i, "question": question, "answer": answer, "model": name}).to_string() + "\n"
        })
        .collect();
    std::fs::write(&path, rows).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_and_arena_count_the_answers_written_in_another_language() {
    use evol::settings::{ArenaSettings, ArenaSource, Backend, EvalModel, JudgeSettings, ModelSettings, Servers};
    let url = evol_mock::spawn(evol_mock::MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let candidate = multilingual_answers(dir.path(), "candidate", 3);
    let reference = multilingual_answers(dir.path(), "reference", 0);
    let eval = || {
        let model = ModelSettings::new(Backend::Servers(Servers::at(&[&url])), Some("mock"));
        EvalModel::new(model, evol_llm::Sampling::new(0.0, 1.0, 64), 1)
    };
    let out = dir.path().join("judged");
    let settings = JudgeSettings {
        testset: reference.clone(),
        candidate: candidate.clone(),
        reference: reference.clone(),
        output: out.clone(),
        fresh: false,
        format: evol_io::SeedFormat::Auto,
        both_orders: true,
        bootstrap: 100,
        eval: eval(),
    };
    evol::jobs::judge(settings, &evol::Silent, evol::Shutdown::never()).await.unwrap();
    let file: evol::jobs::judge::ReportFile =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!((file.languages.questions["hi"], file.languages.questions["zh"]), (6, 6), "{:?}", file.languages);
    assert_eq!(file.languages.wrong_of("candidate"), 4, "questions 3, 6, 9 and 12: {:?}", file.languages);
    assert_eq!(file.languages.wrong["candidate"]["en"], 4);
    assert_eq!(file.languages.wrong_of("reference"), 0);
    let rows = lines(&out.join("judgments.jsonl"));
    for row in &rows {
        let id = row["id"].as_str().unwrap().parse::<usize>().unwrap();
        assert_eq!(row["language"], if id % 2 == 0 { "hi" } else { "zh" }, "{row}");
        let wrong = if id % 3 == 0 { serde_json::json!({"candidate": "en"}) } else { serde_json::Value::Null };
        assert_eq!(row["wrong_language"], wrong, "{row}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("Questions by language: hi 6, zh 6.") && md.contains("candidate 4 (en 4), reference 0"),
        "{md}"
    );

    let out = dir.path().join("arena");
    let third = multilingual_answers(dir.path(), "third", 2);
    let settings = ArenaSettings {
        source: ArenaSource::Answers(vec![(None, candidate), (None, reference), (None, third)]),
        output: out.clone(),
        fresh: false,
        pairs_per_question: None,
        bootstrap: 50,
        anchor: None,
        style_control: false,
        learn: None,
        min_margin: 1.0,
        eval: eval(),
    };
    let report = evol::jobs::arena(settings, &evol::Silent, evol::Shutdown::never()).await.unwrap();
    let evol::jobs::arena::ArenaReport::Battled(report) = report else { panic!("battled") };
    assert_eq!((report.languages.wrong_of("candidate"), report.languages.wrong_of("third")), (4, 6));
    assert_eq!(report.languages.wrong_of("reference"), 0);
    let board = std::fs::read_to_string(out.join("leaderboard.md")).unwrap();
    assert!(board.contains("`candidate` 4 (en 4), `third` 6 (en 6)"), "{board}");
}
