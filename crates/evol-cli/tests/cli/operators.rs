//! Operator sets (`--ops code|math`, `--ops-file`, `evol ops`) and Auto
//! Evol-Instruct (`evol optimize`), end to end against the simulator.

use std::collections::BTreeMap;

use crate::util::*;
use evol_mock::MockConfig;

fn operations(out: &std::path::Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for file in ["evolved.jsonl", "rejected.jsonl"] {
        for row in read_lines(&out.join(file)) {
            *counts.entry(row["operation"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn the_code_and_math_sets_run_with_their_own_operators_and_weights() {
    let mock = Mock::start(MockConfig { leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(60));

    let code = dir.path("code");
    assert_success(&evol_run(&mock.url, &seeds, &code, &["--rounds", "2", "--ops", "code", "--no-dedup"]));
    let counts = operations(&code);
    let names: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert!(
        names.iter().all(|n| [
            "add_constraints",
            "rarer_requirement",
            "more_reasoning",
            "misleading_code",
            "complexity"
        ]
        .contains(n)),
        "{counts:?}"
    );
    assert!(!counts.contains_key("breadth"));
    // complexity has a quarter of the weight of each other method.
    assert!(counts.get("complexity").copied().unwrap_or(0) < counts["add_constraints"], "{counts:?}");
    let stats = read_json(&code.join("stats.json"));
    assert_eq!(stats["identity"]["settings"]["operations"][4]["weight"], 0.25);
    // The code scaffold's heading reached the model, and the evolution is
    // the question made harder, not the prompt.
    let evolved = read_lines(&code.join("evolved.jsonl"));
    assert!(!evolved.is_empty());
    assert!(evolved.iter().all(|e| !e["instruction"].as_str().unwrap().contains("#Original Question#")));

    let math = dir.path("math");
    assert_success(&evol_run(
        &mock.url,
        &seeds,
        &math,
        &["--rounds", "1", "--ops", "math:downward=3,add_constraints", "--no-dedup"],
    ));
    let counts = operations(&math);
    assert_eq!(counts.keys().map(String::as_str).collect::<Vec<_>>(), ["add_constraints", "easier_topic", "simplify"]);
    assert!(counts["simplify"] > counts["add_constraints"], "{counts:?}");

    // A mistyped operator names the set's operators; nothing is left.
    let bad = evol_run(&mock.url, &seeds, &dir.path("bad"), &["--ops", "code:breadth"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("unknown operation `breadth`") && stderr(&bad).contains("misleading_code"),
        "{}",
        stderr(&bad)
    );
    assert!(!dir.path("bad").exists());
}

#[test]
fn a_users_operator_file_runs_and_its_mistakes_name_the_file_operator_and_field() {
    let mock = Mock::start(MockConfig { leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(20));

    // `evol ops show` prints a file that runs as is.
    let shown = evol(&["ops", "show", "evol"]);
    assert_success(&shown);
    let evol_file = dir.write("evol.toml", &String::from_utf8_lossy(&shown.stdout));
    let a = dir.path("a");
    let b = dir.path("b");
    assert_success(&evol_run(&mock.url, &seeds, &a, &["--rounds", "1", "--no-dedup"]));
    assert_success(&evol_run(
        &mock.url,
        &seeds,
        &b,
        &["--rounds", "1", "--no-dedup", "--ops-file", evol_file.to_str().unwrap()],
    ));
    let (ia, ib) =
        (read_json(&a.join("stats.json"))["identity"].clone(), read_json(&b.join("stats.json"))["identity"].clone());
    assert_eq!(ia["templates"], ib["templates"], "the printed set is the built-in one");
    assert_eq!(ia["settings"]["operations"], ib["settings"]["operations"]);

    // A domain of one's own, with a hostile seed.
    let own = r##"
name = "legal"
description = "Harder legal questions"

[templates]
scaffold = '''
Make this legal question harder. {{ method }}
#Question#:
{{ instruction }}
#Harder#:
'''
jurisdiction = { literal = "Ask about one named jurisdiction. {{ not_a_variable }}" }

[[operator]]
name = "jurisdiction"
kind = "in_depth"
template = "scaffold"
method = "jurisdiction"
weight = 2
markers = ["#question#", "#harder#"]
rules = ["sorry", "copied_prompt"]
"##;
    let own = dir.write("legal.toml", own);
    let hostile = dir.write(
        "hostile.jsonl",
        "{\"id\":\"h\",\"instruction\":\"Explain {{ method }} and {% if x %}y{% endif %} under #Harder# law.\"}\n",
    );
    let out = dir.path("legal");
    let judged = mock.stats().judge;
    let run =
        evol_run(&mock.url, &hostile, &out, &["--rounds", "1", "--no-dedup", "--ops-file", own.to_str().unwrap()]);
    assert_success(&run);
    let rows: Vec<_> =
        read_lines(&out.join("evolved.jsonl")).into_iter().chain(read_lines(&out.join("rejected.jsonl"))).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["operation"], "jurisdiction");
    // The instruction went in as a value: the simulator saw it literally
    // (it echoes it), and the copied-prompt rule caught the set's heading.
    assert_eq!(rows[0]["reason"], "copied_prompt_words", "{}", rows[0]);
    assert!(rows[0]["instruction"].as_str().unwrap().starts_with("Explain {{ method }} and {% if x %}y{% endif %}"));
    assert_eq!(mock.stats().judge, judged, "the equality rule is not among the operator's rules");

    let check = |text: &str, expected: &[&str]| {
        let file = dir.write("broken.toml", text);
        let run = evol_run(&mock.url, &seeds, &dir.path("broken"), &["--ops-file", file.to_str().unwrap()]);
        assert_ne!(run.status.code(), Some(0));
        let err = stderr(&run);
        assert!(err.contains("broken.toml"), "{err}");
        for e in expected {
            assert!(err.contains(e), "{e:?} not in {err}");
        }
        assert!(!dir.path("broken").exists());
    };
    let op = "name = \"s\"\n[templates]\nt = \"{{ instruction }}\"\n[[operator]]\nname = \"x\"\nkind = \"k\"\ntemplate = \"t\"\n";
    check(&format!("{op}weight = -1\n"), &["operator `x`, field `weight`", "positive"]);
    check(&format!("{op}rules = [\"sory\"]\n"), &["operator `x`, field `rules[0]`", "sory"]);
    check(&format!("{op}temperature = 1\n"), &["operator `x`, field `temperature`", "unknown field"]);
    check(&op.replace("template = \"t\"", "template = \"u\""), &["operator `x`", "no template `u`"]);
    check(&op.replace("{{ instruction }}", "{{ instruction }"), &["template `t`"]);
    check("name = \"s\"\n[[operator]\n", &["line 2"]);
}

#[test]
fn evol_ops_lists_the_sets() {
    let list = evol(&["ops", "list"]);
    assert_success(&list);
    let text = String::from_utf8_lossy(&list.stdout);
    for word in ["evol:", "code:", "math:", "auto:", "misleading_code", "easier_topic", "downward", "asks_for_input"] {
        assert!(text.contains(word), "{word} in {text}");
    }
    let one = evol(&["ops", "show", "math:simplify"]);
    assert_success(&one);
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(
        text.contains("name = \"simplify\"") && !text.contains("easier_topic") && text.contains("math_downward ="),
        "{text}"
    );
}

/// The optimisation loop against the simulator, whose evolving replies
/// lose their final line less often the more `Check` steps a method has,
/// and whose optimiser adds 0 to 2 such steps (or writes no method): the
/// failure rate must fall, every candidate be recorded, the method file
/// run, and a rerun resume without sending anything.
#[test]
fn optimize_lowers_the_failure_rate_records_every_candidate_and_resumes() {
    let mock = Mock::start(MockConfig { leak_rate: 0.0, sorry_rate: 0.0, equal_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(40));
    let out = dir.path("method");
    let args = |extra: &[&str]| {
        let mut a = vec!["optimize", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url];
        a.extend([
            "--model",
            "mock",
            "--steps",
            "4",
            "--batch",
            "4",
            "--evolutions",
            "2",
            "--candidates",
            "3",
            "--dev",
            "20",
            "--quiet",
        ]);
        a.extend(extra.iter().copied());
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = evol(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&run);
    let history = read_lines(&out.join("history.jsonl"));
    assert!(!history.is_empty());
    let stats = read_json(&out.join("stats.json"));
    let result = &stats["result"];
    let start = result["start"]["failure_rate"].as_f64().unwrap();
    let end = result["failure_rate"].as_f64().unwrap();
    assert!(start > 0.3, "the universal method loses the final line often: {start}");
    assert!(end < start, "{start} -> {end}");
    assert_eq!(result["start"]["by_reason"]["unparsable_evolution"].as_u64().unwrap() as f64, (start * 20.0).round());
    // stats.json reads back as the job's typed report.
    let report: evol::jobs::optimize::OptimizeReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(report.result.map(|r| (r.start.failure_rate, r.failure_rate)), Some((start, end)));
    assert_eq!(report.steps_recorded, history.len());
    for step in &history {
        let candidates = step["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 3);
        assert_eq!(step["trajectories"].as_array().unwrap().len(), 4);
        assert!(step["trajectories"].as_array().unwrap().iter().all(|t| t["steps"].as_array().unwrap().len() == 2));
        for c in candidates {
            match c["method"].as_str() {
                Some(_) => assert_eq!(c["measured"]["measured"], 20),
                None => {
                    assert!(c["measured"].is_null() && c["reply"].as_str().unwrap().contains("#Analysis#"));
                }
            }
        }
        if let Some(chosen) = step["chosen"].as_u64() {
            let c = &candidates[chosen as usize];
            assert!(c["measured"]["failure_rate"].as_f64().unwrap() < step["failure_rate_before"].as_f64().unwrap());
            assert_eq!(c["method"], step["method_after"]);
        }
    }
    let optimize_calls = mock.stats().optimize as usize;
    assert_eq!(optimize_calls, 3 * history.len());
    // The method file holds the best method and runs.
    let method = std::fs::read_to_string(out.join("method.toml")).unwrap();
    assert!(method.contains("Check 1: make sure"), "{method}");
    let run_out = dir.path("run");
    let method_file = out.join("method.toml");
    assert_success(&evol_run(
        &mock.url,
        &seeds,
        &run_out,
        &["--rounds", "1", "--no-dedup", "--ops-file", method_file.to_str().unwrap()],
    ));
    assert_eq!(read_json(&run_out.join("stats.json"))["identity"]["settings"]["operations"][0]["name"], "auto");

    // A rerun sends nothing and writes the same history.
    let requests = mock.stats().requests;
    let again = evol(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&again);
    assert_eq!(mock.stats().requests, requests);
    assert_eq!(read_lines(&out.join("history.jsonl")), history);
    // Other settings on the same directory are refused.
    let other = evol(&args(&["--temperature", "0.5"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(other.status.code(), Some(1));
    assert!(stderr(&other).contains("other settings"), "{}", stderr(&other));
}

#[test]
fn optimize_stops_at_a_budget_and_resumes_to_the_same_result() {
    let mock = Mock::start(MockConfig { leak_rate: 0.0, sorry_rate: 0.0, equal_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let run = |out: &std::path::Path, extra: &[&str]| {
        let mut a = vec!["optimize", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--endpoint", &mock.url];
        a.extend([
            "--model",
            "mock",
            "--steps",
            "3",
            "--batch",
            "3",
            "--evolutions",
            "1",
            "--candidates",
            "2",
            "--quiet",
        ]);
        if !extra.contains(&"--dev") {
            a.extend(["--dev", "10"]);
        }
        a.extend(extra.iter().copied());
        evol(&a)
    };
    let whole = dir.path("whole");
    assert_success(&run(&whole, &[]));
    let capped = dir.path("capped");
    let first = run(&capped, &["--max-requests", "40"]);
    assert_ne!(first.status.code(), Some(0));
    assert_eq!(read_json(&capped.join("stats.json"))["state"], "capped");
    assert!(capped.join("method.toml").exists(), "the method so far is written");
    assert_success(&run(&capped, &[]));
    assert_eq!(read_lines(&capped.join("history.jsonl")), read_lines(&whole.join("history.jsonl")));
    assert_eq!(
        std::fs::read_to_string(capped.join("method.toml")).unwrap(),
        std::fs::read_to_string(whole.join("method.toml")).unwrap()
    );
    // Too few seeds for the held-out set: a clear usage error.
    let few = run(&dir.path("few"), &["--dev", "30"]);
    assert_eq!(few.status.code(), Some(2));
    assert!(stderr(&few).contains("--dev 30"), "{}", stderr(&few));
}

/// The constraints of a record or a dataset row.
fn constraints_of(row: &serde_json::Value) -> Vec<evol_constraints::Constraint> {
    match row.get("ground_truth") {
        Some(label) => {
            evol_constraints::GroundTruth::from_label(label.as_str().unwrap()).unwrap().constraints().unwrap()
        }
        None => serde_json::from_value(row["constraints"].clone()).unwrap(),
    }
}

#[test]
fn the_verifiable_set_adds_checked_constraints_and_exports_their_ground_truth() {
    let mock = Mock::start(MockConfig { leak_rate: 0.0, sorry_rate: 0.0, break_rate: 0.3, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(40));
    let out = dir.path("out");
    let args = ["--rounds", "3", "--ops", "verifiable", "-q"];
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));

    // Every kept row keeps every constraint it states, and carries them.
    let rows = read_lines(&out.join("dataset.jsonl"));
    assert!(rows.len() > 40, "{}", rows.len());
    for row in &rows {
        let constraints = constraints_of(row);
        assert!(!constraints.is_empty(), "{row}");
        assert_eq!(evol_constraints::check_all(&constraints, row["output"].as_str().unwrap()), Ok(()), "{row}");
    }
    for e in read_lines(&out.join("evolved.jsonl")) {
        let n = constraints_of(&e).len() as u64;
        assert!(n >= 1 && n <= e["round"].as_u64().unwrap(), "one constraint a kept round at most: {e}");
    }
    // Every answer that broke one was rejected, naming the first it broke.
    let rejected = read_lines(&out.join("rejected.jsonl"));
    let failed: Vec<_> = rejected.iter().filter(|r| r["reason"] == "constraint_failed").collect();
    assert!(failed.len() >= 5, "the simulator breaks a constraint in 3 answers of 10: {}", failed.len());
    for r in &failed {
        let broken = evol_constraints::check_all(&constraints_of(r), r["response"].as_str().unwrap()).unwrap_err();
        assert_eq!(r["detail"], broken.to_string());
    }
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["total"]["rejected"]["constraint_failed"].as_u64(), Some(failed.len() as u64));

    // Run again: nothing is sent, nothing changes.
    let dataset = std::fs::read(out.join("dataset.jsonl")).unwrap();
    let sent = mock.stats().requests;
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));
    assert_eq!(mock.stats().requests, sent);
    assert_eq!(std::fs::read(out.join("dataset.jsonl")).unwrap(), dataset);

    // Parquet carries the ground truth as open-instruct reads it.
    let parquet = dir.path("rl.parquet");
    let export = ["export", out.to_str().unwrap(), "--format", "messages", "--to", parquet.to_str().unwrap()];
    assert_success(&evol(&export));
    let read = std::process::Command::new("python3")
        .args(["-c", "import sys, json, ast, pyarrow.parquet as pq\nt = pq.read_table(sys.argv[1])\nfor g in t.column('ground_truth').to_pylist():\n    d = ast.literal_eval(g)[0]\n    print(json.dumps(d['instruction_id']))"])
        .arg(&parquet)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let ids: Vec<Vec<String>> =
        String::from_utf8(read.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let expected: Vec<Vec<String>> =
        rows.iter().map(|r| constraints_of(r).iter().map(|c| c.id().to_string()).collect()).collect();
    assert_eq!(ids, expected);

    // `evol answer` checks another model's answers against the rows'
    // constraints.
    let answered = dir.path("answered");
    let dataset_path = out.join("dataset.jsonl");
    assert_success(&evol(&[
        "answer",
        dataset_path.to_str().unwrap(),
        "-o",
        answered.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--reference-field",
        "ground_truth",
        "--answers",
        "3",
    ]));
    let (mut correct, mut wrong) = (0, 0);
    for q in read_lines(&answered.join("answers.jsonl")) {
        let truth = evol_constraints::GroundTruth::from_label(q["reference"].as_str().unwrap()).unwrap();
        let constraints = truth.constraints().unwrap();
        for sample in q["samples"].as_array().unwrap() {
            let checked = evol_constraints::check_all(&constraints, sample["answer"].as_str().unwrap());
            match sample["verdict"].as_str().unwrap() {
                "correct" => (correct += 1, assert_eq!(checked, Ok(()))).1,
                "wrong" => (wrong += 1, assert_eq!(sample["broken"], checked.unwrap_err().to_string())).1,
                other => panic!("{other}: {sample}"),
            }
        }
    }
    assert!(correct > 0 && wrong > 0, "{correct} correct, {wrong} wrong");

    // With three answers, the first that keeps them all is kept.
    let best = dir.path("best");
    assert_success(&evol_run(&mock.url, &seeds, &best, &[&args[..], &["--answers", "3", "--pick", "first"]].concat()));
    let kept = read_lines(&best.join("evolved.jsonl"));
    let rescued = kept
        .iter()
        .filter(|e| e["answers"].as_array().unwrap().iter().any(|a| a["rejected"] == "constraint_failed"))
        .count();
    assert!(rescued > 0, "some rows kept a later answer after one broke a constraint");
    for e in &kept {
        let answers = e["answers"].as_array().unwrap();
        let first_passing = answers.iter().position(|a| a["rejected"].is_null()).unwrap();
        assert_eq!(answers[first_passing]["kept"], true, "{e}");
    }
    let failed_best =
        read_lines(&best.join("rejected.jsonl")).iter().filter(|r| r["reason"] == "constraint_failed").count();
    assert!(failed_best < failed.len(), "{failed_best} rejected of three answers, {} of one", failed.len());
}

#[test]
fn tree_instruct_adds_the_chosen_number_of_nodes_and_reports_difficulty_per_number() {
    let mock = Mock::start(MockConfig { leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    let args = ["--rounds", "1", "--ops", "tree", "--tree-nodes", "2,12", "--score-difficulty", "--no-dedup"];
    let run = evol_run(&mock.url, &seeds, &out, &args);
    assert_success(&run);
    assert!(stderr(&run).contains("difficulty by nodes added: 2 nodes "), "{}", stderr(&run));
    let evolved = read_lines(&out.join("evolved.jsonl"));
    assert!(evolved.len() > 20);
    for e in &evolved {
        let nodes = e["nodes"].as_u64().unwrap();
        assert!(nodes == 2 || nodes == 12, "{e}");
        let instruction = e["instruction"].as_str().unwrap();
        assert!(!instruction.contains("#New Tree#") && instruction.starts_with("Explain topic number"), "{e}");
    }
    let stats = read_json(&out.join("stats.json"));
    let by_nodes = &stats["difficulty_by_nodes"];
    let (few, many) = (by_nodes["2"]["mean"].as_f64().unwrap(), by_nodes["12"]["mean"].as_f64().unwrap());
    assert!(many > few, "more nodes, harder: {by_nodes}");
    assert_eq!(stats["identity"]["settings"]["operations"][0]["nodes"], serde_json::json!([2, 12]));

    for (flags, says) in [
        (&["--ops", "tree", "--tree-nodes", "0"][..], "--tree-nodes: 0 nodes: a step adds from 1 to 50"),
        (&["--ops", "evol", "--tree-nodes", "3"][..], "--tree-nodes: no selected operation adds nodes"),
    ] {
        let bad = evol_run(&mock.url, &seeds, &dir.path("bad"), flags);
        assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
        assert!(stderr(&bad).contains(says), "{}", stderr(&bad));
    }
}

#[test]
fn magpie_writes_deduplicated_instructions_from_a_servers_completions() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let out = dir.path("out");
    let magpie = |count: &str, extra: &[&str]| {
        let base = ["magpie", "-o", out.to_str().unwrap(), "--count", count, "--endpoint", &mock.url];
        evol(&[&base[..], extra].concat())
    };
    let steer = ["--topic", "tide tables", "--persona", "a harbour pilot", "--template-family", "chatml"];
    let run = magpie("30", &steer);
    assert_success(&run);
    assert_eq!(mock.stats().generated, 30, "one text completion a generation");
    let kept = read_lines(&out.join("instructions.jsonl"));
    let left = read_lines(&out.join("left_out.jsonl"));
    assert_eq!(kept.len() + left.len(), 30);
    // The system message reached the model: every request is on its topic.
    let system = "The person you are talking to is a harbour pilot. They ask you about tide tables.";
    for row in &kept {
        assert!(row["instruction"].as_str().unwrap().contains("tide tables"), "{row}");
        assert_eq!(row["system"], system);
    }
    let texts: std::collections::BTreeSet<&str> = kept.iter().map(|r| r["instruction"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), kept.len(), "each instruction once");
    assert!(!left.is_empty(), "the simulator repeats itself");
    for row in &left {
        assert_eq!(row["reason"], "duplicate", "{row}");
        let of = kept.iter().find(|k| k["id"] == row["duplicate_of"]).expect("a duplicate names a kept instruction");
        assert_eq!(of["instruction"], row["text"]);
    }
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(
        (stats["kept"].as_u64(), stats["left_out"]["duplicate"].as_u64()),
        (Some(kept.len() as u64), Some(left.len() as u64))
    );

    // A rerun sends nothing; a larger count sends only the new ones.
    assert_success(&magpie("30", &steer));
    assert_eq!(mock.stats().generated, 30);
    assert_success(&magpie("40", &steer));
    assert_eq!(mock.stats().generated, 40);
    // Another system message is another job.
    let other = magpie("40", &["--topic", "kites", "--template-family", "chatml"]);
    assert!(!other.status.success() && stderr(&other).contains("changed: system"), "{}", stderr(&other));

    // The instructions are seeds for `evol run`.
    let run_out = dir.path("run");
    assert_success(&evol_run(&mock.url, &out.join("instructions.jsonl"), &run_out, &["--rounds", "1", "-q"]));
    let evolved = read_lines(&run_out.join("evolved.jsonl"));
    assert!(evolved.iter().all(|e| e["seed_id"].as_str().unwrap().starts_with("magpie-")), "ids carried");

    // How the turn opens must be said for a server, and only once.
    for (flags, says) in [
        (&[][..], "--template-family chatml|llama3|gemma|phi3|mistral, or --prefix TEXT"),
        (&["--template-family", "vicuna"][..], "--template-family `vicuna` is not one evol knows"),
        (&["--template-family", "chatml", "--language", "xx"][..], "--language `xx` is not a language code"),
        (&["--prefix", "<s>{system}[INST] "][..], "--prefix holds `{system}` but there is no system message"),
        (&["--prefix", "<s>[INST] ", "--topic", "kites"][..], "--prefix has no `{system}`"),
    ] {
        let bad =
            evol(&[&["magpie", "-o", dir.path("bad").to_str().unwrap(), "--endpoint", &mock.url][..], flags].concat());
        assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
        assert!(stderr(&bad).contains(says), "{}", stderr(&bad));
    }
}

#[test]
fn conversations_keep_each_good_turn_end_at_a_failed_one_and_resume_exactly() {
    let mock = Mock::start(MockConfig { sorry_rate: 0.2, leak_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    let args = ["--turns", "3", "-q"];
    // Stopped by a request cap part of the way, then resumed.
    let capped = evol_run(&mock.url, &seeds, &out, &["--turns", "3", "-q", "--max-requests", "40"]);
    assert_eq!(capped.status.code(), Some(3), "{}", stderr(&capped));
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));
    let sent = mock.stats().requests;

    let instructions: std::collections::BTreeMap<String, String> = read_lines(&seeds)
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["instruction"].as_str().unwrap().to_string()))
        .collect();
    let evolved = read_lines(&out.join("evolved.jsonl"));
    let rejected = read_lines(&out.join("rejected.jsonl"));
    assert!(!rejected.is_empty() && evolved.len() > 20, "{} kept turns, {} failed", evolved.len(), rejected.len());
    // A failed turn ends its conversation: no later turn of that seed.
    for r in &rejected {
        let (seed, round) = (r["seed_id"].as_str().unwrap(), r["round"].as_u64().unwrap());
        assert!(r["reason"].is_string());
        assert!(!evolved.iter().any(|e| e["seed_id"] == seed && e["round"].as_u64().unwrap() > round), "{r}");
        assert_eq!(r["history"].as_array().unwrap().len() as u64, 2 * round, "the turns it was kept up to: {r}");
    }
    // One row per conversation: its last good turn, with every turn before.
    let rows = read_lines(&out.join("dataset.jsonl"));
    let seeds_with_turns: std::collections::BTreeSet<&str> =
        evolved.iter().map(|e| e["seed_id"].as_str().unwrap()).collect();
    assert_eq!(rows.len(), seeds_with_turns.len());
    for row in &rows {
        let e = evolved.iter().find(|e| e["id"] == row["id"]).unwrap();
        let seed = e["seed_id"].as_str().unwrap();
        let last = evolved.iter().filter(|x| x["seed_id"] == seed).map(|x| x["round"].as_u64().unwrap()).max();
        assert_eq!(e["round"].as_u64(), last, "the conversation's last turn");
        let history = row["history"].as_array().unwrap();
        assert_eq!(history.len() as u64, 2 * e["round"].as_u64().unwrap());
        assert_eq!(history[0]["content"], instructions[seed].as_str(), "the seed opens it");
        for (i, m) in history.iter().enumerate() {
            assert_eq!(m["role"], if i % 2 == 0 { "user" } else { "assistant" });
        }
    }
    // A rerun sends nothing and changes nothing.
    let dataset = std::fs::read(out.join("dataset.jsonl")).unwrap();
    assert_success(&evol_run(&mock.url, &seeds, &out, &args));
    assert_eq!(mock.stats().requests, sent);
    assert_eq!(std::fs::read(out.join("dataset.jsonl")).unwrap(), dataset);
    // The same run in one go makes the same conversations.
    let whole = dir.path("whole");
    assert_success(&evol_run(&mock.url, &seeds, &whole, &args));
    assert_eq!(std::fs::read(whole.join("dataset.jsonl")).unwrap(), dataset, "resumed exactly");

    // Exported as whole conversations that `datasets` loads.
    let hub = dir.path("hub");
    assert_success(&evol(&["export", out.to_str().unwrap(), "--format", "sharegpt", "--to", hub.to_str().unwrap()]));
    let read = std::process::Command::new("python3")
        .args(["-c", "import sys, json, datasets\nd = datasets.load_dataset(sys.argv[1], split='train')\nprint(json.dumps([len(r['conversations']) for r in d]))"])
        .arg(&hub)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HOME", dir.path("hf"))
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let lengths: Vec<usize> = serde_json::from_slice(&read.stdout).unwrap();
    let expected: Vec<usize> = rows.iter().map(|r| r["history"].as_array().unwrap().len() + 2).collect();
    assert_eq!(lengths, expected);
    let alpaca = evol(&["export", out.to_str().unwrap(), "--to", dir.path("a.jsonl").to_str().unwrap()]);
    assert!(
        !alpaca.status.success() && stderr(&alpaca).contains("use --format messages or sharegpt"),
        "{}",
        stderr(&alpaca)
    );

    // A seed that is a conversation goes on from its last user turn, which
    // is answered in the context of the turns before it.
    let chats: String = (0..6)
        .map(|i| {
            let turns = serde_json::json!([
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": format!("Wie funktioniert ein Kompass? ({i})")},
                {"role": "assistant", "content": "Eine Magnetnadel richtet sich nach dem Erdmagnetfeld aus."},
                {"role": "user", "content": format!("Und warum zeigt er nicht genau nach Norden? ({i})")},
                {"role": "assistant", "content": "Dropped: the answer model answers this turn."},
            ]);
            format!("{}\n", serde_json::json!({"id": format!("chat{i}"), "messages": turns}))
        })
        .collect();
    let chats = dir.write("chats.jsonl", &chats);
    let chat_out = dir.path("chat-out");
    assert_success(&evol_run(&mock.url, &chats, &chat_out, &["--turns", "2", "--include-seeds", "-q"]));
    let answers = read_lines(&chat_out.join("seeds.jsonl"));
    assert_eq!(answers.len(), 6);
    for a in &answers {
        assert!(a["instruction"].as_str().unwrap().starts_with("Und warum"), "the last user turn is answered: {a}");
        assert!(!a["response"].as_str().unwrap_or_default().starts_with("Dropped"), "{a}");
    }
    let opened = answers.iter().filter(|a| a["rejected"].is_null() && a["response"].is_string()).count();
    assert!(opened > 0);
    let rows = read_lines(&chat_out.join("dataset.jsonl"));
    assert_eq!(rows.len(), opened, "one row per conversation, its seed's row held by it");
    for row in &rows {
        let history = row["history"].as_array().unwrap();
        assert!(history.len() >= 2, "{row}");
        assert!(history[0]["content"].as_str().unwrap().starts_with("Wie funktioniert"), "{row}");
        assert_eq!(history[1]["content"], "Eine Magnetnadel richtet sich nach dem Erdmagnetfeld aus.");
        let last_user = if history.len() == 2 { &row["instruction"] } else { &history[2]["content"] };
        assert!(last_user.as_str().unwrap().starts_with("Und warum"), "{row}");
        assert!(!row.to_string().contains("Be kind.") && !row.to_string().contains("Dropped"), "{row}");
        for (i, m) in history.iter().enumerate() {
            assert_eq!(m["role"], if i % 2 == 0 { "user" } else { "assistant" });
        }
    }

    // Follow-ups only with --turns, and only follow-ups with it.
    let bad = evol_run(&mock.url, &seeds, &dir.path("bad"), &["--turns", "3", "--ops", "evol"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--turns adds follow-up turns"), "{}", stderr(&bad));
    let bad = evol_run(&mock.url, &seeds, &dir.path("bad"), &["--ops", "conversation"]);
    assert!(stderr(&bad).contains("give --turns N"), "{}", stderr(&bad));
}
