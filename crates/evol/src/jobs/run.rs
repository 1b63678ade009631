//! `evol run`: seeds in, evolved dataset out.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{bail, Context};
use evol_core::cost::Budget;
use evol_core::{Caller, CallerSettings, Engine, EngineError, Method, Role, RunStats, StatsRecorder};
use evol_store::ingest::{ingest, Input};
use evol_store::output::{RunSink, DATASET, EVOLVED, REJECTED, SEED_ANSWERS, STATS};
use evol_store::{OutputDir, RunIdentity, RunState, SqliteJournal};

use crate::backend::{connect_models, describe_backend, Connected};
use crate::observe::{human, Counting, Observer, Watched};
use crate::results::{BackendKind, EndpointReport, RunBudget, RunExecution, RunInput, RunModels, RunReport};
use crate::session::{until_stopped, CapStop, Ended, Interrupted, NothingProduced, Stalled, Stop};
use crate::settings::RunSettings;

use crate::shutdown::Shutdown;

/// Evolves the seeds (a rerun resumes from OUT's journal), answers what
/// survives, and writes the record files, the dataset and `stats.json`
/// whatever way the run ends.
pub async fn run(
    mut settings: RunSettings,
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<RunReport> {
    // Read before OUT is touched: a bad benchmark file leaves nothing behind.
    let benchmarks = match settings.benchmarks.as_slice() {
        [] => None,
        files => {
            let (index, contamination) = crate::jobs::decontaminate::load_benchmarks(files, settings.benchmark_ngram)?;
            observer.say(&format!(
                "evol: evolutions overlapping any of {} benchmark items (runs of {} words) are rejected as contaminated",
                index.items(),
                index.ngram()
            ));
            settings.method.contamination = Some(contamination);
            Some(Arc::new(index))
        }
    };
    let refusals = match &settings.refusals {
        None => None,
        Some(dir) => {
            let (refusals, digest) = load_refusals(dir, settings.refusals_replace)?;
            settings.method.refusals = Some(digest);
            Some(Arc::new(refusals))
        }
    };
    let out = OutputDir::prepare(&settings.output, settings.fresh, evol_store::JobKind::Run)?;
    let new_run = !out.has_journal();
    let journal = Arc::new(out.journal()?);
    // A resume keeps the earlier run's value of every setting left at its
    // default here (an older evol's run may lack one, or have had another
    // default).
    if let Some((method, names)) = adopt_stored_settings(&journal, &settings.method, &settings.defaulted)? {
        observer.say(&format!(
            "evol: resuming with the run's own {} (not given on this command line; the run was begun with {})",
            names.join(", "),
            if names.len() == 1 { "that value" } else { "those values" }
        ));
        settings.method = method;
    }
    let Begun { mut input, models, endpoint, identity, committed } = match begin(&settings, &journal, observer).await {
        Ok(begun) => begun,
        Err(e) => {
            if new_run {
                // Nothing was sent: leave no half-made output directory.
                drop(journal);
                out.abandon();
            }
            return Err(e);
        }
    };
    if committed > 0 {
        observer.say(&format!(
            "evol: resuming the run in `{}`: {committed} calls are already committed and will not be sent again",
            out.root().display()
        ));
    }
    journal.set_state(RunState::Running)?;

    let seeds = journal.seed_count()?;
    let stats = Arc::new(StatsRecorder::new(seeds));
    let names: Vec<&str> = run_roles(&settings.method).iter().map(|r| identity.model(*r)).collect();
    let prices = settings.execution.prices_for(&names);
    if settings.execution.caps.max_cost.is_some() {
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        for name in unique {
            if prices.get(name).is_none() {
                observer.say(&format!(
                    "warning: no price for the model `{name}`: its calls count as free against --max-cost (set --price-prompt/--price-completion or [prices] in --config)"
                ));
            }
        }
    }
    let budget = Arc::new(Budget::new(settings.execution.caps));
    let caller_settings =
        CallerSettings { concurrency: models.admitted, retry_failed: settings.execution.retry_failed };
    let caller = Arc::new(
        Caller::new(caller_settings, journal.clone(), stats.clone())?.with_costs(prices.clone(), budget.clone()),
    );
    let pool = models.pool.clone();
    let mut engine = Engine::new(
        settings.method.clone(),
        models.roles.clone(),
        settings.templates.clone(),
        stats.clone(),
        caller.clone(),
    )?;
    if let (Some(index), Some(_)) = (input.seed_index.clone(), settings.method.dedup) {
        engine = engine.with_seed_index(index);
    }
    if let Some(benchmarks) = benchmarks {
        engine = engine.with_benchmarks(benchmarks);
    }
    if let Some(refusals) = refusals {
        engine = engine.with_refusals(refusals);
    }
    let sink = RunSink::new(journal.clone(), out.sink()?, settings.method.run_seed);
    {
        let shard = settings.ingest.shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
        let layout = input.layout.as_deref().map(|l| format!(" read as {l},")).unwrap_or_default();
        observer.say(&format!(
            "evol: {seeds} seeds{shard}{layout} x {} rounds with `{}` at {endpoint} (concurrency {}) -> `{}`",
            settings.method.rounds,
            identity.model(Role::Evolve),
            models.concurrency,
            out.root().display()
        ));
    }
    let watched = Watched { stats: stats.clone(), budget: budget.clone(), pool: pool.clone() };
    observer.watch(watched, Counting::Steps { seeds, rounds: settings.method.rounds });
    let run = engine.run(journal.seeds(), &sink);
    let stall_after = settings.backend.stall_after();
    let ended = until_stopped(run, || engine.stop(), &models, stall_after, &mut shutdown, observer).await;
    let (result, stop): (Result<(), EngineError>, Option<Stop>) = match ended {
        Ended::Done(r) => (r, None),
        Ended::Stopped(stop) => (Err(EngineError::Stopped), Some(stop)),
    };
    observer.unwatch();
    // The seeds' index is done with: its memory goes before the export's.
    drop(engine);
    input.seed_index = None;

    // Whatever happened, what was decided is on disk: export the files.
    let snapshot = stats.snapshot();
    let exported = out.export(&journal, settings.include_seeds, settings.method.dedup)?;
    if result.is_ok() {
        // Every result of every batch is committed: none need adopting.
        journal.settle_batches()?;
    }
    let state = match &result {
        Ok(()) => RunState::Completed,
        Err(EngineError::Stopped) => RunState::Interrupted,
        Err(EngineError::Cap(_)) => RunState::Capped,
        Err(_) => RunState::Failed,
    };
    journal.set_state(state)?;
    let servers = settings.servers();
    let report = RunReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        completed: result.is_ok(),
        state,
        run: snapshot.clone(),
        dataset: exported,
        input: RunInput {
            file: settings.seeds.display().to_string(),
            seeds: snapshot.seeds as usize,
            shard: settings.ingest.shard.map(|s| s.to_string()),
            skipped_invalid: input.invalid_count,
            skipped_empty: input.empty_count,
            layout: input.layout.clone(),
        },
        models: RunModels {
            endpoint: endpoint.clone(),
            backend: Some(BackendKind::of(&settings.backend)),
            evolve: identity.model(Role::Evolve).to_string(),
            judge: identity.model(Role::Judge).to_string(),
            answer: identity.model(Role::Answer).to_string(),
        },
        budget: RunBudget { caps: budget.caps(), prices: prices.clone() },
        settings: settings.method.clone(),
        execution: RunExecution {
            concurrency: models.concurrency,
            servers: models.limits.clone(),
            timeout_seconds: servers.map(|s| s.timeout.as_secs_f64()),
            max_retries: servers.map(|s| s.retry.max_retries),
            adaptive: servers.map(|s| s.adaptive),
            batch_api: servers.map(|s| s.batch.is_some()),
            retry_failed: settings.execution.retry_failed,
        },
        identity: identity.clone(),
        endpoints: endpoint_info(pool.as_ref(), observer),
        journal: journal.call_totals()?,
        engine: models.engine.as_ref().map(|report| report()),
        command: settings
            .command
            .iter()
            .map(|word| evol_text::redact_url(&evol_text::scrub(word)).into_owned())
            .collect(),
    };
    out.write_json(STATS, &report)?;
    // The summary and warnings are in stats.json too.
    observer.say(summary(&snapshot, exported, &out, settings.include_seeds).trim_end());
    if let Some(warning) = judge_warning(&snapshot.judge, identity.model(Role::Judge)) {
        observer.say(&warning);
    }
    match result {
        // Rules that reject every evolution are a result; calls that all
        // fail are not.
        Ok(()) if exported.rows == 0 && snapshot.seeds > 0 && snapshot.total.failures > 0 => Err(NothingProduced {
            what: format!(
                "0 dataset rows from {} seeds ({} evolutions attempted, {} rejected, {} calls failed)",
                snapshot.seeds,
                snapshot.total.attempted,
                snapshot.total.rejected_total(),
                snapshot.total.failures
            ),
            out: out.root().display().to_string(),
        }
        .into()),
        Ok(()) => Ok(report),
        Err(EngineError::Stopped) => match stop {
            Some(Stop::Stalled(last)) => {
                Err(Stalled { waited: human(stall_after), last, out: out.root().display().to_string() }.into())
            }
            _ => Err(Interrupted(out.root().display().to_string()).into()),
        },
        Err(EngineError::Cap(reached)) => Err(CapStop { reached, out: out.root().display().to_string() }.into()),
        Err(e) => Err(e.into()),
    }
}

