//! Progress on stderr: a live bar on a terminal, a plain log line every few
//! seconds otherwise, nothing with `--quiet`. Servers that go out or come
//! back are announced at once, and while any is out the line says so with
//! the calls waiting.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use evol::observe::{human, Counting, Watched};
use evol_core::cost::Budget;
use evol_core::RunStats;
use evol_pool::{Pool, PoolHealth};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain log line is printed when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A running progress display; stop it with [`Progress::finish`].
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    /// Progress is counted as `counting` says. Servers that go out (and
    /// come back) are announced as it happens, on a terminal or not.
    pub fn start(watched: Watched, counting: Counting, quiet: bool) -> Progress {
        let steps = counting.total();
        let unit = counting.unit();
        let items = matches!(counting, Counting::Items { .. });
        if quiet {
            return Progress { task: None, bar: None, quiet };
        }
        let Watched { stats, budget, pool } = watched;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr_with_hz(5));
            bar.set_style(bar_style(unit));
            bar
        });
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut logged = Instant::now();
            let mut out_before: Vec<String> = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let s = stats.snapshot();
                let health = pool.as_ref().map(Pool::health);
                if let Some(h) = &health {
                    for line in changes(&out_before, h) {
                        say(shown.as_ref(), &line);
                    }
                    out_before = h.out.iter().map(|(name, _)| name.clone()).collect();
                }
                let trouble = health.as_ref().and_then(trouble).map(|t| format!(" | {t}")).unwrap_or_default();
                let elapsed = started.elapsed();
                match &shown {
                    Some(bar) => {
                        bar.set_position(s.total.attempted);
                        bar.set_message(format!(
                            "{}{}{trouble}",
                            counting.seeds(&s),
                            rates(&s, &budget, elapsed, items)
                        ));
                    }
                    None if logged.elapsed() >= LOG_EVERY => {
                        logged = Instant::now();
                        let eta = eta(s.total.attempted, steps, elapsed)
                            .map(|d| format!(", eta {}", human(d)))
                            .unwrap_or_default();
                        crate::say!(
                            "evol: {}/{steps} {unit}, {}{eta} | {}{trouble}",
                            s.total.attempted,
                            counting.seeds(&s).trim_end_matches(", "),
                            rates(&s, &budget, elapsed, items)
                        );
                    }
                    None => {}
                }
            }
        });
        Progress { task: Some(task), bar, quiet }
    }

    /// Prints a line above the bar (unless quiet).
    pub fn println(&self, line: &str) {
        if !self.quiet {
            say(self.bar.as_ref(), line);
        }
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

/// The progress of a long stage without model calls: a bar (a spinner
/// while the total is unknown) on a terminal, a line every [`LOG_EVERY`]
/// elsewhere.
pub struct Stage {
    unit: &'static str,
    bar: Option<ProgressBar>,
    started: Instant,
    logged: Instant,
}

impl Stage {
    pub fn start(unit: &'static str) -> Stage {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
            bar.set_style(stage_style(unit, false));
            bar
        });
        Stage { unit, bar, started: Instant::now(), logged: Instant::now() }
    }

    pub fn unit(&self) -> &'static str {
        self.unit
    }

    pub fn set(&mut self, done: u64, total: Option<u64>) {
        match &self.bar {
            Some(bar) => {
                if let (Some(total), None) = (total, bar.length()) {
                    bar.set_length(total);
                    bar.set_style(stage_style(self.unit, true));
                }
                bar.set_position(done);
            }
            None if self.logged.elapsed() >= LOG_EVERY => {
                self.logged = Instant::now();
                let eta = total
                    .and_then(|t| eta(done, t, self.started.elapsed()))
                    .map(|d| format!(", eta {}", human(d)))
                    .unwrap_or_default();
                let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                crate::say!("evol: {done}{of} {}{eta}", self.unit);
            }
            None => {}
        }
    }

    pub fn println(&self, line: &str) {
        say(self.bar.as_ref(), line);
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn stage_style(unit: &str, known: bool) -> ProgressStyle {
    let template = match known {
        true => format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}{{until_done}}"),
        false => format!("{{spinner}} [{{elapsed_precise}}] {{pos}} {unit}"),
    };
    ProgressStyle::with_template(&template).expect("valid template").with_key("until_done", until_done)
}

fn say(bar: Option<&ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.println(line),
        None => crate::printer::err_line(line),
    }
}

