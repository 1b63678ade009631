//! `deploy/slurm` on a real Slurm: a one-node cluster on loopback
//! (`deploy/slurm/local-cluster`: Debian's slurm-wlm and munge daemons, no
//! systemd), the array of shards against a simulator, the dependent merge,
//! a task stopped by Slurm and requeued, another stopped at its time-limit
//! signal and requeued by its script. Where Slurm is not installed the test
//! says so on stderr and passes, except under CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;
use evol_mock::MockConfig;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/slurm")
}

/// A running local cluster, stopped (its jobs cancelled) when dropped.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

impl Cluster {
    fn start(dir: &Path) -> Option<Cluster> {
        let missing = ["slurmctld", "slurmd", "munged", "sbatch"].into_iter().find(|tool| {
            !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success()
        });
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let why = match (missing, root) {
            (Some(tool), _) => {
                format!("`{tool}` is not installed (apt-get install slurm-wlm munge; scripts/test does)")
            }
            (None, false) => "slurmd needs root to start jobs".to_string(),
            (None, true) => {
                let out = Command::new(scripts().join("local-cluster")).arg("start").arg(dir).output().unwrap();
                assert!(out.status.success(), "local-cluster: {}", String::from_utf8_lossy(&out.stderr));
                let conf = dir.join("slurm.conf").to_str().unwrap().to_string();
                return Some(Cluster { dir: dir.to_path_buf(), conf });
            }
        };
        assert!(std::env::var_os("CI").is_none(), "the Slurm test cannot run under CI: {why}");
        eprintln!("\n*** SKIPPED the Slurm test: {why} ***\n");
        None
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf).env_remove("OPENAI_API_KEY");
        cmd
    }

    /// A Slurm command's stdout; it must succeed.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `deploy/slurm/submit` of `shards` tasks (one CPU each) of a run of
    /// `seeds` with the simulator's model, with `env` added; the array's
    /// and the merge's job ids, space-separated.
    fn submit(&self, shards: u32, seeds: &Path, out: &Path, args: &str, env: &[(&str, &str)]) -> String {
        let submit = self
            .command(scripts().join("submit"))
            .args([&shards.to_string(), "--cpus-per-task=1"])
            .env("EVOL_SEEDS", seeds)
            .env("EVOL_OUT", out)
            .env("EVOL_MODEL", "mock")
            .env("EVOL_ARGS", args)
            .env("EVOL", env!("CARGO_BIN_EXE_evol"))
            .env_remove("OPENAI_BASE_URL")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_success(&submit);
        String::from_utf8(submit.stdout).unwrap()
    }

    /// The state of each of a job's tasks still known to `squeue`.
    fn states(&self, job: &str) -> Vec<String> {
        self.run("squeue", &["-h", "-j", job, "-o", "%K %T"]).lines().map(str::to_string).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command("scancel").args(["--user", "root"]).output();
        let _ = Command::new(scripts().join("local-cluster")).arg("stop").arg(&self.dir).output();
    }
}

/// Waits for `done`, failing after `secs` with what `context` says.
fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(secs), "waited {secs} s for {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A shard's committed calls so far (0 before its journal exists).
fn calls(out: &Path) -> u64 {
    let status = evol(&["status", out.to_str().unwrap(), "--json"]);
    serde_json::from_slice::<serde_json::Value>(&status.stdout).map_or(0, |s| s["calls"]["calls"].as_u64().unwrap_or(0))
}

fn state(out: &Path) -> Option<String> {
    let stats = std::fs::read(out.join("stats.json")).ok()?;
    let stats: serde_json::Value = serde_json::from_slice(&stats).ok()?;
    stats["state"].as_str().map(str::to_string)
}

