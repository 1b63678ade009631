//! Provider batch APIs (about half the price at OpenAI and others): calls
//! are gathered into waves, each sent as one batch (`POST /files` with the
//! requests as JSONL, then `POST /batches`), polled, and answered from the
//! batch's output file.
//!
//! [`Batches`] implements the trait side: [`Batches::role`] gives a
//! [`ChatModel`] whose `chat` queues the request and resolves when its
//! batch ends. Requests are named by a digest of their body (`custom_id`),
//! so a resumed run recognises its own requests in batches still in flight:
//! [`Batches::start`] adopts every batch the [`BatchLedger`] lists as
//! unsettled (reads its input file, polls it) instead of paying for the
//! same requests again.
//!
//! Partial results are taken: a batch that ends `expired`, `failed` or
//! `cancelled` answers what it finished; its other requests go into the
//! next wave (up to [`BatchSettings::max_attempts`] batches per request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evol_llm::{ChatError, ChatModel, ChatRequest, ChatResponse, ErrorKind};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

use crate::retry::{classify_status, StatusClass};
use crate::{describe_transport, http_message, request_body, wire, OpenAiClient};

/// Where a run records its batches, so a resumed run can adopt them.
pub trait BatchLedger: Send + Sync {
    /// A batch was created.
    fn submitted(&self, batch_id: &str) -> Result<(), String>;
    /// Batches created and not yet settled (by the caller, once every
    /// result of them is safely stored).
    fn unsettled(&self) -> Result<Vec<String>, String>;
}

/// How batches are made.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// How long requests are gathered before a wave is sent.
    pub wave: Duration,
    /// How often a batch in flight is polled.
    pub poll: Duration,
    /// The most requests in one batch (OpenAI allows 50,000).
    pub max_requests: usize,
    /// The most batches one request may go into before it fails.
    pub max_attempts: u32,
}

impl Default for BatchSettings {
    fn default() -> BatchSettings {
        BatchSettings {
            wave: Duration::from_secs(5),
            poll: Duration::from_secs(30),
            max_requests: 50_000,
            max_attempts: 3,
        }
    }
}

/// What a batch looks like from outside.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInfo {
    pub id: String,
    pub status: String,
    pub input_file_id: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
}

impl BatchInfo {
    fn parse(v: &Value) -> Option<BatchInfo> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        Some(BatchInfo {
            id: text("id")?,
            status: text("status").unwrap_or_default(),
            input_file_id: text("input_file_id"),
            output_file_id: text("output_file_id"),
            error_file_id: text("error_file_id"),
        })
    }

    /// Whether the batch will change no more.
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "expired" | "failed" | "cancelled")
    }
}

type Reply = Result<ChatResponse, ChatError>;

#[derive(Default)]
struct State {
    /// Requests waiting for the next wave.
    queue: Vec<String>,
    /// The body of every unresolved request.
    bodies: HashMap<String, Value>,
    /// Callers waiting for a request.
    waiters: HashMap<String, Vec<oneshot::Sender<Reply>>>,
    /// How many batches in flight hold a request.
    holding: HashMap<String, u32>,
    /// Results of adopted batches that no caller asked for yet.
    ready: HashMap<String, Reply>,
    attempts: HashMap<String, u32>,
    /// An error that dooms every request (bad key, no quota).
    fatal: Option<ChatError>,
}

struct Inner {
    client: OpenAiClient,
    ledger: Arc<dyn BatchLedger>,
    settings: BatchSettings,
    state: Mutex<State>,
    queued: Notify,
    contact: Mutex<Contact>,
}

/// When the server last answered a batch request (upload, create, poll,
/// file read), and the failures since.
struct Contact {
    last_ok: std::time::Instant,
    failures: u64,
    last_error: Option<String>,
}

impl Contact {
    /// Counts a request: only a transient failure that outlasted its
    /// retries is a failure to reach the server (a refusal is an answer).
    fn record<T>(&mut self, result: &Result<T, ChatError>) {
        match result {
            Err(e) if e.kind == ErrorKind::Exhausted => {
                self.failures += 1;
                self.last_error = Some(e.message.clone());
            }
            _ => {
                self.last_ok = std::time::Instant::now();
                self.failures = 0;
            }
        }
    }
}

/// Batches in flight on one server.
#[derive(Clone)]
pub struct Batches {
    inner: Arc<Inner>,
}