/// Lines announcing the servers that went out or came back since `before`
/// (the names out then).
fn changes(before: &[String], now: &PoolHealth) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, why) in &now.out {
        if !before.contains(name) {
            lines.push(format!(
                "warning: the server `{}` is out: {}",
                evol_text::shown_inline(name),
                evol_text::shown_inline(why)
            ));
        }
    }
    for name in before {
        if !now.out.iter().any(|(n, _)| n == name) {
            lines.push(format!("evol: the server `{}` is back", evol_text::shown_inline(name)));
        }
    }
    lines
}

/// What is wrong with the servers, in a few words, if anything.
fn trouble(h: &PoolHealth) -> Option<String> {
    let mut parts = Vec::new();
    match h.out.as_slice() {
        [] => {}
        [(name, _)] => parts.push(format!("server `{}` out", evol_text::shown_inline(name))),
        out => parts.push(format!("{} servers out", out.len())),
    }
    if let Some(failing) = h.failing_for.filter(|d| *d >= Duration::from_secs(5)) {
        parts.push(format!("no success for {}", human(failing)));
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(format!("{} calls waiting", h.waiting));
    Some(parts.join(", "))
}

fn rates(s: &RunStats, budget: &Budget, elapsed: Duration, items: bool) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let t = &s.total;
    let accept = if t.attempted > 0 { 100.0 * t.accepted as f64 / t.attempted as f64 } else { 0.0 };
    let accepted = if items { String::new() } else { format!("{} accepted ({accept:.0}%), ", t.accepted) };
    let mut line = format!(
        "{accepted}{:.1} req/s, {:.0} tok/s, {} retries, {} failures",
        t.requests as f64 / secs,
        (t.prompt_tokens + t.completion_tokens) as f64 / secs,
        t.retries,
        t.failures
    );
    if t.reasoning_tokens > 0 {
        let share = 100.0 * t.reasoning_tokens as f64 / t.completion_tokens.max(1) as f64;
        line.push_str(&format!(", {share:.0}% of completion tokens thinking"));
    }
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

/// The bar: elapsed time, the bar, steps done of all, an estimate of the
/// time left (none before the first step is done: never "eta 0s"), and
/// the message.
fn bar_style(unit: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}{{until_done}} | {{msg}}"
    ))
    .expect("valid template")
    .with_key("until_done", until_done)
}

/// ", eta 3m" once a step is done (never "eta 0s" before), else nothing.
fn until_done(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    if let Some(d) = eta(state.pos(), state.len().unwrap_or(0), state.elapsed()) {
        let _ = write!(w, ", eta {}", human(d));
    }
}

fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    (done > 0 && done < total).then(|| elapsed.mul_f64((total - done) as f64 / done as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Default, Clone)]
    struct Screen(std::sync::Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.0.lock().unwrap().clear();
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_gives_no_estimate_before_the_first_step() {
        let screen = Screen::default();
        let bar = ProgressBar::with_draw_target(Some(10), ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.set_style(bar_style("seeds"));
        bar.tick();
        let first = screen.0.lock().unwrap().clone();
        assert!(first.contains("0/10 seeds |") && !first.contains("eta"), "{first:?}");
        std::thread::sleep(Duration::from_millis(20));
        bar.set_position(5);
        bar.tick();
        let later = screen.0.lock().unwrap().clone();
        assert!(later.contains("5/10 seeds, eta "), "{later:?}");
    }

    #[test]
    fn servers_out_are_announced_and_shown_escaped() {
        let down = PoolHealth {
            waiting: 57,
            out: vec![("http://a/v1".into(), "5 failures in a row; last error: \u{1b}[2Jrefused".into())],
            failing_for: Some(Duration::from_secs(12)),
        };
        let lines = changes(&[], &down);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("`http://a/v1` is out") && lines[0].contains("\\u{1b}[2J"), "{}", lines[0]);
        assert!(changes(&["http://a/v1".into()], &down).is_empty(), "announced once");
        let shown = trouble(&down).unwrap();
        assert_eq!(shown, "server `http://a/v1` out, no success for 12.0s, 57 calls waiting");
        let fine = PoolHealth { waiting: 3, out: Vec::new(), failing_for: None };
        assert_eq!(trouble(&fine), None);
        assert_eq!(changes(&["http://a/v1".into()], &fine), vec!["evol: the server `http://a/v1` is back"]);
    }

    #[test]
    fn eta_scales_with_remaining_work() {
        assert_eq!(eta(1, 4, Duration::from_secs(10)), Some(Duration::from_secs(30)));
        assert_eq!(eta(0, 4, Duration::from_secs(10)), None);
        assert_eq!(eta(4, 4, Duration::from_secs(10)), None);
    }
}
