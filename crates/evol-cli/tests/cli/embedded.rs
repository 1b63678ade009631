//! `evol run` on the embedded engine: the default model (pulled on first
//! use), a second architecture, and bad model files.

#![cfg(feature = "embedded")]

use crate::util::*;

#[test]
fn run_uses_the_embedded_default_model() {
    let _alone = alone();
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(4));
    let out = dir.path("out");
    let run = evol(&[
        "run",
        seeds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rounds",
        "2",
        "--max-tokens",
        "96",
        "--ctx-size",
        "8192",
        "--parallel",
        "8",
    ]);
    assert_success(&run);
    let ids: Vec<String> = (0..4).map(|i| format!("s{i}")).collect();
    assert_complete_lineage(&out, &ids, 2);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["models"]["evolve"], "smollm2-135m-instruct");
    assert_eq!(stats["models"]["endpoint"], "the embedded engine");
    assert!(stats["total"]["requests"].as_u64().unwrap() >= 8);
    assert!(stats["total"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(stats["total"]["failures"], 0);
    assert!(stderr(&run).contains("embedded engine: `smollm2-135m-instruct`"), "{}", stderr(&run));
    // The engine's own counters agree with the calls' usage: it generated
    // every completion token and computed every prompt token not cached.
    let engine = &stats["engine"];
    let total = &stats["total"];
    assert_eq!(engine["parallel"], 8);
    assert_eq!(engine["generated_tokens"], total["completion_tokens"], "{engine}");
    assert_eq!(
        engine["prompt_tokens_computed"].as_u64().unwrap(),
        total["prompt_tokens"].as_u64().unwrap() - total["cached_prompt_tokens"].as_u64().unwrap(),
        "{engine}"
    );
    let mean = engine["mean_sequences"].as_f64().unwrap();
    assert!(mean > 0.0 && mean <= 8.0, "{engine}");
    assert!(engine["decode_seconds"].as_f64().unwrap() <= engine["busy_seconds"].as_f64().unwrap(), "{engine}");
}

#[test]
fn the_default_model_answers_k_times_improves_and_replays_with_thinking_switched_off() {
    let _alone = alone();
    // Quality aside (the tiny model ranks and critiques poorly), every
    // answer, ranking and round is recorded or counted, and a rerun sends
    // nothing. `--thinking off` goes into the chat template, which this
    // model's ignores.
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(3));
    let out = dir.path("out");
    let args = [
        "run",
        seeds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rounds",
        "1",
        "--no-equality-check",
        "--answers",
        "2",
        "--improve-answers",
        "1",
        "--thinking",
        "off",
        "--max-tokens",
        "64",
        "--ctx-size",
        "8192",
        "--parallel",
        "8",
    ];
    assert_success(&evol(&args));
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["settings"]["evolve_sampling"]["thinking"]["enabled"], false);
    let b = &stats["best_of"];
    let evolved = read_lines(&out.join("evolved.jsonl"));
    let rejected = read_lines(&out.join("rejected.jsonl"));
    let answered: Vec<_> = evolved.iter().chain(&rejected).filter(|r| r["answers"].is_array()).collect();
    assert_eq!(b["instructions"].as_u64().unwrap() as usize, answered.len(), "{b}");
    let rankings = b["ranked"].as_u64().unwrap_or(0) + b["unreadable_rankings"].as_u64().unwrap_or(0);
    assert!(rankings <= evolved.len() as u64, "a ranking per evolution with two usable answers at most: {b}");
    for e in &evolved {
        let kept = e["answers"].as_array().unwrap().iter().filter(|a| a["kept"] == true).count();
        assert_eq!(kept, 1, "{e}");
        assert_eq!(e["improvements"].as_array().unwrap().len(), 1, "{e}");
    }
    let calls = stats["journal"]["calls"].as_u64().unwrap();
    assert_success(&evol(&args));
    let again = read_json(&out.join("stats.json"));
    assert_eq!(again["journal"]["calls"].as_u64().unwrap(), calls);
    assert_eq!(again["replayed_calls"].as_u64().unwrap(), calls, "replayed, not sent");
}

