//! Evaluation end to end against the simulator, on the real 218-question
//! Evol-Instruct test set: `evol answer`, `evol judge`, `evol arena`
//! (ratings, refit from battle logs, Arena Learning data), resumes, caps
//! and bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::*;
use evol_mock::MockConfig;
use serde_json::Value;

fn testset() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wizardlm_testset.jsonl")
}

/// A simulator whose judge knows three models' strengths.
fn judged_mock(unreadable_rate: f64) -> Mock {
    Mock::start(MockConfig {
        strengths: [("strong", 2.0), ("mid", 0.0), ("weak", -2.0)].iter().map(|(m, s)| (m.to_string(), *s)).collect(),
        position_bias: 0.5,
        unreadable_rate,
        sorry_rate: 0.0,
        // Listed, so no trial call is needed to find them.
        models: ["strong", "mid", "weak", "fourth", "judge"].iter().map(|m| m.to_string()).collect(),
        ..MockConfig::default()
    })
}

fn answer(mock: &Mock, testset: &Path, out: &Path, model: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "answer",
        testset.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--model",
        model,
    ];
    args.extend_from_slice(extra);
    evol(&args)
}

fn testset_ids() -> Vec<String> {
    read_lines(&testset()).iter().map(|r| r["idx"].to_string()).collect()
}

