//! Raw flags turned into validated settings, one file per command family.
//! Anything wrong here is a usage error (exit code 2), reported before any
//! file is read or call is made.
//!
//! Every command's flags are taken apart by a `let Args { .. } = args`
//! that names each field, so a flag added to a command and forgotten here
//! does not compile. `--quiet` and `--json` are the printer's: they are
//! named and left out (`quiet: _`), and the library never sees them.

mod curate;
mod eval;
mod output;
mod run;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use evol_core::cost::{Caps, Price, Prices};
use evol_llm::Sampling;
use evol_openai::RetryPolicy;

pub use evol::settings::*;
pub use evol::UsageError;
pub use run::{defaulted_method_settings, read_operator_file};

use crate::cli::{DedupParamArgs, EngineArgs, ModelArgs};

/// Settings made from a command's flags: consumed once, validated, and
/// never seen again past this module.
pub trait FromArgs<A>: Sized {
    type Error;
    fn from_args(args: A) -> Result<Self, Self::Error>;
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// `--shard auto` (or `auto/N`) turned into `I/N` from the scheduler's
/// variables in this process's environment, saying where it was found; any
/// other `--shard` is left for the run's settings to check.
pub fn shard_from_scheduler(shard: &mut Option<String>) -> Result<Option<evol_core::shard::Found>, UsageError> {
    let Some(text) = shard.as_deref() else { return Ok(None) };
    let Ok(spec @ evol_core::ShardSpec::Auto { .. }) = text.parse::<evol_core::ShardSpec>() else { return Ok(None) };
    let (found, how) = spec.resolve(|name| std::env::var(name).ok()).map_err(|e| usage(e.to_string()))?;
    *shard = Some(found.to_string());
    Ok(how)
}

/// A `--config` file.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    prices: BTreeMap<String, Price>,
}

/// A flag's text, trimmed; an empty one is a mistake.
fn non_empty(flag: &str, v: &Option<String>) -> Result<Option<String>, UsageError> {
    match v.as_deref().map(str::trim) {
        Some("") => Err(usage(format!("{flag} must not be empty"))),
        other => Ok(other.map(String::from)),
    }
}

/// A field name given on the command line: not empty, no control
/// characters.
fn field_name(name: Option<&str>, flag: &str) -> Result<Option<String>, UsageError> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim();
    if name.is_empty() || name.chars().any(|c| c.is_control() || evol_text::is_unsafe(c)) {
        return Err(usage(format!("{flag}: a field name must be a non-empty text without control characters")));
    }
    Ok(Some(name.to_string()))
}

impl FromArgs<ModelArgs> for ModelSettings {
    type Error = UsageError;

    fn from_args(args: ModelArgs) -> Result<ModelSettings, UsageError> {
        let ModelArgs {
            endpoint,
            config,
            rpm,
            tpm,
            no_adaptive,
            batch_api,
            batch_wave,
            batch_poll,
            batch_max_requests,
            batch_attempts,
            api_key_env,
            model,
            concurrency,
            timeout,
            max_retries,
            max_retry_wait,
            stall_timeout,
            no_request_seed,
            max_cost,
            max_tokens_total,
            max_requests,
            price_prompt,
            price_completion,
            price_cached_prompt,
            thinking,
            reasoning_effort,
            engine,
        } = args;
        if concurrency == 0 || concurrency > 100_000 {
            return Err(usage("--concurrency must be between 1 and 100000"));
        }
        let timeout = seconds("--timeout", timeout, false)?;
        let max_retry_wait = seconds("--max-retry-wait", max_retry_wait, true)?;
        let stall_timeout = seconds("--stall-timeout", stall_timeout, false)?;
        let config = match &config {
            Some(path) => {
                let config = read_config(path)?;
                if config.endpoints.is_empty() && endpoint.iter().all(|e| e.trim().is_empty()) {
                    // Else the run would quietly fall back to the CPU engine.
                    return Err(usage(format!(
                        "the config file `{}` names no [[endpoints]] (and no --endpoint is given)",
                        path.display()
                    )));
                }
                config
            }
            None => ConfigFile::default(),
        };
        let mut endpoints = config.endpoints;
        for url in endpoint.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            endpoints.push(Endpoint::at(url));
        }
        for (i, e) in endpoints.iter_mut().enumerate() {
            evol_openai::parse_base_url(&e.url).map_err(|err| usage(format!("endpoint {}: {err}", i + 1)))?;
            let var = e.api_key_env.clone().unwrap_or_else(|| api_key_env.clone());
            e.api_key = std::env::var(&var).ok().filter(|k| !k.trim().is_empty());
            if e.api_key.is_none() && var != "OPENAI_API_KEY" {
                return Err(usage(format!("the API key variable `{var}` (endpoint {}) is not set", i + 1)));
            }
            if !(e.weight.is_finite() && e.weight > 0.0) {
                return Err(usage(format!("endpoint {}: weight must be a positive number", i + 1)));
            }
            e.rpm = e.rpm.or(rpm);
            e.tpm = e.tpm.or(tpm);
            if e.rpm == Some(0) || e.tpm == Some(0) || e.max_concurrency == Some(0) {
                return Err(usage(format!("endpoint {}: rpm, tpm and max_concurrency must be at least 1", i + 1)));
            }
        }
        match endpoints.is_empty() {
            false => {
                if engine.model_path.is_some() {
                    return Err(usage("--model-path is for the embedded engine; drop --endpoint to use it"));
                }
            }
            true => {
                if model.is_some() && engine.model_path.is_some() {
                    return Err(usage("pass either --model or --model-path, not both"));
                }
            }
        }
        let batch = match batch_api {
            false => None,
            true => {
                if endpoints.len() != 1 {
                    return Err(usage("--batch-api needs exactly one server (--endpoint)"));
                }
                let wave = seconds("--batch-wave", batch_wave, false)?;
                let poll = seconds("--batch-poll", batch_poll, false)?;
                if !(1..=100_000).contains(&batch_max_requests) {
                    return Err(usage("--batch-max-requests must be between 1 and 100000"));
                }
                if !(1..=1000).contains(&batch_attempts) {
                    return Err(usage("--batch-attempts must be between 1 and 1000"));
                }
                Some(evol_openai::BatchSettings {
                    wave,
                    poll,
                    max_requests: batch_max_requests,
                    max_attempts: batch_attempts,
                })
            }
        };
        for (flag, value) in [
            ("--max-cost", max_cost),
            ("--price-prompt", price_prompt),
            ("--price-completion", price_completion),
            ("--price-cached-prompt", price_cached_prompt),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(usage(format!("{flag} must be zero or a positive number")));
            }
        }
        let default_price = (price_prompt.is_some() || price_completion.is_some()).then_some(Price {
            prompt: price_prompt.unwrap_or(0.0),
            completion: price_completion.unwrap_or(0.0),
            cached_prompt: price_cached_prompt,
        });
        let retry = RetryPolicy { max_retries, max_retry_after: max_retry_wait, ..RetryPolicy::default() };
        if endpoints.is_empty() && reasoning_effort.is_some() {
            return Err(usage(
                "--reasoning-effort needs --endpoint: the embedded engine has no effort (--thinking on|off switches its template)",
            ));
        }
        let backend = match endpoints.is_empty() {
            true => Backend::Embedded(EngineSettings::from_args(engine)?),
            false => Backend::Servers(Servers {
                endpoints,
                api_key_env,
                adaptive: !no_adaptive,
                timeout,
                retry,
                stall_timeout,
                batch,
            }),
        };
        Ok(ModelSettings {
            backend,
            model: non_empty("--model", &model)?,
            concurrency,
            caps: Caps { max_requests, max_tokens: max_tokens_total, max_cost },
            prices: Prices(config.prices),
            default_price,
            request_seeds: !no_request_seed,
            thinking: evol_llm::Thinking { effort: reasoning_effort, enabled: thinking },
        })
    }
}