/// What a run has once it can start: its seeds in the journal, its models
/// connected, and its identity checked against the journal's.
struct Begun {
    input: Input,
    models: Connected,
    /// Where the models are, in words.
    endpoint: String,
    identity: RunIdentity,
    /// Calls already in the journal (a resumed run).
    committed: u64,
}

/// Loads the seeds, connects the models and records (or checks) the run's
/// identity: everything that can fail before the first call.
async fn begin(settings: &RunSettings, journal: &Arc<SqliteJournal>, observer: &dyn Observer) -> anyhow::Result<Begun> {
    let input = ingest(&settings.seeds, settings.ingest.clone(), journal)?;
    report_skipped(settings, &input, observer);
    let concurrency = settings.execution.concurrency;
    let roles = run_roles(&settings.method);
    let models = connect_models(&settings.backend, &settings.models, &roles, concurrency, journal, observer).await?;
    let endpoint = describe_backend(&settings.backend);
    let identity = RunIdentity {
        seeds: input.digest.clone(),
        seed_count: input.total,
        shard: settings.ingest.shard,
        settings: settings.method.clone(),
        models: models.roles.names(),
        templates: settings.templates.digest().to_string(),
        score_templates: (settings.method.difficulty.is_some() || settings.method.ranks_answers())
            .then(|| settings.templates.score_digest().to_string()),
        improve_templates: (settings.method.improve_answers > 0)
            .then(|| settings.templates.improve_digest().to_string()),
        language_templates: settings.method.language.as_ref().map(|_| settings.templates.language_digest().to_string()),
        include_seeds: settings.include_seeds,
    };
    let committed = check_identity(journal, &identity)?;
    Ok(Begun { input, models, endpoint, identity, committed })
}

