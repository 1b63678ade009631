//! `--batch-api` against the simulator's `/v1/files` and `/v1/batches`.

use std::time::{Duration, Instant};

use crate::util::*;
use evol_mock::{BatchConfig, MockConfig};

fn batch_mock(delay_ms: u64, expire_rate: f64) -> Mock {
    Mock::start(MockConfig { batch: BatchConfig { delay_ms, expire_rate }, ..MockConfig::default() })
}

const FAST: [&str; 6] = ["--batch-api", "--batch-wave", "0.05", "--batch-poll", "0.05", "--model"];

#[test]
fn a_batch_run_sends_every_call_in_batches() {
    let mock = batch_mock(20, 0.0);
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    let run = evol_run(&mock.url, &seeds, &out, &[&FAST[..], &["mock", "--rounds", "2"]].concat());
    assert_success(&run);
    assert_complete_lineage(&out, &ids(30), 2);
    let server = mock.stats();
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(server.requests, server.batch_requests, "no call went outside a batch");
    assert_eq!(stats["total"]["requests"].as_u64().unwrap(), server.batch_requests);
    // Chains move in step: a wave per stage and round at least.
    assert!(server.batches >= 6, "{server:?}");
    assert!(server.batches < 60, "calls are gathered into waves: {server:?}");
}

#[test]
fn expired_batches_give_partial_results_and_the_rest_is_sent_again() {
    let mock = batch_mock(10, 0.3);
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    let args = [&FAST[..], &["mock", "--rounds", "2", "--batch-attempts", "12"]].concat();
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));
    assert_complete_lineage(&out, &ids(30), 2);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["total"]["failures"], 0);
    let server = mock.stats();
    assert_eq!(stats["total"]["requests"].as_u64().unwrap(), server.batch_requests, "each answered once");
}

/// Waits until the simulator has created `n` batches and the run's journal
/// holds them: a run killed between the two cannot know the batch exists.
fn wait_for_batches(mock: &Mock, out: &std::path::Path, n: u64) {
    let started = Instant::now();
    while mock.stats().batches < n || journaled_batches(out) < n {
        assert!(started.elapsed() < Duration::from_secs(30), "no batch was created and journaled");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many batches the journal under `out` has recorded (0 before it exists).
fn journaled_batches(out: &std::path::Path) -> u64 {
    let path = out.join("journal.sqlite");
    if !path.exists() {
        return 0;
    }
    let Ok(conn) = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    conn.query_row("SELECT COUNT(*) FROM batches", [], |row| row.get(0)).unwrap_or(0)
}

fn spawn_run(mock: &Mock, seeds: &std::path::Path, out: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url, "--quiet"])
        .args(FAST)
        .args(["mock", "--rounds", "2"])
        .env_remove("OPENAI_BASE_URL")
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_batch_run_adopts_its_batches_instead_of_paying_again() {
    let mock = batch_mock(800, 0.0);
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(20));
    let out = dir.path("out");
    for batches in [1, 3] {
        let mut child = spawn_run(&mock, &seeds, &out);
        wait_for_batches(&mock, &out, batches);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let status = evol(&["status", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("not settled"), "{}", stderr(&status));
    let run = evol_run(&mock.url, &seeds, &out, &[&FAST[..], &["mock", "--rounds", "2"]].concat());
    assert_success(&run);
    assert!(stderr(&run).contains("adopting"), "{}", stderr(&run));
    assert_complete_lineage(&out, &ids(20), 2);
    let stats = read_json(&out.join("stats.json"));
    let server = mock.stats();
    // Every attempt's calls, as the journal holds them (an attempt that
    // committed an adopted batch's results before it was killed counts
    // them, not the last attempt, which replays them).
    let journal = &stats["journal"];
    assert_eq!(
        journal["calls"].as_u64().unwrap() + journal["retries"].as_u64().unwrap(),
        server.batch_requests,
        "every call was answered (and paid) once: {server:?}"
    );
}

/// A run of 5 seeds killed once its first batch (which takes a minute) is
/// in flight: the simulator, the test's directory, the seeds and OUT.
fn killed_with_a_batch_in_flight() -> (Mock, Dir, std::path::PathBuf, std::path::PathBuf) {
    let mock = batch_mock(60_000, 0.0);
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(5));
    let out = dir.path("out");
    let mut child = spawn_run(&mock, &seeds, &out);
    wait_for_batches(&mock, &out, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    (mock, dir, seeds, out)
}

#[test]
fn batch_cancel_cancels_what_is_in_flight() {
    let (mock, dir, seeds, out) = killed_with_a_batch_in_flight();
    let cancel = evol(&["batch", "cancel", out.to_str().unwrap()]);
    assert_success(&cancel);
    assert!(stderr(&cancel).contains("cancelled 1 of the run's 1"), "{}", stderr(&cancel));
    assert_eq!(mock.stats().batches_cancelled, 1);

    let not_batch = dir.path("plain");
    let plain = Mock::start(MockConfig::default());
    assert_success(&evol_run(&plain.url, &seeds, &not_batch, &["--model", "mock", "--rounds", "1"]));
    let run = evol(&["batch", "cancel", not_batch.to_str().unwrap()]);
    assert!(stderr(&run).contains("not a --batch-api run"), "{}", stderr(&run));
}

#[test]
fn batches_the_provider_forgot_are_sent_again_and_cancel_does_not_block() {
    let (mock, _dir, seeds, out) = killed_with_a_batch_in_flight();
    // The provider no longer knows the batch: its id gets 404.
    let response = mock.request("POST", "/batches/forget");
    assert!(response.contains(" 204 "), "{response}");

    let cancel = evol(&["batch", "cancel", out.to_str().unwrap()]);
    assert_success(&cancel);
    assert!(stderr(&cancel).contains("unknown to the server"), "{}", stderr(&cancel));

    // A resume treats it as expired with nothing done and sends its
    // requests again (the server now answers batches at once).
    let fast = batch_mock(100, 0.0);
    let run = evol_run(&fast.url, &seeds, &out, &[&FAST[..], &["mock", "--rounds", "2"]].concat());
    assert_success(&run);
    assert_complete_lineage(&out, &ids(5), 2);
}

#[test]
fn a_batch_server_that_stops_answering_stops_the_run_cleanly() {
    let mock = batch_mock(60_000, 0.0);
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(5));
    let out = dir.path("out");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url])
        .args(FAST)
        .args(["mock", "--rounds", "2", "--stall-timeout", "2", "--max-retries", "0"])
        .env_remove("OPENAI_BASE_URL")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_batches(&mock, &out, 1);
    mock.kill();
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    assert!(err.contains("no call succeeded for 2.0s"), "{err}");
    assert_eq!(read_json(&out.join("stats.json"))["state"], "interrupted");
}
