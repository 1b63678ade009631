//! Spreads model calls over several servers and keeps each one as busy as
//! it can take, no busier.
//!
//! A [`Pool`] holds endpoints (servers), each with:
//! - an adaptive concurrency limit (AIMD): +1 per window of healthy replies,
//!   halved on an overload signal (429, 503, a timeout, or a reply slower
//!   than the endpoint's `slow_after`), between a floor and the endpoint's
//!   ceiling;
//! - optional token buckets for requests and tokens per minute, set by the
//!   caller or learned from the server's rate-limit headers;
//! - a circuit breaker: after [`TRIP_AFTER`] failures in a row the endpoint
//!   is taken out for a cool-down (doubling up to [`MAX_COOL_DOWN`]), then
//!   one probe request decides whether it comes back;
//! - a pause when the server asks for one (`Retry-After`).
//!
//! Each call goes to the least-loaded endpoint that may take it (in-flight
//! calls divided by weight). The pool owns the retries: a failed attempt is
//! retried with backoff, on whichever endpoint is best then, so one dead
//! server costs a run nothing but its share of retries. An endpoint that
//! refuses credentials or does not know the model is taken out for good;
//! the run stops only when no endpoint is left.
//!
//! The endpoints are [`ChatModel`]s that make one attempt per call (no
//! retries of their own); one pool serves several roles (evolve, judge,
//! answer) that may use other model names on the same servers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use evol_llm::{ChatError, ChatModel, ChatRequest, ChatResponse, ErrorKind, RetryPolicy, Signals};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Failures in a row that take an endpoint out.
pub const TRIP_AFTER: u32 = 5;
/// The first cool-down of a tripped endpoint.
pub const FIRST_COOL_DOWN: Duration = Duration::from_secs(1);
/// The longest cool-down.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(30);

/// How one endpoint is used.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// How the endpoint is named in messages (its URL).
    pub name: String,
    /// Share of the load relative to the other endpoints.
    pub weight: f64,
    /// Concurrency ceiling.
    pub max_concurrency: usize,
    /// Concurrency floor.
    pub min_concurrency: usize,
    /// Adapt concurrency between floor and ceiling (else: stay at ceiling).
    pub adaptive: bool,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// A successful reply that took longer than this counts as overload
    /// (the server is near the point where requests time out).
    pub slow_after: Option<Duration>,
}

impl EndpointConfig {
    pub fn new(name: impl Into<String>, max_concurrency: usize) -> EndpointConfig {
        EndpointConfig {
            name: name.into(),
            weight: 1.0,
            max_concurrency: max_concurrency.max(1),
            min_concurrency: 1,
            adaptive: true,
            requests_per_minute: None,
            tokens_per_minute: None,
            slow_after: None,
        }
    }
}

/// One server: its clients (one per role, by the role's name) and how it
/// is doing.
pub struct Endpoint {
    pub config: EndpointConfig,
    /// One client per role, keyed by the role's name (`evolve`, `judge`, ...).
    pub clients: std::collections::BTreeMap<String, Arc<dyn ChatModel>>,
}

/// A snapshot of one endpoint, for progress displays and statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStatus {
    pub name: String,
    pub in_flight: usize,
    pub limit: usize,
    pub requests: u64,
    pub failures: u64,
    /// Why the endpoint is out, if it is.
    pub out: Option<String>,
}

/// A token bucket: `rate` per minute, bursts of up to `capacity`.
#[derive(Debug, Clone)]
struct Bucket {
    per_second: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn per_minute(rate: u64, now: Instant) -> Bucket {
        let per_second = rate as f64 / 60.0;
        // A sixth of a minute of burst: smooth, and at least one request.
        let capacity = (rate as f64 / 6.0).max(1.0);
        Bucket { per_second, capacity, level: capacity, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.per_second).min(self.capacity);
        self.at = now;
    }