impl Batches {
    /// Adopts the ledger's unsettled batches and starts sending waves.
    pub async fn start(
        client: OpenAiClient,
        ledger: Arc<dyn BatchLedger>,
        settings: BatchSettings,
    ) -> Result<Batches, ChatError> {
        let contact = Contact { last_ok: std::time::Instant::now(), failures: 0, last_error: None };
        let inner = Arc::new(Inner {
            client,
            ledger,
            settings,
            state: Mutex::default(),
            queued: Notify::new(),
            contact: Mutex::new(contact),
        });
        let batches = Batches { inner };
        let unsettled = batches.inner.ledger.unsettled().map_err(|e| ChatError::new(ErrorKind::Backend, e))?;
        for id in unsettled {
            // A batch (or input file) the provider no longer knows (deleted,
            // another account, a server restarted) is as one that expired
            // with nothing done: its requests are sent again.
            let info = match batches.inner.client.batch(&id).await {
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                info => info?,
            };
            let input = info
                .input_file_id
                .as_deref()
                .ok_or_else(|| ChatError::new(ErrorKind::Backend, format!("batch `{id}` names no input file")))?;
            let lines = match batches.inner.client.file_content(input).await {
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                lines => lines?,
            };
            let mut ids = Vec::new();
            {
                let mut state = batches.inner.state.lock().unwrap();
                for line in lines.lines().filter(|l| !l.trim().is_empty()) {
                    let Ok(request) = serde_json::from_str::<Value>(line) else { continue };
                    let Some(custom) = request["custom_id"].as_str() else { continue };
                    *state.holding.entry(custom.to_string()).or_default() += 1;
                    state.bodies.insert(custom.to_string(), request["body"].clone());
                    ids.push(custom.to_string());
                }
            }
            tokio::spawn(batches.clone().follow(id, ids));
        }
        tokio::spawn(batches.clone().send_waves());
        Ok(batches)
    }

    /// `Some(last error)` when the server's batch requests have failed and
    /// none has succeeded for `after` or longer.
    pub fn stalled(&self, after: Duration) -> Option<String> {
        let c = self.inner.contact.lock().unwrap();
        (c.failures > 0 && c.last_ok.elapsed() >= after)
            .then(|| c.last_error.clone().unwrap_or_else(|| "no reply".to_string()))
    }

    /// Stops waiting: every call waiting for a batch's result returns
    /// [`ErrorKind::Cancelled`] at once (the batches stay journaled and
    /// are adopted by a rerun).
    pub fn close(&self) {
        let mut state = self.inner.state.lock().unwrap();
        for (_, waiters) in state.waiters.drain() {
            for waiter in waiters {
                let cancelled =
                    ChatError::new(ErrorKind::Cancelled, "the run is stopping: the batch result was not awaited");
                let _ = waiter.send(Err(cancelled));
            }
        }
    }

    /// The model of one role (a model name on this server).
    pub fn role(&self, model: &str) -> Arc<dyn ChatModel> {
        Arc::new(BatchRole { batches: self.clone(), model: model.to_string() })
    }

