//! Many servers, budgets, dry runs, shards, status and export: `evol` run as
//! a user runs it, against simulators on loopback.

use std::time::{Duration, Instant};

use crate::util::*;
use evol_mock::{Faults, MockConfig};

fn slow_mock() -> Mock {
    Mock::start(MockConfig { latency_median_ms: 20.0, latency_sigma: 0.3, ..MockConfig::default() })
}

#[test]
fn a_server_down_from_the_start_is_left_out() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(20));
    let out = dir.path("out");
    let endpoints = format!("http://127.0.0.1:9/v1,{}", mock.url);
    let run = evol_run(&endpoints, &seeds, &out, &["--model", "mock", "--rounds", "2"]);
    assert_success(&run);
    assert!(stderr(&run).contains("leaving out the server `http://127.0.0.1:9/v1`"), "{}", stderr(&run));
    assert_complete_lineage(&out, &ids(20), 2);
    assert_eq!(read_json(&out.join("stats.json"))["total"]["failures"], 0);
}

#[test]
fn a_server_killed_midway_costs_nothing_but_retries() {
    let doomed = slow_mock();
    let survivor = slow_mock();
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(60));
    let out = dir.path("out");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "mock"])
        .args(["--endpoint", &doomed.url, "--endpoint", &survivor.url, "--rounds", "3", "--concurrency", "8"])
        .env_remove("OPENAI_BASE_URL")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill one server once work is flowing through both.
    let started = Instant::now();
    while doomed.stats().completed < 30 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = survivor.stats().completed;
    let doomed_url = doomed.url.clone();
    doomed.kill();
    let output = child.wait_with_output().unwrap();
    assert_success(&output);
    assert_complete_lineage(&out, &ids(60), 3);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["total"]["failures"], 0, "every call was retried on the survivor");
    let endpoints = stats["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0]["url"], doomed_url.as_str());
    assert!(endpoints[0]["failures"].as_u64().unwrap() > 0, "{endpoints:?}");
    assert_eq!(endpoints[1]["failures"], 0);
    assert!(survivor.stats().completed > before + 100, "the survivor took the rest");
}

#[test]
fn several_servers_share_the_load_and_give_the_same_data_as_one() {
    let a = Mock::start(MockConfig::default());
    let b = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(40));
    let one = dir.path("one");
    let two = dir.path("two");
    assert_success(&evol_run(&a.url, &seeds, &one, &["--model", "mock", "--rounds", "2"]));
    a.stats();
    let both = format!("{},{}", a.url, b.url);
    assert_success(&evol_run(&both, &seeds, &two, &["--model", "mock", "--rounds", "2", "--concurrency", "4"]));
    let (na, nb) = (a.stats().requests, b.stats().requests);
    assert!(nb > 20, "b took part: {nb} of {na}");
    for file in ["dataset.jsonl", "evolved.jsonl", "rejected.jsonl"] {
        assert_eq!(
            std::fs::read(one.join(file)).unwrap(),
            std::fs::read(two.join(file)).unwrap(),
            "{file} depends only on the seeds and settings"
        );
    }
}

