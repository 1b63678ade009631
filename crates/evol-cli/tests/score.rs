//! Difficulty and quality scores: `evol run --score-difficulty` and `evol score`.

mod util;

use evol_mock::MockConfig;
use util::*;

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

    // A resume with the scorer switched off is another run.
    let again = evol_run(&mock.url, &seeds, &out, &["--rounds", "3", "--include-seeds", "--no-dedup"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("difficulty"), "{}", stderr(&again));
}
