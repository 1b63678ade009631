//! `evol report` in a real browser: Debian's Chromium (installed by the
//! test setup) renders the report headless, and the tests read the DOM it
//! ends with: the charts are drawn, the tree browser shows the chosen
//! seed's chain, the search filters the table, and hostile seeds did not
//! run.

use std::path::Path;
use std::process::Command;

use crate::util::*;
use evol_mock::MockConfig;

/// Seeds that would run script if they were ever put in the page as HTML;
/// each one marks the page if it runs.
const HOSTILE: [&str; 4] = [
    "<script>document.body.setAttribute('data-pwned','script')</script>Explain how rivers form.",
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\"> Describe copper mining.",
    "</script><script>document.body.setAttribute('data-pwned','close')</script> Name a planet.",
    "<a href=\"javascript:document.body.setAttribute('data-pwned','link')\">click</a> Sum two numbers.",
];

fn chromium() -> &'static str {
    let path = "/usr/bin/chromium";
    assert!(
        Path::new(path).exists(),
        "Chromium is missing: scripts/test installs Debian's `chromium` package; the report tests need it"
    );
    path
}

/// The DOM after the page's script ran, at `url`.
fn dump_dom(url: &str) -> String {
    let profile = Dir::new();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path("profile").display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start} in the DOM")) + start.len();
    let to = text[from..].find(end).unwrap() + from;
    &text[from..to]
}

#[test]
fn the_report_renders_in_chromium_and_hostile_seeds_stay_text() {
    let mock = Mock::start(MockConfig::default());
    let dir = Dir::new();
    let mut seeds: String = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, h)| serde_json::json!({ "id": format!("h{i}"), "instruction": h }).to_string() + "\n")
        .collect();
    seeds.push_str(&seeds_jsonl(30));
    seeds.push_str("{\"id\": \"cu\", \"instruction\": \"Why is copper used for electrical wires?\"}\n");
    let seeds = dir.write("seeds.jsonl", &seeds);
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--rounds", "3", "--include-seeds", "-q"]));
    let report = dir.path("report.html");
    let run = evol(&["report", out.to_str().unwrap(), "-o", report.to_str().unwrap()]);
    assert_success(&run);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        !html.contains("<img src=x") && !html.contains("</script><script>document"),
        "the data is escaped in the file"
    );
    // Nothing to fetch at view time: a policy that forbids it, and no
    // address but the SVG namespace's.
    assert!(html.contains("default-src 'none'"));
    assert_eq!(
        html.matches("http:").count() + html.matches("https:").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );

    let dataset_rows = read_lines(&out.join("dataset.jsonl")).len();
    let url = format!("file://{}#seed=h2&q=copper", report.display());
    let dom = dump_dom(&url);
    let body = between(&dom, "<body", ">");
    assert!(
        body.contains("data-ready=\"1\"") && body.contains("data-complete=\"1\""),
        "the script ran to the end: {body}"
    );
    assert!(!dom.contains("data-pwned=\""), "a hostile seed ran");
    assert!(!dom.contains("<img") && !dom.contains("<a href"), "hostile markup became elements");
    assert!(dom.contains("&lt;/script&gt;&lt;script&gt;"), "the hostile seed is shown, as text");

    // Charts.
    for chart in ["operations", "rounds", "reasons", "length", "requests", "tokens", "throughput"] {
        assert!(dom.contains(&format!("data-chart=\"{chart}\"")), "no {chart} chart");
    }
    assert!(dom.matches("class=\"bar\"").count() >= 10, "the charts have bars");

    // The tree browser shows the chosen seed's chain, round by round.
    let chain = between(&dom, "id=\"chain\"", "</section>");
    assert!(chain.contains("data-seed=\"h2\""), "{chain}");
    let evolved = read_lines(&out.join("evolved.jsonl"));
    let rejected = read_lines(&out.join("rejected.jsonl"));
    let steps = evolved.iter().chain(&rejected).filter(|r| r["seed_id"] == "h2").count();
    assert_eq!(chain.matches("class=\"step ").count(), 1 + steps, "the seed and each of its attempts");
    for e in evolved.iter().filter(|r| r["seed_id"] == "h2") {
        assert!(chain.contains(e["id"].as_str().unwrap()), "{} is in the chain", e["id"]);
    }

    // The search filtered the table to the rows that mention copper.
    let rows = between(&dom, "<tbody id=\"rows\">", "</tbody>");
    let shown: Vec<&str> = rows.split("<tr data-row=").skip(1).collect();
    let dataset = read_lines(&out.join("dataset.jsonl"));
    let expected = dataset
        .iter()
        .filter(|r| {
            let text = format!("{} {}", r["instruction"].as_str().unwrap(), r["output"].as_str().unwrap_or(""));
            text.to_lowercase().contains("copper")
        })
        .count();
    assert!(expected > 0 && expected < dataset_rows);
    assert_eq!(shown.len(), expected.min(25), "the matching rows, a page of them");
    assert!(shown.iter().all(|r| r.to_lowercase().contains("copper")));
    assert!(dom.contains(&format!("{expected} rows match")), "{}", between(&dom, "id=\"page-info\"", "</span>"));

    // Without a search, the first page of all rows.
    let dom = dump_dom(&format!("file://{}#page=2", report.display()));
    let rows = between(&dom, "<tbody id=\"rows\">", "</tbody>");
    assert_eq!(rows.matches("<tr data-row=").count(), (dataset_rows - 25).min(25));
    assert!(rows.contains("data-row=\"25\""), "page 2 starts at row 26");
}

