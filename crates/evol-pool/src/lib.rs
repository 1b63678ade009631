//! Spreads model calls over several servers and keeps each one as busy as
//! it can take, no busier.
//!
//! A [`Pool`] holds endpoints (servers), each with:
//! - an adaptive concurrency limit, judged per window of replies (twice
//!   the limit, at least [`MIN_WINDOW`]): a window whose share of
//!   overload signals (429, 503, 408, a timeout, a reply slower than the
//!   endpoint's `slow_after`) stands out from the endpoint's background
//!   share cuts the limit (by that excess share, 30% to 75%); any other
//!   window adds one (a quarter near the limit of the last cut), up to the
//!   endpoint's ceiling. A cut is a trial: if the window after it shows
//!   the same share within chance (up to half of all replies), the signals were
//!   random faults, not overload, so the cut is undone and that share
//!   becomes the background (which fades, so it is learned again if it
//!   changes). A rate limiter's 429s drop when the load drops; random
//!   faults do not;
//! - optional token buckets for requests and tokens per minute, set by the
//!   caller or learned from the server's rate-limit headers, that never
//!   let more through in any minute than the stated rate;
//! - a circuit breaker: after [`TRIP_AFTER`] failures in a row (or a
//!   quarter of the window, if more) the endpoint is taken out for a
//!   cool-down (doubling up to [`MAX_COOL_DOWN`]), then one probe request
//!   decides whether it comes back;
//! - a pause when the server asks for one (`Retry-After`) during overload.
//!
//! Each call goes to the least-loaded endpoint that may take it (in-flight
//! calls divided by weight). The pool owns the retries: a failed attempt is
//! retried with backoff that doubles twice at most (or after the server's
//! `Retry-After`), on whichever
//! endpoint is best then, so one dead server costs a run nothing but its
//! share of retries. A failure counts against a request's retries when a
//! server answered it (an error status, a broken or unreadable body) or
//! when some server answered anything since the attempt was sent; while
//! no server answers at all (every one down), failures are not counted, so
//! calls wait instead of failing, and [`Pool::stalled`] tells the caller
//! how long nothing has worked. A call that waits while every endpoint is
//! out shares the fate of the probes: each probe that fails with an answer
//! counts against its retries too, so calls on a server that answers
//! every request with an error fail in bounded time. An endpoint that
//! refuses credentials or does not know the model is taken out for good;
//! the run stops only when no endpoint is left.
//!
//! The endpoints are [`ChatModel`]s that make one attempt per call (no
//! retries of their own); one pool serves several roles (evolve, judge,
//! answer) that may use other model names on the same servers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evol_llm::{ChatError, ChatModel, ChatRequest, ChatResponse, ErrorKind, RetryPolicy, Signals};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Failures in a row that take an endpoint out (at least: an endpoint with
/// a large window needs a quarter of it, so that random faults at common
/// rates do not trip it).
pub const TRIP_AFTER: u32 = 5;
/// The first cool-down of a tripped endpoint.
pub const FIRST_COOL_DOWN: Duration = Duration::from_secs(1);
/// The longest cool-down.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(30);
/// The fewest replies in a window that adapts the concurrency.
pub const MIN_WINDOW: u32 = 32;
/// The most a cut keeps of the window, and the most it takes.
const CUT: f64 = 0.7;
const MAX_CUT: f64 = 0.75;
/// From this share of the limit at the last cut on, the limit grows by a
/// quarter per window instead of one.
const NEAR: f64 = 0.8;
/// How many times a request's backoff doubles at most.
const MAX_DOUBLINGS: u32 = 2;
/// The fewest replies that judge a cut.
const TRIAL_WINDOW: u32 = 64;
/// The most overload signals taken as background: more is overload
/// whatever a cut seems to cost.
const MAX_BACKGROUND: f64 = 0.5;
/// How much of the background share is kept per window.
const BACKGROUND_FADE: f64 = 0.99;

/// How one endpoint is used.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// How the endpoint is named in messages (its URL, without credentials).
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

/// How the pool as a whole is doing, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolHealth {
    /// Calls inside the pool that are not on a server: waiting for an
    /// endpoint, or backing off before a retry.
    pub waiting: usize,
    /// Endpoints that are out, with why.
    pub out: Vec<(String, String)>,
    /// How long since the last successful reply, when calls have failed
    /// since then.
    pub failing_for: Option<Duration>,
}