    async fn ask(&self, body: Value, tag: Option<&str>) -> Reply {
        let legacy = digest(&body, None);
        let rx = {
            let mut state = self.inner.state.lock().unwrap();
            // A batch adopted from an attempt made before requests carried
            // their tag in their name still answers under its old name.
            let known = |id: &String| {
                state.ready.contains_key(id) || state.holding.contains_key(id) || state.bodies.contains_key(id)
            };
            let id = if tag.is_some() && known(&legacy) { legacy } else { digest(&body, tag) };
            if let Some(reply) = state.ready.remove(&id) {
                return reply;
            }
            if let Some(e) = &state.fatal {
                return Err(e.clone());
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.entry(id.clone()).or_default().push(tx);
            let unseen = !state.holding.contains_key(&id) && !state.bodies.contains_key(&id);
            if unseen {
                state.bodies.insert(id.clone(), body);
                state.queue.push(id);
                self.inner.queued.notify_one();
            }
            rx
        };
        rx.await.unwrap_or_else(|_| Err(ChatError::new(ErrorKind::Backend, "the batch worker stopped")))
    }

    /// Sends a wave whenever requests are queued.
    async fn send_waves(self) {
        loop {
            self.inner.queued.notified().await;
            tokio::time::sleep(self.inner.settings.wave).await;
            loop {
                let (ids, lines) = {
                    let mut state = self.inner.state.lock().unwrap();
                    let n = state.queue.len().min(self.inner.settings.max_requests);
                    let ids: Vec<String> = state.queue.drain(..n).collect();
                    let mut lines = String::new();
                    for id in &ids {
                        *state.holding.entry(id.clone()).or_default() += 1;
                        *state.attempts.entry(id.clone()).or_default() += 1;
                        let line = json!({
                            "custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": state.bodies[id],
                        });
                        lines.push_str(&line.to_string());
                        lines.push('\n');
                    }
                    (ids, lines)
                };
                if ids.is_empty() {
                    break;
                }
                let submitted = self.submit(lines).await;
                self.inner.contact.lock().unwrap().record(&submitted);
                match submitted {
                    Ok(batch) => {
                        tokio::spawn(self.clone().follow(batch, ids));
                    }
                    Err(e) => {
                        let mut state = self.inner.state.lock().unwrap();
                        if e.kind.is_fatal() {
                            state.fatal = Some(e.clone());
                        }
                        for id in ids {
                            release(&mut state, &id);
                            resolve(&mut state, &id, Err(e.clone()));
                        }
                    }
                }
            }
        }
    }

    async fn submit(&self, lines: String) -> Result<String, ChatError> {
        let client = &self.inner.client;
        let file = client.upload_batch_file(lines).await?;
        let batch = client.create_batch(&file).await?;
        if let Err(e) = self.inner.ledger.submitted(&batch) {
            // A batch the journal does not know would never be adopted:
            // cancel it (best effort) so that it is not paid for in vain,
            // and stop the run.
            let cancelled = client.cancel_batch(&batch).await.is_ok();
            let what = if cancelled { "it was cancelled" } else { "cancelling it failed too" };
            return Err(ChatError::new(
                ErrorKind::Backend,
                format!("the batch `{batch}` was created but could not be journaled ({e}); {what}"),
            ));
        }
        Ok(batch)
    }

    /// Polls a batch to its end, then hands out its results and sends the
    /// rest to the next wave.
    async fn follow(self, batch: String, ids: Vec<String>) {
        let client = &self.inner.client;
        let info = loop {
            let polled = client.batch(&batch).await;
            self.inner.contact.lock().unwrap().record(&polled);
            match polled {
                Ok(info) if info.ended() => break info,
                Ok(_) => {}
                // Forgotten by the provider: ended, nothing done.
                Err(e) if e.kind == ErrorKind::NotFound => {
                    break BatchInfo {
                        id: batch.clone(),
                        status: "unknown to the server".into(),
                        input_file_id: None,
                        output_file_id: None,
                        error_file_id: None,
                    }
                }
                Err(e) if e.kind.is_fatal() => {
                    self.fail_all(&ids, e);
                    return;
                }
                Err(_) => {} // a failed poll is polled again
            }
            tokio::time::sleep(self.inner.settings.poll).await;
        };
        let mut results: HashMap<String, Reply> = HashMap::new();
        for file in [&info.output_file_id, &info.error_file_id].into_iter().flatten() {
            let text = loop {
                let read = client.file_content(file).await;
                self.inner.contact.lock().unwrap().record(&read);
                match read {
                    Ok(text) => break text,
                    Err(e) if e.kind.is_fatal() => {
                        self.fail_all(&ids, e);
                        return;
                    }
                    Err(_) => tokio::time::sleep(self.inner.settings.poll).await,
                }
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Some((id, reply)) = result_line(line, &batch) {
                    results.insert(id, reply);
                }
            }
        }
        let mut state = self.inner.state.lock().unwrap();
        let mut requeued = false;
        for id in ids {
            release(&mut state, &id);
            match results.remove(&id) {
                // A transient failure inside the batch is tried again.
                Some(Err(e)) if e.kind == ErrorKind::Exhausted => self.retry_later(&mut state, &id, e, &mut requeued),
                Some(reply) => resolve(&mut state, &id, reply),
                None if state.holding.contains_key(&id) => {} // another batch holds it too
                None => {
                    let e = ChatError::new(
                        ErrorKind::Exhausted,
                        format!("batch `{batch}` ended `{}` without answering this request", info.status),
                    );
                    self.retry_later(&mut state, &id, e, &mut requeued);
                }
            }
        }
        if requeued {
            self.inner.queued.notify_one();
        }
    }

    fn retry_later(&self, state: &mut State, id: &str, error: ChatError, requeued: &mut bool) {
        if !state.waiters.contains_key(id) {
            // Nobody asks for it (an adopted batch whose caller already has
            // its answer from the journal): drop it rather than pay again.
            state.bodies.remove(id);
            return;
        }
        if state.attempts.get(id).copied().unwrap_or(0) >= self.inner.settings.max_attempts {
            let e = ChatError {
                message: format!("{} (after {} batches)", error.message, self.inner.settings.max_attempts),
                ..error
            };
            resolve(state, id, Err(e));
            return;
        }
        state.queue.push(id.to_string());
        *requeued = true;
    }

    fn fail_all(&self, ids: &[String], error: ChatError) {
        let mut state = self.inner.state.lock().unwrap();
        state.fatal = Some(error.clone());
        for id in ids {
            release(&mut state, id);
            resolve(&mut state, id, Err(error.clone()));
        }
    }
}

/// One batch fewer holds `id`.
fn release(state: &mut State, id: &str) {
    if let Some(n) = state.holding.get_mut(id) {
        *n -= 1;
        if *n == 0 {
            state.holding.remove(id);
        }
    }
}

/// Hands a result to its callers, or keeps it for a caller to come.
fn resolve(state: &mut State, id: &str, reply: Reply) {
    state.bodies.remove(id);
    state.attempts.remove(id);
    match state.waiters.remove(id) {
        Some(waiters) => {
            for tx in waiters {
                let _ = tx.send(reply.clone());
            }
        }
        None => {
            state.ready.insert(id.to_string(), reply);
        }
    }
}

/// One line of a batch's output or error file: its custom id and result.
fn result_line(line: &str, batch: &str) -> Option<(String, Reply)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let id = v["custom_id"].as_str()?.to_string();
    let response = &v["response"];
    let status = response["status_code"].as_u64().unwrap_or(0);
    let reply = if status == 200 {
        wire::parse_completion(&response["body"].to_string())
            .map_err(|e| ChatError::new(ErrorKind::Exhausted, format!("unreadable reply in batch `{batch}`: {e}")))
    } else {
        let body = response["body"].to_string();
        let message = match v["error"].get("message").and_then(Value::as_str) {
            Some(m) => format!("batch `{batch}`: {m}"),
            None => format!("batch `{batch}`: HTTP {status}: {}", wire::error_message(&body).unwrap_or_default()),
        };
        let message = evol_text::scrub(&message).into_owned();
        let kind = match reqwest::StatusCode::from_u16(status as u16).ok() {
            Some(code) => match classify_status(code, wire::error_code(&body).as_deref()) {
                StatusClass::Retry => ErrorKind::Exhausted,
                StatusClass::Fail(kind) => kind,
            },
            None => ErrorKind::Exhausted,
        };
        Err(ChatError::new(kind, message))
    };
    Some((id, reply))
}

