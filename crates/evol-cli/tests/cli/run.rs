//! End-to-end tests of `evol run` against the simulator on loopback.

use std::time::{Duration, Instant};

use crate::util::*;
use evol_mock::{Faults, MockConfig};

#[test]
fn a_run_writes_every_attempt_with_its_lineage() {
    let mock = Mock::start(MockConfig { equal_rate: 0.2, sorry_rate: 0.1, leak_rate: 0.05, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(40));
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "3"]);
    assert_success(&run);
    assert_complete_lineage(&out, &ids(40), 3);

    let evolved = read_lines(&out.join("evolved.jsonl"));
    let rejected = read_lines(&out.join("rejected.jsonl"));
    assert!(!evolved.is_empty());
    for e in &evolved {
        assert_eq!(e["model"], "mock");
        assert!(e["response"].as_str().unwrap().split_whitespace().count() >= 80);
        assert!(e["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert!(!e["instruction"].as_str().unwrap().to_lowercase().contains("rewritten prompt"));
    }
    // The simulator's faults show up as the rules that catch them.
    let reasons: std::collections::BTreeSet<&str> = rejected.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains("no_information_gain"), "{reasons:?}");
    assert!(reasons.contains("answer_sorry"), "{reasons:?}");
    for r in rejected.iter().filter(|r| r["reason"] == "answer_sorry") {
        assert!(r["response"].as_str().unwrap().starts_with("Sorry"));
    }

    let dataset = read_lines(&out.join("dataset.jsonl"));
    assert_eq!(dataset.len(), evolved.len());
    assert!(dataset.iter().all(|row| row["instruction"].is_string() && row["output"].is_string()));

    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["completed"], true);
    assert_eq!(stats["seeds_done"], 40);
    assert_eq!(stats["total"]["attempted"], 120);
    assert_eq!(stats["total"]["accepted"].as_u64().unwrap() as usize, evolved.len());
    let rejected_sum: u64 = stats["total"]["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(rejected_sum as usize, rejected.len());
    assert_eq!(stats["total"]["requests"].as_u64().unwrap(), mock.stats().requests);
    let per_round: u64 = (1..=3).map(|r| stats["rounds"][r.to_string()]["attempted"].as_u64().unwrap()).sum();
    assert_eq!(per_round, 120);
    let per_op: u64 = stats["operations"].as_object().unwrap().values().map(|t| t["attempted"].as_u64().unwrap()).sum();
    assert_eq!(per_op, 120);
    assert!(stats["rounds"]["1"]["wall_seconds"].as_f64().unwrap() > 0.0);
    // The file is the library's typed report, and reads back as it whole.
    let typed = evol::results::RunReport::read(&out).unwrap().expect("written");
    assert_eq!(typed.run.rounds[&2].attempted, stats["rounds"]["2"]["attempted"].as_u64().unwrap());
    let text = std::fs::read_to_string(out.join("stats.json")).unwrap();
    assert_eq!(format!("{}\n", serde_json::to_string_pretty(&typed).unwrap()), text, "written again byte for byte");
}

#[test]
fn faults_are_retried_and_no_seed_is_lost() {
    // 30% of requests fail: 429 with Retry-After, 500, malformed JSON, cut
    // connections, and replies slower than --timeout.
    let faults = Faults {
        rate_429: 0.07,
        rate_500: 0.06,
        malformed: 0.06,
        drop: 0.06,
        slow: 0.05,
        slow_ms: 1_500,
        retry_after_secs: 0.01,
    };
    let mock = Mock::start(MockConfig { faults, latency_median_ms: 2.0, latency_sigma: 0.5, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(60));
    let out = dir.path("out");
    let run = evol_run(
        &mock.url,
        &seeds,
        &out,
        &["--model", "mock", "--rounds", "2", "--max-retries", "12", "--concurrency", "16", "--timeout", "0.4"],
    );
    assert_success(&run);
    assert_complete_lineage(&out, &ids(60), 2);
    let stats = read_json(&out.join("stats.json"));
    let server = mock.stats();
    assert_eq!(stats["total"]["failures"], 0, "{}", stderr(&run));
    assert!(server.faults > 20, "{server:?}");
    // Every injected fault cost exactly one retry.
    assert_eq!(stats["total"]["retries"].as_u64().unwrap(), server.faults);
    assert_eq!(stats["total"]["requests"].as_u64().unwrap() + server.faults, server.requests);
}

#[test]
fn exhausted_requests_are_recorded_failures_not_crashes() {
    let faults = Faults { rate_500: 0.5, ..Faults::default() };
    let mock = Mock::start(MockConfig { faults, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "2", "--max-retries", "0"]);
    assert_success(&run);
    assert_complete_lineage(&out, &ids(30), 2);
    let rejected = read_lines(&out.join("rejected.jsonl"));
    let failed: Vec<_> = rejected.iter().filter(|r| r["reason"] == "request_failed").collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|r| r["detail"].as_str().unwrap().contains("HTTP 500")));
    let stats = read_json(&out.join("stats.json"));
    assert!(stats["total"]["failures"].as_u64().unwrap() >= failed.len() as u64);
}

#[test]
fn same_inputs_same_outputs_whatever_the_concurrency() {
    let mock = Mock::start(MockConfig { latency_median_ms: 1.0, latency_sigma: 1.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(25));
    let run = |name: &str, concurrency: &str| {
        let out = dir.path(name);
        let r = evol_run(
            &mock.url,
            &seeds,
            &out,
            &["--model", "mock", "--rounds", "3", "--seed", "7", "--concurrency", concurrency, "--include-seeds"],
        );
        assert_success(&r);
        let mut evolved: Vec<String> = read_lines(&out.join("evolved.jsonl")).iter().map(|v| v.to_string()).collect();
        evolved.sort();
        (evolved, std::fs::read_to_string(out.join("dataset.jsonl")).unwrap())
    };
    let (a_evolved, a_dataset) = run("a", "1");
    let (b_evolved, b_dataset) = run("b", "64");
    assert_eq!(a_evolved, b_evolved);
    assert_eq!(a_dataset, b_dataset, "the dataset is byte-identical");

    let out = dir.path("c");
    let r = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "3", "--seed", "8", "--include-seeds"]);
    assert_success(&r);
    assert_ne!(std::fs::read_to_string(out.join("dataset.jsonl")).unwrap(), a_dataset, "another --seed, other choices");
}

#[test]
fn no_answer_skips_answers_and_include_seeds_adds_them() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.txt", "What is rain?\nWhy is the sky blue?\n\nName three rivers.\n");
    let out = dir.path("out");
    let run =
        evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "2", "--no-answer", "--include-seeds"]);
    assert_success(&run);
    assert_eq!(mock.stats().answer, 0);
    let evolved = read_lines(&out.join("evolved.jsonl"));
    assert!(evolved.iter().all(|e| e["response"].is_null()));
    let dataset = read_lines(&out.join("dataset.jsonl"));
    assert_eq!(dataset.len(), evolved.len() + 3);
    assert!(dataset.iter().any(|r| r["instruction"] == "Why is the sky blue?" && r["output"].is_null()));
    assert!(!out.join("seeds.jsonl").exists());

    let out = dir.path("answered");
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "1", "--include-seeds"]);
    assert_success(&run);
    let answers = read_lines(&out.join("seeds.jsonl"));
    assert_eq!(answers.len(), 3);
    let dataset = read_lines(&out.join("dataset.jsonl"));
    // A seed's answer passes the answer rules: a refusal leaves it out,
    // counted.
    let sorry = answers.iter().filter(|a| a["rejected"].is_string()).count();
    assert!(answers
        .iter()
        .filter(|a| a["rejected"].is_string())
        .all(|a| a["response"].as_str().unwrap().starts_with("Sorry")));
    assert_eq!(read_json(&out.join("stats.json"))["dataset"]["seeds_left_out"], sorry as u64);
    let seed_rows: Vec<_> = dataset
        .iter()
        .filter(|r| ["Why is the sky blue?", "Name three rivers."].contains(&r["instruction"].as_str().unwrap_or("")))
        .collect();
    assert!(seed_rows.iter().all(|r| r["output"].as_str().unwrap().len() > 100), "{seed_rows:?}");
}