#[test]
fn the_default_model_scores_difficulty_and_every_reply_is_counted() {
    let _alone = alone();
    // The tiny default model is a weak scorer: what matters is that each
    // reply is either a score in range or kept as unreadable, none lost
    // and none defaulted, and that a rerun sends nothing.
    let dir = Dir::new();
    let input = dir.write(
        "rows.jsonl",
        "{\"instruction\": \"Name a fruit.\"}\n{\"instruction\": \"Prove that there are infinitely many primes, then generalise the proof to primes of the form 4k+3.\"}\n{\"instruction\": \"What is 2 + 2?\"}\n",
    );
    let out = dir.path("scores");
    let args = [
        "score",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--difficulty",
        "--score-max-tokens",
        "24",
        "--ctx-size",
        "4096",
        "--parallel",
        "4",
    ];
    assert_success(&evol(&args));
    let stats = read_json(&out.join("stats.json"));
    let d = &stats["scores"]["difficulty"];
    assert_eq!(d["scored"].as_u64().unwrap() + d["unreadable"].as_u64().unwrap(), 3, "{d}");
    assert_eq!(stats["model"], "smollm2-135m-instruct");
    for row in read_lines(&out.join("scored.jsonl")) {
        match row["difficulty"].as_f64() {
            Some(score) => assert!((1.0..=10.0).contains(&score), "{row}"),
            None => assert!(row["difficulty_unreadable"].is_string(), "{row}"),
        }
    }
    let calls = stats["journal"]["calls"].as_u64().unwrap();
    assert_success(&evol(&args));
    assert_eq!(read_json(&out.join("stats.json"))["journal"]["calls"].as_u64().unwrap(), calls);
    assert_eq!(read_json(&out.join("stats.json"))["replayed_calls"], 3, "replayed, not sent");
}

#[test]
fn the_default_model_answers_judges_and_battles_and_every_game_is_counted() {
    let _alone = alone();
    // The tiny default model is a weak judge: what matters is that each
    // game is either two scores in range or kept as unreadable, and that a
    // rerun sends nothing.
    let dir = Dir::new();
    let set = dir.write(
        "set.jsonl",
        "{\"idx\": 1, \"Skill\": \"Math\", \"Difficulty\": 1, \"Instruction\": \"What is 2 + 2?\"}\n\
         {\"idx\": 2, \"Skill\": \"Writting\", \"Difficulty\": 3, \"Instruction\": \"Name three fruits.\"}\n",
    );
    let engine = ["--ctx-size", "4096", "--parallel", "4"];
    for (name, temperature) in [("hot", "1.0"), ("cold", "0.0")] {
        let out = dir.path(name);
        let mut args = vec!["answer", set.to_str().unwrap(), "-o", out.to_str().unwrap(), "--name", name];
        args.extend(["--temperature", temperature, "--max-tokens", "48"]);
        args.extend(engine);
        assert_success(&evol(&args));
        let rows = read_lines(&out.join("answers.jsonl"));
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r["model"] == name && r["answer"].is_string()), "{rows:?}");
    }
    let judge = dir.path("judge");
    let (hot, cold) = (dir.path("hot"), dir.path("cold"));
    let mut args = vec![
        "judge",
        set.to_str().unwrap(),
        "--candidate",
        hot.to_str().unwrap(),
        "--reference",
        cold.to_str().unwrap(),
        "-o",
        judge.to_str().unwrap(),
        "--max-tokens",
        "32",
    ];
    args.extend(engine);
    let run = evol(&args);
    let report = read_json(&judge.join("report.json"));
    let games = &report["games"];
    assert_eq!(games["judged"].as_u64().unwrap() + games["unreadable"].as_u64().unwrap(), 4, "{report}");
    // A judge that read no verdict produced nothing, and says so.
    match games["judged"].as_u64().unwrap() {
        0 => assert_eq!(run.status.code(), Some(5), "{}", stderr(&run)),
        _ => assert_success(&run),
    }
    assert_eq!(report["judge"], "smollm2-135m-instruct");
    for j in read_lines(&judge.join("judgments.jsonl")) {
        for g in j["games"].as_array().unwrap() {
            match g["candidate_score"].as_f64() {
                Some(s) => assert!((1.0..=10.0).contains(&s) && g["reference_score"].is_number(), "{g}"),
                None => assert!(g["unreadable"] == true && g["reply"].is_string(), "{g}"),
            }
        }
    }
    let _ = evol(&args);
    assert_eq!(read_json(&judge.join("stats.json"))["replayed_calls"], 4, "replayed, not sent");
    let arena = dir.path("arena");
    let mut args = vec![
        "arena",
        "--answers",
        hot.to_str().unwrap(),
        cold.to_str().unwrap(),
        "-o",
        arena.to_str().unwrap(),
        "--max-tokens",
        "32",
    ];
    args.extend(engine);
    let run = evol(&args);
    let battles = read_lines(&arena.join("battles.jsonl")).len();
    let unjudged = read_lines(&arena.join("unjudged.jsonl")).len();
    assert_eq!(battles + unjudged, 4);
    // Ratings need a battle; a judge that read none says so.
    match battles {
        0 => assert_eq!(run.status.code(), Some(1), "{}", stderr(&run)),
        _ => assert_success(&run),
    }
}