#[test]
fn a_config_file_names_servers_prices_and_limits() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(10));
    let config = dir.write(
        "evol.toml",
        &format!(
            "[[endpoints]]\nurl = \"{}\"\nmodel = \"mock\"\nweight = 2\nrpm = 6000\n\n[prices]\nmock = {{ prompt = 1000.0, completion = 2000.0 }}\n",
            mock.url
        ),
    );
    let out = dir.path("out");
    let run =
        evol(&["run", seeds.to_str().unwrap(), "-o", out.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert_success(&run);
    let stats = read_json(&out.join("stats.json"));
    let t = &stats["total"];
    let expected =
        (t["prompt_tokens"].as_f64().unwrap() * 1000.0 + t["completion_tokens"].as_f64().unwrap() * 2000.0) / 1e6;
    assert!((t["cost"].as_f64().unwrap() - expected).abs() < 1e-6, "{t}");
    assert_eq!(stats["budget"]["prices"]["mock"]["prompt"], 1000.0);

    let bad = dir.write("bad.toml", "[[endpoints]]\nurl = \"http://x/v1\"\nwieght = 2\n");
    let run = evol(&[
        "run",
        seeds.to_str().unwrap(),
        "-o",
        dir.path("o2").to_str().unwrap(),
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("bad.toml") && stderr(&run).contains("wieght"), "{}", stderr(&run));
}

#[test]
fn caps_stop_the_run_and_a_higher_cap_continues_without_paying_twice() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    let args = ["--model", "mock", "--rounds", "2", "--concurrency", "4"];
    let run = evol_run(&mock.url, &seeds, &out, &[&args[..], &["--max-requests", "40"]].concat());
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(stderr(&run).contains("raise --max-requests"), "{}", stderr(&run));
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["state"], "capped");
    assert_eq!(mock.stats().requests, 40, "the request cap is exact");
    assert!(!stderr(&run).contains("no price"), "no cost cap, no warning");

    // A cost cap without a price counts nothing: say so.
    let run = evol_run(&mock.url, &seeds, &out, &[&args[..], &["--max-cost", "1", "--max-requests", "40"]].concat());
    assert!(stderr(&run).contains("warning: no price for the model `mock`"), "{}", stderr(&run));

    // A cost cap: each call costs its prompt tokens at 1000 per million
    // (about 0.2); the 40 calls already made count too (about 7).
    let run = evol_run(&mock.url, &seeds, &out, &[&args[..], &["--price-prompt", "1000", "--max-cost", "10"]].concat());
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(stderr(&run).contains("the cost cap"), "{}", stderr(&run));
    let spent = read_json(&out.join("stats.json"))["total"]["cost"].as_f64().unwrap();
    // At most --concurrency (4) calls are in flight when the cap is
    // reached, each under 0.5 (prompts under 500 tokens); the whole run
    // costs over 30.
    assert!((10.0..12.0).contains(&spent), "stops at the cap, passed only by the calls in flight: {spent}");

    let run = evol_run(&mock.url, &seeds, &out, &[&args[..], &["--price-prompt", "1000"]].concat());
    assert_success(&run);
    assert_complete_lineage(&out, &ids(30), 2);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["total"]["requests"].as_u64().unwrap(), mock.stats().requests, "no call was sent twice");
}

#[test]
fn a_dry_run_estimates_without_calling() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(25));
    let out = dir.path("out");
    let run = evol_run(
        &mock.url,
        &seeds,
        &out,
        &["--model", "mock", "--rounds", "3", "--dry-run", "--price-prompt", "1", "--price-completion", "2"],
    );
    assert_success(&run);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("25 seeds x 3 rounds"), "{text}");
    assert!(text.contains("at most 225"), "25 seeds x 3 rounds x 3 calls: {text}");
    assert!(text.contains("cost:") && text.contains("about"), "{text}");
    assert_eq!(mock.stats().requests, 0);
    assert!(!out.exists(), "a dry run writes nothing");
}