#[test]
fn a_slurm_array_and_its_merge_make_what_one_run_makes_through_requeues() {
    let dir = Dir::new();
    let Some(cluster) = Cluster::start(&dir.path("cluster")) else { return };
    // Slow enough (200 ms a call, 2 at once: about 7 s a shard) for the
    // signals below to land mid-run; the unsharded run needs no such wait.
    let mock = Mock::start(MockConfig { latency_median_ms: 200.0, latency_sigma: 0.2, ..MockConfig::default() });
    let reference = Mock::start(MockConfig::default());
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(48));
    let args = "--rounds 2 --concurrency 2";
    // The same run unsharded, meanwhile.
    let one = dir.path("one");
    let whole = {
        let (url, seeds, one) = (reference.url.clone(), seeds.clone(), one.clone());
        std::thread::spawn(move || evol_run(&url, &seeds, &one, &args.split(' ').collect::<Vec<_>>()))
    };

    // The array (4 shards, at most 2 at once) and its merge.
    let out = dir.path("out");
    let ids = cluster.submit(4, &seeds, &out, args, &[("EVOL_MAX_PARALLEL", "2"), ("OPENAI_BASE_URL", &mock.url)]);
    let (array, merge) = ids.trim().split_once(' ').unwrap();
    let shard = |i: usize| out.join(format!("shard-{i}"));
    let log = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let context = || {
        format!(
            "squeue: {:?}\ntask 0: {}\ntask 1: {}",
            cluster.states(array),
            log(&format!("evol-{array}_0.out")),
            log(&format!("evol-{array}_1.out"))
        )
    };

    // Task 0 is requeued by Slurm mid-run (SIGTERM to its every process,
    // then held); task 1 gets its time-limit warning (USR1 to the batch
    // shell) and requeues itself.
    wait_for(120, "tasks 0 and 1 to be under way", || calls(&shard(0)) >= 5 && calls(&shard(1)) >= 5, context);
    cluster.run("scontrol", &["requeuehold", &format!("{array}_0")]);
    // (Slurm 22.05's scancel exits non-zero after signalling an array's
    // batch shell, with nothing on stderr: its log below says it arrived.)
    let _ = cluster.command("scancel").args(["--batch", "--signal=USR1", &format!("{array}_1")]).output().unwrap();
    wait_for(120, "task 0 to drain", || state(&shard(0)).as_deref() == Some("interrupted"), context);
    let partial = calls(&shard(0));
    assert!(partial < 60, "task 0 was stopped mid-run: {partial} calls");

    // The other shards finish; the merge job waits on task 0, and a merge
    // by hand refuses it, naming it.
    wait_for(180, "tasks 1 to 3", || (1..4).all(|i| state(&shard(i)).as_deref() == Some("completed")), context);
    let states = cluster.states(array);
    assert_eq!(states, ["0 PENDING".to_string()], "only task 0 is left, held");
    assert_eq!(cluster.states(merge), ["N/A PENDING"], "the merge waits for the array");
    let early = dir.path("early");
    let dirs: Vec<String> = (0..4).map(|i| shard(i).to_str().unwrap().to_string()).collect();
    let refused = evol(
        &[&["merge"], &dirs.iter().map(String::as_str).collect::<Vec<_>>()[..], &["-o", early.to_str().unwrap()]]
            .concat(),
    );
    assert_eq!(refused.status.code(), Some(1));
    let why = stderr(&refused);
    assert!(why.contains(&format!("`{}` is not a completed run (state: interrupted)", dirs[0])), "{why}");

    // Released, task 0 resumes from its journal; then the merge runs.
    cluster.run("scontrol", &["release", &format!("{array}_0")]);
    wait_for(
        180,
        "the array and the merge",
        || cluster.states(array).is_empty() && cluster.states(merge).is_empty(),
        context,
    );
    assert_success(&whole.join().unwrap());
    let merged = out.join("merged");
    assert!(
        log(&format!("evol-merge-{merge}.out")).contains("merged 4 shards (48 seeds"),
        "{}",
        log(&format!("evol-merge-{merge}.out"))
    );
    for file in ["dataset.jsonl", "evolved.jsonl", "rejected.jsonl"] {
        assert_eq!(std::fs::read(one.join(file)).unwrap(), std::fs::read(merged.join(file)).unwrap(), "{file}");
    }
    // Nothing was paid twice: the shards, requeues and all, sent what one
    // run sent.
    assert_eq!(mock.stats().requests, reference.stats().requests);
    for task in [0, 1] {
        let text = log(&format!("evol-{array}_{task}.out"));
        assert!(text.contains("attempt 2"), "task {task} ran again: {text}");
        assert!(text.contains("resum"), "task {task} resumed: {text}");
    }
    assert!(log(&format!("evol-{array}_1.out")).contains("the time limit is near"));
}

#[test]
fn each_task_can_run_against_a_server_of_its_own() {
    // The server layout: every task starts its own server (here the
    // simulator's binary, where a cluster runs vLLM or `evol serve`) on a
    // port of its own, runs against it and stops it.
    let mock_bin = Path::new(env!("CARGO_BIN_EXE_evol")).with_file_name("evol-mock");
    assert!(
        mock_bin.exists(),
        "build the simulator first (scripts/test does: cargo build --release --workspace --bin evol-mock)"
    );
    let dir = Dir::new();
    let Some(cluster) = Cluster::start(&dir.path("cluster")) else { return };
    let reference = Mock::start(MockConfig::default());
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(16));
    let one = dir.path("one");
    assert_success(&evol_run(&reference.url, &seeds, &one, &["--model", "mock", "--rounds", "2"]));
    let out = dir.path("out");
    // Not exec'd: the server is the wrapper shell's child, stopped with its
    // process group.
    let server = format!("{} --addr 127.0.0.1:$PORT --latency-ms 3; true", mock_bin.display());
    let ids = cluster.submit(2, &seeds, &out, "--rounds 2", &[("EVOL_SERVER", &server)]);
    let (array, merge) = ids.trim().split_once(' ').unwrap();
    let log = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    wait_for(
        180,
        "the array and the merge",
        || cluster.states(array).is_empty() && cluster.states(merge).is_empty(),
        || format!("{}\n{}", log(&format!("evol-{array}_0.out")), log(&format!("evol-{array}_1.out"))),
    );
    for task in 0..2 {
        let text = log(&format!("evol-{array}_{task}.out"));
        assert!(text.contains("starting the task's server on 127.0.0.1:"), "{text}");
        assert!(text.contains("evol exited with 0"), "{text}");
    }
    for file in ["dataset.jsonl", "evolved.jsonl", "rejected.jsonl"] {
        assert_eq!(
            std::fs::read(one.join(file)).unwrap(),
            std::fs::read(out.join("merged").join(file)).unwrap(),
            "{file}"
        );
    }
    // The servers were stopped with their tasks.
    let servers = format!("{} --addr 127.0.0.1:[0-9]+ --latency-ms 3", mock_bin.display());
    let left = Command::new("pgrep").args(["-f", &servers]).output().unwrap();
    assert!(left.stdout.is_empty(), "a task's server outlived it: {}", String::from_utf8_lossy(&left.stdout));
}
