//! `evol serve` on the embedded default model, driven by real clients: the
//! official `openai` Python package, and raw HTTP for the edge cases.

#![cfg(feature = "embedded")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::util::alone;

/// A running `evol serve`, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_evol"))
        .args(["serve", "--addr", "127.0.0.1:0", "--ctx-size", "16384", "--parallel", "8", "--quiet"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, url }
}

#[test]
fn the_official_openai_client_works() {
    let _alone = alone();
    let probe = Command::new("python3").args(["-c", "import openai"]).status();
    assert!(
        probe.map(|s| s.success()).unwrap_or(false),
        "this test drives `evol serve` with the official `openai` Python package: install it with `pip install openai` (scripts/test does)"
    );
    let server = start(&["--api-key", "test-key"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = Command::new("python3").args([script, &server.url, "test-key"]).output().unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn bad_requests_get_openai_style_errors() {
    let server = start(&["--max-tokens-cap", "6", "--max-body-bytes", "2000"]);
    let http = reqwest::Client::new();
    let post = |body: String| {
        let http = http.clone();
        let url = format!("{}/chat/completions", server.url);
        async move {
            let r = http.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    for (body, param) in [
        (r#"{"temperature": 1}"#.to_string(), "messages"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "model_only": true}"#.to_string(), "model_only"),
        (r#"{"messages": []}"#.to_string(), "messages"),
        (r#"{"messages": [{"role": "wizard", "content": "x"}]}"#.to_string(), "messages"),
        (r#"{"messages": [{"role": "user", "content": 5}]}"#.to_string(), "messages"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}"#.to_string(), "max_tokens"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "temperature": 9}"#.to_string(), "temperature"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "n": 3}"#.to_string(), "n"),
        ("not json".to_string(), "body"),
        // What would change the reply's shape is refused, not ignored.
        (r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}"#.to_string(), "tools"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}"#.to_string(), "response_format"),
        (r#"{"messages": [{"role": "user", "content": "x"}], "logprobs": true}"#.to_string(), "logprobs"),
    ] {
        let (status, json) = post(body.clone()).await;
        assert_eq!(status, 400, "{body}: {json}");
        assert_eq!(json["error"]["param"], param, "{body}: {json}");
        assert!(json["error"]["message"].as_str().unwrap().len() > 5);
    }
    let (status, json) =
        post(format!(r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#, "x".repeat(5000))).await;
    assert_eq!(status, 413, "{json}");
    assert!(json["error"]["message"].as_str().unwrap().contains("body"), "{json}");

    // Their harmless forms are accepted.
    let (status, json) = post(
        r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "tools": [], "tool_choice": "none", "response_format": {"type": "text"}, "logprobs": false}"#.into(),
    )
    .await;
    assert_eq!(status, 200, "{json}");

    // max_tokens above the cap is capped, not refused.
    let (status, json) =
        post(r#"{"messages": [{"role": "user", "content": "Count to 100."}], "max_tokens": 1000}"#.into()).await;
    assert_eq!(status, 200, "{json}");
    assert!(json["usage"]["completion_tokens"].as_u64().unwrap() <= 6, "{json}");

    let health = http.get(server.url.replace("/v1", "/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    // The capped request above generated tokens, counted by the engine.
    assert!(health["engine"]["generated_tokens"].as_u64().unwrap() >= 1, "{health}");
    assert!(health["engine"]["steps"].as_u64().unwrap() >= 1, "{health}");
}

#[test]
fn serve_binds_loopback_by_default() {
    let _alone = alone();
    let help = Command::new(env!("CARGO_BIN_EXE_evol")).args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 127.0.0.1:8080]"));
}