/// A request's name in a batch: its tag (what it is for, which the
/// simulator reads; batch lines carry no headers) and a digest of its body.
fn digest(body: &Value, tag: Option<&str>) -> String {
    let hash = evol_digest::Digest::new().raw(body.to_string()).hex(32);
    match tag.filter(|t| t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
        Some(tag) => format!("evol-{tag}-{hash}"),
        None => format!("evol-{hash}"),
    }
}

struct BatchRole {
    batches: Batches,
    model: String,
}

#[async_trait::async_trait]
impl ChatModel for BatchRole {
    fn name(&self) -> &str {
        &self.model
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, ChatError> {
        if request.completion.is_some() {
            return Err(ChatError::new(
                evol_llm::ErrorKind::Rejected,
                "a batch asks chat completions only: text completions (Magpie) go to a server's /v1/completions",
            ));
        }
        let body = request_body(&self.model, &request.messages, &request.sampling, &request.stop);
        self.batches.ask(body, request.tag.as_deref()).await
    }
}

/// The batch endpoints of the client, each retried on transient failures.
impl OpenAiClient {
    async fn send_with_retries<F, Fut>(&self, what: &str, url: &str, send: F) -> Result<String, ChatError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    {
        let mut retries = 0;
        loop {
            let failure = match send().await {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(text);
                    }
                    let message = format!("{what}: {}", http_message(status, &text, url));
                    match classify_status(status, wire::error_code(&text).as_deref()) {
                        StatusClass::Fail(kind) => return Err(ChatError { retries, ..ChatError::new(kind, message) }),
                        StatusClass::Retry => message,
                    }
                }
                Err(e) => format!("{what}: {}", describe_transport(&e, url)),
            };
            if retries >= self.retry.max_retries.max(3) {
                return Err(ChatError { retries, ..ChatError::new(ErrorKind::Exhausted, failure) });
            }
            let wait = self.retry.delay(retries, None, &mut rand::rng());
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }

