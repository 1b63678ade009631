//! Raw flags turned into validated settings. Anything wrong here is a usage
//! error (exit code 2), reported before any file is read or call is made.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use evol_core::eliminate::Rules;
use evol_core::{Operation, Templates};
use evol_io::SeedFormat;
use evol_llm::Sampling;
use evol_openai::RetryPolicy;

use crate::cli::RunArgs;

/// A mistake in how `evol` was called.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// What `evol run` will do, validated.
pub struct RunSettings {
    pub engine: evol_core::Settings,
    /// The server, or `None` for the embedded engine.
    pub endpoint: Option<String>,
    pub api_key: Option<String>,
    pub api_key_env: String,
    pub model: Option<String>,
    pub answer_model: Option<String>,
    pub judge_model: Option<String>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub format: SeedFormat,
}

impl RunSettings {
    pub fn from_args(args: &RunArgs) -> Result<RunSettings, UsageError> {
        let ops = Operation::parse_list(&args.ops).map_err(|e| usage(format!("--ops: {e}")))?;
        if args.concurrency == 0 || args.concurrency > 100_000 {
            return Err(usage("--concurrency must be between 1 and 100000"));
        }
        if !(args.timeout.is_finite() && args.timeout > 0.0) {
            return Err(usage("--timeout must be a positive number of seconds"));
        }
        if !(args.max_retry_wait.is_finite() && args.max_retry_wait >= 0.0) {
            return Err(usage("--max-retry-wait must be zero or more seconds"));
        }
        let evolve = sampling("", args.temperature, args.top_p, args.max_tokens)?;
        let answer = sampling(
            "--answer-",
            args.answer_temperature.unwrap_or(args.temperature),
            args.answer_top_p.unwrap_or(args.top_p),
            args.answer_max_tokens.unwrap_or(args.max_tokens),
        )?;
        // The judge is asked for one of two words: greedy, same token limit
        // (reasoning models spend tokens before they answer).
        let judge = Sampling { temperature: 0.0, top_p: 1.0, ..evolve };

        let endpoint = args.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()).map(String::from);
        let api_key = std::env::var(&args.api_key_env).ok().filter(|k| !k.trim().is_empty());
        match &endpoint {
            Some(_) => {
                if api_key.is_none() && args.api_key_env != "OPENAI_API_KEY" {
                    return Err(usage(format!(
                        "--api-key-env names `{}`, but that environment variable is not set",
                        args.api_key_env
                    )));
                }
                if args.engine.model_path.is_some() {
                    return Err(usage("--model-path is for the embedded engine; drop --endpoint to use it"));
                }
            }
            None => {
                if args.answer_model.is_some() || args.judge_model.is_some() {
                    return Err(usage(
                        "--answer-model and --judge-model need --endpoint (the embedded engine runs one model)",
                    ));
                }
                if args.model.is_some() && args.engine.model_path.is_some() {
                    return Err(usage("pass either --model or --model-path, not both"));
                }
            }
        }
        let non_empty = |flag: &str, v: &Option<String>| -> Result<Option<String>, UsageError> {
            match v.as_deref().map(str::trim) {
                Some("") => Err(usage(format!("{flag} must not be empty"))),
                other => Ok(other.map(String::from)),
            }
        };

        Ok(RunSettings {
            engine: evol_core::Settings {
                rounds: args.rounds,
                ops,
                run_seed: args.seed,
                rules: Rules {
                    equality: !args.no_equality_check,
                    sorry: !args.no_sorry_check,
                    stop_words: !args.no_stop_words_check,
                    copied_prompt: !args.no_copy_check,
                },
                answer: !args.no_answer,
                answer_seeds: args.include_seeds && !args.no_answer,
                evolve_sampling: evolve,
                answer_sampling: answer,
                judge_sampling: judge,
                request_seeds: !args.no_request_seed,
                concurrency: args.concurrency,
            },
            endpoint,
            api_key,
            api_key_env: args.api_key_env.clone(),
            model: non_empty("--model", &args.model)?,
            answer_model: non_empty("--answer-model", &args.answer_model)?,
            judge_model: non_empty("--judge-model", &args.judge_model)?,
            timeout: Duration::from_secs_f64(args.timeout),
            retry: RetryPolicy {
                max_retries: args.max_retries,
                max_retry_after: Duration::from_secs_f64(args.max_retry_wait),
                ..RetryPolicy::default()
            },
            format: args.format.parse().map_err(usage)?,
        })
    }
}

fn sampling(prefix: &str, temperature: f32, top_p: f32, max_tokens: u32) -> Result<Sampling, UsageError> {
    if !(0.0..=2.0).contains(&temperature) {
        return Err(usage(format!("--{}temperature must be between 0 and 2", prefix.trim_start_matches("--"))));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(usage(format!("--{}top-p must be above 0 and at most 1", prefix.trim_start_matches("--"))));
    }
    if max_tokens == 0 {
        return Err(usage(format!("--{}max-tokens must be at least 1", prefix.trim_start_matches("--"))));
    }
    Ok(Sampling { temperature, top_p, max_tokens, seed: None })
}

/// Loads a `--templates` directory: every `.txt` file in it replaces the
/// built-in file of the same name; an unknown `.txt` name is an error (it is
/// most likely a typo that would otherwise be silently ignored).
pub fn load_templates(dir: Option<&Path>) -> anyhow::Result<Templates> {
    let Some(dir) = dir else {
        return Ok(Templates::builtin());
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read the templates directory `{}`: {e}", dir.display()))?;
    let mut overrides = BTreeMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let text =
            std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
        overrides.insert(name, text);
    }
    Templates::with_overrides(overrides).map_err(|e| anyhow::anyhow!("templates in `{}`: {e}", dir.display()))
}