/// A directory of refusal phrases, and a digest of what it holds (its
/// `.txt` files' names and texts, and whether they replace the built-in
/// phrases): part of the run's settings.
fn load_refusals(dir: &std::path::Path, replace: bool) -> anyhow::Result<(evol_lang::Refusals, String)> {
    let refusals = evol_lang::Refusals::with_dir(dir, replace).context("--refusals")?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("txt"))
        .collect();
    files.sort();
    let mut digest = evol_digest::Digest::new().part(if replace { "replace" } else { "extend" });
    for path in &files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        digest = digest.part(name).part(text);
    }
    Ok((refusals, digest.full_hex()))
}

/// The roles a run connects: evolve, judge and answer (as every run has
/// recorded them), and the scorer when it scores or ranks answers.
fn run_roles(method: &Method) -> Vec<Role> {
    let mut roles = Role::RUN.to_vec();
    if method.roles().contains(&Role::Score) {
        roles.push(Role::Score);
    }
    roles
}

/// Warns of the seeds left out (they are counted in `stats.json` too).
fn report_skipped(settings: &RunSettings, input: &Input, observer: &dyn Observer) {
    let file = settings.seeds.display();
    for (place, message) in &input.invalid {
        observer.say(&format!("warning: `{file}` {place}: {message}; skipped"));
    }
    for place in &input.empty {
        observer.say(&format!("warning: `{file}` {place}: empty instruction; skipped"));
    }
    let more = (input.invalid_count - input.invalid.len()) + (input.empty_count - input.empty.len());
    if more > 0 {
        observer.say(&format!("warning: ... and {more} more skipped"));
    }
}

