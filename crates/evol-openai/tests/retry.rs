//! The client's retry policy against scripted servers on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use evol_llm::{ChatModel, ChatRequest, ErrorKind, Message, Sampling};
use evol_openai::{ClientConfig, OpenAiClient, RetryPolicy};

const OK_BODY: &str = r#"{"choices":[{"message":{"content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;

/// A server whose n-th request (0-based) gets `script(n)`.
async fn scripted(script: fn(usize) -> Scripted) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { script(n).respond().await }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), hits)
}

enum Scripted {
    Ok,
    Status(u16, &'static str, &'static [(&'static str, &'static str)]),
    Sleep(Duration),
    /// A status, a content type and a body made on the spot.
    Body(u16, &'static str, fn() -> String),
}

impl Scripted {
    async fn respond(self) -> Response {
        match self {
            Scripted::Ok => ([("content-type", "application/json")], OK_BODY).into_response(),
            Scripted::Status(code, body, headers) => {
                let mut r = (StatusCode::from_u16(code).unwrap(), body).into_response();
                for (k, v) in headers {
                    r.headers_mut().insert(*k, v.parse().unwrap());
                }
                r
            }
            Scripted::Body(code, content_type, body) => {
                (StatusCode::from_u16(code).unwrap(), [("content-type", content_type)], body()).into_response()
            }
            Scripted::Sleep(d) => {
                tokio::time::sleep(d).await;
                ([("content-type", "application/json")], OK_BODY).into_response()
            }
        }
    }
}

fn client(base: &str, timeout: Duration) -> OpenAiClient {
    client_with(base, timeout, 3)
}

/// A client with quick backoff, so that tests spend no time sleeping.
fn client_with(base: &str, timeout: Duration, max_retries: u32) -> OpenAiClient {
    let mut config = ClientConfig::new(base, "m");
    config.timeout = timeout;
    config.retry = RetryPolicy {
        max_retries,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    };
    OpenAiClient::new(config).unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(
        vec![Message::user("hi")],
        Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 5, seed: None, thinking: Default::default() },
    )
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (base, hits) = scripted(|n| match n {
        0 => Scripted::Status(
            429,
            r#"{"error":{"message":"slow down","code":"rate_limit_exceeded"}}"#,
            &[("retry-after", "1")],
        ),
        _ => Scripted::Ok,
    })
    .await;
    let started = Instant::now();
    let reply = client(&base, Duration::from_secs(5)).chat(request()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    assert_eq!(reply.text, "fine");
    assert_eq!(reply.retries, 1);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_after_ms_wins_over_seconds() {
    let (base, _) = scripted(|n| match n {
        0 => Scripted::Status(503, "busy", &[("retry-after", "30"), ("retry-after-ms", "20")]),
        _ => Scripted::Ok,
    })
    .await;
    let started = Instant::now();
    client(&base, Duration::from_secs(5)).chat(request()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn bad_request_is_not_retried() {
    let (base, hits) = scripted(|_| Scripted::Status(400, r#"{"error":{"message":"prompt too long"}}"#, &[])).await;
    let err = client(&base, Duration::from_secs(5)).chat(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Rejected);
    assert!(err.message.contains("prompt too long"), "{}", err.message);
    assert_eq!(err.retries, 0);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn insufficient_quota_is_not_retried() {
    let (base, hits) = scripted(|_| {
        Scripted::Status(
            429,
            r#"{"error":{"message":"no money","code":"insufficient_quota"}}"#,
            &[("retry-after", "1")],
        )
    })
    .await;
    let err = client(&base, Duration::from_secs(5)).chat(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Quota);
    assert!(err.kind.is_fatal());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn timeouts_are_retried() {
    let (base, hits) = scripted(|n| match n {
        0 => Scripted::Sleep(Duration::from_secs(3)),
        _ => Scripted::Ok,
    })
    .await;
    let reply = client(&base, Duration::from_millis(300)).chat(request()).await.unwrap();
    assert_eq!(reply.retries, 1);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn garbage_bodies_are_retried_then_given_up() {
    let (base, hits) = scripted(|_| Scripted::Status(200, "{\"choices\": [", &[])).await;
    let err = client(&base, Duration::from_secs(5)).chat(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Exhausted);
    assert!(!err.kind.is_fatal());
    assert_eq!(err.retries, 3);
    assert!(err.message.contains("gave up after 4 attempts"), "{}", err.message);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (base, hits) = scripted(|n| match n {
        0 => Scripted::Status(500, "oops", &[]),
        1 => Scripted::Status(502, "", &[]),
        2 => Scripted::Status(504, "", &[]),
        _ => Scripted::Ok,
    })
    .await;
    let reply = client(&base, Duration::from_secs(5)).chat(request()).await.unwrap();
    assert_eq!(reply.retries, 3);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn auth_and_missing_models_are_fatal() {
    let (base, _) = scripted(|_| Scripted::Status(401, r#"{"error":{"message":"bad key"}}"#, &[])).await;
    let err = client(&base, Duration::from_secs(5)).chat(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    let (base, _) = scripted(|_| Scripted::Status(404, r#"{"error":"model `m` not found"}"#, &[])).await;
    let err = client(&base, Duration::from_secs(5)).chat(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn unreachable_servers_exhaust_retries() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = client(&format!("http://127.0.0.1:{port}/v1"), Duration::from_secs(1)).chat(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Exhausted);
    assert!(err.message.contains("could not connect"), "{}", err.message);
}

/// Asks `n` distinct questions, checks each reply, returns the retries spent.
async fn ask_all(client: &OpenAiClient, n: usize, check: impl Fn(&evol_llm::ChatResponse)) -> u32 {
    let mut retries = 0;
    for i in 0..n {
        let mut r = request();
        r.messages[0].content = format!("Question {i}?");
        r.sampling.max_tokens = 1000;
        let reply = client.chat(r).await.unwrap();
        check(&reply);
        retries += reply.retries;
    }
    retries
}

#[tokio::test]
async fn mock_faults_are_survived() {
    let config = evol_mock::MockConfig {
        faults: evol_mock::Faults {
            rate_429: 0.1,
            rate_500: 0.1,
            malformed: 0.1,
            drop: 0.1,
            retry_after_secs: 0.01,
            ..evol_mock::Faults::default()
        },
        ..evol_mock::MockConfig::default()
    };
    let base = evol_mock::spawn(config).await.unwrap();
    let client = client_with(&base, Duration::from_secs(5), 20);
    let retries = ask_all(&client, 100, |reply| {
        assert!(reply.text.split_whitespace().count() > 50 || reply.text.starts_with("Sorry"), "{}", reply.text);
        assert!(reply.usage.completion_tokens > 0);
    })
    .await;
    // 40% of attempts fail: about 67 retries expected for 100 requests.
    assert!(retries > 20, "{retries}");
    let models = client.list_models().await.unwrap().unwrap();
    assert_eq!(models, vec!["mock".to_string()]);
}

#[tokio::test]
async fn slow_bodies_time_out_and_are_retried() {
    let config = evol_mock::MockConfig {
        faults: evol_mock::Faults { slow: 0.3, slow_ms: 2_000, ..evol_mock::Faults::default() },
        ..evol_mock::MockConfig::default()
    };
    let base = evol_mock::spawn(config).await.unwrap();
    let client = client_with(&base, Duration::from_millis(300), 20);
    let retries = ask_all(&client, 20, |reply| assert!(!reply.text.is_empty())).await;
    assert!(retries > 0, "some bodies stalled past the timeout");
}

#[tokio::test]
async fn a_web_page_is_named_as_such() {
    fn page() -> String {
        "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Corporate proxy login</body></html>".into()
    }
    for status in [200, 502] {
        let (base, _) = match status {
            200 => scripted(|_| Scripted::Body(200, "text/html; charset=utf-8", page)).await,
            _ => scripted(|_| Scripted::Body(502, "text/html", page)).await,
        };
        let err = client_with(&base, Duration::from_secs(5), 0).chat(request()).await.unwrap_err();
        let m = &err.message;
        assert!(m.contains("web page"), "{m}");
        assert!(m.contains(&format!("HTTP {status}")), "{m}");
        assert!(m.contains("text/html"), "{m}");
        assert!(m.contains("Sign in"), "{m}");
        assert!(m.contains("proxy"), "{m}");
    }
}

#[tokio::test]
async fn a_runaway_reply_is_not_read_nor_retried() {
    fn huge() -> String {
        let content = "x".repeat(3 << 20);
        format!(r#"{{"choices":[{{"message":{{"content":"{content}"}},"finish_reason":"stop"}}]}}"#)
    }
    let (base, hits) = scripted(|_| Scripted::Body(200, "application/json", huge)).await;
    let mut config = ClientConfig::new(base.as_str(), "m");
    config.max_reply_bytes = 1 << 20;
    config.retry.initial_backoff = Duration::from_millis(10);
    let err = OpenAiClient::new(config).unwrap().chat(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Rejected);
    assert!(err.message.contains("larger than 1 MiB"), "{}", err.message);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "not retried");
    // Under the limit, the same reply is read.
    let (base, _) = scripted(|_| Scripted::Body(200, "application/json", huge)).await;
    let reply = client(&base, Duration::from_secs(5)).chat(request()).await.unwrap();
    assert_eq!(reply.text.len(), 3 << 20);
}