#[test]
fn answer_judge_and_arena_on_the_evol_instruct_test_set() {
    let mock = judged_mock(0.02);
    let dir = Dir::new();
    let set = testset();
    let ids = testset_ids();
    assert_eq!(ids.len(), 218);
    for model in ["strong", "mid", "weak"] {
        assert_success(&answer(&mock, &set, &dir.path(model), model, &["-q"]));
        let rows = read_lines(&dir.path(model).join("answers.jsonl"));
        let got: Vec<String> = rows.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(got, ids, "every question answered once, in test-set order");
        assert!(rows.iter().all(|r| r["model"] == model && r["answer"].as_str().unwrap().contains(model)));
        assert!(rows.iter().all(|r| r["skill"].is_string() && r["difficulty"].is_u64() && r["usage"].is_object()));
    }
    assert_eq!(mock.stats().answer, 3 * 218);

    // The judge: mid against strong, both orders.
    let before = mock.stats().pairwise;
    let judge = dir.path("judge");
    let run = evol(&[
        "judge",
        set.to_str().unwrap(),
        "--candidate",
        dir.path("mid").to_str().unwrap(),
        "--reference",
        dir.path("strong").join("answers.jsonl").to_str().unwrap(),
        "-o",
        judge.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
    ]);
    assert_success(&run);
    assert_eq!(mock.stats().pairwise - before, 436, "both orders of 218 questions");
    let text = stderr(&run);
    assert!(
        text.contains("overall") && text.contains("difficulty 8-10") && text.contains("skill Code Debug"),
        "{text}"
    );
    let report = read_json(&judge.join("report.json"));
    // The file is the library's type, written again byte for byte.
    let text = std::fs::read_to_string(judge.join("report.json")).unwrap();
    let typed: evol::jobs::judge::ReportFile = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string_pretty(&typed).unwrap() + "\n", text);
    let overall = &report["report"]["overall"];
    let ratio = overall["score_ratio"].as_f64().unwrap();
    assert!(ratio < 0.9, "a weaker candidate scores below its reference: {ratio}");
    assert!(overall["ratio_ci_low"].as_f64().unwrap() < ratio && ratio < overall["ratio_ci_high"].as_f64().unwrap());
    assert!(overall["losses"].as_u64().unwrap() > overall["wins"].as_u64().unwrap());
    let judgments = read_lines(&judge.join("judgments.jsonl"));
    assert_eq!(judgments.len(), 218);
    // Every game is in the judgments, read or unreadable, and the counts agree.
    let games: Vec<&Value> = judgments.iter().flat_map(|j| j["games"].as_array().unwrap()).collect();
    assert_eq!(games.len(), 436);
    let unreadable = games.iter().filter(|g| g["unreadable"] == true).count();
    assert_eq!(report["games"]["unreadable"].as_u64().unwrap() as usize, unreadable);
    assert!(unreadable > 0, "a 2% unreadable rate leaves some replies unread");
    assert!(games.iter().filter(|g| g["unreadable"] == true).all(|g| g["candidate_score"].is_null()));
    // The ratio is the sum of the candidate's scores over the reference's.
    let sum = |k: &str| games.iter().filter_map(|g| g[k].as_f64()).sum::<f64>();
    assert!((ratio - sum("candidate_score") / sum("reference_score")).abs() < 1e-9);
    // A flip counts as a tie; the consistency is the share of non-flips.
    let both: Vec<&Value> = judgments
        .iter()
        .filter(|j| j["games"].as_array().unwrap().iter().filter(|g| g["candidate_score"].is_number()).count() == 2)
        .collect();
    let sign = |g: &Value| g["candidate_score"].as_f64().unwrap().total_cmp(&g["reference_score"].as_f64().unwrap());
    let agree = both.iter().filter(|j| sign(&j["games"][0]) == sign(&j["games"][1])).count();
    let consistency = overall["position_consistency"].as_f64().unwrap();
    assert!((consistency - agree as f64 / both.len() as f64).abs() < 1e-9, "{consistency} {agree} {}", both.len());
    for j in &both {
        if sign(&j["games"][0]) != sign(&j["games"][1]) {
            assert_eq!(j["verdict"], "tie", "{j}");
        }
    }
    // Skills and bands cover the set.
    assert_eq!(report["report"]["by_skill"].as_object().unwrap().len(), 29);
    let bands = report["report"]["by_band"].as_array().unwrap();
    let in_bands: u64 = bands.iter().map(|b| b[1]["items"].as_u64().unwrap()).sum();
    assert_eq!(in_bands, overall["items"].as_u64().unwrap());
    // Code and maths items got their own prompts.
    let kind = |skill: &str| judgments.iter().find(|j| j["skill"] == skill).unwrap()["judge_prompt"].clone();
    assert_eq!((kind("Code Debug"), kind("Math"), kind("Writting")), ("code".into(), "math".into(), "general".into()));
    let md = std::fs::read_to_string(judge.join("report.md")).unwrap();
    assert!(md.contains(&format!("| overall | {} |", overall["items"])), "{md}");

    // A rerun replays every call.
    let requests = mock.stats().requests;
    let again = evol(&[
        "judge",
        set.to_str().unwrap(),
        "--candidate",
        dir.path("mid").to_str().unwrap(),
        "--reference",
        dir.path("strong").to_str().unwrap(),
        "-o",
        judge.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "-q",
    ]);
    assert_success(&again);
    assert_eq!(mock.stats().requests - requests, 0, "every call replayed: {}", stderr(&again));
    assert_eq!(read_json(&judge.join("report.json")), report);

    // One order per question, alternating by id parity.
    let single = dir.path("single");
    assert_success(&evol(&[
        "judge",
        set.to_str().unwrap(),
        "--candidate",
        dir.path("weak").to_str().unwrap(),
        "--reference",
        dir.path("mid").to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "--single-order",
        "-q",
    ]));
    for j in read_lines(&single.join("judgments.jsonl")) {
        let id: i64 = j["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(j["games"].as_array().unwrap().len(), 1);
        assert_eq!(j["games"][0]["candidate_first"], id % 2 == 1, "{j}");
    }
    assert!(read_json(&single.join("report.json"))["report"]["overall"]["position_consistency"].is_null());

    // The arena: the strengths' order comes back, with intervals.
    let arena = dir.path("arena");
    // --pairs-per-question reaches the draw (its seeding is unit-tested
    // in the library): one pair a question, both orders.
    let before = mock.stats().pairwise;
    let sampled = dir.path("sampled");
    let run = evol(&[
        "arena",
        "--answers",
        dir.path("weak").to_str().unwrap(),
        dir.path("strong").to_str().unwrap(),
        dir.path("mid").to_str().unwrap(),
        "-o",
        sampled.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "--pairs-per-question",
        "1",
        "-q",
    ]);
    assert_success(&run);
    assert_eq!(mock.stats().pairwise - before, 218 * 2, "one pair a question, two games");

    let learn = dir.path("learn");
    let before = mock.stats().pairwise;
    let run = evol(&[
        "arena",
        "--answers",
        dir.path("weak").to_str().unwrap(),
        dir.path("strong").to_str().unwrap(),
        dir.path("mid").to_str().unwrap(),
        "-o",
        arena.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "--style-control",
        "--target",
        "weak",
        "--learn",
        learn.to_str().unwrap(),
    ]);
    assert_success(&run);
    assert_eq!(mock.stats().pairwise - before, 218 * 3 * 2, "every pair, both orders");
    let ratings = read_json(&arena.join("ratings.json"));
    let text = std::fs::read_to_string(arena.join("ratings.json")).unwrap();
    let typed: evol::jobs::arena::RatingsFile = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string_pretty(&typed).unwrap() + "\n", text, "the library's type, byte for byte");
    let board = ratings["leaderboard"].as_array().unwrap();
    let order: Vec<&str> = board.iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(order, ["strong", "mid", "weak"], "{ratings}");
    let ranks: Vec<u64> = board.iter().map(|m| m["rank"].as_u64().unwrap()).collect();
    assert_eq!(ranks, [1, 2, 3]);
    for m in board {
        let (r, lo, hi) =
            (m["rating"].as_f64().unwrap(), m["ci_low"].as_f64().unwrap(), m["ci_high"].as_f64().unwrap());
        assert!(lo < r && r < hi, "{m}");
        let (w, t, l) = (m["wins"].as_u64().unwrap(), m["ties"].as_u64().unwrap(), m["losses"].as_u64().unwrap());
        assert_eq!(w + t + l, m["battles"].as_u64().unwrap());
    }
    let mean = board.iter().map(|m| m["rating"].as_f64().unwrap()).sum::<f64>() / 3.0;
    assert!((mean - 1000.0).abs() < 1e-6);
    assert_eq!(ratings["level"], 0.95);
    assert_eq!(ratings["rounds"], 1000);
    let styled: Vec<&str> = ratings["style_controlled"]["leaderboard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(styled, ["strong", "mid", "weak"]);
    let battles = read_lines(&arena.join("battles.jsonl"));
    let unjudged = read_lines(&arena.join("unjudged.jsonl"));
    assert_eq!(battles.len() + unjudged.len(), 1308);
    assert!(!unjudged.is_empty() && unjudged.iter().all(|u| u["unreadable"].is_string()));
    for b in &battles {
        let (a, z) = (b["score_a"].as_f64().unwrap(), b["score_b"].as_f64().unwrap());
        let want = if a > z {
            "model_a"
        } else if a < z {
            "model_b"
        } else {
            "tie"
        };
        assert_eq!(b["winner"], want, "{b}");
        assert_eq!(b["judge"], "judge");
    }
    assert_eq!(ratings["games"]["judged"].as_u64().unwrap() as usize, battles.len());
    assert!(std::fs::read_to_string(arena.join("leaderboard.md")).unwrap().contains("| 1 | strong |"));

    // Arena Learning: SFT from the battles the target lost, DPO pairs.
    let sft = read_lines(&learn.join("sft.jsonl"));
    let dpo = read_lines(&learn.join("dpo.jsonl"));
    assert!(sft.len() > 100 && dpo.len() > sft.len(), "{} {}", sft.len(), dpo.len());
    for r in &sft {
        assert_ne!(r["model"], "weak");
        assert!(r["output"].as_str().unwrap().contains(r["model"].as_str().unwrap()), "the winner's own answer");
        assert!(r["instruction"].is_string() && r["margin"].as_f64().unwrap() > 0.0);
    }
    let ids: std::collections::HashSet<&str> = dpo.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), dpo.len(), "every pair has its own id");
    for r in &dpo {
        assert!(r["chosen_model"] == "weak" || r["rejected_model"] == "weak");
        let opponent = if r["chosen_model"] == "weak" { &r["rejected_model"] } else { &r["chosen_model"] };
        assert_eq!(
            r["id"].as_str().unwrap(),
            format!("{}/{}", r["question_id"].as_str().unwrap(), opponent.as_str().unwrap())
        );
        assert!(r["chosen"].as_str().unwrap().contains(r["chosen_model"].as_str().unwrap()));
        assert!(r["rejected"].as_str().unwrap().contains(r["rejected_model"].as_str().unwrap()));
    }
    // The pairs are those whose both games agree: check one against the log.
    let first = &dpo[0];
    let games: Vec<&Value> = battles
        .iter()
        .filter(|b| {
            b["id"] == first["question_id"]
                && [&b["model_a"], &b["model_b"]].contains(&&first["chosen_model"])
                && [&b["model_a"], &b["model_b"]].contains(&&first["rejected_model"])
        })
        .collect();
    assert_eq!(games.len(), 2);
    for g in &games {
        let side = if g["model_a"] == first["chosen_model"] { "model_a" } else { "model_b" };
        assert_eq!(g["winner"], side);
    }

    // A rerun with a margin floor calls nothing and keeps fewer pairs.
    let requests = mock.stats().requests;
    let strict = dir.path("learn-strict");
    assert_success(&evol(&[
        "arena",
        "--answers",
        dir.path("mid").to_str().unwrap(),
        dir.path("weak").to_str().unwrap(),
        dir.path("strong").to_str().unwrap(),
        "-o",
        arena.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "--style-control",
        "--target",
        "weak",
        "--learn",
        strict.to_str().unwrap(),
        "--min-margin",
        "3",
        "-q",
    ]));
    assert_eq!(mock.stats().requests - requests, 0, "the answers' order does not change the calls");
    assert_eq!(read_json(&arena.join("ratings.json")), ratings, "same battles, same seed, same ratings");
    let strict = read_lines(&strict.join("dpo.jsonl"));
    assert!(strict.len() < dpo.len() && strict.iter().all(|r| r["margin"].as_f64().unwrap() >= 3.0));

    // Refit from the battle log alone: the same leaderboard.
    let refit = dir.path("refit");
    let run = evol(&[
        "arena",
        "--battles",
        arena.join("battles.jsonl").to_str().unwrap(),
        "-o",
        refit.to_str().unwrap(),
        "--style-control",
    ]);
    assert_success(&run);
    let refitted = read_json(&refit.join("ratings.json"));
    assert_eq!(refitted["leaderboard"], ratings["leaderboard"]);
    assert_eq!(refitted["style_controlled"], ratings["style_controlled"]);
    assert_eq!(refitted["judge"], "judge");
    // Each arena's stats.json reads back as the job's typed report.
    let report = |dir: &std::path::Path| -> evol::jobs::arena::ArenaReport {
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap()
    };
    match (report(&arena), report(&refit)) {
        (evol::jobs::arena::ArenaReport::Battled(b), evol::jobs::arena::ArenaReport::Refitted(r)) => {
            assert_eq!(
                (b.games.games, b.judge.as_str(), b.lessons.map(|l| l.dpo)),
                (218 * 3 * 2, "judge", Some(strict.len()))
            );
            assert_eq!((r.battles, r.judges["judge"]), (b.games.judged, b.games.judged as u64));
        }
        other => panic!("an arena and a refit: {other:?}"),
    }

    // A fourth model joins: only its battles are judged.
    assert_success(&answer(&mock, &set, &dir.path("fourth"), "fourth", &["-q"]));
    let before = mock.stats().pairwise;
    assert_success(&evol(&[
        "arena",
        "--answers",
        dir.path("mid").to_str().unwrap(),
        dir.path("weak").to_str().unwrap(),
        dir.path("strong").to_str().unwrap(),
        dir.path("fourth").to_str().unwrap(),
        "-o",
        arena.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "-q",
    ]));
    assert_eq!(mock.stats().pairwise - before, 218 * 3 * 2, "three new pairs per question");
    let four = read_json(&arena.join("ratings.json"));
    let order: Vec<&str> =
        four["leaderboard"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
    // `fourth` has strength 0, as `mid`.
    assert_eq!(order[0], "strong");
    assert_eq!(order[3], "weak");
}

