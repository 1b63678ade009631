//! The router in-process (`oneshot`, no socket) and over a real socket on
//! port 0, on the real default model.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use evol_llama::{LlamaEngine, LlamaSettings};
use evol_serve::{app, serve, ServeConfig};
use tower::ServiceExt;

fn engine() -> LlamaEngine {
    let cache = evol_models::cache_dir().unwrap();
    let model = evol_models::find(evol_models::DEFAULT_MODEL).unwrap();
    let path = evol_models::pull(&cache, model, &Default::default(), &mut |m| eprintln!("{m}")).unwrap();
    let mut settings = LlamaSettings::new(path);
    settings.ctx_size = 4096;
    settings.parallel = 2;
    LlamaEngine::start(settings).unwrap()
}

async fn body_json(response: axum::response::Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn post(body: &str, key: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/v1/chat/completions").header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_answers_in_process_and_over_a_socket() {
    let engine = engine();
    let name = evol_llm::ChatModel::name(&engine).to_string();
    let config = ServeConfig { api_key: Some("k".into()), max_tokens_cap: 4, ..ServeConfig::default() };
    let router = app(engine, config);

    // In-process: no socket, the router as a service.
    let models = router.clone().oneshot(Request::get("/v1/models").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(models.status(), StatusCode::UNAUTHORIZED);
    let error = body_json(models).await;
    assert!(error["error"]["message"].as_str().unwrap().contains("Bearer"), "{error}");
    let request = Request::get("/v1/models").header("authorization", "Bearer k").body(Body::empty()).unwrap();
    let models = body_json(router.clone().oneshot(request).await.unwrap()).await;
    assert_eq!(models["data"][0]["id"], name.as_str());

    let bad = router.clone().oneshot(post(r#"{"messages":[{"role":"user","content":"x"}],"top_p":0}"#, Some("k")));
    let bad = bad.await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(bad).await["error"]["param"], "top_p");

    let reply = router
        .clone()
        .oneshot(post(
            r#"{"messages":[{"role":"user","content":"Say hi."}],"max_tokens":50,"temperature":0}"#,
            Some("k"),
        ))
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let reply = body_json(reply).await;
    assert_eq!(reply["object"], "chat.completion");
    let usage = &reply["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 4, "capped at 4: {reply}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    // Over a socket bound by the caller, shut down on demand.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router, async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"generated_tokens\""), "{response}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_what_openai_clients_expect() {
    let config = ServeConfig { api_key: Some("k".into()), max_tokens_cap: 8, ..ServeConfig::default() };
    let router = app(engine(), config);

    // The scheme is case-insensitive.
    let request = Request::get("/v1/models").header("authorization", "bearer k").body(Body::empty()).unwrap();
    assert_eq!(router.clone().oneshot(request).await.unwrap().status(), StatusCode::OK);

    // Unknown routes and methods answer JSON errors.
    let missing = router.clone().oneshot(Request::get("/v1/nothing").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(body_json(missing).await["error"]["message"].as_str().unwrap().contains("/v1/nothing"));
    let wrong = router.clone().oneshot(Request::get("/v1/chat/completions").body(Body::empty()).unwrap()).await;
    let wrong = wrong.unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(body_json(wrong).await["error"]["message"].is_string());

    // Sampling the server does not implement is refused, not ignored.
    let penalty = r#"{"messages":[{"role":"user","content":"x"}],"frequency_penalty":1.5}"#;
    let refused = router.clone().oneshot(post(penalty, Some("k"))).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(refused).await["error"]["param"], "frequency_penalty");

    // Streamed usage comes in a last chunk of its own, with no choices.
    let body = r#"{"messages":[{"role":"user","content":"Say hi."}],"stream":true,"stream_options":{"include_usage":true},"temperature":0}"#;
    let response = router.clone().oneshot(post(body, Some("k"))).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let chunks: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (usage, content) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0, "{usage}");
    let u = &usage["usage"];
    assert_eq!(u["total_tokens"], u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap());
    assert!(content.iter().all(|c| c["usage"].is_null() && c["choices"].as_array().unwrap().len() == 1));
    assert!(content.last().unwrap()["choices"][0]["finish_reason"].is_string());
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_cannot_take_every_connection() {
    use tokio::io::AsyncWriteExt;
    let router = app(engine(), ServeConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = evol_serve::Limits { header_timeout: std::time::Duration::from_secs(1), max_connections: 4 };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(evol_serve::serve_with(
        listener,
        router,
        async {
            let _ = stopped.await;
        },
        limits,
    ));
    // Four slowloris clients take every connection, sending a header byte
    // at a time.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a").await.unwrap();
        slow.push(s);
    }
    // A fifth client is answered once the header timeout has cut them off.
    let started = std::time::Instant::now();
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), raw(addr, "GET /health HTTP/1.0\r\nHost: x\r\n\r\n"))
            .await
            .expect("served after the slow clients were cut off");
    assert!(response.contains(" 200 "), "{response}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(500), "it had to wait for a free connection");
    for mut s in slow {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest),
        );
        assert!(read.await.is_ok(), "the slow connection was closed");
    }

    // A body that never completes gets 408 after the body timeout.
    let config = ServeConfig { body_timeout: std::time::Duration::from_millis(500), ..ServeConfig::default() };
    let router = app(engine(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, std::future::pending()));
    let mut s = tokio::net::TcpStream::connect(addr2).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mess")
        .await
        .unwrap();
    let mut response = vec![0u8; 4096];
    let n =
        tokio::time::timeout(std::time::Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut s, &mut response))
            .await
            .expect("answered")
            .unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
