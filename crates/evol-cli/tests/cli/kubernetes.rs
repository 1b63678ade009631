//! `deploy/kubernetes/evol-shards.yaml`: checked against the Kubernetes
//! API's schema offline (`deploy/kubernetes/validate`, the official Python
//! client's models), then its pods run as local processes, one per
//! completion index with the variables Kubernetes sets, and its merge Job's
//! command joins them into what one run makes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::*;
use evol_mock::MockConfig;
use serde_json::Value;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// The manifest's documents as JSON, or `None` (said loudly) where the
/// Kubernetes client is not installed outside CI.
fn validate(file: &Path) -> Option<std::process::Output> {
    let have =
        Command::new("python3").args(["-c", "import kubernetes, yaml"]).output().is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Kubernetes test needs `pip install kubernetes` (scripts/test does)"
        );
        eprintln!("\n*** SKIPPED the Kubernetes manifest test: `pip install kubernetes` to run it ***\n");
        return None;
    }
    Some(Command::new(manifests().join("validate")).arg(file).arg("--json").output().unwrap())
}

/// A container's args with `/data` moved to `data` and `$(NAME)` taken from
/// `env` (as the kubelet expands them).
fn expand(args: &Value, data: &Path, env: &[(String, String)]) -> Vec<String> {
    args.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut a = a.as_str().unwrap().replace("/data", data.to_str().unwrap());
            for (name, value) in env {
                a = a.replace(&format!("$({name})"), value);
            }
            a
        })
        .collect()
}

#[test]
fn the_indexed_job_is_valid_and_its_pods_make_what_one_run_makes() {
    let file = manifests().join("evol-shards.yaml");
    let Some(valid) = validate(&file) else { return };
    assert!(valid.status.success(), "{}", stderr(&valid));
    let docs: Vec<Value> = serde_json::from_slice(&valid.stdout).unwrap();
    let (shards, merge) = (&docs[0], &docs[1]);
    assert_eq!(shards["spec"]["completionMode"], "Indexed");
    let completions = shards["spec"]["completions"].as_u64().unwrap();
    let container = &shards["spec"]["template"]["spec"]["containers"][0];

    // Mistakes are refused by path.
    let dir = Dir::new();
    let text = std::fs::read_to_string(&file).unwrap();
    for (from, to, says) in [
        ("backoffLimitPerIndex", "backoffLimitPerIndx", "spec.backoffLimitPerIndx: no such field in V1JobSpec"),
        ("completions: 4", "completions: \"4\"", "spec.completions: expected int"),
        ("mountPath: /data }", "mountPath: [/data] }", "volumeMounts[0].mountPath: expected str"),
        ("      containers:\n", "      container:\n", "spec.template.spec.container: no such field"),
    ] {
        assert!(text.contains(from), "{from}");
        let bad = dir.write("bad.yaml", &text.replacen(from, to, 1));
        let out = validate(&bad).unwrap();
        assert_eq!(out.status.code(), Some(1), "{to}");
        assert!(stderr(&out).contains(says), "{to}: {}", stderr(&out));
    }

    // Each pod, as a process: the container's env (its fieldRef is the
    // completion index) and JOB_COMPLETION_INDEX, as Kubernetes sets them.
    let mock = Mock::start(MockConfig::default());
    let data = dir.path("data");
    std::fs::create_dir_all(data.join("out")).unwrap();
    std::fs::write(data.join("seeds.jsonl"), seeds_jsonl(30)).unwrap();
    let pods: Vec<_> = (0..completions)
        .map(|index| {
            let mut env = vec![("JOB_COMPLETION_INDEX".to_string(), index.to_string())];
            for var in container["env"].as_array().unwrap() {
                let value = match &var["value"] {
                    Value::String(v) => v.clone(),
                    _ => {
                        let path = var["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap();
                        assert!(path.contains("job-completion-index"), "{path}");
                        index.to_string()
                    }
                };
                env.push((var["name"].as_str().unwrap().to_string(), value));
            }
            let args = expand(&container["args"], &data, &env);
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_evol"));
            cmd.args(&args).env_remove("OPENAI_API_KEY").envs(env.iter().map(|(k, v)| (k, v)));
            cmd.env("OPENAI_BASE_URL", &mock.url).stdout(Stdio::piped()).stderr(Stdio::piped());
            (args, cmd.spawn().unwrap())
        })
        .collect();
    // All at once, as the Job's parallelism runs them.
    let pods: Vec<_> = pods.into_iter().map(|(args, pod)| (args, pod.wait_with_output().unwrap())).collect();
    for (index, (args, pod)) in pods.iter().enumerate() {
        assert_success(pod);
        let says = format!("shard {index}/{completions} from Kubernetes (JOB_COMPLETION_INDEX={index})");
        assert!(stderr(pod).contains(&says), "{args:?}: {}", stderr(pod));
    }

    // The merge Job waits suspended; its command joins the shards.
    assert_eq!(merge["spec"]["suspend"], true);
    let merge_args = expand(&merge["spec"]["template"]["spec"]["containers"][0]["args"], &data, &[]);
    let merged = evol(&merge_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&merged);

    // The same run, unsharded: the pod's args without the output.
    let (args, _) = &pods[0];
    let at = args.iter().position(|a| a == "--output").unwrap();
    let mut whole: Vec<&str> = args.iter().map(String::as_str).collect();
    let one = dir.path("one");
    whole.splice(at..at + 2, ["--output", one.to_str().unwrap()]);
    assert_success(&evol_env(&whole, &[("OPENAI_BASE_URL", &mock.url)]));
    for file in ["dataset.jsonl", "evolved.jsonl", "rejected.jsonl"] {
        assert_eq!(
            std::fs::read(one.join(file)).unwrap(),
            std::fs::read(data.join("out/merged").join(file)).unwrap(),
            "{file}"
        );
    }
}