/// A token bucket that lets through at most `rate` in any minute: a burst
/// of one second's worth, refilled at the rest of the rate.
#[derive(Debug, Clone)]
struct Bucket {
    rate: u64,
    per_second: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn per_minute(rate: u64, now: Instant) -> Bucket {
        // A full bucket plus a minute of refill is the rate: no minute can
        // see more, even the first (a strict provider window answers 429).
        let capacity = (rate as f64 / 60.0).max(1.0);
        let refill = (rate as f64 - capacity).max(rate as f64 / 2.0);
        Bucket { rate, per_second: refill / 60.0, capacity, level: capacity, at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.per_second).min(self.capacity);
        self.at = now;
    }

    /// How long until `amount` is available (zero: now). Amounts above the
    /// capacity need only a full bucket (and leave it in debt).
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

/// The replies of the current adaptation window.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    done: u32,
    overloaded: u32,
    /// The longest pause a server asked for in the window.
    pause: Option<Duration>,
}

/// A cut being tried: the limit before it and the share of overload
/// signals that made it.
#[derive(Debug, Clone, Copy)]
struct Trial {
    /// The limit before the cut (before the first of a run of cuts).
    limit: f64,
    /// The share of overload signals that made the cut, of how many replies.
    share: f64,
    replies: f64,
    /// The window right after a cut still drains the calls sent before it:
    /// it is skipped, the one after judges the cut.
    skip: bool,
}

/// The mutable state of one endpoint.
#[derive(Debug)]
struct Health {
    in_flight: usize,
    /// The concurrency window, fractional between whole steps.
    limit: f64,
    failures_in_a_row: u32,
    /// The breaker is open (cooling down or probing).
    tripped: bool,
    /// Until when the endpoint takes nothing (breaker open or server pause).
    closed_until: Option<Instant>,
    cool_down: Duration,
    /// A tripped endpoint lets one probe through after its cool-down.
    probing: bool,
    window: Window,
    /// The share of overload signals that cuts did not cure.
    background: f64,
    trial: Option<Trial>,
    /// The limit at the last cut.
    overloaded_at: Option<f64>,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// The endpoint is out for good (credentials, unknown model).
    dead: Option<ChatError>,
    last_error: Option<String>,
    sent: u64,
    failed: u64,
}

impl Health {
    fn trip_after(&self) -> u32 {
        TRIP_AFTER.max((self.limit / 4.0) as u32)
    }
}

/// When the pool last heard from a server.
#[derive(Debug)]
struct Activity {
    last_success: Instant,
    last_answer: Instant,
    failures_since_success: u64,
    last_error: Option<String>,
}

struct Inner {
    endpoints: Vec<(Endpoint, Mutex<Health>)>,
    retry: RetryPolicy,
    changed: Notify,
    /// Calls inside [`Pool::call`].
    inside: AtomicUsize,
    /// Probes that failed with an answer, counted against the retries of
    /// the calls that waited for them.
    probe_failures: AtomicU64,
    activity: Mutex<Activity>,
    closed: AtomicBool,
    closing: Notify,
}

