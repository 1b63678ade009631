//! `evol` as a library: a program runs the answering job in-process
//! against a server (here the simulator, `evol-mock`, on loopback), and
//! stops it with a future of its own, with no signal handler anywhere.
//!
//! ```text
//! cargo run --release -p evol --example in_process
//! ```
//!
//! A stopped job keeps what it did: run it again on the same directory and
//! it sends only the calls that are missing.

use std::path::Path;
use std::time::Duration;

use evol::jobs::answer::AnswerReport;
use evol::settings::{AnswerSettings, Backend, EvalModel, ModelSettings, Servers};
use evol::{Observer, Shutdown};
use evol_llm::Sampling;

/// Prints what the job says, as a front end would.
struct Print;

impl Observer for Print {
    fn say(&self, line: &str) {
        println!("{}", evol_text::shown(line));
    }
}

/// Answers the questions of `testset` with the model at `url` into `out`;
/// `stop` ends the job early (its calls in flight finish and are kept).
pub async fn answer(
    url: &str,
    testset: &Path,
    out: &Path,
    stop: Option<Duration>,
    observer: &dyn Observer,
) -> anyhow::Result<AnswerReport> {
    let model = ModelSettings::new(Backend::Servers(Servers::at(&[url])), Some("mock"));
    let sampling = Sampling::new(0.0, 1.0, 256);
    let settings = AnswerSettings::new(testset.to_path_buf(), out.to_path_buf(), EvalModel::new(model, sampling, 0));
    let shutdown = match stop {
        Some(after) => Shutdown::on(tokio::time::sleep(after)),
        None => Shutdown::never(),
    };
    evol::jobs::answer(settings, observer, shutdown).await
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = evol_mock::MockConfig { latency_median_ms: 200.0, ..Default::default() };
    let url = evol_mock::spawn(config).await?;
    let dir = tempfile::tempdir()?;
    let testset = dir.path().join("questions.jsonl");
    let questions: String = (1..=40)
        .map(|i| format!("{{\"id\": {i}, \"instruction\": \"Explain idea number {i} in two sentences.\"}}\n"))
        .collect();
    std::fs::write(&testset, questions)?;
    let out = dir.path().join("answers");

    // Stopped after half a second: interrupted, with what was answered kept.
    let stopped = answer(&url, &testset, &out, Some(Duration::from_millis(500)), &Print).await;
    println!("first attempt: {}", stopped.map_or_else(|e| e.to_string(), |r| format!("done, {} answered", r.answered)));
    // The same job again: only the missing calls are sent.
    let report = answer(&url, &testset, &out, None, &Print).await?;
    println!(
        "{} answered ({} from the journal) in {}",
        report.answered,
        report.calls_made.replayed_calls,
        out.join("answers.jsonl").display()
    );
    Ok(())
}
