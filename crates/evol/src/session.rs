//! Driving a job's model calls to their end: the one place where how a job
//! ended (done, stopped, stalled, capped, failed) becomes a run state and
//! an error of its own kind.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use evol_core::cost::{Budget, CapReached};
use evol_core::journal::Journal;
use evol_core::{CallError, Caller, CallerSettings, Role, StatsRecorder};
use evol_llm::ChatModel;
use evol_store::{JobKind, OutputDir, RunState, SqliteJournal};

use crate::backend::{connect_models, connect_role, Connected};
use crate::observe::{human, Counting, Observer, Watched};
use crate::settings::{Execution, ModelSettings, RoleModels};
use crate::shutdown::Shutdown;

/// How long a first stop request waits for the calls in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// The job was asked to stop (the binary: Ctrl-C or SIGTERM; exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted; what was done is in `{0}` (rerun the same command to resume)")]
pub struct Interrupted(pub String);

/// The job stopped because no server answered for the stall timeout
/// (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("stopped: no call succeeded for {waited} (last error: {last}); what was done is in `{out}`: rerun the same command once a server answers, the calls that were waiting are sent then")]
pub struct Stalled {
    pub waited: String,
    pub last: String,
    pub out: String,
}

/// A budget cap stopped the job (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("stopped: {reached}; what was done is in `{out}` (raise {flag} and rerun the same command to continue)", flag = cap_flag(reached))]
pub struct CapStop {
    pub reached: CapReached,
    pub out: String,
}

/// The job ran to its end but produced nothing (exit code 5): every call
/// failed, every reply was unreadable, or every row was rejected. Its
/// files are written: they say why.
#[derive(Debug, thiserror::Error)]
#[error("nothing was produced: {what}; the files in `{out}` say why (fix the cause, then rerun the same command with --retry-failed)")]
pub struct NothingProduced {
    pub what: String,
    pub out: String,
}

/// The flag that sets a cap.
fn cap_flag(reached: &CapReached) -> &'static str {
    match reached {
        CapReached::Requests { .. } => "--max-requests",
        CapReached::Tokens { .. } => "--max-tokens-total",
        CapReached::Cost { .. } => "--max-cost",
    }
}

/// Why a job was stopped before its end.
pub enum Stop {
    Requested,
    Stalled(String),
}

/// How a job's work ended.
pub enum Ended<T> {
    /// It ran to its end (or to an error of its own).
    Done(T),
    /// A shutdown request or a stall stopped it.
    Stopped(Stop),
}

/// An error a job's work (calls through a [`Caller`]) may end with: a
/// caller's own, or another that wraps one.
pub trait WorkError: Into<anyhow::Error> + Sized {
    fn as_call(&self) -> Option<&CallError>;
    fn into_call(self) -> Result<CallError, Self>;
}

impl WorkError for CallError {
    fn as_call(&self) -> Option<&CallError> {
        Some(self)
    }

    fn into_call(self) -> Result<CallError, Self> {
        Ok(self)
    }
}

impl<T, E: WorkError> Ended<Result<T, E>> {
    /// The state the work leaves its job in; `complete`: all of it was
    /// done (work that ended well but not complete failed).
    pub fn state(&self, complete: bool) -> RunState {
        match self {
            Ended::Done(Ok(_)) if complete => RunState::Completed,
            Ended::Done(Err(e)) => match e.as_call() {
                Some(CallError::Cap(_)) => RunState::Capped,
                Some(CallError::Stopped) => RunState::Interrupted,
                _ => RunState::Failed,
            },
            Ended::Stopped(_) => RunState::Interrupted,
            Ended::Done(Ok(_)) => RunState::Failed,
        }
    }

    /// [`Ended::exit`], and when the work ran to its end but `produced`
    /// nothing, [`NothingProduced`] (`what` says what is missing).
    pub fn exit_producing(self, stall_after: Duration, out: String, produced: bool, what: &str) -> anyhow::Result<()> {
        let done = matches!(self, Ended::Done(Ok(_)));
        self.exit(stall_after, out.clone())?;
        match done && !produced {
            true => Err(NothingProduced { what: what.to_string(), out }.into()),
            false => Ok(()),
        }
    }

