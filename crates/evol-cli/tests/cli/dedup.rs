//! `evol dedup` over dataset files, and the near-duplicate check of `evol run`.

use crate::util::*;
use evol_mock::MockConfig;
use serde_json::Value;

/// Forty distinct words, a seed of `n` words, and so on.
fn words(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn dedup_keeps_the_first_of_each_cluster_byte_for_byte_and_names_what_it_removed() {
    let dir = Dir::new();
    let long = words("alpha", 40);
    let near = long.replace("alpha39", "omega");
    let lines = [
        r#"{"id": "a", "instruction": "Write a poem about the sea.",  "output": "x"}"#.to_string(),
        format!(r#"{{"id": "b", "instruction": "{long}"}}"#),
        r#"{"id": "c", "instruction": "  WRITE a poem, about the sea!! "}"#.to_string(),
        format!(r#"{{"id": "d", "instruction": "{near}"}}"#),
        format!(r#"{{"id": "e", "instruction": "{}"}}"#, words("beta", 40)),
    ];
    let input = dir.write("in.jsonl", &(lines.join("\n") + "\n"));
    let out = dir.path("out.jsonl");
    let run = evol(&["dedup", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_success(&run);
    let said = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(said.contains("5 rows read") && said.contains("3 kept, 2 removed (1 exact, 1 near"), "{said}");
    let kept = std::fs::read_to_string(&out).unwrap();
    assert_eq!(kept, format!("{}\n{}\n{}\n", lines[0], lines[1], lines[4]), "kept rows are written as read");
    let clusters = read_lines(&dir.path("out.clusters.jsonl"));
    assert_eq!(clusters.len(), 2);
    assert_eq!(clusters[0]["removed"], serde_json::json!({"line": 3, "id": "c"}));
    assert_eq!(clusters[0]["kept"]["line"], 1);
    assert_eq!(clusters[0]["kept"]["id"], "a");
    assert_eq!((clusters[0]["exact"].as_bool(), clusters[0]["similarity"].as_f64()), (Some(true), Some(1.0)));
    assert_eq!(clusters[1]["removed"]["id"], "d");
    assert_eq!(clusters[1]["kept"]["id"], "b");
    let s = clusters[1]["similarity"].as_f64().unwrap();
    assert!(clusters[1]["exact"] == false && (0.8..1.0).contains(&s), "{}", clusters[1]);

    // The same input gives the same files, whatever the number of threads.
    let again = dir.path("again.jsonl");
    let run =
        evol_env(&["dedup", input.to_str().unwrap(), "-o", again.to_str().unwrap()], &[("RAYON_NUM_THREADS", "1")]);
    assert_success(&run);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), kept);

    // Exact only: the near duplicate stays.
    let exact = dir.path("exact.jsonl");
    assert_success(&evol(&["dedup", input.to_str().unwrap(), "-o", exact.to_str().unwrap(), "--exact-only"]));
    assert_eq!(std::fs::read_to_string(&exact).unwrap().lines().count(), 4);

    // A stricter threshold keeps the near duplicate too; compare outputs.
    let strict = dir.path("strict.jsonl");
    let run = evol(&[
        "dedup",
        input.to_str().unwrap(),
        "-o",
        strict.to_str().unwrap(),
        "--field",
        "instruction",
        "--threshold",
        "1",
    ]);
    assert_success(&run);
    assert_eq!(std::fs::read_to_string(&strict).unwrap().lines().count(), 4);
}

#[test]
fn dedup_against_a_corpus_removes_its_duplicates_and_leaves_it_untouched() {
    let dir = Dir::new();
    let shared = words("gamma", 50);
    let corpus_text = format!("{{\"instruction\": \"{shared}\"}}\n{{\"instruction\": \"Old question?\"}}\n");
    let corpus = dir.write("corpus.jsonl", &corpus_text);
    // The input is a JSON array (Alpaca layout), and stays one.
    let input = dir.write(
        "new.json",
        &format!(
            r#"[{{"instruction": "{} extra", "input": "", "output": "o1"}}, {{"instruction": "A new question?", "output": "o2"}}, {{"instruction": "old QUESTION"}}]"#,
            shared
        ),
    );
    let out = dir.path("kept.json");
    let run =
        evol(&["dedup", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--against", corpus.to_str().unwrap()]);
    assert_success(&run);
    let said = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(said.contains("1 kept, 2 removed") && said.contains("2 of a corpus row"), "{said}");
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(kept, serde_json::json!([{"instruction": "A new question?", "output": "o2"}]));
    // `kept.json`'s clusters keep its extension in their name.
    let clusters = read_lines(&dir.path("kept.json.clusters.jsonl"));
    assert_eq!(clusters[0]["removed"], serde_json::json!({"item": 1, "id": null}));
    assert_eq!(clusters[0]["kept"]["file"], corpus.to_str().unwrap());
    assert_eq!(clusters[1]["kept"]["line"], 2);
    assert_eq!(std::fs::read_to_string(&corpus).unwrap(), corpus_text, "the corpus is never written");

    // Plain text in, plain text out.
    let text = dir.write("seeds.txt", "Name a fruit.\nname a FRUIT\nName a vegetable.\n");
    let out = dir.path("kept.txt");
    assert_success(&evol(&["dedup", text.to_str().unwrap(), "-o", out.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "Name a fruit.\nName a vegetable.\n");
}

#[test]
fn dedup_refuses_bad_input_and_settings_naming_the_place() {
    let dir = Dir::new();
    let input = dir.write("in.jsonl", "{\"instruction\": \"a b c\"}\n{\"prompt\": 3}\n{\"instruction\": \"d e f\"}\n");
    let out = dir.path("out.jsonl");
    let run = evol(&["dedup", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("in.jsonl` line 2: `instruction` must be a string"), "{}", stderr(&run));
    assert!(!out.exists() && !dir.path("out.jsonl.tmp").exists(), "no partial output is left");
    let run = evol(&["dedup", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--skip-invalid"]);
    assert_success(&run);
    assert!(String::from_utf8_lossy(&run.stdout).contains("1 unreadable rows left out"));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);

    let usage = |args: &[&str], says: &str| {
        let run = evol(&[&["dedup"], args].concat());
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", stderr(&run));
        assert!(stderr(&run).contains(says), "{args:?}: {}", stderr(&run));
    };
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    usage(&[i, "-o", i], "is the input and an output");
    usage(&[i, "-o", o, "--bands", "7"], "must divide the number of hashes");
    usage(&[i, "-o", o, "--threshold", "0"], "threshold");
    usage(&[i, "-o", o, "--shingle", "0"], "shingle");
    usage(&[i, "-o", o, "--field", " "], "--field");
    usage(&[i], "-o");
    let run = evol(&["dedup", dir.path("missing.jsonl").to_str().unwrap(), "-o", o]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("missing.jsonl"), "{}", stderr(&run));

    // --explain alone prints the S-curve of the settings given.
    let run = evol(&["dedup", "--explain", "--hashes", "128", "--bands", "16"]);
    assert_success(&run);
    let said = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(said.contains("128 hashes in 16 bands of 8, threshold 0.8") && said.contains("0.90"), "{said}");
}

#[test]
fn a_run_rejects_near_duplicates_and_leaves_duplicates_across_seeds_out_of_the_dataset() {
    // The simulator evolves by appending a clause: a near duplicate of a
    // long seed, not of a short one. Seeds `a` and `b` are the same text,
    // so with one operation and no request seed they evolve alike.
    let mock = Mock::start(MockConfig { leak_rate: 0.0, equal_rate: 0.0, sorry_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write(
        "seeds.jsonl",
        &format!(
            "{{\"id\": \"a\", \"instruction\": \"Describe the water cycle.\"}}\n{{\"id\": \"b\", \"instruction\": \"Describe the water cycle.\"}}\n{{\"id\": \"long\", \"instruction\": \"{}\"}}\n",
            words("delta", 60)
        ),
    );
    let flags = ["--rounds", "1", "--ops", "deepen", "--no-request-seed", "--include-seeds"];
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &flags));
    let rejected = read_lines(&out.join("rejected.jsonl"));
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["id"], "long.r1");
    assert_eq!(rejected[0]["reason"], "near_duplicate");
    assert_eq!(rejected[0]["duplicate_of"], "long");
    assert!(rejected[0]["similarity"].as_f64().unwrap() >= 0.8);
    // No judge and no answer for it: evolve x3, judge x2, answer x2, and
    // the three seeds' answers.
    assert_eq!(mock.stats().requests, 3 + 2 + 2 + 3);
    let evolved = read_lines(&out.join("evolved.jsonl"));
    assert_eq!(evolved.len(), 2);
    assert_eq!(evolved[0]["instruction"], evolved[1]["instruction"]);
    // The dataset: three seeds (of which `b` duplicates `a`) and the two
    // evolutions (one a duplicate of the other): three rows.
    let dataset = read_lines(&out.join("dataset.jsonl"));
    assert_eq!(dataset.len(), 3, "{dataset:?}");
    let duplicates = read_lines(&out.join("duplicates.jsonl"));
    assert_eq!(duplicates.len(), 2);
    assert!(duplicates.iter().all(|d| d["exact"] == true));
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(
        stats["dataset"],
        serde_json::json!({"rows": 3, "exact_duplicates": 2, "near_duplicates": 0, "seeds_left_out": 0, "truncated": 0})
    );
    assert_eq!(stats["total"]["rejected"]["near_duplicate"], 1);
    assert_eq!(stats["settings"]["dedup"]["threshold"], 0.8);
    // `evol export` writes the same dataset again.
    assert_success(&evol(&["export", out.to_str().unwrap()]));
    assert_eq!(read_lines(&out.join("dataset.jsonl")), dataset);

    // Without the check, all evolutions and rows stay.
    let plain = dir.path("plain");
    assert_success(&evol_run(&mock.url, &seeds, &plain, &[&flags[..], &["--no-dedup"]].concat()));
    assert_eq!(read_lines(&plain.join("evolved.jsonl")).len(), 3);
    assert_eq!(read_lines(&plain.join("dataset.jsonl")).len(), 6);
    assert!(!plain.join("duplicates.jsonl").exists());
    // A resume uses the settings the run began with: one given explicitly
    // must match; one left at its default takes the run's own value.
    let run = evol_run(&mock.url, &seeds, &plain, &[&flags[..], &["--dedup-threshold", "0.9"]].concat());
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("changed: dedup"), "{}", stderr(&run));
    let run = evol_run(&mock.url, &seeds, &plain, &flags);
    assert_success(&run);
    assert!(stderr(&run).contains("resuming with the run's own dedup"), "{}", stderr(&run));
    assert_eq!(read_lines(&plain.join("dataset.jsonl")).len(), 6, "still without the check");
}

#[test]
fn skip_invalid_leaves_out_unreadable_rows_naming_them_and_keeps_the_file_s_bytes() {
    let dir = Dir::new();
    // A BOM, CRLF line ends, a line that is not UTF-8 and a row whose field is null.
    let mut bytes = b"\xEF\xBB\xBF{\"instruction\": \"Name a fruit.\"}\r\n".to_vec();
    bytes.extend_from_slice(b"{\"instruction\": \"caf\xE9 \xFF\"}\r\n");
    bytes.extend_from_slice(b"{\"instruction\": null}\r\n");
    bytes.extend_from_slice("{\"instruction\": \"name a FRUIT\"}\r\n".as_bytes());
    bytes.extend_from_slice("{\"instruction\": \"एक फल का नाम बताइए।\"}\r\n".as_bytes());
    let input = dir.path("in.jsonl");
    std::fs::write(&input, &bytes).unwrap();
    let out = dir.path("out.jsonl");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());

    // Without the flag, the first unreadable row stops the command, naming its line.
    let run = evol(&["dedup", i, "-o", o]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("line 2"), "{}", stderr(&run));
    assert!(!out.exists());

    let run = evol(&["dedup", i, "-o", o, "--skip-invalid"]);
    assert_success(&run);
    let said = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(said.contains("2 unreadable rows left out"), "{said}");
    assert!(said.contains("line 2") && said.contains("line 3"), "each row left out is named: {said}");
    let kept = std::fs::read(&out).unwrap();
    let mut expected = b"\xEF\xBB\xBF{\"instruction\": \"Name a fruit.\"}\r\n".to_vec();
    expected.extend_from_slice("{\"instruction\": \"एक फल का नाम बताइए।\"}\r\n".as_bytes());
    assert_eq!(String::from_utf8_lossy(&kept), String::from_utf8_lossy(&expected));
    assert_eq!(kept, expected, "the BOM and CRLF line ends are kept byte for byte");
}

#[test]
fn decontamination_finds_planted_benchmark_copies_and_no_unrelated_text() {
    let dir = Dir::new();
    let bench = dir.write(
        "bench.jsonl",
        &[
            serde_json::json!({"id": "q1", "question": "Write a Python function that returns the longest palindromic substring of a given string and explain its complexity."}),
            serde_json::json!({"id": "q2", "question": "请用三句话解释为什么天空是蓝色的，并给出一个日常生活中的例子，不要使用专业术语。"}),
            serde_json::json!({"id": "q3", "question": "Name a prime."}),
        ]
        .iter()
        .map(|v| v.to_string() + "\n")
        .collect::<String>(),
    );
    let mut rows: Vec<serde_json::Value> = (0..50)
        .map(|i| serde_json::json!({"instruction": format!("Describe step {i} of repotting a basil plant on a windowsill."), "output": "Carefully."}))
        .collect();
    rows.push(serde_json::json!({"instruction": "Name a prime.", "output": "7"}));
    rows.push(serde_json::json!({"instruction": "PLEASE write a python function that returns the longest palindromic substring of a given string, then test it.", "output": "ok"}));
    rows.push(serde_json::json!({"instruction": "翻译", "output": "背景：请用三句话解释为什么天空是蓝色的，并给出一个日常生活中的例子。"}));
    rows.push(serde_json::json!({"instruction": "Write a Python function that returns the shortest path in a graph.", "output": "ok"}));
    let input = dir.write("data.jsonl", &rows.iter().map(|v| v.to_string() + "\n").collect::<String>());
    let out = dir.path("clean.jsonl");
    let decontaminate = |output: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["decontaminate", input.to_str().unwrap(), "--benchmark", bench.to_str().unwrap(), "-o"];
        args.push(output.to_str().unwrap());
        args.extend(extra);
        evol(&args)
    };
    let run = decontaminate(&out, &["--json"]);
    assert_success(&run);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!((report["rows"].as_u64(), report["contaminated"].as_u64()), (Some(54), Some(2)), "{report}");
    assert_eq!(report["benchmark_items_too_short"], 1, "`Name a prime.` is too short to tell");
    let listed = read_lines(&dir.path("clean.contaminated.jsonl"));
    let found: Vec<(u64, &str, &str)> = listed
        .iter()
        .map(|l| {
            (l["removed"]["line"].as_u64().unwrap(), l["field"].as_str().unwrap(), l["benchmark"].as_str().unwrap())
        })
        .collect();
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].0, found[0].1), (52, "instruction"), "the edited English copy");
    assert!(found[0].2.ends_with("bench.jsonl#q1"));
    assert_eq!((found[1].0, found[1].1), (53, "output"), "the Chinese copy in an answer");
    assert!(found[1].2.ends_with("bench.jsonl#q2"));
    assert_eq!(read_lines(&out).len(), 52, "the rest kept, as read");

    let run = decontaminate(&input, &[]);
    assert_eq!(run.status.code(), Some(2), "the input is never an output");
    let run = decontaminate(&out, &["--ngram", "3"]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
}
