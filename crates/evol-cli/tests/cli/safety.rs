//! What a process alone can show about keeping finished work: a closed
//! stderr, output directories owned by the command that made them.

use std::process::{Command, Stdio};

use crate::util::*;
use evol_mock::MockConfig;

/// `cmd` with its stderr a pipe whose reader is already gone (as in
/// `evol ... 2>&1 | head -1` once `head` has its line).
fn with_closed_stderr(cmd: &mut Command) -> std::process::ExitStatus {
    let mut child = cmd
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    child.wait().unwrap()
}

#[test]
fn a_closed_stderr_neither_stops_a_command_nor_empties_its_files() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(6));
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "2"]));
    let before: Vec<Vec<u8>> = ["evolved.jsonl", "rejected.jsonl", "dataset.jsonl"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    assert!(!before[0].is_empty());

    // The finished run, rerun with nobody reading its messages.
    let status = with_closed_stderr(Command::new(env!("CARGO_BIN_EXE_evol")).args([
        "run",
        seeds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--model",
        "mock",
        "--rounds",
        "2",
    ]));
    assert_eq!(status.code(), Some(0), "the rerun of a finished run goes on quietly");
    let after: Vec<Vec<u8>> = ["evolved.jsonl", "rejected.jsonl", "dataset.jsonl"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    assert_eq!(before, after, "the record files are whole");
    assert_eq!(read_json(&out.join("stats.json"))["state"], "completed");

    // And a scoring job, which prints progress and a summary.
    let scored = dir.path("scored");
    let status = with_closed_stderr(Command::new(env!("CARGO_BIN_EXE_evol")).args([
        "score",
        out.join("dataset.jsonl").to_str().unwrap(),
        "-o",
        scored.to_str().unwrap(),
        "--difficulty",
        "--endpoint",
        &mock.url,
        "--model",
        "mock",
    ]));
    assert_eq!(status.code(), Some(0));
    assert_eq!(read_lines(&scored.join("scored.jsonl")).len(), read_lines(&out.join("dataset.jsonl")).len());
}

#[test]
fn no_command_writes_into_another_commands_directory() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(4));
    let run = dir.path("run");
    assert_success(&evol_run(&mock.url, &seeds, &run, &["--model", "mock", "--rounds", "1"]));
    let dataset = run.join("dataset.jsonl");
    let model = ["--endpoint", mock.url.as_str(), "--model", "mock"];
    let scored = dir.path("scored");
    let mut args = vec!["score", dataset.to_str().unwrap(), "-o", scored.to_str().unwrap(), "--difficulty"];
    args.extend(model);
    assert_success(&evol(&args));
    let scored_rows = scored.join("scored.jsonl");

    let journal = std::fs::read(run.join("journal.sqlite")).unwrap();
    for fresh in [&[][..], &["--fresh"][..]] {
        for (command, input, extra) in [
            ("score", &dataset, &["--difficulty"][..]),
            ("select", &scored_rows, &["--budget", "2", "--by", "difficulty"][..]),
            ("answer", &dataset, &[][..]),
        ] {
            let mut args = vec![command, input.to_str().unwrap(), "-o", run.to_str().unwrap()];
            args.extend(extra);
            if command != "select" {
                args.extend(model);
            }
            args.extend(fresh);
            let out = evol(&args);
            assert_eq!(out.status.code(), Some(1), "{command} {fresh:?}: {}", stderr(&out));
            assert!(stderr(&out).contains("holds a run of `evol run`"), "{command}: {}", stderr(&out));
        }
    }
    assert_eq!(std::fs::read(run.join("journal.sqlite")).unwrap(), journal, "the run's journal is untouched");
    assert_eq!(read_json(&run.join("stats.json"))["state"], "completed");
    assert_success(&evol(&["export", run.to_str().unwrap()]));

    // And the other way: a run into a scoring job's directory.
    let out = evol_run(&mock.url, &seeds, &scored, &["--model", "mock", "--fresh"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("holds the scores of `evol score`"), "{}", stderr(&out));
    assert!(scored_rows.exists());
}