/// Many endpoints behind one [`ChatModel`] per role.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// The outcome of looking for an endpoint.
enum Pick {
    Go(usize),
    /// Nothing may take the call for this long; `out`: because every
    /// endpoint still in the run is out (tripped).
    Wait {
        wait: Duration,
        out: bool,
    },
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
                    tripped: false,
                    closed_until: None,
                    cool_down: FIRST_COOL_DOWN,
                    probing: false,
                    window: Window::default(),
                    background: 0.0,
                    trial: None,
                    overloaded_at: None,
                    requests: e.config.requests_per_minute.map(|r| Bucket::per_minute(r, now)),
                    tokens: e.config.tokens_per_minute.map(|r| Bucket::per_minute(r, now)),
                    dead: None,
                    last_error: None,
                    sent: 0,
                    failed: 0,
                };
                (e, Mutex::new(health))
            })
            .collect();
        let activity = Activity { last_success: now, last_answer: now, failures_since_success: 0, last_error: None };
        Pool {
            inner: Arc::new(Inner {
                endpoints,
                retry,
                changed: Notify::new(),
                inside: AtomicUsize::new(0),
                probe_failures: AtomicU64::new(0),
                activity: Mutex::new(activity),
                closed: AtomicBool::new(false),
                closing: Notify::new(),
            }),
        }
    }

    /// The [`ChatModel`] of the role named `role`, named `name` in records.
    /// Panics if the endpoints have no client for that role.
    pub fn role(&self, role: &str, name: impl Into<String>) -> Arc<dyn ChatModel> {
        assert!(self.inner.endpoints[0].0.clients.contains_key(role), "no client for the role `{role}`");
        Arc::new(PoolRole { pool: self.clone(), role: role.to_string(), name: name.into() })
    }

    /// How every endpoint is doing.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let now = Instant::now();
        self.inner
            .endpoints
            .iter()
            .map(|(e, health)| {
                let h = health.lock().unwrap();
                EndpointStatus {
                    name: e.config.name.clone(),
                    in_flight: h.in_flight,
                    limit: h.limit as usize,
                    requests: h.sent,
                    failures: h.failed,
                    out: out_reason(&h, now),
                }
            })
            .collect()
    }

    /// How the pool as a whole is doing.
    pub fn health(&self) -> PoolHealth {
        let status = self.status();
        let in_flight: usize = status.iter().map(|s| s.in_flight).sum();
        let waiting = self.inner.inside.load(Ordering::SeqCst).saturating_sub(in_flight);
        let out = status.into_iter().filter_map(|s| Some((s.name, s.out?))).collect();
        let a = self.inner.activity.lock().unwrap();
        let failing_for = (a.failures_since_success > 0).then(|| a.last_success.elapsed());
        PoolHealth { waiting, out, failing_for }
    }

    /// `Some(last error)` when calls have failed and none has succeeded for
    /// `after` or longer: the servers are down or failing everything.
    pub fn stalled(&self, after: Duration) -> Option<String> {
        let a = self.inner.activity.lock().unwrap();
        (a.failures_since_success > 0 && a.last_success.elapsed() >= after)
            .then(|| a.last_error.clone().unwrap_or_else(|| "no reply".to_string()))
    }

    /// Stops the pool: calls waiting for an endpoint or backing off return
    /// [`ErrorKind::Cancelled`] at once; attempts on a server finish.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.closing.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The least-loaded endpoint that may take a call of about `tokens`.
    fn pick(&self, tokens: f64) -> Pick {
        let now = Instant::now();
        let mut best: Option<(f64, usize)> = None;
        let mut wait = Duration::from_secs(3600);
        let mut dead = None;
        let mut alive = 0;
        let mut tripped = 0;
        for (i, (endpoint, health)) in self.inner.endpoints.iter().enumerate() {
            let mut h = health.lock().unwrap();
            if let Some(error) = &h.dead {
                dead = Some(error.clone());
                continue;
            }
            alive += 1;
            if h.tripped {
                tripped += 1;
            }
            if let Some(until) = h.closed_until {
                if until > now {
                    wait = wait.min(until - now);
                    continue;
                }
                // Tripped and cooled down: one probe at a time.
                if h.tripped && (h.probing || h.in_flight > 0) {
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
            None => Pick::Wait { wait, out: tripped == alive },
        }
    }

    /// Claims endpoint `i` for a call of about `tokens` (after [`Pool::pick`]);
    /// true when the call is the probe of a tripped endpoint.
    fn claim(&self, i: usize, tokens: f64) -> bool {
        let mut h = self.inner.endpoints[i].1.lock().unwrap();
        h.in_flight += 1;
        h.sent += 1;
        let probe = h.tripped;
        if probe {
            h.probing = true;
        }
        if let Some(b) = &mut h.requests {
            b.take(1.0);
        }
        if let Some(b) = &mut h.tokens {
            b.take(tokens);
        }
        probe
    }

    /// Records how an attempt sent to endpoint `i` at `sent` went; true
    /// when a failure counts against the request's retries.
    fn settle(
        &self,
        i: usize,
        estimate: f64,
        sent: Instant,
        probe: bool,
        result: &Result<ChatResponse, ChatError>,
    ) -> bool {
        let (endpoint, health) = &self.inner.endpoints[i];
        let config = &endpoint.config;
        let now = Instant::now();
        let signals = match result {
            Ok(reply) => Signals { answered: true, ..reply.signals },
            Err(e) => e.signals,
        };
        let charged = {
            let mut a = self.inner.activity.lock().unwrap();
            let charged = signals.answered || a.last_answer > sent;
            if signals.answered {
                a.last_answer = now;
            }
            match result {
                Ok(_) => {
                    a.last_success = now;
                    a.failures_since_success = 0;
                }
                Err(e) if e.kind == ErrorKind::Rejected => {}
                Err(e) => {
                    a.failures_since_success += 1;
                    a.last_error = Some(format!("`{}`: {}", config.name, e.message));
                }
            }
            charged
        };
        let mut h = health.lock().unwrap();
        h.in_flight -= 1;
        if probe {
            h.probing = false;
        }
        learn_limits(&mut h, config, signals, now);
        match result {
            Ok(reply) => {
                if let Some(b) = &mut h.tokens {
                    // Correct the estimate by what the call really used.
                    b.give(estimate - reply.usage.total() as f64);
                }
                h.failures_in_a_row = 0;
                if h.tripped {
                    h.tripped = false;
                    h.closed_until = None;
                }
                h.cool_down = FIRST_COOL_DOWN;
                let slow = config.slow_after.is_some_and(|limit| now.saturating_duration_since(sent) > limit);
                h.window.done += 1;
                h.window.overloaded += u32::from(slow);
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
                h.last_error = Some(e.message.clone());
                h.window.done += 1;
                if e.signals.overloaded {
                    h.window.overloaded += 1;
                    h.window.pause = h.window.pause.max(e.signals.retry_after);
                }
                if probe && signals.answered {
                    self.inner.probe_failures.fetch_add(1, Ordering::SeqCst);
                }
                // A failed probe opens the breaker again for longer; the
                // failures of calls sent before it opened do not.
                if (!h.tripped && h.failures_in_a_row >= h.trip_after()) || (h.tripped && probe) {
                    h.tripped = true;
                    let until = now + h.cool_down;
                    h.closed_until = Some(h.closed_until.map_or(until, |u| u.max(until)));
                    h.cool_down = (h.cool_down * 2).min(MAX_COOL_DOWN);
                }
            }
        }
        if config.adaptive && h.window.done >= (2 * h.limit as u32).max(MIN_WINDOW) {
            adapt(&mut h, config, now, self.inner.retry.max_retry_after);
        }
        let everyone = probe || h.tripped || h.dead.is_some();
        drop(h);
        if everyone {
            // The breaker changed (or a probe ended, which counts against
            // every waiting call's retries): every waiter looks again.
            self.inner.changed.notify_waiters();
        } else {
            // One slot freed: wake the longest waiter (it wakes the next if
            // it finds room; see `call_inside`), not all of them.
            self.inner.changed.notify_one();
        }
        charged
    }

    /// Sleeps `wait`, or less if the pool is closed meanwhile.
    async fn back_off(&self, wait: Duration) {
        let closing = self.inner.closing.notified();
        if self.is_closed() {
            return;
        }
        tokio::select! {
            _ = closing => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    async fn call(&self, role: &str, request: ChatRequest) -> Result<ChatResponse, ChatError> {
        self.inner.inside.fetch_add(1, Ordering::SeqCst);
        let result = self.call_inside(role, request).await;
        self.inner.inside.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn call_inside(&self, role: &str, request: ChatRequest) -> Result<ChatResponse, ChatError> {
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        // What a rate limiter counts against tokens per minute before the
        // reply: the prompt (about 4 bytes a token) and the most it may get.
        let estimate = (prompt_chars / 4) as f64 + f64::from(request.sampling.max_tokens);
        let max_retries = self.inner.retry.max_retries;
        let cancelled = |retries| ChatError {
            retries,
            ..ChatError::new(ErrorKind::Cancelled, "the run is stopping: the call was not sent")
        };
        // Attempts made after the first, and those that count against
        // `max_retries` (see the crate's documentation).
        let mut retries = 0;
        let mut charged = 0;
        loop {
            let i = loop {
                // Register interest before looking, so a change between the
                // look and the wait is not missed.
                let changed = self.inner.changed.notified();
                let closing = self.inner.closing.notified();
                if self.is_closed() {
                    return Err(cancelled(retries));
                }
                match self.pick(estimate) {
                    Pick::Go(i) => {
                        // There may be room for more: pass the wake on.
                        self.inner.changed.notify_one();
                        break i;
                    }
                    Pick::AllDead(error) => return Err(ChatError { retries, ..error }),
                    Pick::Wait { wait, out } => {
                        let probes = self.inner.probe_failures.load(Ordering::SeqCst);
                        tokio::select! {
                            _ = changed => {}
                            _ = closing => {}
                            _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                        }
                        if out {
                            // Every endpoint is out: its probes were this
                            // call's attempts as much as their own.
                            charged += (self.inner.probe_failures.load(Ordering::SeqCst) - probes) as u32;
                            if charged > max_retries {
                                return Err(self.gave_up_waiting(retries));
                            }
                        }
                    }
                }
            };
            let probe = self.claim(i, estimate);
            let client = &self.inner.endpoints[i].0.clients[role];
            let sent = Instant::now();
            let result = client.chat(request.clone()).await;
            let counts = self.settle(i, estimate, sent, probe, &result);
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
                    charged += u32::from(counts);
                    if charged > max_retries {
                        if retries > 0 {
                            e.message = format!("gave up after {} attempts; last error: {}", retries + 1, e.message);
                        }
                        return Err(ChatError { retries, kind: ErrorKind::Exhausted, ..e });
                    }
                    // The server's own pause, else backoff; the request may
                    // then go elsewhere. The backoff doubles twice at most:
                    // a server that keeps failing is paused by its breaker,
                    // an overloaded one by its window, so one request's wait
                    // need not grow (random faults would make long tails).
                    // The backoff counts from when the attempt was sent: one
                    // that timed out has waited already.
                    let step = retries.min(MAX_DOUBLINGS);
                    let wait = match e.signals.retry_after {
                        Some(asked) => self.inner.retry.delay(step, Some(asked), &mut rand::rng()),
                        None => self.inner.retry.delay(step, None, &mut rand::rng()).saturating_sub(sent.elapsed()),
                    };
                    self.back_off(wait).await;
                }
            }
            retries += 1;
        }
    }

    /// The error of a call whose retries were used up by failed probes.
    fn gave_up_waiting(&self, retries: u32) -> ChatError {
        let last = self.inner.activity.lock().unwrap().last_error.clone().unwrap_or_else(|| "no reply".into());
        let message = format!(
            "gave up after {} failed attempts, most of them probes of servers that were out; last error: {last}",
            self.inner.retry.max_retries + 1
        );
        ChatError { retries, ..ChatError::new(ErrorKind::Exhausted, message) }
    }
}

/// Why an endpoint is out, if it is.
fn out_reason(h: &Health, now: Instant) -> Option<String> {
    if let Some(dead) = &h.dead {
        return Some(dead.message.clone());
    }
    if !h.tripped {
        return None;
    }
    let last = h.last_error.as_deref().unwrap_or("no reply");
    let next = match h.closed_until {
        Some(until) if until > now => format!("next probe in {:.0}s", (until - now).as_secs_f64().ceil()),
        _ => "probing".to_string(),
    };
    Some(format!("{} failures in a row ({next}); last error: {last}", h.failures_in_a_row))
}

/// Ends an adaptation window: cuts the limit on overload that stands out
/// from the background, judges the previous cut, or grows the limit by one.
fn adapt(h: &mut Health, config: &EndpointConfig, now: Instant, max_pause: Duration) {
    let w = std::mem::take(&mut h.window);
    let n = f64::from(w.done);
    let share = f64::from(w.overloaded) / n;
    let background = h.background;
    // What a window of `n` replies shows by chance above the background
    // (two standard deviations of a binomial share, and a little more).
    let noise = 0.02 + 2.0 * (background.max(0.005) * (1.0 - background) / n).sqrt();
    h.background *= BACKGROUND_FADE;
    // The limit to go back to if the signals prove to be background: the
    // one before a run of cuts.
    let mut before = h.limit;
    if let Some(trial) = h.trial.take() {
        let clearly_overloaded = share > MAX_BACKGROUND;
        if trial.skip && !clearly_overloaded {
            h.trial = Some(Trial { skip: false, ..trial });
            return;
        }
        if w.done < TRIAL_WINDOW && !clearly_overloaded {
            // A cut is judged on enough replies to tell shares apart.
            h.trial = Some(trial);
            h.window = w;
            return;
        }
        // Whether the two shares differ by more than chance (two standard
        // deviations of the difference of two binomial shares, and more).
        let mean = (share + trial.share) / 2.0;
        let apart = 0.02 + 2.0 * (mean * (1.0 - mean) * (1.0 / n + 1.0 / trial.replies)).sqrt();
        if w.overloaded > 0 && share <= MAX_BACKGROUND && (share - trial.share).abs() <= apart {
            // The signals stayed as they were at a lower load: random
            // faults, not overload. Undo the cut and expect that share.
            h.background = h.background.max(share);
            h.limit = trial.limit;
            return;
        }
        // The cut helped (or the overload grew): what is left is at most
        // the background.
        h.background = h.background.min(share);
        before = trial.limit;
    }
    if share > background + noise {
        h.trial = Some(Trial { limit: before, share, replies: n, skip: true });
        // Cut by the excess share of signals (a server that refuses 80%
        // takes about a fifth of the load), by 30% at least, 75% at most.
        let keep = (1.0 - (share - background)).clamp(1.0 - MAX_CUT, CUT);
        h.overloaded_at = Some(h.limit);
        h.limit = (h.limit * keep).max(config.min_concurrency as f64);
        if let Some(pause) = w.pause {
            let until = now + pause.min(max_pause);
            h.closed_until = Some(h.closed_until.map_or(until, |u| u.max(until)));
        }
    } else {
        // Near the load that last overloaded the server, grow slowly: a
        // rate limiter's burst hides its limit until it is drained.
        let step = match h.overloaded_at {
            Some(at) if h.limit >= NEAR * at => 0.25,
            _ => 1.0,
        };
        h.limit = (h.limit + step).min(config.max_concurrency as f64);
    }
}

/// Takes the limits a server states, unless the caller set its own.
fn learn_limits(h: &mut Health, config: &EndpointConfig, signals: Signals, now: Instant) {
    if config.requests_per_minute.is_none() {
        if let Some(rpm) = signals.requests_per_minute {
            if h.requests.as_ref().is_none_or(|b| b.rate != rpm) {
                h.requests = Some(Bucket::per_minute(rpm, now));
            }
        }
    }
    if config.tokens_per_minute.is_none() {
        if let Some(tpm) = signals.tokens_per_minute {
            if h.tokens.as_ref().is_none_or(|b| b.rate != tpm) {
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
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::AtomicUsize;

    /// How a scripted server treats one request.
    type Behaviour = Box<dyn Fn(&Server) -> Option<ChatError> + Send + Sync>;

    /// A scripted server: fails as `behaviour` says, or replies after `delay`.
    struct Server {
        behaviour: Behaviour,
        delay: Duration,
        calls: AtomicUsize,
        peak: AtomicUsize,
        now: AtomicUsize,
        rng: Mutex<rand::rngs::StdRng>,
        /// A token bucket (rate per second, level, last refill) for servers
        /// that limit their rate.
        limiter: Mutex<Option<(f64, f64, Instant)>>,
        overloaded: AtomicUsize,
    }

    impl Server {
        fn new(fail: Option<ChatError>) -> Arc<Server> {
            Server::with(Box::new(move |_| fail.clone()))
        }

        fn with(behaviour: Behaviour) -> Arc<Server> {
            Arc::new(Server {
                behaviour,
                delay: Duration::from_millis(10),
                calls: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                now: AtomicUsize::new(0),
                rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(7)),
                limiter: Mutex::new(None),
                overloaded: AtomicUsize::new(0),
            })
        }

        fn chance(&self, p: f64) -> bool {
            self.rng.lock().unwrap().random::<f64>() < p
        }
    }

    #[async_trait::async_trait]
    impl ChatModel for Server {
        fn name(&self) -> &str {
            "m"
        }
        async fn chat(&self, _request: ChatRequest) -> Result<ChatResponse, ChatError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some((rate, level, at)) = self.limiter.lock().unwrap().as_mut() {
                let now = Instant::now();
                *level = (*level + (now - *at).as_secs_f64() * *rate).min(*rate * 0.1);
                *at = now;
                if *level < 1.0 {
                    self.overloaded.fetch_add(1, Ordering::SeqCst);
                    return Err(overloaded());
                }
                *level -= 1.0;
            }
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            // A zero delay means a queueing server: a millisecond per
            // request in flight.
            let delay = if self.delay.is_zero() { Duration::from_millis(now as u64) } else { self.delay };
            tokio::time::sleep(delay).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            match (self.behaviour)(self) {
                Some(e) => {
                    if e.signals.overloaded {
                        self.overloaded.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e)
                }
                None => Ok(ChatResponse {
                    text: "ok".into(),
                    reasoning: None,
                    finish_reason: FinishReason::Stop,
                    usage: Usage { prompt_tokens: 10, completion_tokens: 10, cached_tokens: 0, ..Default::default() },
                    retries: 0,
                    signals: Signals { answered: true, ..Signals::default() },
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
            Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 10, seed: None, thinking: Default::default() },
        )
    }

    /// `n` calls started at once, each on its own task.
    fn spawn_calls(pool: &Pool, n: usize) -> Vec<tokio::task::JoinHandle<Result<ChatResponse, ChatError>>> {
        let model = pool.role("evolve", "m");
        (0..n)
            .map(|_| {
                let model = model.clone();
                tokio::spawn(async move { model.chat(request()).await })
            })
            .collect()
    }

    async fn run_all(pool: &Pool, n: usize) -> Vec<Result<ChatResponse, ChatError>> {
        let mut out = Vec::new();
        for h in spawn_calls(pool, n) {
            out.push(h.await.unwrap());
        }
        out
    }

    /// `n` calls from `chains` workers that each make one call after
    /// another (a run's steady demand); returns the limits seen on the way.
    async fn run_chains(pool: &Pool, chains: usize, n: usize) -> Vec<usize> {
        let model = pool.role("evolve", "m");
        let left = Arc::new(AtomicUsize::new(n));
        let workers: Vec<_> = (0..chains)
            .map(|_| {
                let (model, left) = (model.clone(), left.clone());
                tokio::spawn(async move {
                    while left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1)).is_ok() {
                        let _ = model.chat(request()).await;
                    }
                })
            })
            .collect();
        let mut limits = Vec::new();
        while !workers.iter().all(|w| w.is_finished()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            limits.push(pool.status()[0].limit);
        }
        limits
    }

    fn overloaded() -> ChatError {
        let mut e = ChatError::new(ErrorKind::Exhausted, "HTTP 429");
        e.signals.overloaded = true;
        e.signals.answered = true;
        e
    }

    fn answered(message: &str) -> ChatError {
        let mut e = ChatError::new(ErrorKind::Exhausted, message);
        e.signals.answered = true;
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
        let down = Server::new(Some(answered("HTTP 500")));
        let up = Server::new(None);
        let pool = pool(&[(down.clone(), EndpointConfig::new("down", 8)), (up.clone(), EndpointConfig::new("up", 8))]);
        let results = run_all(&pool, 200).await;
        assert!(results.iter().all(Result::is_ok), "every call succeeds through `up`");
        let wasted = down.calls.load(Ordering::SeqCst);
        assert!(wasted < 60, "the breaker keeps `down` out: it got {wasted} calls");
        let status = pool.status();
        let out = status[0].out.as_deref().expect("down is out");
        assert!(out.contains("failures in a row") && out.contains("HTTP 500"), "{out}");
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
    async fn a_server_that_fails_everything_fails_its_calls_in_bounded_time() {
        // One server, every request answered 500: the breaker opens at
        // once and the calls wait on it, but the probes' failures count
        // against their retries, so every call ends within a few cool-downs.
        let broken = Server::new(Some(answered("HTTP 500 Internal Server Error")));
        let p = pool(&[(broken.clone(), EndpointConfig::new("broken", 16))]);
        let started = Instant::now();
        let results = run_all(&p, 100).await;
        let took = started.elapsed();
        assert!(results.iter().all(|r| r.as_ref().unwrap_err().kind == ErrorKind::Exhausted));
        assert!(took < Duration::from_secs(200), "bounded by the cool-downs of max_retries probes: {took:?}");
        assert!(
            broken.calls.load(Ordering::SeqCst) < 100,
            "waiting calls send nothing: {}",
            broken.calls.load(Ordering::SeqCst)
        );
        let message = &results[99].as_ref().unwrap_err().message;
        assert!(message.contains("HTTP 500"), "{message}");
        assert!(p.stalled(Duration::from_secs(1)).is_some_and(|e| e.contains("HTTP 500")));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_wait_while_no_server_answers_and_go_on_when_one_comes_back() {
        // Connection refused: no answer. While nothing answers, failures
        // are not counted: the calls wait, `stalled` says so, and they go
        // on as soon as the server is back.
        let up = Arc::new(AtomicBool::new(false));
        let flag = up.clone();
        let server = Server::with(Box::new(move |_| {
            (!flag.load(Ordering::SeqCst)).then(|| ChatError::new(ErrorKind::Exhausted, "connection refused"))
        }));
        let p = pool(&[(server.clone(), EndpointConfig::new("down", 8))]);
        let calls = spawn_calls(&p, 20);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(calls.iter().all(|c| !c.is_finished()), "no call fails while nothing answers");
        let health = p.health();
        assert_eq!(health.waiting, 20, "{health:?}");
        assert!(health.out.len() == 1 && health.out[0].1.contains("connection refused"), "{health:?}");
        assert!(health.failing_for.unwrap() >= Duration::from_secs(299));
        assert!(p.stalled(Duration::from_secs(180)).unwrap().contains("connection refused"));
        assert_eq!(p.stalled(Duration::from_secs(400)), None);
        let sent = server.calls.load(Ordering::SeqCst);
        assert!(sent < 60, "one probe per cool-down, not a storm: {sent}");

        up.store(true, Ordering::SeqCst);
        for c in calls {
            assert!(c.await.unwrap().is_ok());
        }
        assert_eq!(p.stalled(Duration::ZERO), None, "it works again");
        assert!(p.health().out.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn closing_the_pool_cancels_the_waiting_calls() {
        let server = Server::new(Some(ChatError::new(ErrorKind::Exhausted, "connection refused")));
        let p = pool(&[(server, EndpointConfig::new("down", 4))]);
        let calls = spawn_calls(&p, 10);
        tokio::time::sleep(Duration::from_secs(60)).await;
        p.close();
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap_err().kind, ErrorKind::Cancelled);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn random_overload_signals_do_not_shrink_the_window() {
        // 20% of replies are 429s that do not depend on the load: cutting
        // does not cure them, so the window stays near its ceiling.
        let server = Server::with(Box::new(|s| s.chance(0.2).then(overloaded)));
        let p = pool(&[(server.clone(), EndpointConfig::new("noisy", 64))]);
        let limits = run_chains(&p, 64, 20_000).await;
        let late = &limits[limits.len() / 4..];
        let mean = late.iter().sum::<usize>() as f64 / late.len() as f64;
        assert!(mean > 48.0, "the window stays near 64: mean {mean:.1}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_server_is_used_near_its_rate_with_few_429s() {
        // 1000 requests/s at 10 ms a request: 10 in flight saturate it.
        let server = Server::new(None);
        *server.limiter.lock().unwrap() = Some((1000.0, 100.0, Instant::now()));
        let p = pool(&[(server.clone(), EndpointConfig::new("limited", 64))]);
        let started = Instant::now();
        let limits = run_chains(&p, 64, 20_000).await;
        eprintln!("{limits:?} bg {}", p.inner.endpoints[0].1.lock().unwrap().background);
        let rate = 20_000.0 / started.elapsed().as_secs_f64();
        let sent = server.calls.load(Ordering::SeqCst) as f64;
        let refused = server.overloaded.load(Ordering::SeqCst) as f64 / sent;
        assert!(rate > 800.0, "near the limit of 1000/s: {rate:.0}/s");
        assert!(refused < 0.05, "{:.1}% of requests answered 429", 100.0 * refused);
    }

    #[tokio::test(start_paused = true)]
    async fn replies_slower_than_the_limit_count_as_overload() {
        // A server that queues: each request in flight adds a millisecond.
        let queueing = || {
            let mut s = Server::new(None);
            Arc::get_mut(&mut s).unwrap().delay = Duration::ZERO;
            s
        };
        let server = queueing();
        *server.limiter.lock().unwrap() = None;
        let slow = EndpointConfig { slow_after: Some(Duration::from_millis(20)), ..EndpointConfig::new("s", 64) };
        let p = pool(&[(server.clone(), slow)]);
        let limits = run_chains(&p, 64, 5_000).await;
        let late = &limits[limits.len() / 2..];
        let mean = late.iter().sum::<usize>() as f64 / late.len() as f64;
        assert!(mean < 32.0, "slow replies cut the window toward 20: {mean:.1}");
        let fine = EndpointConfig { slow_after: Some(Duration::from_millis(100)), ..EndpointConfig::new("s", 64) };
        let p = pool(&[(queueing(), fine)]);
        run_chains(&p, 64, 5_000).await;
        assert_eq!(p.status()[0].limit, 64);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_are_never_exceeded_in_any_minute() {
        let server = Server::new(None);
        let config = EndpointConfig { requests_per_minute: Some(600), ..EndpointConfig::new("s", 64) };
        let p = pool(&[(server.clone(), config)]);
        let started = Instant::now();
        let model = p.role("evolve", "m");
        let handles: Vec<_> = (0..1200)
            .map(|_| {
                let model = model.clone();
                tokio::spawn(async move {
                    model.chat(request()).await.unwrap();
                    started.elapsed()
                })
            })
            .collect();
        let mut done = Vec::new();
        for h in handles {
            done.push(h.await.unwrap());
        }
        done.sort();
        // Any 60 s window holds at most 600 starts (each reply takes 10 ms).
        for (i, t) in done.iter().enumerate() {
            let within = done[i..].iter().take_while(|u| **u < *t + Duration::from_secs(60)).count();
            assert!(within <= 600, "{within} requests within a minute from {t:?}");
        }
        let took = started.elapsed().as_secs_f64();
        assert!((115.0..=125.0).contains(&took), "1200 at 600 a minute take about two minutes: {took}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_stated_limit_is_learned() {
        let server = Server::new(None);
        let p = pool(&[(server, EndpointConfig::new("s", 4))]);
        let mut h = p.inner.endpoints[0].1.lock().unwrap();
        let config = EndpointConfig::new("s", 4);
        let signals = Signals { requests_per_minute: Some(120), tokens_per_minute: Some(6000), ..Signals::default() };
        learn_limits(&mut h, &config, signals, Instant::now());
        assert_eq!(h.requests.as_ref().unwrap().rate, 120);
        assert_eq!(h.requests.as_ref().unwrap().capacity, 2.0);
        assert_eq!(h.tokens.as_ref().unwrap().capacity, 100.0);
    }
}
