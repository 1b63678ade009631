//! The one place the binary writes for the user: lines and progress on
//! stderr (escaped: model and file text never moves the cursor or runs),
//! nothing but errors with `--quiet`. A closed stderr drops the lines and
//! the work goes on: logging never stops a job.

use std::io::Write;
use std::sync::Mutex;

use evol::observe::{Counting, Observer, Watched};

use crate::progress::{Progress, Stage};

/// Writes a line to stderr as it is; a closed or failing stderr is
/// ignored (the line is lost, the work is not).
pub fn err_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// `eprintln!` that never panics: a closed stderr (`evol ... 2>&1 | head
/// -1`) must not stop a job.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::printer::err_line(&format!($($arg)*))
    };
}

/// The binary's [`Observer`]: escapes every line, shows progress while
/// calls run, and keeps quiet when told.
pub struct Printer {
    quiet: bool,
    progress: Mutex<Option<Progress>>,
    stage: Mutex<Option<Stage>>,
}

impl Printer {
    pub fn new(quiet: bool) -> Printer {
        Printer { quiet, progress: Mutex::new(None), stage: Mutex::new(None) }
    }
}

impl Observer for Printer {
    fn say(&self, line: &str) {
        if self.quiet {
            return;
        }
        let shown = evol_text::shown(line);
        if let Some(stage) = self.stage.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return stage.println(&shown);
        }
        match self.progress.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(progress) => progress.println(&shown),
            None => err_line(&shown),
        }
    }

    fn stage(&self, unit: &'static str, done: u64, total: Option<u64>) {
        if self.quiet {
            return;
        }
        let mut stage = self.stage.lock().unwrap_or_else(|e| e.into_inner());
        if stage.as_ref().is_some_and(|s| s.unit() != unit) {
            stage.take().expect("checked").finish();
        }
        stage.get_or_insert_with(|| Stage::start(unit)).set(done, total);
    }

    fn stage_done(&self) {
        if let Some(stage) = self.stage.lock().unwrap_or_else(|e| e.into_inner()).take() {
            stage.finish();
        }
    }

    fn watch(&self, watched: Watched, counting: Counting) {
        let progress = Progress::start(watched, counting, self.quiet);
        if let Some(earlier) = self.progress.lock().unwrap_or_else(|e| e.into_inner()).replace(progress) {
            earlier.finish();
        }
    }

    fn unwatch(&self) {
        if let Some(progress) = self.progress.lock().unwrap_or_else(|e| e.into_inner()).take() {
            progress.finish();
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        self.stage_done();
        self.unwatch();
    }
}

/// Ctrl-C and SIGTERM (what `docker stop`, Kubernetes, systemd and
/// `timeout` send) as a job's shutdown: the first stops it, the second
/// stops its wait for the calls in flight.
pub fn signals() -> evol::Shutdown {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        evol::Shutdown::requests(futures::stream::unfold(term, |mut term| async move {
            match term.as_mut() {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = t.recv() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            Some(((), term))
        }))
    }
    #[cfg(not(unix))]
    {
        evol::Shutdown::requests(futures::stream::unfold((), |()| async {
            let _ = tokio::signal::ctrl_c().await;
            Some(((), ()))
        }))
    }
}

/// Resolves at the first Ctrl-C or SIGTERM (for `evol serve`).
pub async fn stop_signal() {
    signals().requested().await
}

/// Writes text to stderr as it is (no newline added); a closed stderr is
/// ignored.
pub fn err_text(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}
