//! The batch API, as OpenAI serves it: upload a JSONL file of requests
//! (`POST /v1/files`, multipart), create a batch over it (`POST
//! /v1/batches`), poll it (`GET /v1/batches/{id}`), read its output file
//! (`GET /v1/files/{id}/content`), or cancel it (`POST
//! /v1/batches/{id}/cancel`).
//!
//! A batch ends after `delay_ms`: `completed` with every reply, or
//! `expired` when `expire_rate` left some requests undone (the done ones
//! are still in its output file). A cancelled batch ends with no output.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Value};

use crate::{authorized, complete, error, Shared};

#[derive(Default)]
pub(crate) struct Store {
    files: HashMap<String, Vec<u8>>,
    batches: HashMap<String, Value>,
    next: u64,
    pub(crate) created: u64,
    pub(crate) answered: u64,
    pub(crate) cancelled: u64,
}

impl Store {
    /// Forgets every batch and file (the counters stay).
    pub(crate) fn forget(&mut self) {
        self.batches.clear();
        self.files.clear();
    }
}

impl Store {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{}", self.next)
    }
}

fn refuse(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    (!authorized(shared, headers)).then(|| error(StatusCode::UNAUTHORIZED, "invalid API key", "invalid_api_key"))
}

pub(crate) async fn upload(State(shared): State<Arc<Shared>>, headers: HeaderMap, mut form: Multipart) -> Response {
    if let Some(r) = refuse(&shared, &headers) {
        return r;
    }
    let mut content = None;
    let mut purpose = None;
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("file") => content = field.bytes().await.ok().map(|b| b.to_vec()),
            Some("purpose") => purpose = field.text().await.ok(),
            _ => {}
        }
    }
    let (Some(content), Some("batch")) = (content, purpose.as_deref()) else {
        return error(StatusCode::BAD_REQUEST, "expected a `file` and `purpose` = batch", "invalid_request");
    };
    let bytes = content.len();
    let mut store = shared.store.lock().unwrap();
    let id = store.id("file");
    store.files.insert(id.clone(), content);
    Json(json!({ "id": id, "object": "file", "bytes": bytes, "purpose": "batch" })).into_response()
}

pub(crate) async fn content(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refuse(&shared, &headers) {
        return r;
    }
    match shared.store.lock().unwrap().files.get(&id) {
        Some(bytes) => bytes.clone().into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no file `{id}`"), "not_found"),
    }
}

pub(crate) async fn create(State(shared): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = refuse(&shared, &headers) {
        return r;
    }
    let Some(file) = body["input_file_id"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "missing `input_file_id`", "invalid_request");
    };
    if body["endpoint"] != "/v1/chat/completions" {
        return error(StatusCode::BAD_REQUEST, "`endpoint` must be /v1/chat/completions", "invalid_request");
    }
    let batch = {
        let mut store = shared.store.lock().unwrap();
        if !store.files.contains_key(file) {
            return error(StatusCode::NOT_FOUND, &format!("no file `{file}`"), "not_found");
        }
        let id = store.id("batch");
        let batch = json!({
            "id": id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": file,
            "completion_window": "24h", "status": "in_progress", "output_file_id": null, "error_file_id": null,
            "request_counts": { "total": 0, "completed": 0, "failed": 0 },
        });
        store.created += 1;
        store.batches.insert(id.clone(), batch.clone());
        batch
    };
    let id = batch["id"].as_str().unwrap().to_string();
    let delay = Duration::from_millis(shared.config.batch.delay_ms);
    tokio::spawn(run(shared.clone(), id, file.to_string(), delay));
    Json(batch).into_response()
}

/// Works through a batch after its delay, unless it was cancelled.
async fn run(shared: Arc<Shared>, id: String, file: String, delay: Duration) {
    tokio::time::sleep(delay).await;
    let input = {
        let store = shared.store.lock().unwrap();
        if store.batches[&id]["status"] != "in_progress" {
            return;
        }
        store.files[&file].clone()
    };
    let (mut output, mut errors, mut done, mut failed, mut undone) = (Vec::new(), Vec::new(), 0, 0, 0);
    for (n, line) in input.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let request: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
        let custom_id = request["custom_id"].clone();
        if rand::rng().random::<f64>() < shared.config.batch.expire_rate {
            undone += 1;
            continue;
        }
        let body = serde_json::to_vec(&request["body"]).unwrap_or_default();
        // Batch lines carry no headers: the tag is in the request's name
        // (`evol-TAG-DIGEST`).
        let tag = custom_id
            .as_str()
            .and_then(|id| id.strip_prefix("evol-"))
            .and_then(|rest| rest.split_once('-'))
            .map(|(tag, _)| tag);
        match complete(&shared.config, &body, tag) {
            Ok((kind, completion)) => {
                shared.count(kind);
                shared.requests.fetch_add(1, Ordering::Relaxed);
                shared.completed.fetch_add(1, Ordering::Relaxed);
                done += 1;
                let status = json!({ "status_code": 200, "request_id": format!("req-{n}"), "body": completion });
                output.push(
                    json!({ "id": format!("{id}-{n}"), "custom_id": custom_id, "response": status, "error": null }),
                );
            }
            Err((status, body)) => {
                failed += 1;
                let response = json!({ "status_code": status.as_u16(), "body": body });
                errors.push(
                    json!({ "id": format!("{id}-{n}"), "custom_id": custom_id, "response": response, "error": null }),
                );
            }
        }
    }
    let lines = |v: Vec<Value>| v.into_iter().map(|l| l.to_string() + "\n").collect::<String>().into_bytes();
    let mut store = shared.store.lock().unwrap();
    if store.batches[&id]["status"] != "in_progress" {
        return;
    }
    store.answered += done;
    let output_id = (!output.is_empty()).then(|| store.id("file"));
    if let Some(file) = &output_id {
        store.files.insert(file.clone(), lines(output));
    }
    let error_id = (!errors.is_empty()).then(|| store.id("file"));
    if let Some(file) = &error_id {
        store.files.insert(file.clone(), lines(errors));
    }
    let batch = store.batches.get_mut(&id).unwrap();
    batch["status"] = json!(if undone > 0 { "expired" } else { "completed" });
    batch["output_file_id"] = json!(output_id);
    batch["error_file_id"] = json!(error_id);
    batch["request_counts"] = json!({ "total": done + failed + undone, "completed": done, "failed": failed });
}

pub(crate) async fn get(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refuse(&shared, &headers) {
        return r;
    }
    match shared.store.lock().unwrap().batches.get(&id) {
        Some(batch) => Json(batch.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no batch `{id}`"), "not_found"),
    }
}

pub(crate) async fn cancel(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refuse(&shared, &headers) {
        return r;
    }
    let mut store = shared.store.lock().unwrap();
    let Some(batch) = store.batches.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, &format!("no batch `{id}`"), "not_found");
    };
    if batch["status"] == "in_progress" {
        batch["status"] = json!("cancelled");
        let batch = batch.clone();
        store.cancelled += 1;
        return Json(batch).into_response();
    }
    Json(batch.clone()).into_response()
}