#[test]
fn judge_and_arena_results_are_shown() {
    let mock = Mock::start(MockConfig {
        strengths: [("strong", 2.0), ("weak", -2.0)].iter().map(|(m, s)| (m.to_string(), *s)).collect(),
        models: ["strong", "weak", "judge"].iter().map(|m| m.to_string()).collect(),
        ..MockConfig::default()
    });
    let dir = Dir::new();
    let set = dir.write(
        "set.jsonl",
        &(0..10)
            .map(|i| serde_json::json!({"id": i, "instruction": format!("Question {i}?"), "skill": if i % 2 == 0 { "Math" } else { "<b>Writing</b>" }}).to_string() + "\n")
            .collect::<String>(),
    );
    answer_each(&mock.url, &set, &dir, &["strong", "weak"]);
    let judge = dir.path("judge");
    let judged_run = evol(&[
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
        "--json",
    ]);
    assert_success(&judged_run);
    let printed: serde_json::Value = serde_json::from_slice(&judged_run.stdout).unwrap();
    assert_eq!(printed, read_json(&judge.join("report.json")), "--json prints the judge's report");
    let arena = dir.path("arena");
    let arena_run = evol(&[
        "arena",
        "--answers",
        dir.path("strong").to_str().unwrap(),
        dir.path("weak").to_str().unwrap(),
        "-o",
        arena.to_str().unwrap(),
        "--endpoint",
        &mock.url,
        "--judge-model",
        "judge",
        "--bootstrap",
        "20",
        "-q",
        "--json",
    ]);
    assert_success(&arena_run);
    let printed: serde_json::Value = serde_json::from_slice(&arena_run.stdout).unwrap();
    assert_eq!(printed, read_json(&arena.join("ratings.json")), "--json prints the ratings");
    let report = dir.path("r.html");
    assert_success(&evol(&[
        "report",
        judge.to_str().unwrap(),
        arena.to_str().unwrap(),
        "-o",
        report.to_str().unwrap(),
    ]));
    let dom = dump_dom(&format!("file://{}", report.display()));
    let judged = between(&dom, "data-table=\"judge\"", "</table>");
    assert!(judged.contains("overall") && judged.contains("Math"), "{judged}");
    assert!(judged.contains("&lt;b&gt;Writing&lt;/b&gt;"), "a skill name is text: {judged}");
    let ratings = read_json(&arena.join("ratings.json"));
    let board = between(&dom, "data-table=\"arena\"", "</table>");
    let first = board.find("strong").unwrap();
    assert!(first < board.find("weak").unwrap(), "the leaderboard in rating order: {board}");
    let top = &ratings["leaderboard"][0];
    assert_eq!(top["model"], "strong");
    assert!(board.contains(&grouped(top["rating"].as_f64().unwrap())), "{board}");

    let bad = evol(&[
        "report",
        dir.path("strong").join("answers.jsonl").to_str().unwrap(),
        "-o",
        dir.path("x.html").to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("is not a directory"), "{}", stderr(&bad));
}

/// A number as the page shows it: one decimal, thousands grouped.
fn grouped(x: f64) -> String {
    let text = format!("{x:.1}");
    let (int, frac) = text.split_once('.').unwrap();
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}.{frac}")
}