#[test]
fn shards_merge_into_what_one_run_makes() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(50));
    let whole = dir.path("whole");
    let args = ["--model", "mock", "--rounds", "2", "--include-seeds"];
    assert_success(&evol_run(&mock.url, &seeds, &whole, &args));
    let mut shards = Vec::new();
    for i in 0..3 {
        let out = dir.path(&format!("shard{i}"));
        assert_success(&evol_run(&mock.url, &seeds, &out, &[&args[..], &["--shard", &format!("{i}/3")]].concat()));
        shards.push(out.to_str().unwrap().to_string());
    }
    let merged = dir.path("merged");
    let mut merge = vec!["merge"];
    merge.extend(shards.iter().map(String::as_str));
    merge.extend(["-o", merged.to_str().unwrap()]);
    assert_success(&evol(&merge));
    for file in ["dataset.jsonl", "evolved.jsonl", "rejected.jsonl", "seeds.jsonl"] {
        assert!(
            std::fs::read_to_string(whole.join(file)).unwrap() == std::fs::read_to_string(merged.join(file)).unwrap(),
            "{file} differs"
        );
    }

    // Exports merge too (without their journals): two shards as exports.
    for shard in &shards[..2] {
        let export = format!("{shard}-export");
        std::fs::create_dir(&export).unwrap();
        for file in ["evolved.jsonl", "rejected.jsonl", "seeds.jsonl", "stats.json"] {
            std::fs::copy(format!("{shard}/{file}"), format!("{export}/{file}")).unwrap();
        }
    }
    let from_exports = dir.path("from-exports");
    let (e0, e1) = (format!("{}-export", shards[0]), format!("{}-export", shards[1]));
    assert_success(&evol(&["merge", &e0, &e1, &shards[2], "-o", from_exports.to_str().unwrap()]));
    for file in ["dataset.jsonl", "evolved.jsonl", "rejected.jsonl", "seeds.jsonl"] {
        assert!(
            std::fs::read_to_string(whole.join(file)).unwrap()
                == std::fs::read_to_string(from_exports.join(file)).unwrap(),
            "{file} differs"
        );
    }

    // Missing and doubled shards are refused.
    let run = evol(&["merge", &shards[0], &shards[1], "-o", dir.path("m2").to_str().unwrap()]);
    assert!(stderr(&run).contains("shard 2/3 is missing"), "{}", stderr(&run));
    let run = evol(&["merge", &shards[0], &shards[1], &shards[1], &shards[2], "-o", dir.path("m3").to_str().unwrap()]);
    assert!(stderr(&run).contains("shard 1/3 is given twice"), "{}", stderr(&run));
    let run = evol(&["merge", &shards[0], whole.to_str().unwrap(), "-o", dir.path("m4").to_str().unwrap()]);
    assert!(stderr(&run).contains("not a shard"), "{}", stderr(&run));
    let run = evol_run(&mock.url, &seeds, &dir.path("bad"), &["--shard", "3/3"]);
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn status_and_export_read_the_journal() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(12));
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--model", "mock", "--rounds", "2"]));
    let status = evol(&["status", out.to_str().unwrap()]);
    assert_success(&status);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("seeds:   12 of 12 done") && text.contains("(completed)"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&evol(&["status", "--json", out.to_str().unwrap()]).stdout).unwrap();
    assert_eq!(json["steps"], 24);
    assert_eq!(json["calls"]["calls"].as_u64().unwrap(), mock.stats().requests);

    let dataset = std::fs::read(out.join("dataset.jsonl")).unwrap();
    std::fs::remove_file(out.join("dataset.jsonl")).unwrap();
    std::fs::write(out.join("evolved.jsonl"), "garbage").unwrap();
    assert_success(&evol(&["export", out.to_str().unwrap()]));
    assert_eq!(std::fs::read(out.join("dataset.jsonl")).unwrap(), dataset);
    assert_complete_lineage(&out, &ids(12), 2);

    let run = evol(&["status", dir.path("nothing").to_str().unwrap()]);
    assert!(stderr(&run).contains("holds no run journal"), "{}", stderr(&run));
}

#[test]
fn retry_failed_sends_the_failures_again_and_nothing_else() {
    let flaky =
        Mock::start(MockConfig { faults: Faults { rate_500: 0.4, ..Faults::default() }, ..MockConfig::default() });
    let dir = Dir::new();
    let seeds = dir.write("seeds.jsonl", &seeds_jsonl(30));
    let out = dir.path("out");
    let args = ["--model", "mock", "--rounds", "1", "--max-retries", "0"];
    assert_success(&evol_run(&flaky.url, &seeds, &out, &args));
    let failed = |out: &std::path::Path| {
        read_lines(&out.join("rejected.jsonl")).iter().filter(|r| r["reason"] == "request_failed").count()
    };
    let first = failed(&out);
    assert!(first > 5, "{first}");

    let healthy = Mock::start(MockConfig::default());
    // A plain resume keeps the failures.
    assert_success(&evol_run(&healthy.url, &seeds, &out, &args));
    assert_eq!(healthy.stats().requests, 0);
    assert_eq!(failed(&out), first);
    // --retry-failed sends them again (and what follows from them).
    assert_success(&evol_run(&healthy.url, &seeds, &out, &[&args[..], &["--retry-failed"]].concat()));
    assert_eq!(failed(&out), 0);
    let sent = healthy.stats().requests as usize;
    assert!(sent >= first && sent <= 3 * first, "only failed steps are redone: {sent} for {first}");
    assert_complete_lineage(&out, &ids(30), 1);
}
