//! The ecosystem's formats end to end: seeds in the ShareGPT, chat-messages
//! and CSV layouts, named fields, test sets as chats, and shell
//! completions.

mod util;

use evol_mock::MockConfig;
use util::*;

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
        for word in ["run", "export", "dedup", "instruction-field"] {
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