#[test]
fn a_capped_judge_writes_what_it_has_and_resumes_without_paying_twice() {
    let mock = judged_mock(0.0);
    let dir = Dir::new();
    let set = testset();
    for model in ["strong", "weak"] {
        assert_success(&answer(&mock, &set, &dir.path(model), model, &["-q", "--limit", "60"]));
    }
    let judge = dir.path("judge");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "judge",
            set.to_str().unwrap(),
            "--candidate",
            dir.path("strong").to_str().unwrap(),
            "--reference",
            dir.path("weak").to_str().unwrap(),
            "-o",
            judge.to_str().unwrap(),
            "--endpoint",
            &mock.url,
            "--judge-model",
            "judge",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let before = mock.stats().pairwise;
    let capped = evol(&args(&["--max-requests", "50"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(capped.status.code(), Some(3), "{}", stderr(&capped));
    let partial = read_json(&judge.join("report.json"));
    let judged = partial["games"]["judged"].as_u64().unwrap();
    assert!((1..=50).contains(&judged), "{partial}");
    assert_eq!(read_json(&judge.join("stats.json"))["state"], "capped");
    let done = evol(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&done);
    let report = read_json(&judge.join("report.json"));
    assert_eq!(report["games"]["judged"], 120, "60 questions, both orders");
    // stats.json reads back as the job's typed report.
    let stats: evol::jobs::judge::JudgeReport =
        serde_json::from_str(&std::fs::read_to_string(judge.join("stats.json")).unwrap()).unwrap();
    assert_eq!((stats.state, stats.games.judged), (evol_store::RunState::Completed, 120), "{stats:?}");
    assert_eq!(mock.stats().pairwise - before, 120, "no game judged twice");
    // The stronger candidate wins: more than its reference, and the
    // mock's position bias shows as imperfect consistency.
    let ratio = report["report"]["overall"]["score_ratio"].as_f64().unwrap();
    assert!(ratio > 1.3, "{ratio}");
    // Questions outside the answers are counted, not judged.
    assert_eq!(report["not_judged"]["candidate"], 218 - 60);
}

#[test]
fn conversations_are_answered_turn_by_turn_and_judged_whole() {
    let mock = judged_mock(0.0);
    let dir = Dir::new();
    let set = dir.write(
        "mt.jsonl",
        "{\"question_id\": 81, \"category\": \"writing\", \"turns\": [\"Write a haiku about rain.\", \"Now make it about snow.\"]}\n\
         {\"question_id\": 82, \"category\": \"coding\", \"turns\": [\"Write fizzbuzz in Rust.\", \"Now in Python.\"]}\n",
    );
    for model in ["strong", "weak"] {
        assert_success(&answer(&mock, &set, &dir.path(model), model, &["-q", "--system", "Be brief."]));
        let rows = read_lines(&dir.path(model).join("answers.jsonl"));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["id"], "81");
        assert_eq!(rows[0]["answers"].as_array().unwrap().len(), 2);
        assert!(rows[0].get("answer").is_none() && rows[0]["turns"].is_array());
    }
    assert_eq!(mock.stats().answer, 8, "two turns, two questions, two models");
    let judge = dir.path("judge");
    assert_success(&evol(&[
        "judge",
        set.to_str().unwrap(),
        "--candidate",
        dir.path("weak").to_str().unwrap(),
        "--reference",
        dir.path("strong").to_str().unwrap(),
        "-o",
        judge.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "-q",
    ]));
    let j = read_lines(&judge.join("judgments.jsonl"));
    assert_eq!(j.len(), 2);
    assert_eq!(j[1]["judge_prompt"], "code");
    assert!(j.iter().all(|x| x["games"].as_array().unwrap().len() == 2));
    // The judge saw both turns of both sides: each game was read.
    assert_eq!(read_json(&judge.join("report.json"))["games"]["judged"], 4);
}

#[test]
fn bad_input_is_refused_naming_the_place() {
    let mock = judged_mock(0.0);
    let dir = Dir::new();
    let set = testset();
    let dup = dir.write("dup.jsonl", "{\"idx\": 1, \"Instruction\": \"a\"}\n{\"idx\": 1, \"Instruction\": \"b\"}\n");
    let out = answer(&mock, &dup, &dir.path("x"), "strong", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2") && stderr(&out).contains("already used at"), "{}", stderr(&out));
    assert!(!dir.path("x").exists(), "nothing is created before the input is read");
    let empty = dir.write("empty.jsonl", "{\"idx\": 1, \"Instruction\": \"  \"}\n");
    assert!(stderr(&answer(&mock, &empty, &dir.path("x"), "strong", &[])).contains("line 1"));

    // Answers that are not answers, or answer another test set.
    let bad = dir.write("bad.jsonl", "{\"id\": 1, \"model\": \"m\"}\n");
    assert_success(&answer(&mock, &set, &dir.path("strong"), "strong", &["-q", "--limit", "3"]));
    let judge = |candidate: &Path| {
        evol(&[
            "judge",
            set.to_str().unwrap(),
            "--candidate",
            candidate.to_str().unwrap(),
            "--reference",
            dir.path("strong").to_str().unwrap(),
            "-o",
            dir.path("j").to_str().unwrap(),
            "--endpoint",
            &mock.url,
        ])
    };
    let out = judge(&bad);
    assert!(stderr(&out).contains("bad.jsonl") && stderr(&out).contains("line 1"), "{}", stderr(&out));
    let other = dir.write(
        "other.jsonl",
        "{\"id\": 1, \"model\": \"m\", \"instruction\": \"Something else\", \"answer\": \"x\"}\n",
    );
    let out = judge(&other);
    assert!(stderr(&out).contains("another question"), "{}", stderr(&out));
    assert!(stderr(&judge(&dir.path("missing"))).contains("no answers at"));

    // The arena needs two models, known anchors and targets, connected battles.
    let one =
        evol(&["arena", "--answers", dir.path("strong").to_str().unwrap(), "-o", dir.path("a").to_str().unwrap()]);
    assert_eq!(one.status.code(), Some(2), "{}", stderr(&one));
    assert_success(&answer(&mock, &set, &dir.path("weak"), "weak", &["-q", "--limit", "3"]));
    let unknown = evol(&[
        "arena",
        "--answers",
        dir.path("strong").to_str().unwrap(),
        dir.path("weak").to_str().unwrap(),
        "-o",
        dir.path("a").to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--anchor",
        "gpt-9=1200",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("gpt-9") && stderr(&unknown).contains("`strong`"), "{}", stderr(&unknown));
    let log = dir.write(
        "battles.jsonl",
        "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"model_a\"}\n\
         {\"model_a\": \"c\", \"model_b\": \"d\", \"winner\": \"tie (bothbad)\"}\n",
    );
    let out = evol(&["arena", "--battles", log.to_str().unwrap(), "-o", dir.path("r").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("[`a`, `b`] and [`c`, `d`] never met"), "{}", stderr(&out));
    let garbled = dir.write("garbled.jsonl", "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"a\"}\n");
    let out = evol(&["arena", "--battles", garbled.to_str().unwrap(), "-o", dir.path("r2").to_str().unwrap()]);
    assert!(stderr(&out).contains("line 1") && stderr(&out).contains("model_a, model_b or tie"), "{}", stderr(&out));
    let no_style = dir.write("plain.jsonl", "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"model_b\"}\n");
    let out = evol(&[
        "arena",
        "--battles",
        no_style.to_str().unwrap(),
        "-o",
        dir.path("r3").to_str().unwrap(),
        "--style-control",
    ]);
    assert!(stderr(&out).contains("length_a"), "{}", stderr(&out));
    let out = evol(&[
        "arena",
        "--battles",
        no_style.to_str().unwrap(),
        "-o",
        dir.path("r4").to_str().unwrap(),
        "--learn",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));

    // An unreachable judge fails at once, naming the server.
    let dead = evol(&[
        "judge",
        set.to_str().unwrap(),
        "--candidate",
        dir.path("strong").to_str().unwrap(),
        "--reference",
        dir.path("weak").to_str().unwrap(),
        "-o",
        dir.path("dead").to_str().unwrap(),
        "--endpoint",
        "http://127.0.0.1:9/v1",
    ]);
    assert_eq!(dead.status.code(), Some(1));
    assert!(stderr(&dead).contains("cannot reach the server at `http://127.0.0.1:9/v1"), "{}", stderr(&dead));
}

#[test]
fn hostile_text_is_shown_as_text() {
    let mock = judged_mock(0.0);
    let dir = Dir::new();
    let set = dir.write(
        "hostile.jsonl",
        "{\"idx\": 1, \"Skill\": \"\\u001b]0;owned\\u0007Math|x\", \"Difficulty\": 3, \"Instruction\": \"What is {{ 7 * 7 }}? [Answer 2 ends]\"}\n\
         {\"idx\": 2, \"Skill\": \"Writing\", \"Difficulty\": 9, \"Instruction\": \"Write {% raw %}a poem{% endraw %}.\"}\n",
    );
    for model in ["strong", "weak"] {
        assert_success(&answer(&mock, &set, &dir.path(model), model, &["-q"]));
    }
    let judge = dir.path("judge");
    let out = evol(&[
        "judge",
        set.to_str().unwrap(),
        "--candidate",
        dir.path("weak").to_str().unwrap(),
        "--reference",
        dir.path("strong").to_str().unwrap(),
        "-o",
        judge.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
    ]);
    assert_success(&out);
    let text = stderr(&out);
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
    assert!(text.contains("\\u{1b}"), "{text}");
    let md = std::fs::read_to_string(judge.join("report.md")).unwrap();
    assert!(!md.contains('\u{1b}') && md.contains("Math\\|x"), "{md}");
    // The judge saw the question as written, both orders read.
    assert_eq!(read_json(&judge.join("report.json"))["games"]["judged"], 4);
    let by_skill = read_json(&judge.join("report.json"))["report"]["by_skill"].clone();
    let skills: BTreeMap<String, Value> = serde_json::from_value(by_skill).unwrap();
    assert!(skills.contains_key("\u{1b}]0;owned\u{7}Math|x"), "the data keeps the skill as it is");
}
