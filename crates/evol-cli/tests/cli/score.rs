//! Difficulty and quality scores: `evol run --score-difficulty` and `evol score`.

use crate::util::*;
use evol_mock::MockConfig;

#[test]
fn a_run_scores_the_seeds_and_each_round_and_the_mean_rises() {
    // The simulator scores longer instructions higher, and evolving makes
    // them longer: the mean must rise round by round, as in the paper.
    let mock = Mock::start(MockConfig { unreadable_rate: 0.1, leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(40));
    let out = dir.path("out");
    let run =
        evol_run(&mock.url, &seeds, &out, &["--rounds", "3", "--score-difficulty", "--include-seeds", "--no-dedup"]);
    assert_success(&run);
    assert!(stderr(&run).contains("difficulty, mean ± std: seeds "), "{}", stderr(&run));
    let stats = read_json(&out.join("stats.json"));
    let difficulty = &stats["difficulty"];
    let mean = |round: &str| difficulty[round]["mean"].as_f64().unwrap();
    assert!(mean("0") < mean("1") && mean("1") < mean("2") && mean("2") < mean("3"), "{difficulty}");
    // Every scoring call is counted once: as a score, or as unreadable.
    let seed_scores = read_lines(&out.join("seed_scores.jsonl"));
    assert_eq!(seed_scores.len(), 40);
    let evolved = read_lines(&out.join("evolved.jsonl"));
    let counted: u64 = ["0", "1", "2", "3"]
        .iter()
        .map(|r| difficulty[r]["scored"].as_u64().unwrap() + difficulty[r]["unreadable"].as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, 40 + evolved.len());
    assert_eq!(mock.stats().score as usize, 40 + evolved.len());
    // An unreadable reply is kept as such, with no score, never a default.
    let unreadable: Vec<_> = evolved.iter().filter(|e| e["difficulty"]["score"].is_null()).collect();
    let expected: u64 = ["1", "2", "3"].iter().map(|r| difficulty[r]["unreadable"].as_u64().unwrap()).sum();
    assert_eq!(unreadable.len() as u64, expected);
    assert!(expected > 0, "with a 10% unreadable rate some replies are unreadable");
    assert!(unreadable.iter().all(|e| e["difficulty"]["unreadable"].as_str().unwrap().contains("hard to say")));
    // Scores appear in the dataset.
    let dataset = read_lines(&out.join("dataset.jsonl"));
    let with = dataset.iter().filter(|r| r["difficulty"].is_number()).count();
    assert_eq!(with as u64, dataset.len() as u64 - expected - difficulty["0"]["unreadable"].as_u64().unwrap());
    assert_eq!(stats["identity"]["models"]["score"], "mock");

    // A resume with another scoring setting given is another run; without
    // the scoring flags, it keeps the run's own scoring.
    let again = evol_run(
        &mock.url,
        &seeds,
        &out,
        &["--rounds", "3", "--include-seeds", "--no-dedup", "--score-difficulty", "--score-max-tokens", "9"],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("changed: difficulty"), "{}", stderr(&again));
    let requests = mock.stats().requests;
    let again = evol_run(&mock.url, &seeds, &out, &["--rounds", "3", "--include-seeds", "--no-dedup"]);
    assert_success(&again);
    assert!(stderr(&again).contains("resuming with the run's own difficulty"), "{}", stderr(&again));
    assert_eq!(mock.stats().requests, requests, "nothing is sent again");
    assert_eq!(read_json(&out.join("stats.json"))["identity"]["models"]["score"], "mock");
}

#[test]
fn evol_score_scores_any_file_ranks_versions_together_and_resumes_without_paying_twice() {
    let mock = Mock::start(MockConfig { unreadable_rate: 0.1, ..MockConfig::default() });
    let dir = Dir::new();
    // evol's own records: versions of one seed share `seed_id`.
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(12));
    let run = dir.path("run");
    assert_success(&evol_run(&mock.url, &seeds, &run, &["--rounds", "3", "--no-dedup"]));
    let evolved = run.join("evolved.jsonl");
    let rows = read_lines(&evolved);
    let groups: std::collections::BTreeSet<_> =
        rows.iter().map(|r| r["seed_id"].as_str().unwrap().to_string()).collect();
    let before = mock.stats();
    let out = dir.path("scores");
    let flags = ["--endpoint", &mock.url, "--model", "mock", "--difficulty", "--deita"];
    let score = evol(&[&["score", evolved.to_str().unwrap(), "-o", out.to_str().unwrap()], &flags[..]].concat());
    assert_success(&score);
    let stats = read_json(&out.join("stats.json"));
    // A difficulty call per row, a complexity call per seed (its versions
    // ranked together), a quality call per row (each instruction has one
    // response).
    let calls = rows.len() + groups.len() + rows.len();
    assert_eq!(stats["calls"].as_u64().unwrap() as usize, calls);
    assert_eq!((mock.stats().score - before.score) as usize, calls);
    let scored = read_lines(&out.join("scored.jsonl"));
    assert_eq!(scored.len(), rows.len());
    for (row, original) in scored.iter().zip(&rows) {
        assert_eq!(row["id"], original["id"], "rows keep their order");
        for measure in ["difficulty", "complexity", "quality"] {
            let unreadable = row.get(format!("{measure}_unreadable")).is_some();
            assert!(row[measure].is_number() != unreadable, "{measure}: {row}");
        }
    }
    // Every reply is counted once, as a score or as unreadable.
    for measure in ["difficulty", "complexity", "quality"] {
        let s = &stats["scores"][measure];
        assert_eq!(s["scored"].as_u64().unwrap() + s["unreadable"].as_u64().unwrap(), rows.len() as u64, "{s}");
        let nulls = scored.iter().filter(|r| r[measure].is_null()).count() as u64;
        assert_eq!(nulls, s["unreadable"].as_u64().unwrap());
    }
    assert!(stats["scores"]["difficulty"]["unreadable"].as_u64().unwrap() > 0);
    // The fields of each line stay in their order, the scores at the end.
    let text = std::fs::read_to_string(out.join("scored.jsonl")).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(r#"{"id":"#) && first.find("\"difficulty\"").unwrap() > first.find("\"usage\"").unwrap(),
        "{first}"
    );

    // A rerun sends nothing; other settings are refused.
    let requests = mock.stats().requests;
    assert_success(&evol(&[&["score", evolved.to_str().unwrap(), "-o", out.to_str().unwrap()], &flags[..]].concat()));
    assert_eq!(mock.stats().requests, requests);
    assert_eq!(read_json(&out.join("stats.json"))["replayed_calls"].as_u64().unwrap() as usize, calls);
    assert_eq!(std::fs::read_to_string(out.join("scored.jsonl")).unwrap(), text);
    let other = evol(&[
        "score",
        evolved.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--model",
        "mock",
        "--difficulty",
    ]);
    assert_eq!(other.status.code(), Some(1));
    assert!(stderr(&other).contains("changed: measures") && stderr(&other).contains("--fresh"), "{}", stderr(&other));
}

#[test]
fn evol_score_refuses_bad_rows_and_settings_naming_the_place() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let input = dir.write("in.jsonl", "{\"instruction\": \"Name a fruit.\"}\n{\"text\": \"no instruction\"}\n");
    let out = dir.path("out");
    let base =
        ["score", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url, "--model", "mock"];
    let run = evol(&base);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("--difficulty, --deita"), "{}", stderr(&run));
    let run = evol(&[&base[..], &["--difficulty"]].concat());
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("in.jsonl` line 2: missing an instruction (`instruction`, `prompt`, `conversations` or `messages`); the record has `text`"), "{}", stderr(&run));
    assert_eq!(mock.stats().requests, 0, "nothing is sent before the input is read");
    let run = evol(&[&base[..], &["--difficulty", "--skip-invalid"]].concat());
    assert_success(&run);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!((stats["rows"].as_u64(), stats["unreadable_rows"].as_u64()), (Some(1), Some(1)));
    let run = evol(&[&base[..], &["--difficulty", "--group-size", "0"]].concat());
    assert_eq!(run.status.code(), Some(2));
}
