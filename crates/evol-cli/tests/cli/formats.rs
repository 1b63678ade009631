//! The ecosystem's formats end to end: seeds in the ShareGPT, chat-messages
//! and CSV layouts, named fields, test sets as chats, and shell
//! completions.

use crate::util::*;
use evol_mock::MockConfig;

#[test]
fn sharegpt_seeds_are_read_and_their_layout_named() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds: String = (0..4)
        .map(|i| {
            serde_json::json!({
                "id": format!("c{i}"),
                "conversations": [
                    {"from": "system", "value": "You are terse."},
                    {"from": "human", "value": format!("Describe river number {i} in one paragraph.")},
                    {"from": "gpt", "value": "It flows."}
                ]
            })
            .to_string()
                + "\n"
        })
        .collect();
    let seeds = dir.write("chats.jsonl", &seeds);
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &["--rounds", "1"]);
    assert_success(&run);
    let log = stderr(&run);
    assert!(log.contains("4 seeds read as ShareGPT (`conversations`, the first human turn),"), "{log}");
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["input"]["layout"], "ShareGPT (`conversations`, the first human turn)");
    let evolved = read_lines(&out.join("evolved.jsonl"));
    assert!(
        evolved.iter().filter(|r| r["round"] == 0).all(|r| {
            let text = r["instruction"].as_str().unwrap();
            text.starts_with("Describe river number") && !text.contains("terse")
        }),
        "the seeds are the human turns: {evolved:?}"
    );
}