    /// How long until `amount` is available (zero: now). Amounts above the
    /// capacity need only a full bucket.
    fn wait(&mut self, amount: f64, now: Instant) -> Duration {
        self.refill(now);
        let amount = amount.min(self.capacity);
        if self.level >= amount {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((amount - self.level) / self.per_second)
        }
    }

    fn take(&mut self, amount: f64) {
        self.level -= amount;
    }

    fn give(&mut self, amount: f64) {
        self.level = (self.level + amount).min(self.capacity);
    }
}

/// The mutable state of one endpoint.
#[derive(Debug)]
struct Health {
    in_flight: usize,
    /// The AIMD window, fractional between whole steps.
    limit: f64,
    failures_in_a_row: u32,
    /// Until when the endpoint takes nothing (breaker open or server pause).
    closed_until: Option<Instant>,
    cool_down: Duration,
    /// A tripped endpoint lets one probe through after its cool-down.
    probing: bool,
    /// When the window was last halved (at most once per in-flight
    /// generation, so one burst of 429s halves it once).
    last_decrease: Option<Instant>,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// The endpoint is out for good (credentials, unknown model).
    dead: Option<ChatError>,
    sent: u64,
    failed: u64,
}

struct Inner {
    endpoints: Vec<(Endpoint, Mutex<Health>)>,
    retry: RetryPolicy,
    changed: Notify,
}

/// Many endpoints behind one [`ChatModel`] per role.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// The outcome of looking for an endpoint.
enum Pick {
    Go(usize),
    Wait(Duration),
    AllDead(ChatError),
}

impl Pool {
    /// A pool over `endpoints` (at least one), retrying per `retry`. Every
    /// endpoint must have a client for each role.
    pub fn new(endpoints: Vec<Endpoint>, retry: RetryPolicy) -> Pool {
        assert!(!endpoints.is_empty(), "a pool needs an endpoint");
        let roles = |e: &Endpoint| e.clients.keys().cloned().collect::<Vec<_>>();
        assert!(endpoints.iter().all(|e| roles(e) == roles(&endpoints[0])), "every endpoint serves the same roles");
        let now = Instant::now();
        let endpoints = endpoints
            .into_iter()
            .map(|e| {
                let health = Health {
                    in_flight: 0,
                    limit: e.config.max_concurrency as f64,
                    failures_in_a_row: 0,
                    closed_until: None,
                    cool_down: FIRST_COOL_DOWN,
                    probing: false,
                    last_decrease: None,
                    requests: e.config.requests_per_minute.map(|r| Bucket::per_minute(r, now)),
                    tokens: e.config.tokens_per_minute.map(|r| Bucket::per_minute(r, now)),
                    dead: None,
                    sent: 0,
                    failed: 0,
                };
                (e, Mutex::new(health))
            })
            .collect();
        Pool { inner: Arc::new(Inner { endpoints, retry, changed: Notify::new() }) }
    }

    /// The [`ChatModel`] of the role named `role`, named `name` in records.
    /// Panics if the endpoints have no client for that role.
    pub fn role(&self, role: &str, name: impl Into<String>) -> Arc<dyn ChatModel> {
        assert!(self.inner.endpoints[0].0.clients.contains_key(role), "no client for the role `{role}`");
        Arc::new(PoolRole { pool: self.clone(), role: role.to_string(), name: name.into() })
    }