#[test]
fn the_default_model_runs_an_optimisation_step_and_every_failure_is_named() {
    let _alone = alone();
    // Auto Evol-Instruct on a tiny batch: the small model often misses the
    // final line; each measured seed must be a pass or a named failure, the
    // step's candidates recorded, the method file readable, and a rerun
    // replay every call.
    let dir = Dir::new();
    let seeds = dir.write("seeds.txt", "Name a fruit.\nWhat is 2 + 2?\nDescribe a cat.\nList three colours.\n");
    let out = dir.path("method");
    let args = [
        "optimize",
        seeds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--steps",
        "1",
        "--batch",
        "1",
        "--evolutions",
        "1",
        "--candidates",
        "1",
        "--dev",
        "2",
        "--max-tokens",
        "96",
        "--optimizer-max-tokens",
        "160",
        "--ctx-size",
        "4096",
        "--parallel",
        "4",
        "--quiet",
    ];
    assert_success(&evol(&args));
    let stats = read_json(&out.join("stats.json"));
    let start = &stats["result"]["start"];
    assert_eq!(start["measured"], 2, "{stats}");
    let failed: u64 = start["by_reason"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(failed, start["failed"].as_u64().unwrap());
    let history = read_lines(&out.join("history.jsonl"));
    assert!(history.len() <= 1);
    for step in &history {
        let c = &step["candidates"][0];
        assert!(c["method"].is_string() || c["reply"].is_string() || c["error"].is_string(), "{c}");
    }
    let shown = evol(&["ops", "show", out.join("method.toml").to_str().unwrap()]);
    assert_success(&shown);
    let calls = stats["journal"]["calls"].as_u64().unwrap();
    assert!(calls >= 2, "the start evolves both held-out seeds: {calls}");
    assert_success(&evol(&args));
    let again = read_json(&out.join("stats.json"));
    assert_eq!(again["journal"]["calls"].as_u64().unwrap(), calls);
    assert_eq!(again["replayed_calls"].as_u64().unwrap(), calls, "replayed, not sent");
}

#[test]
fn a_second_architecture_runs_with_a_chat_template() {
    let _alone = alone();
    let dir = Dir::new();
    let seeds = dir.write("seeds.txt", "Name a fruit.\nWhat is rain?\n");
    let out = dir.path("out");
    let base = [
        "run",
        seeds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rounds",
        "1",
        "--max-tokens",
        "48",
        "--model",
        "gemma3-270m",
        "--ctx-size",
        "4096",
        "--parallel",
        "4",
    ];

    // A base model has no template of its own: a clear error, not a guess.
    let run = evol(&base);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("has no chat template; pass --chat-template"), "{}", stderr(&run));

    let run = evol(&[&base[..], &["--chat-template", "gemma", "--fresh"]].concat());
    assert_success(&run);
    assert_complete_lineage(&out, &["line-1".to_string(), "line-2".to_string()], 1);
    assert_eq!(read_json(&out.join("stats.json"))["models"]["evolve"], "gemma3-270m");
}

