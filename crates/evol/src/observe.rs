//! What a job tells the program running it: lines for the user and the
//! progress of its calls. A job never writes to a terminal itself: the
//! `evol` binary shows these on stderr (a bar on a terminal, a log line
//! elsewhere, nothing with `--quiet`); a program embedding `evol` shows
//! them its own way, or not at all ([`Silent`]).

use std::sync::Arc;
use std::time::Duration;

use evol_core::cost::Budget;
use evol_core::{RunStats, StatsRecorder};
use evol_pool::Pool;

/// Receives what a job has to say while it runs.
pub trait Observer: Send + Sync {
    /// A line for the user: what the job is doing, or a warning (starting
    /// `warning:`). The text may quote models and files: an observer that
    /// shows it on a terminal escapes it first.
    fn say(&self, line: &str);

    /// The job's model calls start: `watched` tells how far they are,
    /// counted as `counting` says, until [`Observer::unwatch`].
    fn watch(&self, watched: Watched, counting: Counting) {
        let _ = (watched, counting);
    }

    /// The calls are over (done or stopped).
    fn unwatch(&self) {}

    /// How far a long stage without model calls is (reading and comparing
    /// rows in `evol dedup`, embedding and selecting in `evol select`):
    /// `done` of `total` (unknown while a file is streamed) counted in
    /// `unit`. Called every so many rows, not for each; a stage ends when
    /// another begins or the job says [`Observer::stage_done`].
    fn stage(&self, unit: &'static str, done: u64, total: Option<u64>) {
        let _ = (unit, done, total);
    }

    /// The stage shown by [`Observer::stage`] is over.
    fn stage_done(&self) {}
}

/// An observer that drops everything.
pub struct Silent;

impl Observer for Silent {
    fn say(&self, _line: &str) {}
}

/// What is watched while calls run: the job's counters, its budget and,
/// with servers, how they are doing.
#[derive(Clone)]
pub struct Watched {
    pub stats: Arc<StatsRecorder>,
    pub budget: Arc<Budget>,
    pub pool: Option<Pool>,
}

/// What progress is counted in: evolution steps of seeds (`evol run`), or
/// items of another job (`evol score`).
#[derive(Debug, Clone, Copy)]
pub enum Counting {
    /// `seeds` x `rounds` steps: seeds advance together and finish near the
    /// end, steps advance steadily.
    Steps { seeds: u64, rounds: u32 },
    /// Items, each counted when its outcome is (`StatsRecorder::outcome`).
    Items { total: u64, unit: &'static str },
}

impl Counting {
    /// How many steps or items there are.
    pub fn total(self) -> u64 {
        match self {
            Counting::Steps { seeds, rounds } => seeds * u64::from(rounds),
            Counting::Items { total, .. } => total,
        }
    }

    /// What is counted, in a word.
    pub fn unit(self) -> &'static str {
        match self {
            Counting::Steps { .. } => "steps",
            Counting::Items { unit, .. } => unit,
        }
    }

    /// The part of a progress line about seeds, for steps.
    pub fn seeds(self, s: &RunStats) -> String {
        match self {
            Counting::Steps { seeds, .. } => format!("{}/{seeds} seeds done, ", s.seeds_done),
            Counting::Items { .. } => String::new(),
        }
    }
}

/// A duration as `1h02m`, `3m05s` or `12.0s`.
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
    fn counting_totals() {
        assert_eq!(Counting::Steps { seeds: 3, rounds: 4 }.total(), 12);
        assert_eq!(Counting::Items { total: 7, unit: "rows" }.unit(), "rows");
    }
}
