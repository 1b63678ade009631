//! `evol select`: DEITA selection by score with a diversity threshold.

use crate::util::*;
use evol_mock::MockConfig;

/// Rows with scores: `a` and `a2` say the same, `b` and `c` are their own.
fn rows() -> String {
    [
        r#"{"id": "a", "instruction": "Write a poem about the sea at night, in four stanzas.", "complexity": 3, "quality": 5}"#,
        r#"{"id": "low", "instruction": "Say hello.", "complexity": 1, "quality": 1}"#,
        r#"{"id": "a2", "instruction": "Write a poem about the sea at night, in four stanzas!", "complexity": 3, "quality": 4}"#,
        r#"{"id": "b", "instruction": "Explain how a binary search tree stays balanced after inserts.", "complexity": 4, "quality": 4}"#,
        r#"{"id": "none", "instruction": "A row nobody scored."}"#,
        r#"{"id": "c", "instruction": "List three causes of the French Revolution with dates.", "complexity": 2, "quality": 5}"#,
    ]
    .join("\n")
        + "\n"
}

fn ids(path: &std::path::Path) -> Vec<String> {
    read_lines(path).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn selection_takes_by_score_keeps_the_first_of_a_near_pair_and_names_the_similarity() {
    let dir = Dir::new();
    let input = dir.write("scored.jsonl", &rows());
    let out = dir.path("sel");
    let run = evol(&["select", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--budget", "4"]);
    assert_success(&run);
    assert!(stderr(&run).contains("lexical: hashed TF-IDF"), "the fallback is named: {}", stderr(&run));
    // b 16, a 15, a2 12 (too like a), c 10, low 1; `none` has no score.
    assert_eq!(ids(&out.join("selected.jsonl")), ["b", "a", "c", "low"]);
    let similar = read_lines(&out.join("similar.jsonl"));
    assert_eq!(similar.len(), 1);
    assert_eq!((similar[0]["removed"]["line"].as_u64(), similar[0]["kept"]["line"].as_u64()), (Some(3), Some(1)));
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(
        (stats["taken"].as_u64(), stats["unscored"].as_u64(), stats["similar"].as_u64()),
        (Some(4), Some(1), Some(1))
    );
    assert!(stats["similarity"].as_str().unwrap().starts_with("lexical"));
    // Rows are written as read.
    let text = std::fs::read_to_string(out.join("selected.jsonl")).unwrap();
    assert!(text.lines().any(|l| l == rows().lines().nth(3).unwrap()));

    // Any numeric field can be the score; a budget larger than the pool
    // takes what there is.
    let by = dir.path("by");
    assert_success(&evol(&[
        "select",
        input.to_str().unwrap(),
        "-o",
        by.to_str().unwrap(),
        "--budget",
        "9",
        "--by",
        "quality",
    ]));
    assert_eq!(ids(&by.join("selected.jsonl")), ["a", "c", "b", "low"]);
}

#[test]
fn selection_over_embeddings_caches_them_so_a_rerun_computes_none() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let input = dir.write("scored.jsonl", &rows());
    let out = dir.path("sel");
    let args = [
        "select",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--budget",
        "3",
        "--embed-endpoint",
        &mock.url,
        "--embed-model",
        "embedder",
        "--embed-batch",
        "2",
    ];
    let run = evol(&args);
    assert_success(&run);
    assert_eq!(mock.stats().embedded, 6);
    assert_eq!(ids(&out.join("selected.jsonl")), ["b", "a", "c"]);
    let stats = read_json(&out.join("stats.json"));
    assert!(stats["similarity"].as_str().unwrap().contains("embedder"), "{}", stats["similarity"]);
    assert_eq!((stats["embedded"].as_u64(), stats["cached"].as_u64()), (Some(6), Some(0)));
    let run = evol(&args);
    assert_success(&run);
    assert_eq!(mock.stats().embedded, 6, "the rerun takes every embedding from the journal");
    let stats = read_json(&out.join("stats.json"));
    assert_eq!((stats["embedded"].as_u64(), stats["cached"].as_u64()), (Some(0), Some(6)));
    assert_eq!(stats["requests"]["requests"], 0, "no request was sent");

    // Embeddings go through the journaled caller: a cap stops them (exit
    // 3) with what was received kept, and the rerun sends only the rest.
    let capped = dir.path("capped");
    let mut args: Vec<&str> = args.to_vec();
    args[3] = capped.to_str().unwrap();
    let mut first = args.clone();
    first.extend(["--max-requests", "1", "--embed-concurrency", "1"]);
    let run = evol(&first);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(!capped.join("selected.jsonl").exists(), "nothing is selected from half the vectors");
    assert_eq!(mock.stats().embedded, 8, "one request of two texts");
    let run = evol(&args);
    assert_success(&run);
    assert_eq!(mock.stats().embedded, 12, "the rerun sends only the four texts it lacks");
    let stats = read_json(&capped.join("stats.json"));
    assert_eq!((stats["embedded"].as_u64(), stats["cached"].as_u64()), (Some(4), Some(2)));
    assert_eq!(stats["requests"]["requests"], 2);
    assert!(stats["requests"]["prompt_tokens"].as_u64().unwrap() > 0, "the tokens the server read are counted");
}

#[test]
fn selection_refuses_what_it_cannot_do() {
    let dir = Dir::new();
    let input = dir.write("plain.jsonl", "{\"instruction\": \"x\"}\n");
    let out = dir.path("o");
    let run = evol(&["select", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--budget", "3"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("`complexity`, `quality`") && stderr(&run).contains("evol score"),
        "{}",
        stderr(&run)
    );
    for (flag, value) in [("--budget", "0"), ("--threshold", "2"), ("--by", " ,")] {
        let mut args = vec!["select", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--budget", "3"];
        args.extend([flag, value]);
        let run = evol(&args);
        assert_eq!(run.status.code(), Some(2), "{flag} {value}: {}", stderr(&run));
    }
    let bad = dir.write("bad.jsonl", "{\"instruction\": \"x\", \"quality\": 1}\n{oops\n");
    let run = evol(&["select", bad.to_str().unwrap(), "-o", out.to_str().unwrap(), "--budget", "3", "--by", "quality"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("bad.jsonl` line 2: not valid JSON"), "{}", stderr(&run));
}

#[test]
fn selection_with_the_in_process_embedding_model_drops_the_paraphrase() {
    // The static model from the package registry (pulled on first use).
    let dir = Dir::new();
    let input = dir.write("scored.jsonl", &rows());
    let out = dir.path("sel");
    let args = [
        "select",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--budget",
        "5",
        "--embed-model",
        "wordllama-l2-supercat-256",
    ];
    assert_success(&evol(&args));
    assert_eq!(ids(&out.join("selected.jsonl")), ["b", "a", "c", "low"]);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["similarity"], "embeddings of `wordllama-l2-supercat-256`, in-process");
    assert_eq!((stats["embedded"].as_u64(), stats["similar"].as_u64()), (Some(6), Some(1)));
    assert_success(&evol(&args));
    assert_eq!(read_json(&out.join("stats.json"))["cached"], 6, "the rerun takes them from the journal");
    // A chat model is not an embedding model.
    let run = evol(&[
        "select",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--budget",
        "5",
        "--embed-model",
        "smollm2-135m-instruct",
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
}
