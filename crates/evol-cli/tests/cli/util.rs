//! Helpers for end-to-end tests: a simulator on loopback, a temp directory
//! per test, and the `evol` binary run as a user would run it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use evol_mock::{MockConfig, MockStats};
use serde_json::Value;

/// A simulator running on its own thread and runtime until the test ends
/// or [`Mock::kill`] is called.
pub struct Mock {
    pub url: String,
    kill: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mock {
    pub fn start(config: MockConfig) -> Mock {
        let (tx, rx) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                tx.send(evol_mock::spawn(config).await.unwrap()).unwrap();
            });
            // Serve until killed (or the test ends), then drop the runtime:
            // the listener and every open connection go away at once.
            let _ = killed.recv();
            rt.shutdown_background();
        });
        Mock { url: rx.recv().unwrap(), kill, thread: Some(thread) }
    }

    /// Stops the server the hard way: connections cut, port closed.
    pub fn kill(mut self) {
        let _ = self.kill.send(());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// `GET /stats`.
    pub fn stats(&self) -> MockStats {
        let response = self.request("GET", "/stats");
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str(body).unwrap()
    }

    /// A bodiless request to the simulator's own routes, over a plain socket
    /// (test-only; no client crate needed); the whole response.
    pub fn request(&self, method: &str, path: &str) -> String {
        let addr = self.url.trim_start_matches("http://").trim_end_matches("/v1");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

/// A test's own directory.
/// The embedded engine's tests run alone: llama.cpp's threads spin while
/// they wait, so a second busy process on a small machine slows both many
/// times over (the whole binary took 378 s with them interleaved, 72 s
/// with them alone). A test holding [`alone`] runs while no other test
/// does; every other test holds a shared guard through its [`Dir`].
static ENGINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    static ALONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Held for the whole of a test that runs the embedded engine.
pub struct Alone(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>);

pub fn alone() -> Alone {
    let guard = ENGINE.write().unwrap_or_else(|e| e.into_inner());
    ALONE.with(|a| a.set(true));
    Alone(guard)
}

impl Drop for Alone {
    fn drop(&mut self) {
        ALONE.with(|a| a.set(false));
    }
}

fn shared() -> Option<std::sync::RwLockReadGuard<'static, ()>> {
    match ALONE.with(|a| a.get()) {
        true => None,
        false => Some(ENGINE.read().unwrap_or_else(|e| e.into_inner())),
    }
}

pub struct Dir {
    pub tmp: tempfile::TempDir,
    _shared: Option<std::sync::RwLockReadGuard<'static, ()>>,
}

impl Dir {
    pub fn new() -> Dir {
        Dir { _shared: shared(), tmp: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// `evol` with a clean environment (no ambient server or key).
pub fn evol(args: &[&str]) -> Output {
    evol_env(args, &[])
}

pub fn evol_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evol"));
    cmd.args(args).env_remove("OPENAI_BASE_URL").env_remove("OPENAI_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `evol run SEEDS -o OUT --endpoint URL` followed by `extra`.
pub fn evol_run(url: &str, seeds: &Path, out: &Path, extra: &[&str]) -> Output {
    let base = ["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", url];
    evol(&[&base[..], extra].concat())
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(out.status.success(), "exit {:?}\nstderr:\n{}", out.status.code(), stderr(out));
}

/// The ids of [`seeds_jsonl`]'s seeds.
pub fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}")).collect()
}

/// Seeds in JSONL, `n` of them, with ids `s0`, `s1`, ...
pub fn seeds_jsonl(n: usize) -> String {
    (0..n)
        .map(|i| serde_json::json!({ "id": format!("s{i}"), "instruction": format!("Explain topic number {i} in simple terms.") }).to_string() + "\n")
        .collect()
}

pub fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every (seed, round) attempt appears exactly once across evolved and
/// rejected records, and lineage holds: each record's parent is the seed or
/// the seed's latest accepted evolution before that round.
#[track_caller]
pub fn assert_complete_lineage(out: &Path, seed_ids: &[String], rounds: u64) {
    let evolved = read_lines(&out.join("evolved.jsonl"));
    let rejected = read_lines(&out.join("rejected.jsonl"));
    let mut by_attempt: BTreeMap<(String, u64), (bool, Value)> = BTreeMap::new();
    for (accepted, records) in [(true, &evolved), (false, &rejected)] {
        for r in records {
            let key = (r["seed_id"].as_str().unwrap().to_string(), r["round"].as_u64().unwrap());
            assert_eq!(r["id"].as_str().unwrap(), format!("{}.r{}", key.0, key.1));
            assert!(by_attempt.insert(key.clone(), (accepted, r.clone())).is_none(), "attempt {key:?} recorded twice");
        }
    }
    assert_eq!(by_attempt.len(), seed_ids.len() * rounds as usize, "some attempts are missing");
    for seed in seed_ids {
        let mut parent = seed.clone();
        for round in 1..=rounds {
            let (accepted, record) = &by_attempt[&(seed.clone(), round)];
            assert_eq!(record["parent_id"].as_str().unwrap(), parent, "{seed} round {round}");
            if *accepted {
                parent = record["id"].as_str().unwrap().to_string();
            }
        }
    }
}

/// `evol answer SET -o DIR/MODEL` for each model, against the simulator.
pub fn answer_each(url: &str, set: &Path, dir: &Dir, models: &[&str]) {
    for model in models {
        let out = dir.path(model);
        assert_success(&evol(&[
            "answer",
            set.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--endpoint",
            url,
            "--model",
            model,
            "-q",
        ]));
    }
}