#[test]
fn bad_model_files_get_clear_errors() {
    let _alone = alone();
    let dir = Dir::new();
    let seeds = dir.write("seeds.txt", "Name a fruit.\n");
    let fails_with = |out: &str, model: &[&str], needle: &str| {
        let out = dir.path(out);
        let base = ["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap()];
        let run = evol(&[&base[..], model].concat());
        assert_eq!(run.status.code(), Some(1), "{model:?}");
        assert!(stderr(&run).contains(needle), "{model:?}: {}", stderr(&run));
    };

    let fake = dir.write("fake.gguf", "this is not a model");
    fails_with("o1", &["--model-path", fake.to_str().unwrap()], "is not a GGUF file");
    let missing = dir.path("missing.gguf");
    fails_with("o2", &["--model-path", missing.to_str().unwrap()], "cannot open");

    // A truncated GGUF passes the magic check but not llama.cpp.
    let model = evol_models::find(evol_models::DEFAULT_MODEL).unwrap();
    let cached = evol_models::cached_path(&evol_models::cache_dir().unwrap(), model);
    let real = std::fs::read(cached).unwrap_or_else(|_| b"GGUF\x03\x00\x00\x00".to_vec());
    let cut = dir.path("cut.gguf");
    std::fs::write(&cut, &real[..real.len().min(4096)]).unwrap();
    fails_with("o3", &["--model-path", cut.to_str().unwrap()], "is not a model llama.cpp can load");

    fails_with("o4", &["--model", "gpt-9"], "unknown model `gpt-9`");
}

#[test]
fn models_list_shows_the_catalogue() {
    let out = evol(&["models", "list"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("smollm2-135m-instruct") && text.contains("gemma3-270m"), "{text}");
}

#[test]
fn the_default_model_writes_instructions_from_its_own_user_turn_opening() {
    let _alone = alone();
    // Magpie on the model's own template: quality aside, every generation
    // is journaled, cut at its turn's end, kept once or left out with its
    // reason, and a rerun sends nothing.
    let dir = Dir::new();
    let out = dir.path("out");
    let args = ["magpie", "-o", out.to_str().unwrap(), "--count", "6", "--topic", "baking bread", "--max-tokens", "96"];
    let run = evol(&args);
    assert_success(&run);
    assert!(stderr(&run).contains("the model's own chat template"), "{}", stderr(&run));
    let kept = read_lines(&out.join("instructions.jsonl"));
    let left = read_lines(&out.join("left_out.jsonl"));
    assert_eq!(kept.len() + left.len(), 6);
    assert!(!kept.is_empty());
    for row in &kept {
        let text = row["instruction"].as_str().unwrap();
        assert!(!text.is_empty() && !text.contains("<|im_end|>") && !text.contains("<|im_start|>"), "{row}");
        assert_eq!(row["system"], "They ask you about baking bread.");
    }
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["state"], "completed");
    assert_eq!(stats["kept"].as_u64().unwrap() as usize, kept.len());
    let again = evol(&args);
    assert_success(&again);
    let calls = &read_json(&out.join("stats.json"))["calls_made"];
    assert_eq!(calls["replayed_calls"], 6, "a rerun sends nothing: {calls}");
    assert_eq!(calls["journal"]["calls"], 6, "no call twice: {calls}");
}