    /// How every endpoint is doing.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.inner
            .endpoints
            .iter()
            .map(|(e, health)| {
                let h = health.lock().unwrap();
                let out = h.dead.as_ref().map(|d| d.message.clone()).or_else(|| {
                    h.closed_until
                        .filter(|until| *until > Instant::now() && h.failures_in_a_row >= TRIP_AFTER)
                        .map(|_| format!("{} failures in a row, cooling down", h.failures_in_a_row))
                });
                EndpointStatus {
                    name: e.config.name.clone(),
                    in_flight: h.in_flight,
                    limit: h.limit as usize,
                    requests: h.sent,
                    failures: h.failed,
                    out,
                }
            })
            .collect()
    }

    /// The least-loaded endpoint that may take a call of about `tokens`.
    fn pick(&self, tokens: f64) -> Pick {
        let now = Instant::now();
        let mut best: Option<(f64, usize)> = None;
        let mut wait = Duration::from_secs(3600);
        let mut dead = None;
        let mut alive = 0;
        for (i, (endpoint, health)) in self.inner.endpoints.iter().enumerate() {
            let mut h = health.lock().unwrap();
            if let Some(error) = &h.dead {
                dead = Some(error.clone());
                continue;
            }
            alive += 1;
            if let Some(until) = h.closed_until {
                if until > now {
                    wait = wait.min(until - now);
                    continue;
                }
                // Tripped and cooled down: one probe at a time.
                if h.failures_in_a_row >= TRIP_AFTER && (h.probing || h.in_flight > 0) {
                    continue;
                }
            }
            if h.in_flight >= (h.limit as usize).max(1) {
                continue;
            }
            let bucket_wait =
                [h.requests.as_mut().map(|b| b.wait(1.0, now)), h.tokens.as_mut().map(|b| b.wait(tokens, now))]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(Duration::ZERO);
            if !bucket_wait.is_zero() {
                wait = wait.min(bucket_wait);
                continue;
            }
            let load = h.in_flight as f64 / endpoint.config.weight;
            if best.is_none_or(|(b, _)| load < b) {
                best = Some((load, i));
            }
        }
        match best {
            Some((_, i)) => Pick::Go(i),
            None if alive == 0 => Pick::AllDead(dead.expect("no endpoint alive means one is dead")),
            None => Pick::Wait(wait),
        }
    }

    /// Claims endpoint `i` for a call of about `tokens` (after [`Pool::pick`]).
    fn claim(&self, i: usize, tokens: f64) {
        let mut h = self.inner.endpoints[i].1.lock().unwrap();
        h.in_flight += 1;
        h.sent += 1;
        if h.failures_in_a_row >= TRIP_AFTER {
            h.probing = true;
        }
        if let Some(b) = &mut h.requests {
            b.take(1.0);
        }
        if let Some(b) = &mut h.tokens {
            b.take(tokens);
        }
    }

    /// Records how a call on endpoint `i` went.
    fn settle(&self, i: usize, estimate: f64, took: Duration, result: &Result<ChatResponse, ChatError>) {
        let (endpoint, health) = &self.inner.endpoints[i];
        let config = &endpoint.config;
        let now = Instant::now();
        let mut h = health.lock().unwrap();
        h.in_flight -= 1;
        h.probing = false;
        let signals = match result {
            Ok(reply) => reply.signals,
            Err(e) => e.signals,
        };
        learn_limits(&mut h, config, signals, now);
        match result {
            Ok(reply) => {
                if let Some(b) = &mut h.tokens {
                    // Correct the estimate by what the call really used.
                    b.give(estimate - reply.usage.total() as f64);
                }
                h.failures_in_a_row = 0;
                h.closed_until = None;
                h.cool_down = FIRST_COOL_DOWN;
                let slow = config.slow_after.is_some_and(|limit| took > limit);
                if config.adaptive && slow {
                    decrease(&mut h, config, now);
                } else if config.adaptive {
                    // Additive increase: one more per window of successes.
                    h.limit = (h.limit + 1.0 / h.limit.max(1.0)).min(config.max_concurrency as f64);
                }
            }
            Err(e) if e.kind.is_fatal() => {
                h.failed += 1;
                h.dead = Some(ChatError { message: format!("endpoint `{}`: {}", config.name, e.message), ..e.clone() });
            }
            Err(e) if e.kind == ErrorKind::Rejected => {
                // The request was refused, not the server: no health change.
                h.failed += 1;
            }
            Err(e) => {
                h.failed += 1;
                h.failures_in_a_row += 1;
                if e.signals.overloaded && config.adaptive {
                    decrease(&mut h, config, now);
                }
                if let Some(pause) = e.signals.retry_after {
                    h.closed_until = Some(now + pause.min(self.inner.retry.max_retry_after));
                }
                if h.failures_in_a_row >= TRIP_AFTER {
                    let until = now + h.cool_down;
                    h.closed_until = Some(h.closed_until.map_or(until, |u| u.max(until)));
                    h.cool_down = (h.cool_down * 2).min(MAX_COOL_DOWN);
                }
            }
        }
        drop(h);
        self.inner.changed.notify_waiters();
    }

    async fn call(&self, role: &str, request: ChatRequest) -> Result<ChatResponse, ChatError> {
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        // What a rate limiter counts against tokens per minute before the
        // reply: the prompt (about 4 bytes a token) and the most it may get.
        let estimate = (prompt_chars / 4) as f64 + f64::from(request.sampling.max_tokens);
        let mut retries = 0;
        loop {
            let i = loop {
                // Register interest before looking, so a change between the
                // look and the wait is not missed.
                let changed = self.inner.changed.notified();
                match self.pick(estimate) {
                    Pick::Go(i) => break i,
                    Pick::AllDead(error) => return Err(ChatError { retries, ..error }),
                    Pick::Wait(wait) => {
                        tokio::select! {
                            _ = changed => {}
                            _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                        }
                    }
                }
            };
            self.claim(i, estimate);
            let client = &self.inner.endpoints[i].0.clients[role];
            let started = Instant::now();
            let result = client.chat(request.clone()).await;
            self.settle(i, estimate, started.elapsed(), &result);
            match result {
                Ok(mut reply) => {
                    reply.retries += retries;
                    return Ok(reply);
                }
                // Refused requests fail their item; fatal errors took the
                // endpoint out and the next pick tells whether any is left.
                Err(e) if e.kind == ErrorKind::Rejected => return Err(ChatError { retries, ..e }),
                Err(e) if e.kind.is_fatal() => {}
                Err(mut e) => {
                    if retries >= self.inner.retry.max_retries {
                        if retries > 0 {
                            e.message = format!("gave up after {} attempts; last error: {}", retries + 1, e.message);
                        }
                        return Err(ChatError { retries, kind: ErrorKind::Exhausted, ..e });
                    }
                    // The server's own pause is kept by its endpoint; the
                    // request itself backs off and may go elsewhere.
                    let wait = self.inner.retry.delay(retries, None, &mut rand::rng());
                    tokio::time::sleep(wait).await;
                }
            }
            retries += 1;
        }
    }
}