/// The longest duration a flag may give (about 116 days): longer is a
/// mistake, and would overflow the clocks it is added to.
const MAX_SECONDS: f64 = 1e7;

/// A flag's number of seconds as a duration: finite, positive (or zero
/// with `zero`), at most [`MAX_SECONDS`].
fn seconds(flag: &str, value: f64, zero: bool) -> Result<Duration, UsageError> {
    let low_ok = if zero { value >= 0.0 } else { value > 0.0 };
    if !(value.is_finite() && low_ok && value <= MAX_SECONDS) {
        let least = if zero { "zero or more" } else { "a positive number of" };
        return Err(usage(format!("{flag} must be {least} seconds, at most {MAX_SECONDS:.0}")));
    }
    Ok(Duration::from_secs_f64(value))
}

impl FromArgs<EngineArgs> for EngineSettings {
    type Error = UsageError;

    fn from_args(args: EngineArgs) -> Result<EngineSettings, UsageError> {
        let EngineArgs {
            model_path,
            chat_template,
            threads,
            ctx_size,
            parallel,
            batch_size,
            no_prefix_cache,
            kv_cache,
        } = args;
        #[cfg(feature = "embedded")]
        let kv_cache = kv_cache.parse().map_err(|e: String| usage(format!("--kv-cache: {e}")))?;
        #[cfg(not(feature = "embedded"))]
        let _ = kv_cache;
        Ok(EngineSettings {
            model_path,
            chat_template,
            threads,
            ctx_size,
            parallel,
            batch_size,
            prefix_cache: !no_prefix_cache,
            #[cfg(feature = "embedded")]
            kv_cache,
        })
    }
}

/// Reads a `--config` file; a mistake in it is a usage error naming it.
fn read_config(path: &Path) -> Result<ConfigFile, UsageError> {
    let text = evol_io::bounded::read_text(path, evol_io::bounded::MAX_SETTINGS_BYTES)
        .map_err(|e| usage(format!("cannot read the config file `{}`: {e}", path.display())))?;
    let config: ConfigFile =
        toml::from_str(&text).map_err(|e| usage(format!("the config file `{}`: {e}", path.display())))?;
    for (model, price) in &config.prices {
        for (field, value) in [
            ("prompt", Some(price.prompt)),
            ("completion", Some(price.completion)),
            ("cached_prompt", price.cached_prompt),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(usage(format!(
                    "the config file `{}`: [prices] `{model}`: {field} must be zero or a positive number",
                    path.display()
                )));
            }
        }
    }
    Ok(config)
}

/// Sampling from its flags (`prefix` names them in errors: `--answer-`).
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
    Ok(Sampling { temperature, top_p, max_tokens, seed: None, thinking: Default::default() })
}

/// Near-duplicate settings from their flags (`flag` names them in errors).
fn dedup_params(args: DedupParamArgs, flag: &str) -> Result<evol_dedup::Params, UsageError> {
    let DedupParamArgs { shingle, hashes, bands, threshold } = args;
    let params = evol_dedup::Params { shingle, hashes, bands, threshold };
    params.validate().map_err(|e| usage(format!("{flag}: {e}")))
}
