//! The `evol-mock` command: runs the simulator on a loopback port.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use evol_mock::{Faults, MockConfig};

/// An OpenAI-compatible load-test simulator for evol's tests and benchmarks.
///
/// Replies are derived from a hash of each request (not from any model);
/// latency and faults are simulated. Prints `listening on URL` once ready.
#[derive(Parser, Debug)]
#[command(name = "evol-mock", version)]
struct Args {
    /// Address to bind (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8089")]
    addr: String,
    /// Median simulated latency per request, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    latency_ms: f64,
    /// Sigma of the log-normal latency (0: every request takes the median).
    #[arg(long, default_value_t = 0.0)]
    latency_sigma: f64,
    /// Share of equality questions answered "Equal".
    #[arg(long, default_value_t = 0.1)]
    equal_rate: f64,
    /// Share of answers that are a short apology.
    #[arg(long, default_value_t = 0.02)]
    sorry_rate: f64,
    /// Share of evolutions and answers to a Hindi, Chinese, Japanese or
    /// Arabic request written in English instead (such requests are
    /// otherwise answered in their language, and refused in it at
    /// --sorry-rate).
    #[arg(long, default_value_t = 0.0)]
    switch_rate: f64,
    /// Share of answers to an instruction with constraints (as evol words
    /// them) that break one; the others keep them all.
    #[arg(long, default_value_t = 0.1)]
    break_rate: f64,
    /// Share of evolutions that leak the words "rewritten prompt".
    #[arg(long, default_value_t = 0.02)]
    leak_rate: f64,
    /// Words per answer.
    #[arg(long, default_value_t = 120)]
    answer_words: usize,
    /// Share of scoring replies that hold no score.
    #[arg(long, default_value_t = 0.0)]
    unreadable_rate: f64,
    /// Share of requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    fail_429: f64,
    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    fail_500: f64,
    /// Share of requests answered with malformed JSON.
    #[arg(long, default_value_t = 0.0)]
    fail_malformed: f64,
    /// Share of requests whose connection is cut mid-body.
    #[arg(long, default_value_t = 0.0)]
    fail_drop: f64,
    /// Share of requests whose body stalls for --slow-ms.
    #[arg(long, default_value_t = 0.0)]
    fail_slow: f64,
    /// Retry-After sent with 429s, in seconds.
    #[arg(long, default_value_t = 0.05)]
    retry_after: f64,
    /// How long a slow body stalls, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    slow_ms: u64,
    /// Served model names, comma-separated (default: any name).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Require this bearer token.
    #[arg(long)]
    api_key: Option<String>,
    /// How long a batch (`/v1/batches`) takes, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    batch_delay_ms: u64,
    /// Share of a batch's requests left undone (the batch ends `expired`).
    #[arg(long, default_value_t = 0.0)]
    batch_expire: f64,
    /// Limit the rate to this many requests a second (a token bucket with
    /// a tenth of a second of burst): requests above it get 429.
    #[arg(long, value_name = "PER_SECOND")]
    rate_limit: Option<f64>,
    /// Error bodies quote the request's Authorization header and carry
    /// terminal escape sequences (as a careless proxy's might).
    #[arg(long)]
    hostile_errors: bool,
    /// Pairwise judge strengths per model, e.g. `big=2,small=-1` (score
    /// points): answers then name their model, and the judge scores each
    /// 6 + strength + noise.
    #[arg(long, value_delimiter = ',', value_name = "MODEL=POINTS")]
    strengths: Vec<String>,
    /// Score points the pairwise judge adds to the answer shown first.
    #[arg(long, default_value_t = 0.0)]
    position_bias: f64,
    /// Reply as a reasoning model, the thinking trace in this shape:
    /// `field` (`reasoning_content`), `inline` (`<think>...</think>` in the
    /// text) or `opened` (the text ends the trace with `</think>` alone).
    #[arg(long, value_name = "SHAPE")]
    trace: Option<evol_mock::TraceShape>,
    /// Answer arithmetic questions (`A + B`, `A - B`, `A * B`) with a worked
    /// answer ending in `\boxed{RESULT}`, wrong (off by one) at this rate.
    #[arg(long, value_name = "WRONG_RATE")]
    maths: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rates = [
        args.equal_rate,
        args.sorry_rate,
        args.leak_rate,
        args.unreadable_rate,
        args.fail_429,
        args.fail_500,
        args.fail_malformed,
        args.fail_drop,
        args.fail_slow,
        args.batch_expire,
        args.maths.unwrap_or(0.0),
        args.switch_rate,
    ];
    if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
        anyhow::bail!("rates must lie between 0 and 1");
    }
    let config = MockConfig {
        latency_median_ms: args.latency_ms,
        latency_sigma: args.latency_sigma,
        equal_rate: args.equal_rate,
        sorry_rate: args.sorry_rate,
        switch_rate: args.switch_rate,
        break_rate: args.break_rate,
        leak_rate: args.leak_rate,
        answer_words: args.answer_words,
        unreadable_rate: args.unreadable_rate,
        faults: Faults {
            rate_429: args.fail_429,
            rate_500: args.fail_500,
            malformed: args.fail_malformed,
            drop: args.fail_drop,
            slow: args.fail_slow,
            retry_after_secs: args.retry_after,
            slow_ms: args.slow_ms,
        },
        models: args.models,
        api_key: args.api_key,
        batch: evol_mock::BatchConfig { delay_ms: args.batch_delay_ms, expire_rate: args.batch_expire },
        rate_limit: args.rate_limit,
        hostile_errors: args.hostile_errors,
        strengths: args
            .strengths
            .iter()
            .map(|pair| {
                let (model, points) = pair.split_once('=').context("--strengths takes MODEL=POINTS pairs")?;
                let points: f64 =
                    points.trim().parse().with_context(|| format!("--strengths: `{points}` is no number"))?;
                Ok((model.trim().to_string(), points))
            })
            .collect::<anyhow::Result<_>>()?,
        position_bias: args.position_bias,
        trace: args.trace,
        maths: args.maths,
    };
    if config.rate_limit.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        anyhow::bail!("--rate-limit must be a positive number of requests a second");
    }
    if config.faults.total() > 1.0 {
        anyhow::bail!("fault rates add up to more than 1");
    }
    let listener =
        tokio::net::TcpListener::bind(&args.addr).await.with_context(|| format!("cannot bind `{}`", args.addr))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/v1");
    std::io::stdout().flush()?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    evol_mock::serve(listener, config, shutdown).await?;
    Ok(())
}
