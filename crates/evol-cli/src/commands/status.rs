//! `evol status OUT`: a run's progress, as text or `--json`.

use std::fmt::Write as _;

use evol::jobs::status::RunStatus;
use evol::observe::human;
use evol_core::Role;
use evol_store::RunState;

use crate::cli::StatusArgs;

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let status = evol::jobs::status(&args.output, args.check)?;
    if args.json {
        return crate::stdout(&(serde_json::to_string_pretty(&status)? + "\n"));
    }
    // Paths, shard and model names are the user's text: shown, not obeyed.
    crate::stdout(&evol_text::shown(&render(&status)))
}

fn render(status: &RunStatus) -> String {
    let mut out = String::new();
    let percent = |a: u64, b: u64| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    let mut state = status.state.to_string();
    if let (RunState::Running, Some(idle)) = (status.state, status.idle_seconds) {
        state = format!(
            "running (last write {} ago; a run killed without a clean exit also shows as running)",
            human(std::time::Duration::from_secs_f64(idle))
        );
    }
    let _ = writeln!(out, "run:     {} ({state})", status.output);
    if let Some(shard) = &status.shard {
        let _ = writeln!(out, "shard:   {shard}");
    }
    let (done, seeds) = (status.seeds_done, status.seeds);
    let _ = writeln!(out, "seeds:   {done} of {seeds} done ({:.1}%)", percent(done, seeds));
    let (steps, total) = (status.steps, status.total_steps());
    let _ = writeln!(
        out,
        "steps:   {steps} of {total} ({:.1}%): {} accepted, {} rejected",
        percent(steps, total),
        status.accepted,
        status.rejected
    );
    let c = status.calls;
    let _ = writeln!(
        out,
        "calls:   {} committed, {} failed, {} retries; {} prompt + {} completion tokens",
        c.calls, c.failed, c.retries, c.prompt_tokens, c.completion_tokens
    );
    if status.batches_in_flight > 0 {
        let _ = writeln!(
            out,
            "batches: {} not settled (in flight, or of an attempt that stopped)",
            status.batches_in_flight
        );
    }
    let _ = writeln!(
        out,
        "models:  evolve `{}`, judge `{}`, answer `{}`",
        status.model(Role::Evolve),
        status.model(Role::Judge),
        status.model(Role::Answer)
    );
    if status.checked {
        let _ = writeln!(out, "journal: sound (every page and index checked)");
    }
    out
}
