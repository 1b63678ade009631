//! Run directories made by earlier releases resume under this one.

use std::path::Path;

use crate::util::*;
use evol_mock::MockConfig;

/// The fixture of a 0.1.0 run killed midway (see its README).
fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1.0-killed"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

const RUN: &[&str] = &["--model", "mock", "--rounds", "2", "--include-seeds", "--concurrency", "2", "--seed", "7"];

/// The record files are byte for byte those 0.1.0 made; the dataset's rows
/// too, each now under the id of the record it came from.
fn same_files_as_the_previous_release(out: &Path) {
    for file in ["evolved.jsonl", "rejected.jsonl", "seeds.jsonl"] {
        let got = std::fs::read_to_string(out.join(file)).unwrap();
        let want = std::fs::read_to_string(fixture().join("expected").join(file)).unwrap();
        assert!(got == want, "{file} differs from what the previous release made");
    }
    let lines = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let want = lines(&fixture().join("expected/dataset.jsonl"));
    let mut got = lines(&out.join("dataset.jsonl"));
    assert_eq!(got.len(), want.len());
    let records: std::collections::HashMap<String, String> = [out.join("evolved.jsonl"), out.join("seeds.jsonl")]
        .iter()
        .flat_map(|path| lines(path))
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["instruction"].as_str().unwrap().to_string()))
        .collect();
    for (got, want) in got.iter_mut().zip(&want) {
        let id = got.as_object_mut().unwrap().remove("id").expect("every dataset row has an id");
        assert_eq!(records.get(id.as_str().unwrap()), got["instruction"].as_str().map(String::from).as_ref(), "{id}");
        assert_eq!(got, want, "the row is the one the previous release made");
    }
}

#[test]
fn a_run_killed_under_the_previous_release_resumes_and_ends_as_it_would_have() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let out = dir.path("out");
    copy_dir(&fixture().join("out"), &out);
    let input = fixture().join("input.jsonl");
    // 0.1.0 had no near-duplicate check. A setting given explicitly is
    // compared, and a change refused, naming it, before any call.
    let refused = evol_run(&mock.url, &input, &out, &[RUN, &["--dedup-threshold", "0.8"]].concat());
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("changed: dedup") && stderr(&refused).contains("add --no-dedup"),
        "{}",
        stderr(&refused)
    );
    let refused = evol_run(&mock.url, &input, &out, &[&RUN[..7], &["--seed", "8"]].concat());
    assert!(stderr(&refused).contains("changed: run_seed"), "{}", stderr(&refused));
    assert_eq!(mock.stats().requests, 0);
    // The very same command line resumes it: a setting left at its default
    // takes the run's own value.
    let run = evol_run(&mock.url, &input, &out, RUN);
    assert_success(&run);
    assert!(stderr(&run).contains("resuming with the run's own dedup"), "{}", stderr(&run));
    assert!(stderr(&run).contains("64 calls are already committed"), "{}", stderr(&run));
    // 104 calls in all, 64 of them committed before the kill.
    assert_eq!(mock.stats().requests, 40);
    same_files_as_the_previous_release(&out);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["state"], "completed");
    assert_eq!(stats["total"]["requests"], 104);
}

#[test]
fn a_fresh_run_makes_the_files_the_previous_release_made() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let out = dir.path("out");
    // That release did not keep each text's language (its prompts did not
    // name one): `--language off` asks for the same.
    assert_success(&evol_run(&mock.url, &fixture().join("input.jsonl"), &out, &[RUN, &["--language", "off"]].concat()));
    assert_eq!(mock.stats().requests, 104);
    same_files_as_the_previous_release(&out);
}
