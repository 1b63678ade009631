//! Progress on stderr: a live bar on a terminal, a plain log line every few
//! seconds otherwise, nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evol_core::cost::Budget;
use evol_core::{RunStats, StatsRecorder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain log line is printed when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A running progress display; stop it with [`Progress::finish`].
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress is counted in evolution steps (`seeds` x `rounds`): seeds
    /// advance together and finish near the end, steps advance steadily.
    pub fn start(stats: Arc<StatsRecorder>, budget: Arc<Budget>, seeds: u64, rounds: u32, quiet: bool) -> Progress {
        let steps = seeds * u64::from(rounds);
        if quiet {
            return Progress { task: None, bar: None };
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr_with_hz(5));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps, eta {eta} | {msg}",
                )
                .expect("valid template"),
            );
            let shown = bar.clone();
            let budget = budget.clone();
            let task = tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    let s = stats.snapshot();
                    shown.set_position(s.total.attempted);
                    shown.set_message(format!(
                        "{}/{seeds} seeds done, {}",
                        s.seeds_done,
                        rates(&s, &budget, started.elapsed())
                    ));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            return Progress { task: Some(task), bar: Some(bar) };
        }
        let task = tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(LOG_EVERY).await;
                let s = stats.snapshot();
                let elapsed = started.elapsed();
                let eta =
                    eta(s.total.attempted, steps, elapsed).map(|d| format!(", eta {}", human(d))).unwrap_or_default();
                eprintln!(
                    "evol: {}/{steps} steps, {}/{seeds} seeds done{eta} | {}",
                    s.total.attempted,
                    s.seeds_done,
                    rates(&s, &budget, elapsed)
                );
            }
        });
        Progress { task: Some(task), bar: None }
    }

    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn rates(s: &RunStats, budget: &Budget, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let t = &s.total;
    let accept = if t.attempted > 0 { 100.0 * t.accepted as f64 / t.attempted as f64 } else { 0.0 };
    let mut line = format!(
        "{} accepted ({accept:.0}%), {:.1} req/s, {:.0} tok/s, {} retries, {} failures",
        t.accepted,
        t.requests as f64 / secs,
        (t.prompt_tokens + t.completion_tokens) as f64 / secs,
        t.retries,
        t.failures
    );
    // The budget counts calls of earlier attempts too: it is what the run cost.
    let (cost, cap) = (budget.cost(), budget.caps().max_cost);
    if cost > 0.0 || cap.is_some() {
        line.push_str(&format!(", cost {cost:.4}"));
        if let Some(cap) = cap {
            line.push_str(&format!(" of {cap:.4}"));
        }
    }
    line
}

fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    (done > 0 && done < total).then(|| elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// A duration as `1h02m`, `3m05s` or `12s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn eta_scales_with_remaining_work() {
        assert_eq!(eta(1, 4, Duration::from_secs(10)), Some(Duration::from_secs(30)));
        assert_eq!(eta(0, 4, Duration::from_secs(10)), None);
        assert_eq!(eta(4, 4, Duration::from_secs(10)), None);
    }
}