#[test]
fn a_run_in_four_scripts_is_charted_by_language_and_its_text_keeps_its_direction() {
    let config = MockConfig { equal_rate: 0.0, sorry_rate: 0.0, switch_rate: 0.3, ..MockConfig::default() };
    let mock = Mock::start(config);
    let dir = Dir::new();
    // Written for this test: "Explain how plants make food from
    // sunlight" in Hindi, Chinese, Japanese and Arabic, and "Describe the
    // water cycle" in each.
    let seeds = [
        "समझाइए कि पौधे सूर्य के प्रकाश से भोजन कैसे बनाते हैं।",
        "बताइए कि पानी का चक्र पृथ्वी पर कैसे चलता है।",
        "请解释植物是如何利用阳光制造食物的。",
        "请说明地球上的水循环是如何运作的。",
        "植物が太陽の光を使ってどのように食べ物を作るのか説明してください。",
        "地球上の水の循環がどのように働くのか説明してください。",
        "اشرح كيف تصنع النباتات غذاءها باستخدام ضوء الشمس.",
        "وضح كيف تعمل دورة الماء على سطح الأرض.",
    ];
    let lines: String = seeds
        .iter()
        .enumerate()
        .map(|(i, text)| serde_json::json!({ "id": format!("s{i}"), "instruction": text }).to_string() + "\n")
        .collect();
    let input = dir.write("seeds.jsonl", &lines);
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &input, &out, &["--model", "mock", "--rounds", "3", "-q"]));
    let report = dir.path("report.html");
    assert_success(&evol(&["report", out.to_str().unwrap(), "-o", report.to_str().unwrap()]));
    let html = std::fs::read_to_string(&report).unwrap();
    for font in ["Noto Sans Devanagari", "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans Arabic"] {
        assert!(html.contains(font), "the page names a font for {font}");
    }

    let dom = dump_dom(&format!("file://{}#seed=s6", report.display()));
    assert!(between(&dom, "<body", ">").contains("data-complete=\"1\""), "the script ran to the end");
    // The chart by language has a row for each of the four.
    let chart = between(&dom, "data-chart=\"languages\"", "</svg>");
    for code in ["hi", "zh", "ja", "ar"] {
        assert!(chart.contains(&format!(">{code}</text>")), "{code} in {chart}");
    }
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    let switched: u64 = stats["languages"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["rejected"]["language_changed"].as_u64().unwrap_or(0))
        .sum();
    assert!(switched > 0, "some evolutions left their language: {}", stats["languages"]);
    assert!(chart.contains("left the language"), "the switches have their own bars");
    // The Arabic seed's chain: shown as text, each step laid out by its own
    // direction.
    let chain = between(&dom, "id=\"chain\"", "</section>");
    assert!(chain.contains("data-seed=\"s6\"") && chain.contains(seeds[6]), "{chain}");
    assert_eq!(
        chain.matches("class=\"text\" dir=\"auto\"").count(),
        chain.matches("class=\"step ").count(),
        "every step's text has dir=auto: {chain}"
    );
    let rows = between(&dom, "<tbody id=\"rows\">", "</tbody>");
    assert!(rows.matches("dir=\"auto\"").count() >= 2 * rows.matches("<tr data-row=").count(), "{rows}");
}

#[test]
fn a_conversation_run_shows_each_row_with_the_turns_before_it() {
    let mock = Mock::start(MockConfig { sorry_rate: 0.0, ..MockConfig::default() });
    let dir = Dir::new();
    // Seeds that are conversations, one turn holding markup.
    let seeds: String = (0..8)
        .map(|i| {
            let turns = serde_json::json!([
                {"role": "user", "content": format!("<img src=x onerror=\"document.body.dataset.pwned=1\"> Was ist Rost? ({i})")},
                {"role": "assistant", "content": "Eisenoxid, das an feuchter Luft entsteht."},
                {"role": "user", "content": format!("Wie schützt man Stahl davor? ({i})")},
            ]);
            format!("{}\n", serde_json::json!({"id": format!("c{i}"), "messages": turns}))
        })
        .collect();
    let seeds = dir.write("seeds.jsonl", &seeds);
    let out = dir.path("out");
    assert_success(&evol_run(&mock.url, &seeds, &out, &["--turns", "2", "-q"]));
    let report = dir.path("report.html");
    assert_success(&evol(&["report", out.to_str().unwrap(), "-o", report.to_str().unwrap()]));
    let dom = dump_dom(&format!("file://{}", report.display()));
    assert!(between(&dom, "<body", ">").contains("data-complete=\"1\""), "the script ran to the end");
    assert!(!dom.contains("data-pwned=\"") && !dom.contains("<img"), "a turn's markup became an element");
    let rows = between(&dom, "<tbody id=\"rows\">", "</tbody>");
    let dataset = read_lines(&out.join("dataset.jsonl"));
    assert!(!dataset.is_empty());
    assert_eq!(rows.matches("<tr data-row=").count(), dataset.len());
    // Each row folds the turns before its last: the seed's three, its
    // answer, then a follow-up's.
    for row in &dataset {
        let before = row["history"].as_array().unwrap().len();
        assert!(before >= 4, "{row}");
        assert!(rows.contains(&format!("{}-turn conversation: {before} messages before", before / 2 + 1)), "{rows}");
    }
    assert_eq!(rows.matches("Wie schützt man Stahl davor?").count(), dataset.len(), "each row shows its turns");
    assert!(rows.contains("&lt;img src=x"), "the markup is shown as text");
}