/// How each server of the pool did; warns about those taken out.
fn endpoint_info(pool: Option<&evol_pool::Pool>, observer: &dyn Observer) -> Vec<EndpointReport> {
    let Some(pool) = pool else { return Vec::new() };
    pool.status()
        .into_iter()
        .map(|s| {
            if let Some(why) = &s.out {
                observer.say(&format!("warning: the server `{}` was out of the run at its end: {why}", s.name));
            }
            EndpointReport { url: s.name, requests: s.requests, failures: s.failures, concurrency: s.limit, out: s.out }
        })
        .collect()
}

/// A warning when the judge often gave neither verdict: those evolutions
/// passed the equality check unchecked.
fn judge_warning(judge: &evol_core::stats::Verdicts, model: &str) -> Option<String> {
    let total = judge.total();
    // Two unclear replies or more, and one in five or more.
    if judge.unclear < 2 || judge.unclear * 5 < total {
        return None;
    }
    Some(format!(
        "warning: the judge `{model}` answered neither \"Equal\" nor \"Not Equal\" to {} of {total} equality questions; those evolutions passed the check unjudged (use a stronger --judge-model; a reasoning judge may need a larger --judge-max-tokens)",
        judge.unclear
    ))
}

/// The method to resume with: `method` with the stored run's value of each
/// `defaulted` setting that differs from it, and the names of those; `None`
/// for a new run, or when nothing is taken.
fn adopt_stored_settings(
    journal: &SqliteJournal,
    method: &Method,
    defaulted: &std::collections::BTreeSet<String>,
) -> anyhow::Result<Option<(Method, Vec<String>)>> {
    let stored = match journal.identity()? {
        Some(stored) if journal.has_begun()? => stored,
        _ => return Ok(None),
    };
    let as_map = |m: &Method| match serde_json::to_value(m).expect("serializable") {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a method is an object"),
    };
    let (mut now, then) = (as_map(method), as_map(&stored.settings));
    let mut taken = Vec::new();
    for name in defaulted {
        if now.get(name) != then.get(name) {
            match then.get(name) {
                Some(value) => now.insert(name.clone(), value.clone()),
                None => now.remove(name),
            };
            taken.push(name.clone());
        }
    }
    if taken.is_empty() {
        return Ok(None);
    }
    let method = serde_json::from_value(serde_json::Value::Object(now))
        .map_err(|e| anyhow::anyhow!("the run's stored settings cannot be read: {e}"))?;
    Ok(Some((method, taken)))
}