#[test]
fn switched_off_rules_keep_what_they_would_reject() {
    let mock = Mock::start(MockConfig { equal_rate: 1.0, sorry_rate: 1.0, leak_rate: 1.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(5));
    let out = dir.path("strict");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--rounds", "1"]));
    assert_eq!(read_lines(&out.join("evolved.jsonl")).len(), 0);
    assert!(read_lines(&out.join("rejected.jsonl")).iter().all(|r| r["reason"] == "copied_prompt_words"));

    let out = dir.path("lenient");
    assert_success(&evol_run(
        &mock.url,
        &seeds,
        &out,
        &["--rounds", "1", "--no-copy-check", "--no-equality-check", "--no-sorry-check"],
    ));
    assert_eq!(read_lines(&out.join("evolved.jsonl")).len(), 5);
}

#[test]
fn hostile_seed_text_is_kept_literally() {
    let mock = Mock::start(MockConfig { equal_rate: 0.0, sorry_rate: 0.0, leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let hostile = "Print {{ name }} and {% raw %}{0}{% endraw %} with %s and ${HOME} in {\"a\": [1]}";
    let seeds =
        dir.write("seeds.jsonl", &(serde_json::json!({ "id": "h", "instruction": hostile }).to_string() + "\n"));
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--rounds", "1", "--ops", "deepen"]));
    let evolved = read_lines(&out.join("evolved.jsonl"));
    // The simulator echoes the given instruction; it must arrive unrendered.
    assert!(evolved[0]["instruction"].as_str().unwrap().starts_with(hostile), "{}", evolved[0]["instruction"]);
}

#[test]
fn malformed_seed_files_name_file_and_line() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("bad.jsonl", "{\"instruction\":\"ok\"}\n{\"instruction\": [1]}\n{broken\n{\"instruction\":\"\"}\n{\"instruction\":\"fine\"}\n");
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &[]);
    assert_eq!(run.status.code(), Some(1));
    let err = stderr(&run);
    assert!(err.contains("bad.jsonl` line 2: `instruction` must be a string, found an array"), "{err}");
    assert_eq!(mock.stats().requests, 0, "nothing is sent before the input is valid");

    let run = evol_run(&mock.url, &seeds, &out, &["--skip-invalid", "--rounds", "1"]);
    assert_success(&run);
    let err = stderr(&run);
    assert!(err.contains("line 3: not valid JSON"), "{err}");
    assert!(err.contains("line 4: empty instruction; skipped"), "{err}");
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["input"]["skipped_invalid"], 2);
    assert_eq!(stats["input"]["skipped_empty"], 1);
    assert_eq!(stats["seeds"], 2);
}

#[test]
fn an_unreachable_server_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(3));
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{port}/v1");
    let run = evol_run(&url, &seeds, &dir.path("out"), &["--model", "m"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("cannot reach the server"), "{}", stderr(&run));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(1));
    let s = seeds.to_str().unwrap();
    let o = dir.path("out");
    let o = o.to_str().unwrap();
    let no_endpoints = dir.write("prices.toml", "[prices]\nm = { prompt = 1.0, completion = 2.0 }\n");
    let negative = dir.write(
        "negative.toml",
        "[[endpoints]]\nurl = \"http://127.0.0.1:9/v1\"\n[prices]\nm = { prompt = -1.0, completion = 2.0 }\n",
    );
    let e = "http://127.0.0.1:9/v1";
    for (args, needle) in [
        (vec!["run", s, "-o", o, "--config", no_endpoints.to_str().unwrap()], "names no [[endpoints]]"),
        (vec!["run", s, "-o", o, "--config", negative.to_str().unwrap()], "prompt must be zero or a positive"),
        (vec!["run", s, "-o", o, "--endpoint", e, "--rounds", "0"], "--rounds must be between 1"),
        (vec!["run", s, "-o", o, "--dry-run", "--endpoint", e, "--rounds", "1000000000"], "--rounds must be"),
        (vec!["run", s, "-o", o, "--endpoint", e, "--batch-api", "--batch-attempts", "0"], "--batch-attempts"),
        (vec!["run", s, "-o", o, "--endpoint", e, "--timeout", "1e20"], "--timeout must be"),
        (vec!["run", s, "-o", o, "--endpoint", e, "--max-retry-wait", "1e20"], "--max-retry-wait must be"),
        (vec!["run", s, "-o", o, "--endpoint", e, "--batch-api", "--batch-wave", "1e20"], "--batch-wave must be"),
        (vec!["run", s, "-o", o, "--endpoint", e, "--stall-timeout", "0"], "--stall-timeout must be"),
        (vec!["run", s, "-o", o, "--answer-model", "x"], "need --endpoint"),
        (
            vec!["run", s, "-o", o, "--endpoint", "http://127.0.0.1:9/v1", "--ops", "deepen,fly"],
            "unknown operation `fly`",
        ),
        (vec!["run", s, "-o", o, "--endpoint", "http://127.0.0.1:9/v1", "--top-p", "0"], "--top-p"),
        (vec!["run", s, "-o", o, "--endpoint", "http://127.0.0.1:9/v1", "--concurrency", "0"], "--concurrency"),
        (vec!["run", s, "-o", o, "--endpoint", "localhost:8000"], "invalid endpoint"),
        (
            vec!["run", s, "-o", o, "--endpoint", "http://127.0.0.1:9/v1", "--api-key-env", "EVOL_TEST_UNSET_KEY"],
            "EVOL_TEST_UNSET_KEY",
        ),
        (vec!["run", s], "--output"),
        (vec!["run", s, "-o", o, "--threads", "0"], "--threads"),
        (vec!["run", s, "-o", o, "--parallel", "0"], "--parallel"),
        (vec!["serve", "--batch-size", "0"], "--batch-size"),
        (vec!["run", s, "-o", o, "--judge-max-tokens", "0"], "--judge-max-tokens"),
        (vec!["fly"], "unrecognized subcommand"),
    ] {
        let run = evol(&args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", stderr(&run));
        assert!(stderr(&run).contains(needle), "{args:?}: {}", stderr(&run));
    }
    assert!(!dir.path("out").exists(), "a usage error touches no output directory");
}

