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