/// Multiplicative decrease: halves the window, at most once a second (one
/// burst of overload signals is one signal).
fn decrease(h: &mut Health, config: &EndpointConfig, now: Instant) {
    let recent = h.last_decrease.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
    if !recent {
        h.limit = (h.limit / 2.0).max(config.min_concurrency as f64);
        h.last_decrease = Some(now);
    }
}

/// Takes the limits a server states, unless the caller set its own.
fn learn_limits(h: &mut Health, config: &EndpointConfig, signals: Signals, now: Instant) {
    if config.requests_per_minute.is_none() {
        if let Some(rpm) = signals.requests_per_minute {
            if h.requests.as_ref().is_none_or(|b| (b.per_second * 60.0).round() as u64 != rpm) {
                h.requests = Some(Bucket::per_minute(rpm, now));
            }
        }
    }
    if config.tokens_per_minute.is_none() {
        if let Some(tpm) = signals.tokens_per_minute {
            if h.tokens.as_ref().is_none_or(|b| (b.per_second * 60.0).round() as u64 != tpm) {
                h.tokens = Some(Bucket::per_minute(tpm, now));
            }
        }
    }
}

struct PoolRole {
    pool: Pool,
    role: String,
    name: String,
}

#[async_trait::async_trait]
impl ChatModel for PoolRole {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, ChatError> {
        self.pool.call(&self.role, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evol_llm::{FinishReason, Message, Sampling, Usage};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scripted server: fails with `fail` (if any) or replies after `delay`.
    struct Server {
        fail: Option<ChatError>,
        delay: Duration,
        calls: AtomicUsize,
        peak: AtomicUsize,
        now: AtomicUsize,
    }

    impl Server {
        fn new(fail: Option<ChatError>) -> Arc<Server> {
            Arc::new(Server {
                fail,
                delay: Duration::from_millis(10),
                calls: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                now: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait::async_trait]
    impl ChatModel for Server {
        fn name(&self) -> &str {
            "m"
        }
        async fn chat(&self, _request: ChatRequest) -> Result<ChatResponse, ChatError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            match &self.fail {
                Some(e) => Err(e.clone()),
                None => Ok(ChatResponse {
                    text: "ok".into(),
                    reasoning: None,
                    finish_reason: FinishReason::Stop,
                    usage: Usage { prompt_tokens: 10, completion_tokens: 10, cached_tokens: 0 },
                    retries: 0,
                    signals: Signals::default(),
                }),
            }
        }
    }

    fn pool(servers: &[(Arc<Server>, EndpointConfig)]) -> Pool {
        let endpoints = servers
            .iter()
            .map(|(s, c)| Endpoint {
                config: c.clone(),
                clients: [("evolve".to_string(), s.clone() as Arc<dyn ChatModel>)].into(),
            })
            .collect();
        let retry = RetryPolicy { initial_backoff: Duration::from_millis(5), ..RetryPolicy::default() };
        Pool::new(endpoints, retry)
    }

    fn request() -> ChatRequest {
        ChatRequest::new(
            vec![Message::user("hi")],
            Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 10, seed: None },
        )
    }

    async fn run_all(pool: &Pool, n: usize) -> Vec<Result<ChatResponse, ChatError>> {
        let model = pool.role("evolve", "m");
        let calls = (0..n).map(|_| {
            let model = model.clone();
            async move { model.chat(request()).await }
        });
        futures_join_all(calls).await
    }

    /// `join_all` without the futures crate.
    async fn futures_join_all<F: std::future::Future + Send + 'static>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<F::Output>
    where
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    fn overloaded() -> ChatError {
        let mut e = ChatError::new(ErrorKind::Exhausted, "HTTP 429");
        e.signals.overloaded = true;
        e
    }

    #[tokio::test(start_paused = true)]
    async fn load_follows_the_weights_and_the_ceilings() {
        let a = Server::new(None);
        let b = Server::new(None);
        let pool = pool(&[
            (a.clone(), EndpointConfig { weight: 3.0, ..EndpointConfig::new("a", 30) }),
            (b.clone(), EndpointConfig::new("b", 4)),
        ]);
        let results = run_all(&pool, 400).await;
        assert!(results.iter().all(Result::is_ok));
        let (na, nb) = (a.calls.load(Ordering::SeqCst), b.calls.load(Ordering::SeqCst));
        assert_eq!(na + nb, 400);
        assert!(na > 2 * nb, "a has three times b's weight: {na} vs {nb}");
        assert!(b.peak.load(Ordering::SeqCst) <= 4, "b's ceiling is 4");
        assert!(a.peak.load(Ordering::SeqCst) <= 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_endpoint_is_tripped_and_the_other_takes_the_load() {
        let down = Server::new(Some(ChatError::new(ErrorKind::Exhausted, "connection refused")));
        let up = Server::new(None);
        let pool = pool(&[(down.clone(), EndpointConfig::new("down", 8)), (up.clone(), EndpointConfig::new("up", 8))]);
        let results = run_all(&pool, 200).await;
        assert!(results.iter().all(Result::is_ok), "every call succeeds through `up`");
        let wasted = down.calls.load(Ordering::SeqCst);
        assert!(wasted < 60, "the breaker keeps `down` out: it got {wasted} calls");
        let status = pool.status();
        assert!(status[0].out.is_some(), "{status:?}");
        assert_eq!(status[1].out, None);
        let retried: u32 = results.iter().map(|r| r.as_ref().unwrap().retries).sum();
        assert_eq!(retried as usize, wasted, "each call on `down` is one retry");
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_take_endpoints_out_and_stop_when_none_is_left() {
        let refused = Server::new(Some(ChatError::new(ErrorKind::Auth, "HTTP 401")));
        let up = Server::new(None);
        let pool1 = pool(&[(refused.clone(), EndpointConfig::new("bad", 4)), (up, EndpointConfig::new("up", 4))]);
        assert!(run_all(&pool1, 50).await.iter().all(Result::is_ok));
        assert!(refused.calls.load(Ordering::SeqCst) <= 4, "taken out after its first replies");

        let pool2 = pool(&[(refused, EndpointConfig::new("bad", 4))]);
        let err = run_all(&pool2, 3).await.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(err.message.contains("endpoint `bad`: HTTP 401"), "{}", err.message);
    }

    #[tokio::test(start_paused = true)]
    async fn overload_halves_the_window_and_success_grows_it_back() {
        let busy = Server::new(Some(overloaded()));
        let p = pool(&[(busy, EndpointConfig::new("busy", 64))]);
        let results = run_all(&p, 8).await;
        assert!(results.iter().all(|r| r.as_ref().unwrap_err().kind == ErrorKind::Exhausted));
        assert!(p.status()[0].limit < 64, "{:?}", p.status());

        let ok = Server::new(None);
        let p = pool(&[(ok.clone(), EndpointConfig::new("ok", 64))]);
        p.inner.endpoints[0].1.lock().unwrap().limit = 2.0;
        run_all(&p, 300).await;
        assert!(p.status()[0].limit > 8, "{:?}", p.status());
    }

    #[tokio::test(start_paused = true)]
    async fn replies_slower_than_the_limit_count_as_overload() {
        let server = Server::new(None); // replies in 10 ms
        let slow = EndpointConfig { slow_after: Some(Duration::from_millis(5)), ..EndpointConfig::new("s", 64) };
        let p = pool(&[(server.clone(), slow)]);
        run_all(&p, 64).await;
        assert!(p.status()[0].limit < 64, "{:?}", p.status());
        let fine = EndpointConfig { slow_after: Some(Duration::from_millis(50)), ..EndpointConfig::new("s", 64) };
        let p = pool(&[(server, fine)]);
        run_all(&p, 64).await;
        assert_eq!(p.status()[0].limit, 64);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_are_paced() {
        let server = Server::new(None);
        let config = EndpointConfig { requests_per_minute: Some(600), ..EndpointConfig::new("s", 64) };
        let p = pool(&[(server, config)]);
        let started = Instant::now();
        run_all(&p, 300).await;
        // 100 at once (a sixth of a minute), then 10 a second.
        let took = started.elapsed().as_secs_f64();
        assert!((19.0..=22.0).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_stated_limit_is_learned() {
        let server = Server::new(None);
        let p = pool(&[(server, EndpointConfig::new("s", 4))]);
        let mut h = p.inner.endpoints[0].1.lock().unwrap();
        let config = EndpointConfig::new("s", 4);
        let signals = Signals { requests_per_minute: Some(120), tokens_per_minute: Some(6000), ..Signals::default() };
        learn_limits(&mut h, &config, signals, Instant::now());
        assert_eq!(h.requests.as_ref().unwrap().capacity, 20.0);
        assert_eq!(h.tokens.as_ref().unwrap().capacity, 1000.0);
    }
}