#[test]
fn csv_seeds_with_named_fields_and_a_missing_field() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write(
        "seeds.csv",
        "key,question,notes\nk1,\"Why is the sea salty, and not sweet?\",x\nk2,Name three uses of copper.,y\n",
    );
    let out = dir.path("out");
    let run = evol_run(
        &mock.url,
        &seeds,
        &out,
        &["--rounds", "1", "--instruction-field", "question", "--id-field", "key", "--include-seeds"],
    );
    assert_success(&run);
    assert!(stderr(&run).contains("2 seeds read as the field `question`,"), "{}", stderr(&run));
    let evolved = read_lines(&out.join("evolved.jsonl"));
    let seed_ids: std::collections::BTreeSet<&str> = evolved.iter().map(|r| r["seed_id"].as_str().unwrap()).collect();
    assert_eq!(seed_ids.into_iter().collect::<Vec<_>>(), ["k1", "k2"]);
    let dataset = read_lines(&out.join("dataset.jsonl"));
    assert!(
        dataset.iter().any(|r| r["instruction"] == "Why is the sea salty, and not sweet?"),
        "the seed, read from its quoted CSV field, is in the dataset: {dataset:?}"
    );

    // Without the flag the record has no instruction: the error names the
    // file, the row and the fields found, and nothing is run.
    let bad = evol_run(&mock.url, &seeds, &dir.path("bad"), &["--rounds", "1"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    let err = stderr(&bad);
    assert!(
        err.contains("seeds.csv` row 1: missing an instruction")
            && err.contains("the record has `key`, `notes`, `question`"),
        "{err}"
    );
    let bad = evol_run(&mock.url, &seeds, &dir.path("bad2"), &["--instruction-field", " "]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn a_chat_test_set_is_answered_turn_by_turn() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let set = dir.write(
        "chat.jsonl",
        concat!(
            r#"{"id": "q1", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}"#,
            "\n",
            r#"{"id": "q2", "conversations": [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Red."}, {"from": "human", "value": "Another one?"}]}"#,
            "\n"
        ),
    );
    let out = dir.path("answers");
    let run = evol(&["answer", set.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url, "-q"]);
    assert_success(&run);
    let rows = read_lines(&out.join("answers.jsonl"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["id"], "q2");
    assert_eq!(rows[1]["turns"].as_array().unwrap().len(), 2, "{:?}", rows[1]);
    assert_eq!(rows[1]["answers"].as_array().unwrap().len(), 2, "{:?}", rows[1]);
    assert_eq!(rows[0]["instruction"], "What is 2 + 2?");

    let bad = dir.write("bad.jsonl", "{\"id\": 1, \"title\": \"x\"}\n");
    let run = evol(&["answer", bad.to_str().unwrap(), "-o", dir.path("b").to_str().unwrap(), "--endpoint", &mock.url]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("line 1: no question") && stderr(&run).contains("the record has `id`, `title`"));
}

#[test]
fn shell_completions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = evol(&["completions", shell]);
        assert_success(&out);
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["run", "export", "report", "dedup", "instruction-field", "max-file-mb"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    // The bash script loads and registers the command.
    let script = String::from_utf8(evol(&["completions", "bash"]).stdout).unwrap();
    let dir = Dir::new();
    let path = dir.write("evol.bash", &script);
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && complete -p evol", path.display()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("evol"), "{}", stderr(&loaded));
    assert_eq!(evol(&["completions", "tcsh"]).status.code(), Some(2));
}

/// A judged simulator that knows two models' strengths.
fn arena_mock() -> Mock {
    Mock::start(MockConfig {
        strengths: [("strong", 2.0), ("weak", -2.0)].iter().map(|(m, s)| (m.to_string(), *s)).collect(),
        sorry_rate: 0.0,
        models: ["strong", "weak", "judge"].iter().map(|m| m.to_string()).collect(),
        ..MockConfig::default()
    })
}

/// Python with pyarrow and datasets, which the test setup installs.
fn python_reads(args: &[&str]) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_export.py");
    let cache = Dir::new();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .env("HF_HOME", cache.path("hf"))
        .output()
        .expect("python3 runs (scripts/test installs pyarrow and datasets)");
    assert!(out.status.success(), "read_export.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn export_writes_what_pyarrow_and_datasets_read() {
    let mock = arena_mock();
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(40));
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--rounds", "2", "--model", "strong", "-q"]));
    let rows = read_lines(&out.join("dataset.jsonl")).len();
    let evolved = read_lines(&out.join("evolved.jsonl"));
    assert!(rows > 40, "two rounds of 40 seeds keep most evolutions: {rows}");

    // JSONL in every SFT layout, plain and with lineage.
    let sharegpt = dir.path("sharegpt.jsonl");
    let export =
        evol(&["export", out.to_str().unwrap(), "--format", "sharegpt", "--plain", "--to", sharegpt.to_str().unwrap()]);
    assert_success(&export);
    let lines = read_lines(&sharegpt);
    assert_eq!(lines.len(), rows);
    assert_eq!(lines[0].as_object().unwrap().keys().collect::<Vec<_>>(), ["conversations"], "plain: the layout only");
    assert_eq!(lines[0]["conversations"][0]["from"], "human");
    assert_eq!(lines[0]["conversations"][1]["from"], "gpt");
    let alpaca = dir.path("alpaca.jsonl");
    assert_success(&evol(&["export", out.to_str().unwrap(), "--to", alpaca.to_str().unwrap()]));
    let lines = read_lines(&alpaca);
    let first = &lines[0];
    assert_eq!(first["input"], "");
    let record = evolved.iter().find(|e| e["id"] == first["id"]).expect("a row's id is an evolution's");
    assert_eq!(
        (&first["instruction"], &first["seed_id"], &first["round"]),
        (&record["instruction"], &record["seed_id"], &record["round"])
    );
    assert_eq!(first["operation"], record["operation"]);

    // Parquet and the Hugging Face directory, read back by the real
    // libraries.
    let messages = dir.path("messages.parquet");
    assert_success(&evol(&[
        "export",
        out.to_str().unwrap(),
        "--format",
        "messages",
        "--to",
        messages.to_str().unwrap(),
    ]));
    let hub = dir.path("hub");
    let export = evol(&["export", out.to_str().unwrap(), "--to", hub.to_str().unwrap(), "--json"]);
    assert_success(&export);
    let summary: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(summary["rows"], rows as u64);
    assert_eq!(summary["files"], serde_json::json!(["data/train-00000-of-00001.parquet"]));
    let card = std::fs::read_to_string(hub.join("README.md")).unwrap();
    for needle in [
        "## Operations",
        "| add\\_constraints |",
        "Rejected evolutions by reason",
        "seeds.jsonl -o ",
        "--rounds 2",
        "--model strong",
    ] {
        assert!(card.contains(needle), "the card lacks {needle}:\n{card}");
    }
    let again = evol(&["export", out.to_str().unwrap(), "--to", hub.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "a directory that holds files is not overwritten");
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));

    // Arena Learning's preference pairs.
    let set = dir.write(
        "set.jsonl",
        &(0..12)
            .map(|i| serde_json::json!({"id": i, "instruction": format!("Question {i}?")}).to_string() + "\n")
            .collect::<String>(),
    );
    answer_each(&mock.url, &set, &dir, &["strong", "weak"]);
    let learn = dir.path("learn");
    assert_success(&evol(&[
        "arena",
        "--answers",
        dir.path("strong").to_str().unwrap(),
        dir.path("weak").to_str().unwrap(),
        "-o",
        dir.path("arena").to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "--target",
        "weak",
        "--learn",
        learn.to_str().unwrap(),
        "--bootstrap",
        "10",
        "-q",
    ]));
    let pairs = read_lines(&learn.join("dpo.jsonl"));
    assert!(!pairs.is_empty());
    let dpo = dir.path("dpo.parquet");
    assert_success(&evol(&["export", learn.to_str().unwrap(), "--format", "dpo", "--to", dpo.to_str().unwrap()]));
    let wrong =
        evol(&["export", out.to_str().unwrap(), "--format", "dpo", "--to", dir.path("x.parquet").to_str().unwrap()]);
    assert_eq!(wrong.status.code(), Some(1));

    let found =
        python_reads(&[hub.to_str().unwrap(), messages.to_str().unwrap(), dpo.to_str().unwrap(), &rows.to_string()]);
    assert_eq!(found["compression"], "ZSTD");
    assert_eq!(found["card_size_category"], serde_json::json!(["n<1K"]));
    assert_eq!(found["hub_first"]["instruction"], first["instruction"]);
    assert_eq!(found["hub_first"]["round"], first["round"]);
    assert_eq!(found["dpo_rows"], pairs.len());
    assert_eq!(found["dpo_first"]["prompt"], pairs[0]["prompt"]);
    assert_eq!(found["dpo_first"]["chosen"], pairs[0]["chosen"]);
    assert!(found["messages_columns"].as_array().unwrap().iter().any(|c| c == "seed_id"));
}

#[test]
fn config_show_resolves_settings_and_masks_secrets() {
    let dir = Dir::new();
    let seeds = dir.write("seeds.csv", "prompt\nWhy?\n");
    let config = dir.write(
        "servers.toml",
        "[[endpoints]]\nurl = \"http://alice:hunter2-pass@127.0.0.1:9/v1\"\nmodel = \"m1\"\nweight = 2.0\napi_key_env = \"EVOL_TEST_KEY_A\"\n\n[[endpoints]]\nurl = \"http://127.0.0.1:10/v1\"\n",
    );
    let out = evol_env(
        &[
            "config",
            "show",
            "run",
            seeds.to_str().unwrap(),
            "-o",
            dir.path("out").to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--rounds",
            "2",
            "--ops",
            "code",
            "--instruction-field",
            "prompt",
        ],
        &[("EVOL_TEST_KEY_A", "sk-test-very-secret-key-123"), ("OPENAI_API_KEY", "")],
    );
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("sk-test-very-secret-key-123") && !text.contains("hunter2-pass"), "{text}");
    let shown: serde_json::Value = serde_json::from_str(&text).unwrap();
    let endpoints = shown["backend"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints[0]["api_key"], "set (from $EVOL_TEST_KEY_A)");
    assert_eq!(endpoints[1]["api_key"], "not set ($OPENAI_API_KEY is empty or unset)");
    assert_eq!(endpoints[0]["url"], "http://<redacted>@127.0.0.1:9/v1");
    assert_eq!(endpoints[0]["weight"], 2.0);
    assert_eq!(shown["method"]["rounds"], 2);
    assert_eq!(shown["input"]["instruction_field"], "prompt");
    let ops: Vec<&str> =
        shown["method"]["operations"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert!(ops.contains(&"misleading_code"), "{ops:?}");
    assert!(!dir.path("out").exists(), "nothing is written");
    let bad = evol(&["config", "show", "run", seeds.to_str().unwrap(), "-o", "x", "--rounds", "0"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn json_results_on_stdout() {
    let dir = Dir::new();
    let input = dir.write(
        "in.jsonl",
        "{\"instruction\": \"Name a metal.\"}\n{\"instruction\": \"Name a metal.\"}\n{\"instruction\": \"Why is the sky blue?\"}\n",
    );
    let out = evol(&["dedup", input.to_str().unwrap(), "-o", dir.path("kept.jsonl").to_str().unwrap(), "--json"]);
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["read"].as_u64(), summary["kept"].as_u64(), summary["exact"].as_u64()),
        (Some(3), Some(2), Some(1))
    );
    assert!(stderr(&out).contains("2 kept"), "the human summary goes to stderr");

    let mock = Mock::start(MockConfig::default());
    let scored = dir.path("scored");
    let out = evol(&[
        "score",
        input.to_str().unwrap(),
        "-o",
        scored.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--difficulty",
        "--json",
        "-q",
    ]);
    assert_success(&out);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats, read_json(&scored.join("stats.json")), "the result file, as written");
}

#[test]
fn scored_rows_export_with_their_scores_as_columns() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let input = dir.write(
        "in.jsonl",
        &(0..6)
            .map(|i| {
                serde_json::json!({"instruction": format!("Explain idea {i}."), "output": format!("Answer {i}.")})
                    .to_string()
                    + "\n"
            })
            .collect::<String>(),
    );
    let scored = dir.path("scored");
    assert_success(&evol(&[
        "score",
        input.to_str().unwrap(),
        "-o",
        scored.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--difficulty",
        "--deita",
        "-q",
    ]));
    let rows = read_lines(&scored.join("scored.jsonl"));
    let jsonl = dir.path("scored-export.jsonl");
    assert_success(&evol(&[
        "export",
        scored.to_str().unwrap(),
        "--format",
        "messages",
        "--to",
        jsonl.to_str().unwrap(),
    ]));
    let out = read_lines(&jsonl);
    assert_eq!(out.len(), rows.len());
    for (row, exported) in rows.iter().zip(&out) {
        for score in ["difficulty", "complexity", "quality"] {
            assert_eq!(exported[score], row[score], "{score} carried as a column");
        }
        assert_eq!(exported["messages"][0]["content"], row["instruction"]);
        assert_eq!(exported["messages"][1]["content"], row["output"]);
    }
    let parquet = dir.path("scored.parquet");
    assert_success(&evol(&[
        "export",
        scored.join("scored.jsonl").to_str().unwrap(),
        "--to",
        parquet.to_str().unwrap(),
    ]));
    let read = std::process::Command::new("python3")
        .args(["-c", "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(t.schema.field('quality').type, t.num_rows)"])
        .arg(&parquet)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), format!("double {}", rows.len()));

    let mixed =
        dir.write("mixed.jsonl", "{\"instruction\": \"a\", \"tag\": 1}\n{\"instruction\": \"b\", \"tag\": \"x\"}\n");
    let bad = evol(&["export", mixed.to_str().unwrap(), "--to", dir.path("m.parquet").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("line 2: the field `tag` is text here and int in an earlier row"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_dataset_directory_that_export_wrote_is_an_input_everywhere() {
    let dir = Dir::new();
    // Enough text for three parts of at most 1 MB.
    let filler = "विस्तार से समझाइए। ".repeat(40);
    let rows: String = (0..1500)
        .map(|i| {
            format!("{{\"id\": \"r{i}\", \"instruction\": \"Question {i}: {filler}\", \"output\": \"{filler}\"}}\n")
        })
        .collect();
    let input = dir.write("rows.jsonl", &rows);
    let hub = dir.path("hub");
    assert_success(&evol(&["export", input.to_str().unwrap(), "--to", hub.to_str().unwrap(), "--max-file-mb", "1"]));
    let parts = std::fs::read_dir(hub.join("data")).unwrap().count();
    assert!(parts >= 2, "{parts} parts");

    // Exported again, from the directory: every row, in order.
    let back = dir.path("back.jsonl");
    assert_success(&evol(&["export", hub.to_str().unwrap(), "--to", back.to_str().unwrap()]));
    let back = read_lines(&back);
    assert_eq!(back.len(), 1500);
    assert_eq!((back[0]["id"].as_str(), back[1499]["id"].as_str()), (Some("r0"), Some("r1499")));
    // Not onto itself.
    let onto = evol(&["export", hub.to_str().unwrap(), "--to", hub.to_str().unwrap()]);
    assert_ne!(onto.status.code(), Some(0));

    // As dedup's input and as seeds.
    let kept = dir.path("kept.jsonl");
    let run = evol(&["dedup", hub.to_str().unwrap(), "-o", kept.to_str().unwrap()]);
    assert_success(&run);
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("1500 rows read"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let run = evol(&["run", hub.to_str().unwrap(), "-o", dir.path("out").to_str().unwrap(), "--dry-run"]);
    assert_success(&run);
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), stderr(&run));
    assert!(said.contains("1500 seeds"), "{said}");

    // A directory without data files is named as such.
    let empty = dir.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = evol(&["dedup", empty.to_str().unwrap(), "-o", dir.path("k2.jsonl").to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("without dataset files"), "{}", stderr(&run));
}