#[test]
fn api_keys_never_show_up() {
    let key = "sk-evol-test-5f3a9c";
    let mock = Mock::start(MockConfig { api_key: Some(key.into()), ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(4));
    let out = dir.path("out");
    let args = ["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url, "--rounds", "1"];

    let wrong = evol_env(&args, &[("OPENAI_API_KEY", "sk-wrong-key-123")]);
    assert_eq!(wrong.status.code(), Some(1));
    let err = stderr(&wrong);
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!err.contains("sk-wrong-key-123"), "{err}");

    let args = [&args[..], &["--fresh", "--api-key-env", "MY_KEY"]].concat();
    let ok = evol_env(&args, &[("MY_KEY", key)]);
    assert_success(&ok);
    assert!(!stderr(&ok).contains(key));
    for file in ["evolved.jsonl", "rejected.jsonl", "dataset.jsonl", "stats.json"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(!text.contains(key), "{file} holds the key");
    }
    assert_eq!(read_lines(&out.join("evolved.jsonl")).len() + read_lines(&out.join("rejected.jsonl")).len(), 4);
}

#[test]
fn an_unknown_model_is_found_out_before_any_work() {
    let mock = Mock::start(MockConfig { models: vec!["served".into()], ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(4));
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "missing"]);
    assert_eq!(run.status.code(), Some(1));
    let err = stderr(&run);
    assert!(err.contains("does not list the model `missing`"), "{err}");
    assert!(err.contains("model `missing` does not exist"), "{err}");
    assert!(!out.exists(), "found out by a trial call before any work: nothing left behind");
    let judge = evol_run(&mock.url, &seeds, &out, &["--model", "served", "--judge-model", "missing"]);
    assert_eq!(judge.status.code(), Some(1));
    assert!(stderr(&judge).contains("does not list the model `missing`"), "{}", stderr(&judge));
    assert!(!out.exists());

    // A model the server serves without listing it (an alias) is used.
    let aliased = Mock::start(MockConfig::default());
    let run = evol_run(&aliased.url, &seeds, &out, &["--model", "any-alias", "--rounds", "1"]);
    assert_success(&run);

    // With several models served and none named, the user must choose.
    let mock = Mock::start(MockConfig { models: vec!["a".into(), "b".into()], ..MockConfig::default() });
    let run = evol_run(&mock.url, &seeds, &dir.path("o2"), &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("offers: `a`, `b`"), "{}", stderr(&run));
}

#[test]
fn an_output_directory_without_a_journal_needs_fresh() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(2));
    let out = dir.path("out");
    let args = ["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url, "--rounds", "1"];
    assert_success(&evol(&args));
    std::fs::remove_file(out.join("journal.sqlite")).unwrap();
    let again = evol(&args);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("pass --fresh"), "{}", stderr(&again));
    assert_success(&evol(&[&args[..], &["--fresh"]].concat()));
    assert_eq!(read_lines(&out.join("evolved.jsonl")).len() + read_lines(&out.join("rejected.jsonl")).len(), 2);
}

#[test]
fn templates_can_be_exported_and_overridden() {
    let mock = Mock::start(MockConfig { leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let tdir = dir.path("templates");
    let export = evol(&["templates", tdir.to_str().unwrap()]);
    assert_success(&export);
    assert!(tdir.join("in_depth.txt").exists() && !tdir.join("stopwords.txt").exists());
    assert_eq!(evol(&["templates", tdir.to_str().unwrap()]).status.code(), Some(1), "no silent overwrite");

    std::fs::write(
        tdir.join("in_breadth.txt"),
        "Invent a rarer task like this one.\n#Given Prompt#:\n{{ instruction }}\n#Created Prompt#:\n",
    )
    .unwrap();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(3));
    let out = dir.path("out");
    let run = evol_run(
        &mock.url,
        &seeds,
        &out,
        &["--rounds", "1", "--ops", "breadth", "--templates", tdir.to_str().unwrap()],
    );
    assert_success(&run);
    assert_eq!(mock.stats().rewrite, 3);

    std::fs::write(tdir.join("in_breadht.txt"), "typo").unwrap();
    let run = evol_run(&mock.url, &seeds, &dir.path("o2"), &["--templates", tdir.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("unknown template file `in_breadht.txt`"), "{}", stderr(&run));
}

#[test]
fn ctrl_c_stops_the_run_and_keeps_what_was_decided() {
    stop_with_signal("INT");
}

#[test]
fn sigterm_stops_the_run_as_ctrl_c_does() {
    // What `docker stop`, Kubernetes, systemd and `timeout` send.
    stop_with_signal("TERM");
}

fn stop_with_signal(signal: &str) {
    let mock = Mock::start(MockConfig { latency_median_ms: 300.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(20));
    let out = dir.path("out");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
        .args([
            "run",
            seeds.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--endpoint",
            &mock.url,
            "--model",
            "mock",
            "--rounds",
            "10",
        ])
        .env_remove("OPENAI_API_KEY")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until records are being written, then interrupt.
    let started = Instant::now();
    while std::fs::metadata(out.join("evolved.jsonl")).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no record was written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill =
        std::process::Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert_eq!(read_json(&out.join("stats.json"))["state"], "interrupted");
    assert!(stderr(&output).contains("interrupted"), "{}", stderr(&output));
    assert!(stderr(&output).contains("press Ctrl-C again to abort"), "{}", stderr(&output));
    assert!(stderr(&output).contains("rerun the same command to resume"), "{}", stderr(&output));
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["completed"], false);
    let evolved = read_lines(&out.join("evolved.jsonl"));
    assert!(!evolved.is_empty());
    assert_eq!(read_lines(&out.join("dataset.jsonl")).len(), evolved.len());
    let committed = mock.stats().completed;

    // Rerunning finishes the job from where it stopped.
    let resumed = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "10", "--quiet"]);
    assert_success(&resumed);
    assert_complete_lineage(&out, &(0..20).map(|i| format!("s{i}")).collect::<Vec<_>>(), 10);
    assert_eq!(read_json(&out.join("stats.json"))["replayed_calls"].as_u64().unwrap(), committed);
}

/// Files that must come out identical however often a run was killed.
const EXPORT: [&str; 4] = ["evolved.jsonl", "rejected.jsonl", "seeds.jsonl", "dataset.jsonl"];

#[test]
fn a_run_killed_again_and_again_ends_identical_to_an_uninterrupted_one() {
    let mock = Mock::start(MockConfig { latency_median_ms: 10.0, latency_sigma: 0.5, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(40));
    let flags = ["--model", "mock", "--rounds", "3", "--concurrency", "8", "--include-seeds", "--quiet"];

    let reference = dir.path("reference");
    assert_success(&evol_run(&mock.url, &seeds, &reference, &flags));
    let requests_uninterrupted = mock.stats().requests;

    let out = dir.path("killed");
    let mut state: u64 = 0x2545F4914F6CDD1D;
    for _ in 0..20 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
            .args(["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url])
            .args(flags)
            .env_remove("OPENAI_API_KEY")
            .spawn()
            .unwrap();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(30 + state % 300));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
    }
    let last = evol_run(&mock.url, &seeds, &out, &flags);
    assert_success(&last);

    for file in EXPORT {
        let a = std::fs::read_to_string(reference.join(file)).unwrap();
        let b = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(a == b, "{file} differs after kills and resumes");
    }
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["completed"], true);
    assert_eq!(stats["total"]["requests"], read_json(&reference.join("stats.json"))["total"]["requests"]);
    // Only calls in flight at a kill are sent twice: at most 8 per kill.
    let sent_for_killed_run = mock.stats().requests - requests_uninterrupted;
    assert!(
        sent_for_killed_run <= requests_uninterrupted + 20 * 8,
        "{sent_for_killed_run} vs {requests_uninterrupted}"
    );
}