/// Records the run's identity in a new journal, or checks it against the one
/// there; returns how many calls the journal already holds.
fn check_identity(journal: &SqliteJournal, identity: &RunIdentity) -> anyhow::Result<u64> {
    // A run that never began (killed before its first call) is started
    // afresh with this command's settings.
    let stored = match journal.identity()? {
        Some(stored) if journal.has_begun()? => stored,
        _ => {
            journal.set_identity(identity)?;
            return Ok(0);
        }
    };
    let differences = identity.differences(&stored);
    if !differences.is_empty() {
        // A run begun before the near-duplicate check existed has none.
        let hint = match (&stored.settings.dedup, &identity.settings.dedup) {
            (None, Some(_)) => " (the run was begun without the near-duplicate check: add --no-dedup to resume it)",
            _ => "",
        };
        bail!(
            "this output directory holds a run made with other settings (changed: {}){hint}; rerun with the same settings to resume it, or pass --fresh to start over",
            differences.join(", ")
        );
    }
    Ok(journal.calls()?)
}

/// The mean difficulty per round with its spread: the method's own proof
/// of working is that it rises.
fn difficulty_line(rounds: &std::collections::BTreeMap<u32, evol_core::stats::ScoreTally>) -> String {
    tally_line("difficulty, mean ± std", rounds, |round| match round {
        0 => "seeds".to_string(),
        _ => format!("round {round}"),
    })
}

/// Tree-Instruct's proof of working: difficulty rises with the nodes added.
fn nodes_line(nodes: &std::collections::BTreeMap<u32, evol_core::stats::ScoreTally>) -> String {
    tally_line("difficulty by nodes added", nodes, |n| format!("{n} nodes"))
}

fn tally_line(
    title: &str,
    rounds: &std::collections::BTreeMap<u32, evol_core::stats::ScoreTally>,
    name: impl Fn(u32) -> String,
) -> String {
    let parts: Vec<String> = rounds
        .iter()
        .map(|(round, t)| {
            let name = name(*round);
            match (t.mean, t.std) {
                (Some(mean), Some(std)) => format!("{name} {mean:.2} ± {std:.2} (n {})", t.scored),
                _ => format!("{name} - (n 0)"),
            }
        })
        .collect();
    let unreadable: u64 = rounds.values().map(|t| t.unreadable).sum();
    let failed: u64 = rounds.values().map(|t| t.failed).sum();
    let mut line = format!("{title}: {}", parts.join(", "));
    if unreadable + failed > 0 {
        let _ =
            write!(line, "; {unreadable} replies unreadable, {failed} scoring calls failed (not counted in the means)");
    }
    line
}

/// The run by language, when it has more than English: "by language: hi
/// 12 seeds, 30 of 36 accepted, 4 left the language, 2 not told; ...".
fn language_line(languages: &std::collections::BTreeMap<String, evol_core::stats::LanguageTally>) -> Option<String> {
    if languages.keys().all(|l| l == "en" || l == evol_core::engine::UNDETERMINED) {
        return None;
    }
    let each: Vec<String> = languages
        .iter()
        .map(|(code, t)| {
            let changed = t.rejected.get("language_changed").copied().unwrap_or(0);
            format!(
                "{code} {} seeds, {} of {} accepted, {changed} left the language, {} not told",
                t.seeds, t.accepted, t.attempted, t.undetermined
            )
        })
        .collect();
    Some(format!("by language: {}", each.join("; ")))
}