    /// Uploads a JSONL file of batch requests; returns its file id.
    pub async fn upload_batch_file(&self, lines: String) -> Result<String, ChatError> {
        let url = format!("{}/files", self.base);
        let text = self
            .send_with_retries("uploading a batch file", &url, || {
                let part = Part::text(lines.clone()).file_name("evol-batch.jsonl").mime_str("application/jsonl");
                let form = Form::new().text("purpose", "batch").part("file", part.expect("a valid MIME type"));
                self.http.post(&url).multipart(form).send()
            })
            .await?;
        id_of(&text, "file upload")
    }

    /// Creates a batch over an uploaded file; returns the batch id.
    pub async fn create_batch(&self, file_id: &str) -> Result<String, ChatError> {
        let url = format!("{}/batches", self.base);
        let body = json!({ "input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h" });
        let text = self.send_with_retries("creating a batch", &url, || self.http.post(&url).json(&body).send()).await?;
        id_of(&text, "batch creation")
    }

    /// A batch's state.
    pub async fn batch(&self, id: &str) -> Result<BatchInfo, ChatError> {
        let url = format!("{}/batches/{id}", self.base);
        let text = self.send_with_retries("polling a batch", &url, || self.http.get(&url).send()).await?;
        batch_info(&text)
    }

    /// Cancels a batch; returns its state after the request.
    pub async fn cancel_batch(&self, id: &str) -> Result<BatchInfo, ChatError> {
        let url = format!("{}/batches/{id}/cancel", self.base);
        let text = self.send_with_retries("cancelling a batch", &url, || self.http.post(&url).send()).await?;
        batch_info(&text)
    }

    /// A file's content.
    pub async fn file_content(&self, id: &str) -> Result<String, ChatError> {
        let url = format!("{}/files/{id}/content", self.base);
        self.send_with_retries("reading a batch file", &url, || self.http.get(&url).send()).await
    }
}

fn id_of(text: &str, what: &str) -> Result<String, ChatError> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["id"].as_str().map(String::from))
        .ok_or_else(|| ChatError::new(ErrorKind::Exhausted, format!("the {what} reply has no `id`")))
}

fn batch_info(text: &str) -> Result<BatchInfo, ChatError> {
    serde_json::from_str::<Value>(text)
        .ok()
        .as_ref()
        .and_then(BatchInfo::parse)
        .ok_or_else(|| ChatError::new(ErrorKind::Exhausted, "an unreadable batch object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_become_replies_or_typed_errors() {
        let ok = r#"{"custom_id":"a","response":{"status_code":200,"body":{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}}}"#;
        let (id, reply) = result_line(ok, "b1").unwrap();
        assert_eq!(id, "a");
        let reply = reply.unwrap();
        assert_eq!((reply.text.as_str(), reply.usage.completion_tokens), ("hi", 1));
        let bad = r#"{"custom_id":"b","response":{"status_code":400,"body":{"error":{"message":"too long"}}}}"#;
        let err = result_line(bad, "b1").unwrap().1.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Rejected);
        assert!(err.message.contains("too long"), "{}", err.message);
        let busy = r#"{"custom_id":"c","response":{"status_code":500,"body":{}}}"#;
        assert_eq!(result_line(busy, "b1").unwrap().1.unwrap_err().kind, ErrorKind::Exhausted);
        assert!(result_line("not json", "b1").is_none());
    }

    #[test]
    fn the_same_request_has_the_same_name() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1});
        let b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 2});
        assert_eq!(digest(&a, None), digest(&a.clone(), None));
        assert_ne!(digest(&a, None), digest(&b, None));
        assert!(digest(&a, Some("judge")).starts_with("evol-judge-"));
    }
}