#[test]
fn resuming_sends_nothing_twice_and_refuses_other_settings() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(10));
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--rounds", "2", "--seed", "3"]));
    let first = mock.stats().requests;
    let evolved = std::fs::read_to_string(out.join("evolved.jsonl")).unwrap();

    let again = evol_run(&mock.url, &seeds, &out, &["--rounds", "2", "--seed", "3", "--concurrency", "3"]);
    assert_success(&again);
    assert_eq!(mock.stats().requests, first, "a finished run is replayed, not re-sent");
    assert!(stderr(&again).contains("calls are already committed"), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(out.join("evolved.jsonl")).unwrap(), evolved);
    assert_eq!(read_json(&out.join("stats.json"))["replayed_calls"].as_u64().unwrap(), first);

    let other = evol_run(&mock.url, &seeds, &out, &["--rounds", "3", "--seed", "4"]);
    assert_eq!(other.status.code(), Some(1));
    let err = stderr(&other);
    assert!(err.contains("changed: rounds, run_seed"), "{err}");
    assert!(err.contains("--fresh"), "{err}");

    assert_success(&evol_run(&mock.url, &seeds, &out, &["--rounds", "3", "--seed", "4", "--fresh"]));
}

#[test]
fn judge_verdicts_are_counted_and_a_failing_judge_is_warned_about() {
    let mock = Mock::start(MockConfig { equal_rate: 0.3, sorry_rate: 0.0, leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(20));

    // A working judge: every reply is a verdict, and no warning.
    let out = dir.path("clear");
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "2", "--no-answer"]);
    assert_success(&run);
    let stats = read_json(&out.join("stats.json"));
    let judge = &stats["judge"];
    assert_eq!(judge["unclear"], 0, "{judge}");
    let rejected = stats["total"]["rejected"]["no_information_gain"].as_u64().unwrap_or(0);
    assert_eq!(judge["equal"].as_u64().unwrap(), rejected, "{judge}");
    assert!(judge["not_equal"].as_u64().unwrap() > 0, "{judge}");
    assert!(!stderr(&run).contains("equality questions"), "{}", stderr(&run));

    // A judge cut short (the simulator honours max_tokens: "Not Equal" is
    // cut to "Not"): unclear replies pass, are counted, and are warned about.
    let mock = Mock::start(MockConfig { equal_rate: 0.0, sorry_rate: 0.0, leak_rate: 0.0, ..MockConfig::default() });
    let out = dir.path("cut");
    let run = evol_run(
        &mock.url,
        &seeds,
        &out,
        &["--model", "mock", "--rounds", "2", "--no-answer", "--judge-max-tokens", "2"],
    );
    assert_success(&run);
    let stats = read_json(&out.join("stats.json"));
    let judge = &stats["judge"];
    assert_eq!(judge["equal"], 0, "{judge}");
    assert_eq!(judge["not_equal"], 0, "{judge}");
    assert!(judge["unclear"].as_u64().unwrap() >= 20, "{judge}");
    assert_eq!(stats["settings"]["judge_sampling"]["max_tokens"], 2);
    let err = stderr(&run);
    assert!(err.contains(&format!("to {} of {} equality questions", judge["unclear"], judge["unclear"])), "{err}");
    assert!(err.contains("--judge-max-tokens"), "{err}");
}

#[test]
fn a_run_that_never_started_leaves_nothing_behind() {
    // The first attempt fails to reach its server, so no call is made: no
    // output directory is left. One killed before its first call leaves
    // its journal, and the next command, with another seed file, must
    // evolve that file's seeds, not the killed one's.
    let dir = Dir::new();
    let first = dir.write("first.jsonl", &seeds_jsonl(3));
    let out = dir.path("out");
    let failed = evol_run("http://127.0.0.1:9/v1", &first, &out, &["--model", "mock", "--rounds", "1"]);
    assert!(!failed.status.success());
    assert!(!out.exists(), "a run that never started leaves no directory");

    // A server that accepts connections and never answers: the start-up
    // check hangs, and the run is killed there.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", silent.local_addr().unwrap());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["run", first.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &url, "--model", "mock"])
        .args(["--timeout", "60", "--quiet"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("journal.sqlite").exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(out.join("journal.sqlite").is_file(), "the killed attempt left its journal");

    let mock = Mock::start(MockConfig::default());
    let other: String =
        (0..2).map(|i| format!("{{\"id\": \"other{i}\", \"instruction\": \"Explain topic {i}.\"}}\n")).collect();
    let second = dir.write("second.jsonl", &other);
    let run = evol_run(&mock.url, &second, &out, &["--model", "mock", "--rounds", "1"]);
    assert_success(&run);
    assert_complete_lineage(&out, &["other0".to_string(), "other1".to_string()], 1);
    assert_eq!(read_json(&out.join("stats.json"))["seeds"], 2);

    // Killed later: seeds loaded, settings recorded, calls sent but none
    // answered (the server stalls every body). Still nothing began: the
    // next command starts afresh, with its own seeds and settings.
    let faults = Faults { slow: 1.0, slow_ms: 600_000, ..MockConfig::default().faults };
    let stalling = Mock::start(MockConfig { faults, models: vec!["mock".into()], ..MockConfig::default() });
    let out = dir.path("out2");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["run", first.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &stalling.url])
        .args(["--model", "mock", "--rounds", "2", "--quiet"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while stalling.stats().requests == 0 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run = evol_run(&mock.url, &second, &out, &["--model", "mock", "--rounds", "1"]);
    assert_success(&run);
    assert_complete_lineage(&out, &["other0".to_string(), "other1".to_string()], 1);
}

#[test]
fn a_dead_server_stops_the_run_cleanly_and_a_rerun_resumes_it() {
    let mock = Mock::start(MockConfig { latency_median_ms: 100.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(200));
    let out = dir.path("out");
    let args = ["--model", "mock", "--rounds", "3", "--concurrency", "16", "--stall-timeout", "4"];
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url])
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::metadata(out.join("evolved.jsonl")).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no record was written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = mock.url.clone();
    mock.kill();
    let killed = Instant::now();
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{err}");
    assert!(killed.elapsed() < Duration::from_secs(40), "stopped after the stall timeout: {:?}", killed.elapsed());
    assert!(err.contains(&format!("the server `{url}` is out")), "announced when it went out: {err}");
    assert!(err.contains("calls waiting for a server are left for the rerun"), "{err}");
    assert!(err.contains("no call succeeded for 4.0s") && err.contains("rerun the same command"), "{err}");
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["state"], "interrupted");
    assert_eq!(stats["total"]["failures"], 0, "waiting calls are not failures");
    assert!(read_lines(&out.join("rejected.jsonl")).iter().all(|r| r["reason"] != "request_failed"));

    // A server is back (on another port): the rerun finishes the job.
    let mock = Mock::start(MockConfig::default());
    let resumed = evol_run(&mock.url, &seeds, &out, &[&args[..], &["--quiet"]].concat());
    assert_success(&resumed);
    assert_complete_lineage(&out, &ids(200), 3);
}

#[test]
fn a_server_that_fails_everything_fails_its_items_in_bounded_time() {
    let faults = Faults { rate_500: 1.0, ..MockConfig::default().faults };
    let mock = Mock::start(MockConfig { faults, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(10));
    let out = dir.path("out");
    let started = Instant::now();
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "1", "--max-retries", "2"]);
    // Every call failed: nothing was produced, and the exit code says so.
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
    assert!(stderr(&run).contains("nothing was produced: 0 dataset rows from 10 seeds"), "{}", stderr(&run));
    assert_eq!(read_json(&out.join("stats.json"))["state"], "completed", "its files are written");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    let rejected = read_lines(&out.join("rejected.jsonl"));
    assert_eq!(rejected.len(), 10);
    assert!(rejected.iter().all(|r| r["reason"] == "request_failed"), "{rejected:?}");
    assert!(mock.stats().requests < 40, "the calls waiting on the breaker send nothing: {}", mock.stats().requests);
}