    /// The job's result: a cap, a stop and a stall are their own errors
    /// (and exit codes), naming the directory `out` to rerun on.
    pub fn exit(self, stall_after: Duration, out: String) -> anyhow::Result<()> {
        match self {
            Ended::Done(Ok(_)) => Ok(()),
            Ended::Stopped(Stop::Requested) => Err(Interrupted(out).into()),
            Ended::Stopped(Stop::Stalled(last)) => Err(Stalled { waited: human(stall_after), last, out }.into()),
            Ended::Done(Err(e)) => match e.into_call() {
                Ok(CallError::Cap(reached)) => Err(CapStop { reached, out }.into()),
                Ok(CallError::Stopped) => Err(Interrupted(out).into()),
                Ok(e) => Err(e.into()),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// Records a job's identity (what its model calls are asked with) in its
/// journal the first time; after that, a job of another identity on the
/// same directory is refused, naming each setting that changed (`what`
/// names the job: "a scoring job"). A setting the stored identity does not
/// have (the job was made by an older `evol`) is not compared: the job
/// resumes as it was made.
pub fn check_job_identity(
    journal: &SqliteJournal,
    key: &str,
    identity: &impl serde::Serialize,
    out: &Path,
    what: &str,
) -> anyhow::Result<()> {
    // Through its text, as it is stored: an `f32` reads back as written
    // (0.7, not 0.699999988).
    let now: serde_json::Value = serde_json::from_str(&serde_json::to_string(identity)?)?;
    let Some(stored) = journal.fact(key)? else {
        return Ok(journal.set_fact(key, &now.to_string())?);
    };
    let then: serde_json::Value = serde_json::from_str(&stored).unwrap_or(serde_json::Value::Null);
    let mut changed = Vec::new();
    changed_settings("", &now, &then, &mut changed);
    if changed.is_empty() {
        return Ok(());
    }
    bail!(
        "`{}` holds {what} made with other settings (changed: {}); rerun with the same ones to resume it, or pass --fresh to start over",
        out.display(),
        changed.join(", ")
    )
}

/// The settings of `now` whose values differ from `then`'s, as dotted
/// names, each with its two values when they are short enough to show.
fn changed_settings(name: &str, now: &serde_json::Value, then: &serde_json::Value, changed: &mut Vec<String>) {
    use serde_json::Value;
    match (now, then) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let path = if name.is_empty() { key.clone() } else { format!("{name}.{key}") };
                if let Some(earlier) = b.get(key) {
                    changed_settings(&path, value, earlier, changed);
                }
            }
        }
        (a, b) if a == b => {}
        _ if name.is_empty() => changed.push("the settings".to_string()),
        (a, b) => match (shown(b), shown(a)) {
            (Some(b), Some(a)) => changed.push(format!("{name} ({b} -> {a})")),
            _ => changed.push(name.to_string()),
        },
    }
}

/// A setting's value as a message shows it: short scalars only (a digest
/// or a long text is named, not shown), never raw control characters.
fn shown(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let text = match value {
        Value::Null => "none".to_string(),
        Value::String(s) => format!("`{}`", evol_text::shown_inline(s)),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        _ => return None,
    };
    let digest = matches!(value, Value::String(s) if s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    (!digest && text.chars().count() <= 60).then_some(text)
}

/// Runs `work` (every model call of a job) until it ends, a shutdown
/// request, or a stall of the servers (`stall_after`). A stop makes
/// `stop_work` send nothing new, closes the pool (or the batches) so calls
/// waiting for a server return unsent (a rerun makes them), and gives the
/// calls in flight [`STOP_GRACE`] to finish and be committed; a second
/// request stops the wait.
pub async fn until_stopped<T>(
    work: impl std::future::Future<Output = T>,
    stop_work: impl FnOnce(),
    connected: &Connected,
    stall_after: Duration,
    shutdown: &mut Shutdown,
    observer: &dyn Observer,
) -> Ended<T> {
    let servers = (connected.pool.as_ref(), connected.batches.as_ref());
    stop_on(work, stop_work, servers, stall_after, shutdown, observer).await
}

/// Runs `work` until it ends or a shutdown request, for calls made to no
/// pool of servers (a job's embeddings): as [`until_stopped`], without
/// watching for a stall.
pub async fn until_requested<T>(
    work: impl std::future::Future<Output = T>,
    stop_work: impl FnOnce(),
    shutdown: &mut Shutdown,
    observer: &dyn Observer,
) -> Ended<T> {
    stop_on(work, stop_work, (None, None), Duration::MAX, shutdown, observer).await
}

async fn stop_on<T>(
    work: impl std::future::Future<Output = T>,
    stop_work: impl FnOnce(),
    (pool, batches): (Option<&evol_pool::Pool>, Option<&evol_openai::Batches>),
    stall_after: Duration,
    shutdown: &mut Shutdown,
    observer: &dyn Observer,
) -> Ended<T> {
    tokio::pin!(work);
    let stop = tokio::select! {
        r = &mut work => return Ended::Done(r),
        _ = shutdown.requested() => Stop::Requested,
        last = stalled(pool.cloned(), batches.cloned(), stall_after) => Stop::Stalled(last),
    };
    stop_work();
    let waiting = pool.map_or(0, |p| p.health().waiting);
    if let Some(pool) = pool {
        pool.close();
    }
    if let Some(batches) = batches {
        batches.close();
    }
    let why = match &stop {
        Stop::Requested => "stopping".to_string(),
        Stop::Stalled(last) => format!(
            "no call succeeded for {}; stopping, {waiting} calls waiting for a server are left for the rerun (last error: {last})",
            human(stall_after)
        ),
    };
    observer.say(&format!(
        "evol: {why}: waiting up to {}s for the calls in flight (press Ctrl-C again to abort)",
        STOP_GRACE.as_secs()
    ));
    tokio::select! {
        _ = &mut work => {}
        _ = shutdown.requested() => {}
        _ = tokio::time::sleep(STOP_GRACE) => {}
    }
    Ended::Stopped(stop)
}

/// Drives a job's calls to their end, handing each result to `each`. On
/// the first error the caller stops sending, the calls already in flight
/// still finish (so what was paid for is committed and handed on), and
/// that first error is returned.
pub async fn drain<T>(
    calls: impl futures::Stream<Item = Result<T, CallError>>,
    caller: &Caller,
    mut each: impl FnMut(T),
) -> Result<(), CallError> {
    use futures::StreamExt;
    futures::pin_mut!(calls);
    let mut first = None;
    while let Some(done) = calls.next().await {
        match done {
            Ok(value) => each(value),
            Err(e) => {
                if first.is_none() {
                    caller.stop();
                    first = Some(e);
                }
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Resolves with the last error once the servers (the pool, or the batch
/// server) have had no success for `after` while requests failed; never
/// on the embedded engine.
async fn stalled(pool: Option<evol_pool::Pool>, batches: Option<evol_openai::Batches>, after: Duration) -> String {
    if pool.is_none() && batches.is_none() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last = pool.as_ref().and_then(|p| p.stalled(after)).or_else(|| batches.as_ref()?.stalled(after));
        if let Some(last) = last {
            return last;
        }
    }
}

/// A job that calls one model: its output directory (locked), the
/// directory's journal, the model connected and one journaled caller.
pub struct Session {
    pub out: OutputDir,
    pub journal: Arc<SqliteJournal>,
    pub connected: Connected,
    pub model: Arc<dyn ChatModel>,
    /// The model that scores what `model` makes, for a job that has one.
    pub scorer: Option<Arc<dyn ChatModel>>,
    pub caller: Arc<Caller>,
    pub stats: Arc<StatsRecorder>,
    pub budget: Arc<Budget>,
    stall_after: Duration,
}

impl Session {
    /// Prepares OUT for a job of `kind` (locked; refused if another kind
    /// of job made it; `fresh`: earlier files removed), connects the
    /// model of `role` (the servers checked, or the embedded engine
    /// started), and builds the caller over OUT's journal for `calls`
    /// calls. The job is not marked running yet: see [`Session::begin`].
    pub async fn open(
        (output, fresh, kind): (&Path, bool, JobKind),
        model: &ModelSettings,
        execution: &Execution,
        role: Role,
        calls: u64,
        observer: &dyn Observer,
    ) -> anyhow::Result<Session> {
        Session::open_with_scorer((output, fresh, kind), model, execution, role, None, calls, observer).await
    }

    /// [`Session::open`], with a second model that scores what the first
    /// makes when `scorer` is given (`Some(None)`: the first model itself;
    /// `Some(Some(name))`: the model of that name on the same servers).
    pub async fn open_with_scorer(
        (output, fresh, kind): (&Path, bool, JobKind),
        model: &ModelSettings,
        execution: &Execution,
        role: Role,
        scorer: Option<Option<String>>,
        calls: u64,
        observer: &dyn Observer,
    ) -> anyhow::Result<Session> {
        let out = OutputDir::prepare(output, fresh, kind)?;
        let journal = Arc::new(out.journal()?);
        let connected = match &scorer {
            None => connect_role(model, execution, role, &journal, observer).await?,
            Some(name) => {
                let wanted = RoleModels { evolve: model.model.clone(), score: name.clone(), ..RoleModels::default() };
                let roles = [role, Role::Score];
                connect_models(&model.backend, &wanted, &roles, execution.concurrency, &journal, observer).await?
            }
        };
        let chat = connected.roles.get(role)?.clone();
        let scorer = match scorer {
            Some(_) => Some(connected.roles.get(Role::Score)?.clone()),
            None => None,
        };
        let stats = Arc::new(StatsRecorder::new(calls));
        let names: Vec<&str> = std::iter::once(chat.name()).chain(scorer.as_ref().map(|s| s.name())).collect();
        let prices = execution.prices_for(&names);
        let budget = Arc::new(Budget::new(execution.caps));
        let settings = CallerSettings { concurrency: connected.admitted, retry_failed: execution.retry_failed };
        let caller = Arc::new(
            Caller::new(settings, journal.clone() as Arc<dyn Journal>, stats.clone())?
                .with_costs(prices, budget.clone()),
        );
        let stall_after = model.backend.stall_after();
        Ok(Session { out, journal, connected, model: chat, scorer, caller, stats, budget, stall_after })
    }

    /// Marks the job running once its identity (what its calls are asked
    /// with, kept in the journal under `key`) is checked: a rerun with
    /// other settings is refused, naming them (`what` names the job).
    pub fn begin(&self, key: &str, identity: &impl serde::Serialize, what: &str) -> anyhow::Result<()> {
        check_job_identity(&self.journal, key, identity, self.out.root(), what)?;
        Ok(self.journal.set_state(RunState::Running)?)
    }

    /// The live counters an observer reads: stats, budget and servers.
    pub fn watched(&self) -> Watched {
        Watched { stats: self.stats.clone(), budget: self.budget.clone(), pool: self.connected.pool.clone() }
    }

    /// Runs `work` until it ends, a shutdown request or a stall, showing
    /// its progress over `total` items of `unit` meanwhile.
    pub async fn run<T>(
        &self,
        work: impl std::future::Future<Output = T>,
        (total, unit): (u64, &'static str),
        shutdown: &mut Shutdown,
        observer: &dyn Observer,
    ) -> Ended<T> {
        observer.watch(self.watched(), Counting::Items { total, unit });
        let ended =
            until_stopped(work, || self.caller.stop(), &self.connected, self.stall_after, shutdown, observer).await;
        observer.unwatch();
        ended
    }

    /// How long the job waits with no server answering before it stops.
    pub fn stall_after(&self) -> Duration {
        self.stall_after
    }

    /// OUT, as messages name it.
    pub fn out_name(&self) -> String {
        self.out.root().display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(now: serde_json::Value, then: serde_json::Value) -> Vec<String> {
        let mut changed = Vec::new();
        changed_settings("", &now, &then, &mut changed);
        changed
    }

    #[test]
    fn a_changed_setting_is_named_with_its_values_when_they_are_short() {
        use serde_json::json;
        let digest = "a".repeat(64);
        let then = json!({"input": digest, "model": "m", "sampling": {"top_p": 1.0, "max_tokens": 512}, "kept": [1]});
        let now = json!({"input": "b".repeat(64), "model": "मॉडल\u{1b}[2J", "sampling": {"top_p": 1.0, "max_tokens": 64}, "kept": [2], "new": 1});
        assert_eq!(
            changes(now, then),
            ["input", "kept", "model (`m` -> `मॉडल\\u{1b}[2J`)", "sampling.max_tokens (512 -> 64)"],
            "a digest or a list is named, a text shown escaped; a setting the earlier job lacked is not compared"
        );
        assert!(changes(json!({"a": 1}), json!({"a": 1})).is_empty());
        assert_eq!(changes(json!({"a": 1}), json!("old")), ["the settings"]);
    }

    #[test]
    fn each_cap_names_its_flag() {
        assert_eq!(cap_flag(&CapReached::Cost { cap: 0.01, used: 0.01 }), "--max-cost");
        assert_eq!(cap_flag(&CapReached::Requests { cap: 1 }), "--max-requests");
        assert_eq!(cap_flag(&CapReached::Tokens { cap: 1, used: 1 }), "--max-tokens-total");
    }

    #[test]
    fn how_work_ended_is_a_state() {
        let done: Ended<Result<(), CallError>> = Ended::Done(Ok(()));
        assert_eq!(done.state(true), RunState::Completed);
        assert_eq!(done.state(false), RunState::Failed, "done but incomplete");
        let stopped: Ended<Result<(), CallError>> = Ended::Stopped(Stop::Requested);
        assert_eq!(stopped.state(true), RunState::Interrupted);
        let capped: Ended<Result<(), CallError>> = Ended::Done(Err(CallError::Cap(CapReached::Requests { cap: 3 })));
        assert_eq!(capped.state(true), RunState::Capped);
        let err = capped.exit(Duration::from_secs(1), "OUT".into()).unwrap_err();
        assert!(err.is::<CapStop>() && err.to_string().contains("--max-requests"), "{err}");
        let stalled: Ended<Result<(), CallError>> = Ended::Stopped(Stop::Stalled("refused".into()));
        let err = stalled.exit(Duration::from_secs(5), "OUT".into()).unwrap_err();
        assert!(err.is::<Stalled>() && err.to_string().contains("5.0s"), "{err}");
    }
}
