//! The run directory as a store: one writer at a time, ids that cannot
//! collide, damage found before any call, and failures that end a run with
//! its files written.

use std::time::{Duration, Instant};

use crate::util::*;
use evol_mock::MockConfig;

/// A mock whose every step is accepted (no judge "Equal", no apology, no
/// leaked prompt words).
fn accepting() -> MockConfig {
    MockConfig { equal_rate: 0.0, sorry_rate: 0.0, leak_rate: 0.0, ..MockConfig::default() }
}

#[test]
fn a_second_command_on_a_run_directory_is_refused_and_a_killed_holder_blocks_nothing() {
    let mock = Mock::start(MockConfig { latency_median_ms: 300.0, ..accepting() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(10));
    let out = dir.path("out");
    let args = ["--model", "mock", "--rounds", "2", "--concurrency", "4"];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url])
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while mock.stats().requests == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first run sent nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let holder = format!("process {}", first.id());
    let second = evol_run(&mock.url, &seeds, &out, &args);
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert!(stderr(&second).contains("is in use by") && stderr(&second).contains(&holder), "{}", stderr(&second));
    let fresh = evol_run(&mock.url, &seeds, &out, &[&args[..], &["--fresh"]].concat());
    assert!(stderr(&fresh).contains(&holder), "--fresh removes nothing of a run in progress: {}", stderr(&fresh));
    let export = evol(&["export", out.to_str().unwrap()]);
    assert!(stderr(&export).contains(&holder), "{}", stderr(&export));
    assert!(out.join("journal.sqlite").exists());

    // A holder killed without a chance to clean up leaves its lock file,
    // which blocks nobody: the next run resumes and completes.
    first.kill().unwrap();
    first.wait().unwrap();
    let sent_by_first = mock.stats().requests;
    let resumed = evol_run(&mock.url, &seeds, &out, &args);
    assert_success(&resumed);
    assert_complete_lineage(&out, &ids(10), 2);
    // 10 seeds x 2 rounds x 3 calls; only calls in flight at the kill are
    // sent twice, never a whole second run's worth.
    let total = mock.stats().requests;
    assert!(total <= 60 + sent_by_first.min(4), "{total} requests for a run of 60 calls");
}

#[test]
fn seed_answers_and_evolutions_never_share_a_key() {
    let mock = Mock::start(accepting());
    let dir = Dir::new();
    // Seed `a`'s first evolution is named `a.r1`: a seed of that name would
    // share it in every output, so it is refused before any call.
    let seeds = dir.write(
        "seeds.jsonl",
        "{\"id\":\"a.r1\",\"instruction\":\"Name a river.\"}\n{\"id\":\"a\",\"instruction\":\"Name a mountain.\"}\n",
    );
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "2", "--include-seeds"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert_eq!(mock.stats().requests, 0);
    // Seeds and their evolutions keep apart in the journal all the same.
    let seeds = dir.write(
        "seeds2.jsonl",
        "{\"id\":\"b\",\"instruction\":\"Name a river.\"}\n{\"id\":\"a\",\"instruction\":\"Name a mountain.\"}\n",
    );
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "2", "--include-seeds"]));
    let answers = read_lines(&out.join("seeds.jsonl"));
    assert_eq!(answers.len(), 2, "both seeds' paid answers are kept");
    let dataset = read_lines(&out.join("dataset.jsonl"));
    assert_eq!(dataset.len(), 2 + 4);
    assert!(dataset.iter().all(|row| row["output"].is_string()), "{dataset:?}");
    assert!(dataset.iter().any(|row| row["instruction"] == "Name a river."));
}

/// A run capped part of the way, its journal then damaged in its middle;
/// `left_open`: as a writer that never closed it leaves it (marked open).
fn damaged_run(mock: &Mock, dir: &Dir, name: &str, left_open: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    let seeds = dir.write(&format!("{name}.jsonl"), &seeds_jsonl(300));
    let out = dir.path(name);
    let args = ["--model", "mock", "--rounds", "1", "--max-requests", "600"];
    let capped = evol_run(&mock.url, &seeds, &out, &args);
    assert_eq!(capped.status.code(), Some(3), "{}", stderr(&capped));
    let journal = out.join("journal.sqlite");
    if left_open {
        let marked = std::process::Command::new("python3")
            .args(["-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(\"INSERT INTO meta VALUES ('writer_open', '1')\"); c.commit(); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()"])
            .arg(&journal)
            .output()
            .unwrap();
        assert!(marked.status.success(), "{}", String::from_utf8_lossy(&marked.stderr));
    }
    let mut bytes = std::fs::read(&journal).unwrap();
    assert!(
        !out.join("journal.sqlite-wal").exists()
            || std::fs::metadata(out.join("journal.sqlite-wal")).unwrap().len() == 0
    );
    let len = bytes.len();
    assert!(len > 200 * 1024, "{len}");
    // Most of every table's pages, so that any reader of the rows meets
    // the damage whatever order the pages were written in.
    for b in &mut bytes[len / 4..len * 7 / 8] {
        *b = 0x5a;
    }
    std::fs::write(&journal, bytes).unwrap();
    (seeds, out)
}