#[test]
fn secrets_echoed_by_a_server_and_escape_sequences_never_reach_the_user() {
    // A careless proxy: its error bodies quote the Authorization header and
    // carry terminal escapes (clear the screen, set the window title).
    let faults = Faults { rate_500: 0.5, ..MockConfig::default().faults };
    let mock = Mock::start(MockConfig { faults, hostile_errors: true, ..MockConfig::default() });
    let key = "sk-evol-echoed-7c1d2e";
    let password = "hunter2-pass-9x";
    let url = mock.url.replace("http://", &format!("http://alice:{password}@"));
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(12));
    let out = dir.path("out");
    let run = evol_env(
        &[
            "run",
            seeds.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--endpoint",
            &url,
            "--model",
            "mock",
            "--rounds",
            "2",
            "--max-retries",
            "0",
            "--concurrency",
            "2",
        ],
        &[("OPENAI_API_KEY", key)],
    );
    assert!(run.status.code() == Some(0) || run.status.code() == Some(5), "{}", stderr(&run));
    let err = stderr(&run);
    let rejected = std::fs::read_to_string(out.join("rejected.jsonl")).unwrap();
    assert!(rejected.contains("request had authorization: Basic <redacted>"), "the echo happened: {rejected}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "no escape reaches the terminal: {err:?}");
    for (name, text) in [
        ("stderr", err.clone()),
        ("rejected.jsonl", rejected),
        ("stats.json", std::fs::read_to_string(out.join("stats.json")).unwrap()),
        ("journal", String::from_utf8_lossy(&std::fs::read(out.join("journal.sqlite")).unwrap()).into_owned()),
    ] {
        assert!(!text.contains(key), "{name} holds the key");
        assert!(!text.contains(password), "{name} holds the URL's password");
        assert!(!text.contains("YWxpY2U6aHVudGVyMi1wYXNzLTl4"), "{name} holds the URL's credentials as Basic");
    }
    assert!(std::fs::read_to_string(out.join("stats.json")).unwrap().contains("http://<redacted>@127.0.0.1"));

    // Without credentials in the URL, the key goes as a bearer token.
    let args = ["--model", "mock", "--rounds", "1", "--max-retries", "0", "--fresh"];
    let out = dir.path("bearer");
    let run = evol_env(
        &[&["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url], &args[..]].concat(),
        &[("OPENAI_API_KEY", key)],
    );
    // Every call failed: nothing was produced (exit 5), the files say why.
    assert!(run.status.code() == Some(0) || run.status.code() == Some(5), "{}", stderr(&run));
    let rejected = std::fs::read_to_string(out.join("rejected.jsonl")).unwrap();
    assert!(rejected.contains("request had authorization: Bearer <redacted>"), "{rejected}");
    assert!(!rejected.contains(key) && !stderr(&run).contains(key));
}

#[test]
fn limit_reads_no_further_than_it_needs() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &(seeds_jsonl(5) + "this line is not JSON\n"));
    let out = dir.path("out");
    let broken = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "1"]);
    assert_eq!(broken.status.code(), Some(1), "the whole file has a broken line 6: {}", stderr(&broken));
    assert!(stderr(&broken).contains("line 6"), "{}", stderr(&broken));
    let limited = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "1", "--limit", "5"]);
    assert_success(&limited);
    assert_eq!(read_json(&out.join("stats.json"))["input"]["seeds"], 5);
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    // `evol models list | head -0`: the reader is gone before evol writes
    // (the pipe's read end is closed before the process starts).
    for args in [&["models", "list"][..], &["templates", "--help"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&output);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(output.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn quiet_shows_only_errors() {
    let mock = Mock::start(MockConfig { equal_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &(seeds_jsonl(6) + "not json\n"));
    let out = dir.path("out");
    let flags = ["--model", "mock", "--rounds", "2", "--skip-invalid", "--max-requests", "4", "--max-cost", "1"];
    let capped = evol_run(&mock.url, &seeds, &out, &[&flags[..], &["--quiet"]].concat());
    assert_eq!(capped.status.code(), Some(3), "{}", stderr(&capped));
    let err = stderr(&capped);
    assert_eq!(err.lines().count(), 1, "only the error: {err}");
    assert!(err.starts_with("error: stopped: the request cap"), "{err}");
    // Without --quiet, the same run warns and sums up.
    let loud = evol_run(&mock.url, &seeds, &dir.path("loud"), &flags);
    let err = stderr(&loud);
    assert!(err.contains("warning:") && err.contains("evol: wrote"), "{err}");
}

#[test]
fn every_paid_request_stays_counted_after_retry_failed() {
    let faults = Faults { rate_500: 0.3, ..MockConfig::default().faults };
    let failing = Mock::start(MockConfig { faults, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    // Without the near-duplicate check: a step redone with a new parent can
    // stop at that check before calls the first attempt made and paid
    // (they stay in the journal's totals, not in this attempt's), which
    // makes the margin below depend on the simulator's draws.
    let flags = ["--model", "mock", "--rounds", "3", "--max-retries", "0", "--quiet", "--no-dedup"];
    assert_success(&evol_run(&failing.url, &seeds, &out, &flags));
    let first = failing.stats().requests;
    assert!(read_json(&out.join("stats.json"))["total"]["failures"].as_u64().unwrap() > 0);
    let healthy = Mock::start(MockConfig::default());
    assert_success(&evol_run(&healthy.url, &seeds, &out, &[&flags[..], &["--retry-failed"]].concat()));
    let paid = first + healthy.stats().requests;
    let stats = read_json(&out.join("stats.json"));
    let journal = &stats["journal"];
    assert_eq!(journal["calls"].as_u64().unwrap() + journal["retries"].as_u64().unwrap(), paid);
    let total = &stats["total"];
    let counted = total["requests"].as_u64().unwrap() + total["retries"].as_u64().unwrap();
    assert!(
        counted <= paid && counted + 5 >= paid,
        "this attempt counts the redone calls' earlier attempts: {counted} of {paid}"
    );
    let status = evol(&["status", "--json", out.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["calls"], *journal, "evol status and stats.json agree");
}

#[test]
fn reasoning_traces_are_kept_apart_in_every_shape_a_server_sends() {
    use evol_mock::TraceShape;
    for shape in [TraceShape::Field, TraceShape::Inline, TraceShape::Opened] {
        let config = MockConfig {
            trace: Some(shape),
            equal_rate: 0.0,
            sorry_rate: 0.0,
            leak_rate: 0.0,
            ..MockConfig::default()
        };
        let mock = Mock::start(config);
        let dir = Dir::new();
        let seeds = dir.write("seeds.jsonl", &seeds_jsonl(12));
        let out = dir.path("out");
        let args = ["--model", "r1", "--rounds", "2", "--include-seeds"];
        let run = evol_run(&mock.url, &seeds, &out, &args);
        assert_success(&run);
        let evolved = read_lines(&out.join("evolved.jsonl"));
        let rejected = read_lines(&out.join("rejected.jsonl"));
        // The traces hold "rewritten prompt": had one leaked into an
        // instruction, the copied-prompt rule would have rejected it.
        assert!(rejected.iter().all(|r| r["reason"] != "copied_prompt_words"), "{shape:?}: {rejected:?}");
        assert!(evolved.len() >= 20, "{shape:?}: {} accepted, {rejected:?}", evolved.len());
        for e in &evolved {
            let (instruction, answer) = (e["instruction"].as_str().unwrap(), e["response"].as_str().unwrap());
            for text in [instruction, answer] {
                assert!(!text.contains("think") && !text.contains("Okay, let me"), "{shape:?}: a trace leaked: {text}");
            }
            for trace in ["instruction_reasoning", "response_reasoning"] {
                assert!(e[trace].as_str().is_some_and(|t| t.ends_with('.') && t.len() > 40), "{shape:?}: {e}");
            }
        }
        let seed_answers = read_lines(&out.join("seeds.jsonl"));
        assert!(seed_answers.iter().all(|a| a["response_reasoning"].is_string()), "{shape:?}");
        let stats = read_json(&out.join("stats.json"));
        let (thinking, completion) = (
            stats["total"]["reasoning_tokens"].as_u64().unwrap(),
            stats["total"]["completion_tokens"].as_u64().unwrap(),
        );
        assert!(thinking > 0 && thinking < completion, "{shape:?}: {thinking} of {completion} thinking");

        // The same command again replays every call from the journal, traces
        // and all: the files are written again as they were.
        let before = std::fs::read(out.join("evolved.jsonl")).unwrap();
        assert_success(&evol_run(&mock.url, &seeds, &out, &args));
        assert_eq!(std::fs::read(out.join("evolved.jsonl")).unwrap(), before, "{shape:?}");
    }

    // Exports: the trace inline before the answer, in its own column, or
    // left out; the card says which and how many rows have one.
    let mock = Mock::start(MockConfig { trace: Some(TraceShape::Field), ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(6));
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--model", "r1", "--rounds", "1"]));
    let dataset = read_lines(&out.join("dataset.jsonl"));
    assert!(!dataset.is_empty() && dataset.iter().all(|r| r["output_reasoning"].is_string()));
    let export = |place: &str, to: &str, extra: &[&str]| {
        let target = dir.path(to);
        let mut args = vec!["export", out.to_str().unwrap(), "--to", target.to_str().unwrap(), "--reasoning", place];
        args.extend(extra);
        assert_success(&evol(&args));
        target
    };
    let inline = read_lines(&export("inline", "inline.jsonl", &["--format", "alpaca"]));
    for (row, source) in inline.iter().zip(&dataset) {
        let (trace, answer) = (source["output_reasoning"].as_str().unwrap(), source["output"].as_str().unwrap());
        assert_eq!(row["output"].as_str().unwrap(), format!("<think>\n{trace}\n</think>\n\n{answer}"));
        assert!(row.get("reasoning_content").is_none());
    }
    let field = read_lines(&export("field", "field.jsonl", &["--format", "messages", "--plain"]));
    for (row, source) in field.iter().zip(&dataset) {
        assert_eq!(row["reasoning_content"], source["output_reasoning"], "kept with --plain too");
        assert_eq!(row["messages"][1]["content"], source["output"], "the answer alone");
    }
    let none = read_lines(&export("none", "none.jsonl", &[]));
    assert!(none
        .iter()
        .all(|r| r.get("reasoning_content").is_none() && !r["output"].as_str().unwrap().contains("<think>")));
    let hub = export("field", "hub", &[]);
    let card = std::fs::read_to_string(hub.join("README.md")).unwrap();
    let said =
        format!("Thinking traces: {n} of {n} answers have one, in the `reasoning_content` column", n = dataset.len());
    assert!(card.contains(&said), "{card}");
    // The Hub directory loads with `datasets`, the trace a column of its own.
    let cache = Dir::new();
    let load = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, datasets; t = datasets.load_dataset(sys.argv[1])['train']; print(t.num_rows, 'reasoning_content' in t.column_names, all(r for r in t['reasoning_content']))")
        .arg(&hub)
        .env("HF_HOME", cache.path("hf"))
        .output()
        .expect("python3 runs (the test setup installs datasets)");
    let said = String::from_utf8_lossy(&load.stdout);
    assert_eq!(said.trim(), format!("{} True True", dataset.len()), "{}", String::from_utf8_lossy(&load.stderr));
    let bad = evol(&[
        "export",
        out.join("dataset.jsonl").to_str().unwrap(),
        "--to",
        dir.path("x.jsonl").to_str().unwrap(),
        "--reasoning",
        "inline",
    ]);
    assert_eq!(bad.status.code(), Some(1), "a dataset file's traces are a column already");

    // A token limit that cuts the answers off while they think: each is a
    // truncation with its trace, not an empty answer.
    let mock = Mock::start(MockConfig { trace: Some(TraceShape::Inline), ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(4));
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "r1", "--max-tokens", "2000", "--answer-max-tokens", "8"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let stats = read_json(&out.join("stats.json"));
    assert!(stats["total"]["rejected"]["truncated_answer"].as_u64().unwrap() > 0, "{}", stats["total"]);
    assert_eq!(stats["total"]["accepted"], 0, "no answer was written, so none is kept");
    let rejected = read_lines(&out.join("rejected.jsonl"));
    assert!(rejected.iter().filter(|r| r["reason"] == "truncated_answer").all(|r| r["response_reasoning"].is_string()));
    assert!(rejected.iter().all(|r| r["reason"] != "empty_answer"), "never an empty answer");
}

#[test]
fn evolutions_that_copy_a_benchmark_item_are_rejected_as_contaminated() {
    let mock = Mock::start(MockConfig { equal_rate: 0.0, sorry_rate: 0.0, leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let item = "Explain how a hash map resolves collisions with open addressing and linear probing in detail, with an example.";
    let mut seeds: Vec<serde_json::Value> = vec![serde_json::json!({"instruction": item})];
    seeds.extend(
        (0..10).map(|i| serde_json::json!({"instruction": format!("Describe step {i} of repotting a basil plant.")})),
    );
    let seeds = dir.write("seeds.jsonl", &seeds.iter().map(|v| v.to_string() + "\n").collect::<String>());
    let bench = dir.write("bench.jsonl", &(serde_json::json!({"id": "q1", "question": item}).to_string() + "\n"));
    let out = dir.path("out");
    let args = ["--model", "m", "--rounds", "2", "--include-seeds", "--benchmark", bench.to_str().unwrap()];
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));
    // The seed that is the benchmark item stays out of the dataset, unanswered.
    let seed_answers = read_lines(&out.join("seeds.jsonl"));
    let copy = seed_answers.iter().find(|a| a["id"] == "line-1").unwrap();
    assert_eq!((&copy["rejected"], &copy["response"]), (&"contaminated".into(), &serde_json::Value::Null), "{copy}");
    assert!(copy["detail"].as_str().unwrap().contains("bench.jsonl#q1"), "{copy}");
    assert!(seed_answers.iter().filter(|a| a["id"] != "line-1").all(|a| a["rejected"].is_null()));
    let dataset = read_lines(&out.join("dataset.jsonl"));
    assert!(dataset.iter().all(|r| r["id"] != "line-1") && dataset.iter().any(|r| r["id"] == "line-2"));
    let rejected = read_lines(&out.join("rejected.jsonl"));
    let contaminated: Vec<&serde_json::Value> = rejected.iter().filter(|r| r["reason"] == "contaminated").collect();
    assert!(!contaminated.is_empty(), "{rejected:?}");
    for r in &contaminated {
        assert_eq!(r["seed_id"], "line-1", "only the copy's chain: {r}");
        assert!(r["detail"].as_str().unwrap().contains("bench.jsonl#q1: \"explain how a hash map"), "{r}");
        assert!(r["response"].is_null(), "rejected before it was answered");
    }
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["total"]["rejected"]["contaminated"].as_u64().unwrap() as usize, contaminated.len());
    assert_eq!(stats["settings"]["contamination"]["items"], 1);
    // The check is part of the run's settings: dropping it is a change.
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "m", "--rounds", "2", "--include-seeds"]);
    assert_ne!(run.status.code(), Some(0));
    assert!(stderr(&run).contains("contamination"), "{}", stderr(&run));
}

#[test]
fn k_answers_keep_the_best_scored_give_pairs_and_resume_without_paying_twice() {
    let config = MockConfig { equal_rate: 0.0, sorry_rate: 0.3, leak_rate: 0.0, ..MockConfig::default() };
    let mock = Mock::start(config);
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(10));
    let out = dir.path("out");
    let args = ["--model", "mock", "--rounds", "2", "--answers", "3", "--concurrency", "2"];
    // Stopped by a cap part way, then resumed.
    let mut capped = args.to_vec();
    capped.extend(["--max-requests", "25"]);
    let run = evol_run(&mock.url, &seeds, &out, &capped);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let first = mock.stats().requests;
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));
    let stats = read_json(&out.join("stats.json"));
    let journal = &stats["journal"];
    let paid = journal["calls"].as_u64().unwrap() + journal["retries"].as_u64().unwrap();
    assert_eq!(
        mock.stats().requests,
        paid,
        "the resume sent only what the capped attempt had not ({first} then): {journal}"
    );

    let evolved = read_lines(&out.join("evolved.jsonl"));
    assert!(!evolved.is_empty());
    for e in &evolved {
        let answers = e["answers"].as_array().unwrap();
        assert_eq!(answers.len(), 3, "{e}");
        let kept: Vec<_> = answers.iter().filter(|a| a["kept"] == true).collect();
        assert_eq!(kept.len(), 1, "{e}");
        assert_eq!(kept[0]["response"], e["response"]);
        assert!(kept[0]["rejected"].is_null());
        // The highest score among the usable answers is kept.
        let best =
            answers.iter().filter(|a| a["rejected"].is_null()).filter_map(|a| a["score"].as_f64()).fold(0.0, f64::max);
        if let Some(score) = kept[0]["score"].as_f64() {
            assert_eq!(score, best, "{e}");
        }
        for a in answers.iter().filter(|a| !a["rejected"].is_null()) {
            assert_eq!(a["rejected"], "answer_sorry", "{e}");
            assert!(a["score"].is_null(), "only usable answers are ranked");
        }
    }
    let b = &stats["best_of"];
    assert_eq!(b["answers"].as_u64().unwrap(), 3 * b["instructions"].as_u64().unwrap());
    assert!(b["rejected"]["answer_sorry"].as_u64().unwrap() > 0, "{b}");
    let rejected = read_lines(&out.join("rejected.jsonl"));
    for r in rejected.iter().filter(|r| r["reason"] == "answer_sorry") {
        assert_eq!(r["answers"].as_array().unwrap().len(), 3, "none of three kept: {r}");
    }

    // The pairs: one per dataset row with a worse answer, in TRL's layout.
    let pairs = read_lines(&out.join("pairs.jsonl"));
    assert_eq!(pairs.len() as u64, stats["dataset"]["pairs"].as_u64().unwrap());
    assert!(!pairs.is_empty());
    let dataset = read_lines(&out.join("dataset.jsonl"));
    for p in &pairs {
        let row = dataset.iter().find(|r| r["id"] == p["id"]).expect("a pair of a dataset row");
        assert_eq!((&p["prompt"], &p["chosen"]), (&row["instruction"], &row["output"]));
        assert_ne!(p["chosen"], p["rejected"]);
        assert!(p["rejected_reason"] == "answer_sorry" || p["margin"].as_f64().unwrap() > 0.0, "{p}");
    }
    let parquet = dir.path("dpo.parquet");
    let export = evol(&["export", out.to_str().unwrap(), "--format", "dpo", "--to", parquet.to_str().unwrap()]);
    assert_success(&export);
    let read = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(t.num_rows, ','.join(t.column_names), t.schema.field('margin').type)")
        .arg(&parquet)
        .output()
        .expect("python3 runs (the test setup installs pyarrow)");
    let said = String::from_utf8_lossy(&read.stdout);
    assert_eq!(
        said.trim(),
        format!(
            "{} prompt,chosen,rejected,chosen_score,id,margin,model,rejected_reason,rejected_score double",
            pairs.len()
        ),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );

    let hub = dir.path("hub");
    assert_success(&evol(&["export", out.to_str().unwrap(), "--to", hub.to_str().unwrap()]));
    let card = std::fs::read_to_string(hub.join("README.md")).unwrap();
    let said = "answered 3 times and the row keeps the one the score model ranked highest";
    assert!(card.contains(said) && card.contains(&format!("{} preference pairs", pairs.len())), "{card}");

    // One answer is the default; --pick needs several.
    let bad = evol_run(&mock.url, &seeds, &dir.path("bad"), &["--pick", "first"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn improved_answers_keep_their_chain_and_replay_whole() {
    let mock = Mock::start(MockConfig { equal_rate: 0.0, sorry_rate: 0.1, leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(10));
    let out = dir.path("out");
    let args = ["--model", "mock", "--rounds", "2", "--improve-answers", "2"];
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));
    let evolved = read_lines(&out.join("evolved.jsonl"));
    let mut kept = 0;
    for e in &evolved {
        let rounds = e["improvements"].as_array().unwrap();
        assert!(!rounds.is_empty() && rounds.len() <= 2, "{e}");
        // The answer is the last rewrite kept, else the first answer.
        let last_kept = rounds.iter().rev().find(|r| r["kept"] == true);
        match last_kept {
            Some(r) => {
                kept += 1;
                assert_eq!(e["response"], r["response"], "{e}");
                assert!(e["original_response"].is_string() && e["original_response"] != e["response"]);
                assert!(r["score_after"].as_f64().unwrap() > r["score_before"].as_f64().unwrap(), "{r}");
            }
            None => assert!(e.get("original_response").is_none(), "{e}"),
        }
        for r in rounds {
            assert!(r["critique"].is_string(), "{r}");
            if r["kept"] == false && r["rejected"].is_null() {
                assert!(r["score_after"].as_f64() <= r["score_before"].as_f64(), "not better: {r}");
            }
        }
    }
    assert!(kept > 0, "some rewrites score higher against evol-mock");
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["improve"]["improved_answers"].as_u64().unwrap(), kept);
    assert!(stats["identity"]["improve_templates"].is_string());
    let hub = dir.path("hub");
    assert_success(&evol(&["export", out.to_str().unwrap(), "--to", hub.to_str().unwrap()]));
    let card = std::fs::read_to_string(hub.join("README.md")).unwrap();
    assert!(card.contains(&format!("{kept} answers improved")), "{card}");
    // The same command again replays every call: nothing is sent, the
    // records come out the same.
    let before = (std::fs::read(out.join("evolved.jsonl")).unwrap(), mock.stats().requests);
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));
    assert_eq!(mock.stats().requests, before.1);
    assert_eq!(std::fs::read(out.join("evolved.jsonl")).unwrap(), before.0);
}

#[test]
fn hindi_chinese_japanese_and_arabic_seeds_keep_their_language_and_native_refusals_are_caught() {
    let config =
        MockConfig { equal_rate: 0.0, sorry_rate: 0.2, leak_rate: 0.0, switch_rate: 0.3, ..MockConfig::default() };
    let mock = Mock::start(config);
    let dir = Dir::new();
    // Each written for this test: "Explain how X works, step by step" and
    // similar questions on plants, water, the sun and cells.
    let seeds: Vec<(&str, &str)> = vec![
        ("hi", "समझाइए कि पौधे सूर्य के प्रकाश से भोजन कैसे बनाते हैं।"),
        ("hi", "बताइए कि पानी का चक्र पृथ्वी पर कैसे चलता है।"),
        ("hi", "कोशिका के मुख्य भागों और उनके कामों का वर्णन कीजिए।"),
        ("zh", "请解释植物是如何利用阳光制造食物的。"),
        ("zh", "请说明地球上的水循环是如何运作的。"),
        ("zh", "请描述细胞的主要组成部分及其功能。"),
        ("ja", "植物が太陽の光を使ってどのように食べ物を作るのか説明してください。"),
        ("ja", "地球上の水の循環がどのように働くのか説明してください。"),
        ("ja", "細胞の主な部分とその働きについて説明してください。"),
        ("ar", "اشرح كيف تصنع النباتات غذاءها باستخدام ضوء الشمس."),
        ("ar", "وضح كيف تعمل دورة الماء على سطح الأرض."),
        ("ar", "صف الأجزاء الرئيسية للخلية ووظيفة كل منها."),
    ];
    let lines: String = seeds
        .iter()
        .enumerate()
        .map(|(i, (_, text))| serde_json::json!({"id": format!("s{i}"), "instruction": text}).to_string() + "\n")
        .collect();
    let input = dir.write("seeds.jsonl", &lines);
    let out = dir.path("out");
    let done = evol_run(&mock.url, &input, &out, &["--model", "mock", "--rounds", "3"]);
    assert_success(&done);
    let said = stderr(&done);
    assert!(said.contains("evol: by language: ar 3 seeds,") && said.contains("; zh 3 seeds,"), "{said}");
    let language_of: std::collections::BTreeMap<String, &str> =
        seeds.iter().enumerate().map(|(i, (code, _))| (format!("s{i}"), *code)).collect();
    let refusals = [
        // A model that drifted to English refuses in it.
        "Sorry, I cannot help with that request.",
        "माफ़ कीजिए, मैं इस अनुरोध में मदद नहीं कर सकता।",
        "抱歉，我无法帮助完成这个请求。",
        "申し訳ありませんが、このご依頼にはお応えできません。",
        "عذراً، لا يمكنني المساعدة في هذا الطلب.",
    ];
    let switched = |text: &str| text.is_ascii();
    let evolved = read_lines(&out.join("evolved.jsonl"));
    let rejected = read_lines(&out.join("rejected.jsonl"));
    assert!(evolved.len() >= 10, "{} accepted; {rejected:?}", evolved.len());
    for e in &evolved {
        let want = language_of[e["seed_id"].as_str().unwrap()];
        assert_eq!(e["language"], want, "{e}");
        let (instruction, answer) = (e["instruction"].as_str().unwrap(), e["response"].as_str().unwrap());
        assert!(!switched(instruction) && !switched(answer), "a switch got through: {e}");
        assert!(!refusals.contains(&answer), "a native refusal got through: {e}");
    }
    let mut by_reason: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &rejected {
        let reason = r["reason"].as_str().unwrap();
        *by_reason.entry(reason).or_default() += 1;
        match reason {
            "language_changed" => {
                let text = r["response"].as_str().or(r["instruction"].as_str()).unwrap();
                assert!(switched(text), "only English texts are called another language: {r}");
                assert!(r["detail"].as_str().unwrap().contains("written in English (en"), "{r}");
            }
            "answer_sorry" => assert!(refusals.contains(&r["response"].as_str().unwrap()), "{r}"),
            // The simulator's evolutions repeat their few clauses.
            "near_duplicate" => {}
            other => panic!("no other rule fires on these texts, `{other}` did: {r}"),
        }
    }
    assert!(by_reason["language_changed"] > 0 && by_reason["answer_sorry"] > 0, "{by_reason:?}");
    let stats = read_json(&out.join("stats.json"));
    for code in ["hi", "zh", "ja", "ar"] {
        let l = &stats["languages"][code];
        assert_eq!(l["seeds"], 3, "{code}: {l}");
        assert_eq!(l["attempted"], 9, "{code}: {l}");
    }
    let hub = dir.path("hub");
    assert_success(&evol(&["export", out.to_str().unwrap(), "--to", hub.to_str().unwrap()]));
    let card = std::fs::read_to_string(hub.join("README.md")).unwrap();
    assert!(card.contains("language:\n- ar\n- hi\n- ja\n- zh\n"), "{card}");

    // Refusal phrases of one's own, instead of the built-in ones: each
    // refusal's "cannot help" part, not its "sorry" ("मदद नहीं कर सकता",
    // "无法帮助", "お応えできません", "لا يمكنني المساعدة"), still catches
    // every refusal the first run caught.
    let phrases = dir.path("phrases");
    std::fs::create_dir(&phrases).unwrap();
    for (code, phrase) in
        [("hi", "मदद नहीं कर सकता"), ("zh", "无法帮助"), ("ja", "お応えできません"), ("ar", "لا يمكنني المساعدة")]
    {
        std::fs::write(phrases.join(format!("{code}.txt")), format!("# cannot help\n{phrase}\n")).unwrap();
    }
    let own = dir.path("own");
    let args = ["--model", "mock", "--rounds", "3", "--refusals", phrases.to_str().unwrap(), "--refusals-replace"];
    assert_success(&evol_run(&mock.url, &input, &own, &args));
    let again = read_json(&own.join("stats.json"));
    assert!(again["settings"]["refusals"].is_string());
    assert_eq!(
        again["total"]["rejected"]["answer_sorry"], stats["total"]["rejected"]["answer_sorry"],
        "{}",
        again["languages"]
    );
    // The phrases are part of the run: resuming without them is refused.
    let run = evol_run(&mock.url, &input, &own, &["--model", "mock", "--rounds", "3"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("refusals"), "{}", stderr(&run));
    std::fs::write(phrases.join("Hindi.txt"), "x\n").unwrap();
    let run = evol_run(&mock.url, &input, &dir.path("bad"), &args);
    assert!(stderr(&run).contains("Hindi.txt") && stderr(&run).contains("language code"), "{}", stderr(&run));
}