fn summary(s: &RunStats, exported: evol_store::Exported, out: &OutputDir, seeds_file: bool) -> String {
    let t = &s.total;
    let mut text = format!(
        "evol: {} of {} seeds done in {}: {} evolutions attempted, {} accepted, {} rejected",
        s.seeds_done,
        s.seeds,
        human(std::time::Duration::from_secs_f64(s.wall_seconds)),
        t.attempted,
        t.accepted,
        t.rejected_total()
    );
    if !t.rejected.is_empty() {
        let reasons: Vec<String> = t.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = write!(text, " ({})", reasons.join(", "));
    }
    let _ = writeln!(
        text,
        "; {} requests, {} retries, {} failed; {} prompt + {} completion tokens{}",
        t.requests,
        t.retries,
        t.failures,
        t.prompt_tokens,
        t.completion_tokens,
        match t.reasoning_tokens {
            0 => String::new(),
            n => format!(" ({n} of them thinking)"),
        }
    );
    if t.cost > 0.0 {
        let _ = writeln!(text, "evol: cost {:.4} (from the price table)", t.cost);
    }
    if !s.difficulty.is_empty() {
        let _ = writeln!(text, "evol: {}", difficulty_line(&s.difficulty));
    }
    if !s.difficulty_by_nodes.is_empty() {
        let _ = writeln!(text, "evol: {}", nodes_line(&s.difficulty_by_nodes));
    }
    if let Some(line) = language_line(&s.languages) {
        let _ = writeln!(text, "evol: {line}");
    }
    let path = |f: &str| out.path(f).display().to_string();
    let removed = exported.exact_duplicates + exported.near_duplicates;
    let dataset = match removed {
        0 => format!("{} ({} rows)", path(DATASET), exported.rows),
        _ => format!(
            "{} ({} rows; {removed} duplicates of earlier rows left out, listed in {})",
            path(DATASET),
            exported.rows,
            path(evol_store::output::DUPLICATES)
        ),
    };
    let mut files = vec![dataset, path(EVOLVED), path(REJECTED)];
    if exported.seeds_left_out > 0 {
        let _ = writeln!(
            text,
            "evol: {} seeds left out of the dataset: their answers failed or broke an answer rule (see {})",
            exported.seeds_left_out,
            path(SEED_ANSWERS)
        );
    }
    if exported.truncated > 0 {
        let _ = writeln!(
            text,
            "warning: {} dataset rows have answers cut off by the token limit (flagged `answer_truncated`): raise --answer-max-tokens, or leave them out with `evol export --drop-truncated`",
            exported.truncated
        );
    }
    if let Some(b) = &s.best_of {
        let rejected: Vec<String> = b.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let rankings = match (b.ranked, b.unreadable_rankings) {
            (0, 0) => String::new(),
            (read, unread) => format!("; {read} rankings read, {unread} unreadable (the first usable answer kept)"),
        };
        let _ = writeln!(
            text,
            "evol: best of K: {} answers to {} instructions, {} rejected{}; {} instructions had none to keep{rankings}; {} preference pairs",
            b.answers,
            b.instructions,
            b.rejected.values().sum::<u64>(),
            if rejected.is_empty() { String::new() } else { format!(" ({})", rejected.join(", ")) },
            b.none_kept,
            exported.pairs,
        );
        if exported.pairs > 0 {
            files.push(path(evol_store::output::PAIRS));
        }
    }
    if let Some(t) = &s.improve {
        let ended: Vec<String> = t.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(
            text,
            "evol: answer improvement: {} rounds, {} rewrites kept (scored higher), {} not better, {} unreadable comparisons{}; {} answers improved",
            t.rounds,
            t.kept,
            t.not_better,
            t.unreadable,
            if ended.is_empty() { String::new() } else { format!(", ended by {}", ended.join(", ")) },
            t.improved_answers,
        );
    }
    if seeds_file && out.path(SEED_ANSWERS).exists() {
        files.push(path(SEED_ANSWERS));
    }
    files.push(path(STATS));
    let _ = writeln!(text, "evol: wrote {}", files.join(", "));
    text
}

#[cfg(test)]
mod tests {
    use evol_core::stats::Verdicts;

    use super::judge_warning;

    #[test]
    fn the_judge_warning_needs_many_unclear_replies() {
        assert_eq!(judge_warning(&Verdicts { equal: 1, not_equal: 0, unclear: 1 }, "m"), None, "one may be chance");
        assert!(judge_warning(&Verdicts { equal: 1, not_equal: 1, unclear: 2 }, "m").unwrap().contains("2 of 4"));
        assert_eq!(judge_warning(&Verdicts { equal: 10, not_equal: 80, unclear: 9 }, "m"), None, "under one in five");
        let warning = judge_warning(&Verdicts { equal: 1, not_equal: 6, unclear: 3 }, "tiny").unwrap();
        assert!(warning.contains("`tiny`") && warning.contains("3 of 10"), "{warning}");
    }
}