#[test]
fn a_damaged_journal_is_refused_before_any_call() {
    let mock = Mock::start(accepting());
    let dir = Dir::new();
    let args = ["--model", "mock", "--rounds", "1", "--max-requests", "600"];
    // Left open by a writer that did not close it: checked on open.
    let (seeds, out) = damaged_run(&mock, &dir, "killed", true);
    let sent = mock.stats().requests;
    for run in [evol(&["export", out.to_str().unwrap()]), evol_run(&mock.url, &seeds, &out, &args)] {
        assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
        assert!(stderr(&run).contains("is damaged"), "{}", stderr(&run));
        assert!(stderr(&run).contains("--fresh"), "{}", stderr(&run));
    }
    assert_eq!(mock.stats().requests, sent, "not one request for a damaged run");
    let status = evol(&["status", out.to_str().unwrap()]);
    assert!(stderr(&status).contains("is damaged"), "{}", stderr(&status));

    // Closed cleanly, damaged afterwards: opening does not read it whole,
    // the first damaged page read says so, and `status --check` finds it.
    let (_, out) = damaged_run(&mock, &dir, "closed", false);
    let export = evol(&["export", out.to_str().unwrap()]);
    assert_eq!(export.status.code(), Some(1), "{}", stderr(&export));
    assert!(stderr(&export).contains("is damaged") && stderr(&export).contains("--fresh"), "{}", stderr(&export));
    let check = evol(&["status", out.to_str().unwrap(), "--check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(stderr(&check).contains("is damaged"), "{}", stderr(&check));
    // A sound one passes the check.
    let sound = dir.path("sound");
    assert_success(&evol_run(&mock.url, &seeds, &sound, &["--model", "mock", "--rounds", "1", "-q"]));
    let check = evol(&["status", sound.to_str().unwrap(), "--check"]);
    assert_success(&check);
    let text = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(text.contains("journal: sound"), "{text}");
}

#[test]
fn an_unreadable_seed_page_ends_the_run_with_its_files_and_state() {
    let mock = Mock::start(accepting());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(10));
    let out = dir.path("out");
    let args = ["--model", "mock", "--rounds", "1", "--concurrency", "1", "--max-requests", "6"];
    assert_eq!(evol_run(&mock.url, &seeds, &out, &args).status.code(), Some(3));
    {
        // A seed's text that is not text: the page holding it cannot be read.
        let conn = rusqlite::Connection::open(out.join("journal.sqlite")).unwrap();
        conn.execute("UPDATE seeds SET instruction = X'FF00FF' WHERE id = 's7'", []).unwrap();
    }
    let run = evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "1", "--concurrency", "1"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("reading the seeds failed"), "{}", stderr(&run));
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["state"], "failed");
    assert!(out.join("dataset.jsonl").exists() && out.join("evolved.jsonl").exists(), "the files are exported");
    assert_eq!(mock.stats().requests, 6, "nothing was sent for seeds that could not be read");
    let status = evol(&["status", "--json", out.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "failed", "the journal does not keep saying running");
}

#[test]
fn concurrency_is_per_server_and_stats_record_what_was_used() {
    let mocks: Vec<Mock> = (0..3).map(|_| Mock::start(MockConfig { latency_median_ms: 20.0, ..accepting() })).collect();
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(60));
    let out = dir.path("out");
    let mut args = vec!["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap()];
    for m in &mocks {
        args.extend(["--endpoint", &m.url]);
    }
    args.extend(["--model", "mock", "--rounds", "1", "--concurrency", "2", "--no-adaptive"]);
    assert_success(&evol(&args));
    for m in &mocks {
        let s = m.stats();
        assert!(s.requests > 0);
        assert!(s.max_in_flight <= 2, "a server got {} calls at once", s.max_in_flight);
    }
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["execution"]["concurrency"], 6, "{}", stats["execution"]);
    let servers = stats["execution"]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert!(servers.iter().all(|s| s["max_concurrency"] == 2), "{servers:?}");
}