#[test]
fn a_seed_named_like_an_evolution_is_refused() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write(
        "seeds.jsonl",
        "{\"id\": \"a\", \"instruction\": \"Name a fruit.\"}\n{\"id\": \"a.r1\", \"instruction\": \"Name a tree.\"}\n",
    );
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "1"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("line 2") && stderr(&run).contains("`a.r1` ends like an evolution's id"),
        "{}",
        stderr(&run)
    );
    // With --skip-invalid it is left out and counted, and ids stay unique.
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "1", "--skip-invalid"]);
    assert_success(&run);
    assert_eq!(read_json(&out.join("stats.json"))["input"]["skipped_invalid"], 1);
    let ids: Vec<String> =
        read_lines(&out.join("evolved.jsonl")).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

#[test]
fn endless_input_fails_at_its_bound_with_the_place_named() {
    let dir = Dir::new();
    let out = dir.path("out");
    // Seeds with no line break at all (as `/dev/zero` is): refused at the
    // line bound, not after filling memory.
    let run = evol(&["run", "/dev/zero", "-o", out.to_str().unwrap(), "--endpoint", "http://127.0.0.1:9/v1"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("line 1: a line longer than 64 MiB"), "{}", stderr(&run));
    // A settings file is bounded too.
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(2));
    let run = evol(&["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--config", "/dev/zero"]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("larger than 4 MiB"), "{}", stderr(&run));
    let run = evol(&["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--ops-file", "/dev/zero"]);
    assert!(stderr(&run).contains("larger than 4 MiB"), "{}", stderr(&run));
    // And dedup's input.
    let kept = dir.path("kept.jsonl");
    let dedup = evol(&["dedup", "/dev/zero", "-o", kept.to_str().unwrap(), "--format", "jsonl"]);
    assert!(!dedup.status.success());
    assert!(stderr(&dedup).contains("longer than 64 MiB"), "{}", stderr(&dedup));
}

#[test]
fn a_zero_limit_is_refused_as_such() {
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(2));
    let out = dir.path("out");
    let run = evol(&["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--limit", "0"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("--limit must be at least 1"), "{}", stderr(&run));
    assert!(!out.exists());
}

#[test]
fn an_export_elsewhere_during_a_run_is_a_snapshot_and_leaves_the_run_alone() {
    let mock = Mock::start(MockConfig { latency_median_ms: 150.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    let mut run = Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url])
        .args(["--model", "mock", "--rounds", "3", "--concurrency", "2", "-q"])
        .env_remove("OPENAI_BASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for some rows to be decided.
    let started = std::time::Instant::now();
    while mock.stats().requests < 20 && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = evol(&["status", out.to_str().unwrap()]);
    assert_success(&status);
    let snapshot = dir.path("snapshot.jsonl");
    let export = evol(&["export", out.to_str().unwrap(), "--to", snapshot.to_str().unwrap()]);
    let still_running = run.try_wait().unwrap().is_none();
    assert_success(&export);
    if still_running {
        assert!(stderr(&export).contains("exporting a snapshot"), "{}", stderr(&export));
        // Its own files are the run's to write.
        let refused = evol(&["export", out.to_str().unwrap()]);
        if run.try_wait().unwrap().is_none() {
            assert_eq!(refused.status.code(), Some(1));
            assert!(stderr(&refused).contains("writes a snapshot elsewhere"), "{}", stderr(&refused));
        }
    }
    assert!(snapshot.is_file());
    assert!(run.wait().unwrap().success());
    // The snapshot's rows are rows of the finished dataset.
    let dataset = read_lines(&out.join("dataset.jsonl"));
    for row in read_lines(&snapshot) {
        assert!(dataset.iter().any(|d| d["instruction"] == row["instruction"]), "{row}");
    }
}
