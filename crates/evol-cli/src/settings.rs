//! Raw flags turned into validated settings. Anything wrong here is a usage
//! error (exit code 2), reported before any file is read or call is made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use evol_core::cost::{Caps, Price, Prices};
use evol_core::eliminate::Rules;
use evol_core::{Method, OperationSet, OperatorSet, Shard, Templates};
use evol_llm::Sampling;
use evol_openai::RetryPolicy;
use evol_store::ingest::IngestOptions;

pub use evol::settings::*;
pub use evol::UsageError;

use crate::cli::{EngineArgs, ModelArgs, RunArgs};

/// Settings made from a command's flags: consumed once, validated, and
/// never seen again past this file.
pub trait FromArgs<A>: Sized {
    type Error;
    fn from_args(args: A) -> Result<Self, Self::Error>;
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
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

impl FromArgs<RunArgs> for RunSettings {
    type Error = anyhow::Error;

    /// Consumes the flags (and reads the `--config` and `--templates`
    /// files they name). A mistake in the flags or the config is a
    /// [`UsageError`]; templates that do not load are a plain error.
    fn from_args(args: RunArgs) -> anyhow::Result<RunSettings> {
        let dir = args.templates.clone();
        let ops_file = args.ops_file.clone();
        let file = ops_file.as_deref().map(read_operator_file).transpose()?;
        let (set, operations) =
            OperatorSet::choose(&args.ops, file).map_err(|e| usage(format!("--ops {}: {e}", args.ops)))?;
        let mut settings = validate_run(args, operations)?;
        settings.templates =
            load_templates(dir.as_deref(), &set, &settings.method.operations).map_err(|e| match &ops_file {
                Some(path) => anyhow::anyhow!("the operator file `{}`: {e:#}", path.display()),
                None => e,
            })?;
        Ok(settings)
    }
}

fn validate_run(args: RunArgs, operations: OperationSet) -> Result<RunSettings, UsageError> {
    if !(1..=MAX_ROUNDS).contains(&args.rounds) {
        return Err(usage(format!("--rounds must be between 1 and {MAX_ROUNDS}")));
    }
    if args.limit == Some(0) {
        return Err(usage("--limit must be at least 1: it is how many seeds to use"));
    }
    let max_tokens = args.max_tokens;
    let evolve = sampling("", args.temperature, args.top_p, max_tokens)?;
    let answer = sampling(
        "--answer-",
        args.answer_temperature.unwrap_or(args.temperature),
        args.answer_top_p.unwrap_or(args.top_p),
        args.answer_max_tokens.unwrap_or(max_tokens),
    )?;
    // The judge is asked for one of two words: greedy, and by default
    // the same token limit (reasoning models spend tokens before they
    // answer).
    let judge = sampling("--judge-", 0.0, 1.0, args.judge_max_tokens.unwrap_or(max_tokens))?;
    let model = ModelSettings::from_args(args.models)?;
    if matches!(model.backend, Backend::Embedded(_))
        && (args.answer_model.is_some() || args.judge_model.is_some() || args.score_model.is_some())
    {
        return Err(usage(
            "--answer-model, --judge-model and --score-model need --endpoint (the embedded engine runs one model)",
        ));
    }
    let models = RoleModels {
        evolve: model.model.clone(),
        judge: non_empty("--judge-model", &args.judge_model)?,
        answer: non_empty("--answer-model", &args.answer_model)?,
        score: non_empty("--score-model", &args.score_model)?,
        optimize: None,
    };
    let difficulty = args
        .score_difficulty
        .then(|| sampling("--score-", 0.0, 1.0, args.score_max_tokens.or(args.judge_max_tokens).unwrap_or(max_tokens)))
        .transpose()?;
    let shard =
        args.shard.as_deref().map(|s| s.parse::<Shard>().map_err(|e| usage(format!("--shard {e}")))).transpose()?;
    let format = args.format;
    let dedup = if args.no_dedup {
        None
    } else {
        let params = crate::cli::DedupParamArgs {
            shingle: args.dedup_shingle,
            hashes: args.dedup_hashes,
            bands: args.dedup_bands,
            threshold: args.dedup_threshold,
        };
        Some(dedup_params(&params, "--dedup-*")?)
    };
    Ok(RunSettings {
        ingest: IngestOptions {
            format,
            fields: evol_io::Fields {
                instruction: field_name(args.instruction_field.as_deref(), "--instruction-field")?,
                id: field_name(args.id_field.as_deref(), "--id-field")?,
            },
            limit: args.limit.map(|l| l as u64),
            shard,
            skip_invalid: args.skip_invalid,
            run_seed: args.seed,
            dedup,
        },
        method: Method {
            rounds: args.rounds,
            operations,
            run_seed: args.seed,
            rules: Rules {
                equality: !args.no_equality_check,
                sorry: !args.no_sorry_check,
                stop_words: !args.no_stop_words_check,
                copied_prompt: !args.no_copy_check,
                asks_for_input: !args.no_asks_check,
            },
            answer: !args.no_answer,
            answer_seeds: args.include_seeds && !args.no_answer,
            evolve_sampling: evolve,
            answer_sampling: answer,
            judge_sampling: judge,
            request_seeds: model.request_seeds,
            dedup,
            difficulty,
        },
        execution: model.execution(args.retry_failed),
        templates: Templates::builtin(),
        models,
        backend: model.backend,
        include_seeds: args.include_seeds,
        seeds: args.seeds,
        output: args.output,
        fresh: args.fresh,
        dry_run: args.dry_run,
        quiet: args.quiet,
        command: Vec::new(),
        defaulted: Default::default(),
    })
}

/// The method settings that each `evol run` flag decides (by argument id).
/// A resume keeps the earlier run's value of a setting none of whose flags
/// was given; a test checks that every flag that shapes the method is here.
const METHOD_FLAGS: &[(&str, &[&str])] = &[
    ("rounds", &["rounds"]),
    ("operations", &["ops", "ops_file"]),
    ("run_seed", &["seed"]),
    ("rules", &["no_equality_check", "no_sorry_check", "no_stop_words_check", "no_copy_check", "no_asks_check"]),
    ("answer", &["no_answer"]),
    ("answer_seeds", &["no_answer", "include_seeds"]),
    ("evolve_sampling", &["temperature", "top_p", "max_tokens"]),
    (
        "answer_sampling",
        &["answer_temperature", "answer_top_p", "answer_max_tokens", "temperature", "top_p", "max_tokens"],
    ),
    ("judge_sampling", &["judge_max_tokens", "max_tokens"]),
    ("request_seeds", &["no_request_seed"]),
    ("dedup", &["no_dedup", "dedup_shingle", "dedup_hashes", "dedup_bands", "dedup_threshold"]),
    ("difficulty", &["score_difficulty", "score_max_tokens", "judge_max_tokens", "max_tokens"]),
];

/// The method settings none of whose flags is among `given`.
pub fn defaulted_method_settings(given: &[String]) -> std::collections::BTreeSet<String> {
    METHOD_FLAGS
        .iter()
        .filter(|(_, flags)| !flags.iter().any(|f| given.iter().any(|g| g == f)))
        .map(|(setting, _)| setting.to_string())
        .collect()
}

/// A flag's text, trimmed; an empty one is a mistake.
fn non_empty(flag: &str, v: &Option<String>) -> Result<Option<String>, UsageError> {
    match v.as_deref().map(str::trim) {
        Some("") => Err(usage(format!("{flag} must not be empty"))),
        other => Ok(other.map(String::from)),
    }
}

impl FromArgs<ModelArgs> for ModelSettings {
    type Error = UsageError;

    fn from_args(args: ModelArgs) -> Result<ModelSettings, UsageError> {
        if args.concurrency == 0 || args.concurrency > 100_000 {
            return Err(usage("--concurrency must be between 1 and 100000"));
        }
        let timeout = seconds("--timeout", args.timeout, false)?;
        let max_retry_wait = seconds("--max-retry-wait", args.max_retry_wait, true)?;
        let stall_timeout = seconds("--stall-timeout", args.stall_timeout, false)?;
        let config = match &args.config {
            Some(path) => {
                let config = read_config(path)?;
                if config.endpoints.is_empty() && args.endpoint.iter().all(|e| e.trim().is_empty()) {
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
        for url in args.endpoint.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            endpoints.push(Endpoint {
                url: url.to_string(),
                model: None,
                api_key_env: None,
                weight: 1.0,
                rpm: None,
                tpm: None,
                max_concurrency: None,
                api_key: None,
            });
        }
        for (i, e) in endpoints.iter_mut().enumerate() {
            evol_openai::parse_base_url(&e.url).map_err(|err| usage(format!("endpoint {}: {err}", i + 1)))?;
            let var = e.api_key_env.clone().unwrap_or_else(|| args.api_key_env.clone());
            e.api_key = std::env::var(&var).ok().filter(|k| !k.trim().is_empty());
            if e.api_key.is_none() && var != "OPENAI_API_KEY" {
                return Err(usage(format!("the API key variable `{var}` (endpoint {}) is not set", i + 1)));
            }
            if !(e.weight.is_finite() && e.weight > 0.0) {
                return Err(usage(format!("endpoint {}: weight must be a positive number", i + 1)));
            }
            e.rpm = e.rpm.or(args.rpm);
            e.tpm = e.tpm.or(args.tpm);
            if e.rpm == Some(0) || e.tpm == Some(0) || e.max_concurrency == Some(0) {
                return Err(usage(format!("endpoint {}: rpm, tpm and max_concurrency must be at least 1", i + 1)));
            }
        }
        match endpoints.is_empty() {
            false => {
                if args.engine.model_path.is_some() {
                    return Err(usage("--model-path is for the embedded engine; drop --endpoint to use it"));
                }
            }
            true => {
                if args.model.is_some() && args.engine.model_path.is_some() {
                    return Err(usage("pass either --model or --model-path, not both"));
                }
            }
        }
        let batch = match args.batch_api {
            false => None,
            true => {
                if endpoints.len() != 1 {
                    return Err(usage("--batch-api needs exactly one server (--endpoint)"));
                }
                let wave = seconds("--batch-wave", args.batch_wave, false)?;
                let poll = seconds("--batch-poll", args.batch_poll, false)?;
                if !(1..=100_000).contains(&args.batch_max_requests) {
                    return Err(usage("--batch-max-requests must be between 1 and 100000"));
                }
                if !(1..=1000).contains(&args.batch_attempts) {
                    return Err(usage("--batch-attempts must be between 1 and 1000"));
                }
                Some(evol_openai::BatchSettings {
                    wave,
                    poll,
                    max_requests: args.batch_max_requests,
                    max_attempts: args.batch_attempts,
                })
            }
        };
        for (flag, value) in [
            ("--max-cost", args.max_cost),
            ("--price-prompt", args.price_prompt),
            ("--price-completion", args.price_completion),
            ("--price-cached-prompt", args.price_cached_prompt),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(usage(format!("{flag} must be zero or a positive number")));
            }
        }
        let default_price = (args.price_prompt.is_some() || args.price_completion.is_some()).then_some(Price {
            prompt: args.price_prompt.unwrap_or(0.0),
            completion: args.price_completion.unwrap_or(0.0),
            cached_prompt: args.price_cached_prompt,
        });
        let retry =
            RetryPolicy { max_retries: args.max_retries, max_retry_after: max_retry_wait, ..RetryPolicy::default() };
        let backend = match endpoints.is_empty() {
            true => Backend::Embedded(EngineSettings::from_args(args.engine)?),
            false => Backend::Servers(Servers {
                endpoints,
                api_key_env: args.api_key_env,
                adaptive: !args.no_adaptive,
                timeout,
                retry,
                stall_timeout,
                batch,
            }),
        };
        Ok(ModelSettings {
            backend,
            model: non_empty("--model", &args.model)?,
            concurrency: args.concurrency,
            caps: Caps { max_requests: args.max_requests, max_tokens: args.max_tokens_total, max_cost: args.max_cost },
            prices: Prices(config.prices),
            default_price,
            request_seeds: !args.no_request_seed,
        })
    }
}

/// The most rounds a run may have.
const MAX_ROUNDS: u32 = 1000;
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
        #[cfg(feature = "embedded")]
        let kv_cache = args.kv_cache.parse().map_err(|e: String| usage(format!("--kv-cache: {e}")))?;
        Ok(EngineSettings {
            model_path: args.model_path,
            chat_template: args.chat_template,
            threads: args.threads,
            ctx_size: args.ctx_size,
            parallel: args.parallel,
            batch_size: args.batch_size,
            prefix_cache: !args.no_prefix_cache,
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
pub fn load_templates(dir: Option<&Path>, set: &OperatorSet, enabled: &OperationSet) -> anyhow::Result<Templates> {
    let Some(dir) = dir else {
        return Templates::new(BTreeMap::new(), set, enabled)
            .map_err(|e| anyhow::anyhow!("the operator set `{}`: {e}", set.name));
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
        let text = evol_io::bounded::read_text(&path, evol_io::bounded::MAX_SETTINGS_BYTES)
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
        overrides.insert(name, text);
    }
    Templates::new(overrides, set, enabled)
        .map_err(|e| anyhow::anyhow!("templates in `{}` with the operator set `{}`: {e}", dir.display(), set.name))
}

/// Reads an operator file (`--ops-file`): a mistake names the file, the
/// operator and the field.
pub fn read_operator_file(path: &Path) -> anyhow::Result<OperatorSet> {
    let text = evol_io::bounded::read_text(path, evol_io::bounded::MAX_SETTINGS_BYTES)
        .map_err(|e| anyhow::anyhow!("cannot read the operator file `{}`: {e}", path.display()))?;
    OperatorSet::parse(&text).map_err(|e| anyhow::anyhow!("the operator file `{}`: {e}", path.display()))
}

/// Near-duplicate settings from their flags (`flag` names them in errors).
pub fn dedup_params(args: &crate::cli::DedupParamArgs, flag: &str) -> Result<evol_dedup::Params, UsageError> {
    let params =
        evol_dedup::Params { shingle: args.shingle, hashes: args.hashes, bands: args.bands, threshold: args.threshold };
    params.validate().map_err(|e| usage(format!("{flag}: {e}")))
}

impl FromArgs<crate::cli::DedupArgs> for DedupSettings {
    type Error = UsageError;

    fn from_args(args: crate::cli::DedupArgs) -> Result<DedupSettings, UsageError> {
        let params = dedup_params(&args.params, "near duplicates")?;
        let field = args.field.parse().map_err(|e: String| usage(format!("--field: {e}")))?;
        let format = args.format;
        let files = match (args.input, args.output) {
            (Some(input), Some(output)) => {
                let clusters = args.clusters.unwrap_or_else(|| default_clusters(&output));
                let same = |a: &Path, b: &Path| {
                    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
                };
                for (what, path) in
                    std::iter::once(("the input", &input)).chain(args.against.iter().map(|c| ("a corpus", c)))
                {
                    if same(path, &output) || same(path, &clusters) {
                        return Err(usage(format!(
                            "`{}` is {what} and an output: write the kept rows and clusters elsewhere",
                            path.display()
                        )));
                    }
                }
                if same(&output, &clusters) {
                    return Err(usage("-o and --clusters name the same file"));
                }
                Some(DedupFiles { input, output, clusters })
            }
            (None, None) if args.explain => None,
            (Some(_), None) => return Err(usage("-o OUT is required: where to write the kept rows")),
            _ => return Err(usage("a dataset file to deduplicate is required with -o")),
        };
        Ok(DedupSettings {
            files,
            against: args.against,
            field,
            format,
            params,
            exact_only: args.exact_only,
            skip_invalid: args.skip_invalid,
            explain: args.explain,
            json: args.json,
        })
    }
}

impl FromArgs<crate::cli::ScoreArgs> for ScoreSettings {
    type Error = UsageError;

    fn from_args(args: crate::cli::ScoreArgs) -> Result<ScoreSettings, UsageError> {
        use evol_core::score::Measure;
        let mut measures = Vec::new();
        if args.difficulty {
            measures.push(Measure::Difficulty);
        }
        if args.deita {
            measures.extend([Measure::Complexity, Measure::Quality]);
        }
        if measures.is_empty() {
            return Err(usage("say what to score: --difficulty, --deita, or both"));
        }
        if !(1..=32).contains(&args.group_size) {
            return Err(usage("--group-size must be between 1 and 32"));
        }
        let field = args.field.parse().map_err(|e: String| usage(format!("--field: {e}")))?;
        let response_field = non_empty("--response-field", &args.response_field)?;
        let group_field = non_empty("--group-field", &Some(args.group_field))?.unwrap_or_default();
        let format = args.format;
        let sampling = sampling("--score-", 0.0, 1.0, args.score_max_tokens)?;
        let model = ModelSettings::from_args(args.models)?;
        let execution = model.execution(args.retry_failed);
        Ok(ScoreSettings {
            input: args.input,
            output: args.output,
            fresh: args.fresh,
            quiet: args.quiet,
            measures,
            field,
            response_field,
            group_field,
            group_size: args.group_size,
            format,
            skip_invalid: args.skip_invalid,
            sampling,
            model,
            execution,
        })
    }
}

impl FromArgs<crate::cli::OptimizeArgs> for OptimizeRunSettings {
    type Error = anyhow::Error;

    fn from_args(args: crate::cli::OptimizeArgs) -> anyhow::Result<OptimizeRunSettings> {
        let mut set = match &args.from {
            Some(path) => read_operator_file(path)?,
            None => OperatorSet::builtin("auto").expect("built in"),
        };
        let auto = OperatorSet::builtin("auto").expect("built in");
        let optimizer = evol_core::optimize::OPTIMIZER_TEMPLATE;
        if !set.templates.contains_key(optimizer) {
            set.templates.insert(optimizer.to_string(), auto.templates[optimizer].clone());
        }
        let from = args.from.as_ref().map_or("the `auto` set".to_string(), |p| format!("`{}`", p.display()));
        let literal = |op: &evol_core::Operation| match op.method.as_ref().and_then(|m| set.templates.get(m)) {
            Some(evol_core::ops::SetTemplate::Literal(text)) => Some((op.clone(), op.method.clone()?, text.clone())),
            _ => None,
        };
        let (operator, method_name, start_method) = set.operations.iter().find_map(literal).ok_or_else(|| {
            usage(format!(
                "--from {from}: no operator has a literal method (`[templates.NAME] literal = ...`) to optimise"
            ))
        })?;
        let enabled = set.operations.select(&operator.name).expect("it exists");
        let templates =
            Templates::new(BTreeMap::new(), &set, &enabled).map_err(|e| anyhow::anyhow!("--from {from}: {e}"))?;
        let bounded = |flag: &str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(usage(format!("--{flag} must be between {low} and {high}")))
            }
        };
        bounded("steps", u64::from(args.steps), 1, 100)?;
        bounded("batch", args.batch as u64, 1, 1000)?;
        bounded("evolutions", u64::from(args.evolutions), 1, 10)?;
        bounded("candidates", u64::from(args.candidates), 1, 20)?;
        bounded("dev", args.dev as u64, 1, 100_000)?;
        let evolve = sampling("", args.temperature, 1.0, args.max_tokens)?;
        let optimizer_sampling = sampling("--optimizer-", args.optimizer_temperature, 1.0, args.optimizer_max_tokens)?;
        let judge = sampling("--judge-", 0.0, 1.0, args.max_tokens)?;
        let model = ModelSettings::from_args(args.models)?;
        if matches!(model.backend, Backend::Embedded(_))
            && (args.answer_model.is_some() || args.judge_model.is_some() || args.optimizer_model.is_some())
        {
            return Err(usage(
                "--optimizer-model, --answer-model and --judge-model need --endpoint (the embedded engine runs one model)",
            )
            .into());
        }
        let models = RoleModels {
            evolve: model.model.clone(),
            judge: non_empty("--judge-model", &args.judge_model)?,
            answer: non_empty("--answer-model", &args.answer_model)?,
            score: None,
            optimize: non_empty("--optimizer-model", &args.optimizer_model)?,
        };
        let format = args.format;
        let execution = model.execution(args.retry_failed);
        let optimize = evol_core::optimize::OptimizeSettings {
            steps: args.steps,
            batch: args.batch,
            evolutions: args.evolutions,
            candidates: args.candidates,
            run_seed: args.seed,
            rules: Rules::default(),
            evolve_sampling: evolve,
            answer_sampling: evolve,
            judge_sampling: judge,
            optimizer_sampling,
            request_seeds: model.request_seeds,
        };
        Ok(OptimizeRunSettings {
            seeds: args.seeds,
            output: args.output,
            fresh: args.fresh,
            quiet: args.quiet,
            format,
            dev: args.dev,
            operation: operator,
            method_name,
            start_method,
            set,
            templates,
            optimize,
            models,
            model,
            execution,
        })
    }
}

fn eval_model(
    mut model: ModelSettings,
    named: Option<(&str, &Option<String>)>,
    retry_failed: bool,
    sampling: Sampling,
    seed: u64,
) -> Result<EvalModel, UsageError> {
    if let Some((flag, value)) = named {
        if let Some(name) = non_empty(flag, value)? {
            if model.model.as_ref().is_some_and(|m| m != &name) {
                return Err(usage(format!("pass {flag} or --model, not both (the command calls one model)")));
            }
            model.model = Some(name);
        }
    }
    let execution = model.execution(retry_failed);
    Ok(EvalModel { model, execution, sampling, seed })
}

impl FromArgs<crate::cli::AnswerArgs> for AnswerSettings {
    type Error = UsageError;

    fn from_args(args: crate::cli::AnswerArgs) -> Result<AnswerSettings, UsageError> {
        let format = args.format;
        let sampling = sampling("", args.temperature, args.top_p, args.max_tokens)?;
        if args.limit == Some(0) {
            return Err(usage("--limit must be at least 1"));
        }
        let name = non_empty("--name", &args.name)?;
        let system = non_empty("--system", &args.system)?;
        let model = ModelSettings::from_args(args.models)?;
        Ok(AnswerSettings {
            testset: args.testset,
            output: args.output,
            fresh: args.fresh,
            quiet: args.quiet,
            format,
            name,
            system,
            limit: args.limit,
            eval: eval_model(model, None, args.retry_failed, sampling, args.seed)?,
        })
    }
}

fn bootstrap_rounds(rounds: usize) -> Result<usize, UsageError> {
    if rounds > 100_000 {
        return Err(usage("--bootstrap must be at most 100000"));
    }
    Ok(rounds)
}

impl FromArgs<crate::cli::JudgeArgs> for JudgeSettings {
    type Error = UsageError;

    fn from_args(args: crate::cli::JudgeArgs) -> Result<JudgeSettings, UsageError> {
        let format = args.format;
        let sampling = sampling("", args.temperature, 1.0, args.max_tokens)?;
        let model = ModelSettings::from_args(args.models)?;
        Ok(JudgeSettings {
            testset: args.testset,
            candidate: args.candidate,
            reference: args.reference,
            output: args.output,
            fresh: args.fresh,
            quiet: args.quiet,
            format,
            both_orders: !args.single_order,
            bootstrap: bootstrap_rounds(args.bootstrap)?,
            eval: eval_model(
                model,
                Some(("--judge-model", &args.judge_model)),
                args.retry_failed,
                sampling,
                args.seed,
            )?,
        })
    }
}

impl FromArgs<crate::cli::ArenaArgs> for ArenaSettings {
    type Error = UsageError;

    fn from_args(args: crate::cli::ArenaArgs) -> Result<ArenaSettings, UsageError> {
        let source = match (args.answers.is_empty(), args.battles.is_empty()) {
            (false, true) => {
                let files: Vec<(Option<String>, PathBuf)> = args
                    .answers
                    .iter()
                    .map(|a| match a.split_once('=') {
                        Some((name, path)) if !name.trim().is_empty() && !Path::new(a).exists() => {
                            (Some(name.trim().to_string()), PathBuf::from(path))
                        }
                        _ => (None, PathBuf::from(a)),
                    })
                    .collect();
                if files.len() < 2 {
                    return Err(usage("--answers needs the answers of at least two models"));
                }
                ArenaSource::Answers(files)
            }
            (true, false) => {
                if args.learn.is_some() {
                    return Err(usage(
                        "--learn needs the answers (--answers): battle logs hold the scores, not the texts",
                    ));
                }
                ArenaSource::Battles(args.battles)
            }
            _ => return Err(usage("pass the models' answers (--answers A B ...) or battle logs (--battles FILE ...)")),
        };
        if args.pairs_per_question == Some(0) {
            return Err(usage("--pairs-per-question must be at least 1"));
        }
        let anchor = args
            .anchor
            .as_deref()
            .map(|a| {
                let (model, rating) =
                    a.rsplit_once('=').ok_or_else(|| usage("--anchor takes MODEL=RATING, e.g. gpt-4=1200"))?;
                let rating: f64 = rating
                    .trim()
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite())
                    .ok_or_else(|| usage(format!("--anchor: `{rating}` is not a rating")))?;
                Ok::<_, UsageError>((model.trim().to_string(), rating))
            })
            .transpose()?;
        if !(args.min_margin.is_finite() && args.min_margin >= 0.0) {
            return Err(usage("--min-margin must be a number of at least 0"));
        }
        let learn = match (non_empty("--target", &args.target)?, args.learn) {
            (Some(target), Some(dir)) => Some((target, dir)),
            _ => None,
        };
        let sampling = sampling("", args.temperature, 1.0, args.max_tokens)?;
        let model = ModelSettings::from_args(args.models)?;
        Ok(ArenaSettings {
            source,
            output: args.output,
            fresh: args.fresh,
            quiet: args.quiet,
            pairs_per_question: args.pairs_per_question,
            bootstrap: bootstrap_rounds(args.bootstrap)?,
            anchor,
            style_control: args.style_control,
            learn,
            min_margin: args.min_margin,
            eval: eval_model(
                model,
                Some(("--judge-model", &args.judge_model)),
                args.retry_failed,
                sampling,
                args.seed,
            )?,
        })
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

impl FromArgs<crate::cli::SelectArgs> for SelectSettings {
    type Error = UsageError;

    fn from_args(args: crate::cli::SelectArgs) -> Result<SelectSettings, UsageError> {
        let by: Vec<String> = args.by.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if by.is_empty() {
            return Err(usage("--by names no field"));
        }
        if args.budget == 0 {
            return Err(usage("--budget must be at least 1"));
        }
        if !(args.threshold.is_finite() && (-1.0..=1.0).contains(&args.threshold)) {
            return Err(usage("--threshold must be a cosine similarity, from -1 to 1"));
        }
        if !(1..=2048).contains(&args.embed_batch) {
            return Err(usage("--embed-batch must be between 1 and 2048"));
        }
        let field = args.field.parse().map_err(|e: String| usage(format!("--field: {e}")))?;
        let format = args.format;
        let embeddings = match (args.embed_endpoint, args.embed_model) {
            (None, None) => Embeddings::Lexical,
            (Some(_), None) => return Err(usage("--embed-endpoint needs --embed-model")),
            (Some(url), Some(model)) => {
                evol_openai::parse_base_url(&url).map_err(|e| usage(format!("--embed-endpoint: {e}")))?;
                let api_key = std::env::var(&args.api_key_env).ok().filter(|k| !k.trim().is_empty());
                Embeddings::Server { url, model, api_key }
            }
            (None, Some(name)) => Embeddings::Local { name },
        };
        Ok(SelectSettings {
            input: args.input,
            output: args.output,
            fresh: args.fresh,
            quiet: args.quiet,
            budget: args.budget,
            by,
            threshold: args.threshold,
            embeddings,
            embed_batch: args.embed_batch,
            field,
            format,
        })
    }
}

impl FromArgs<crate::cli::ExportArgs> for ExportSettings {
    type Error = UsageError;

    fn from_args(args: crate::cli::ExportArgs) -> Result<ExportSettings, UsageError> {
        if args.max_file_mb == 0 {
            return Err(usage("--max-file-mb must be at least 1"));
        }
        Ok(ExportSettings {
            output: args.output,
            to: args.to,
            format: args.format,
            plain: args.plain,
            drop_truncated: args.drop_truncated,
            max_file_bytes: args.max_file_mb.saturating_mul(1 << 20),
        })
    }
}

/// `kept.jsonl` -> `kept.clusters.jsonl`; an output of another extension
/// keeps it in the name (`kept.json` -> `kept.json.clusters.jsonl`), so two
/// outputs that differ only in extension never share a clusters file.
fn default_clusters(output: &Path) -> PathBuf {
    let name = match output.extension().and_then(|e| e.to_str()) {
        Some("jsonl") | None => output.file_stem().unwrap_or_default().to_string_lossy().into_owned(),
        Some(_) => output.file_name().unwrap_or_default().to_string_lossy().into_owned(),
    };
    output.with_file_name(format!("{name}.clusters.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_differing_in_extension_get_their_own_clusters_file() {
        assert_eq!(default_clusters(Path::new("d/kept.jsonl")), Path::new("d/kept.clusters.jsonl"));
        assert_eq!(default_clusters(Path::new("d/kept.json")), Path::new("d/kept.json.clusters.jsonl"));
        assert_eq!(default_clusters(Path::new("kept")), Path::new("kept.clusters.jsonl"));
    }

    /// The method of `evol run s.jsonl -o o EXTRA...`, if those flags are
    /// accepted.
    fn method(extra: &[String]) -> Option<serde_json::Value> {
        use clap::Parser;
        let words = ["evol", "run", "s.jsonl", "-o", "o"].iter().map(|w| w.to_string()).chain(extra.iter().cloned());
        let cli = crate::cli::Cli::try_parse_from(words).ok()?;
        let crate::cli::Command::Run(args) = cli.command else { return None };
        let settings = RunSettings::from_args(*args).ok()?;
        Some(serde_json::to_value(&settings.method).unwrap())
    }

    #[test]
    fn every_flag_that_shapes_the_method_is_listed_with_its_setting() {
        use clap::CommandFactory;
        let default = method(&[]).unwrap();
        let scored = method(&["--score-difficulty".into()]).unwrap();
        for key in scored.as_object().unwrap().keys() {
            assert!(METHOD_FLAGS.iter().any(|(k, _)| k == key), "the setting `{key}` has no flags listed");
        }
        let command = crate::cli::Cli::command();
        let run = command.find_subcommand("run").unwrap();
        let ids: Vec<&str> = run.get_arguments().map(|a| a.get_id().as_str()).collect();
        for flag in METHOD_FLAGS.iter().flat_map(|(_, flags)| flags.iter()) {
            assert!(ids.contains(flag), "`{flag}` is not a flag of `evol run`");
        }
        // A flag not listed leaves the method as it is, whatever its value.
        let listed = |id: &str| METHOD_FLAGS.iter().any(|(_, flags)| flags.contains(&id));
        for arg in run.get_arguments().filter(|a| !a.is_positional() && !listed(a.get_id().as_str())) {
            let Some(long) = arg.get_long() else { continue };
            let tries: Vec<Vec<String>> = if arg.get_action().takes_values() {
                ["3", "0.5", "7", "alpaca", "jsonl", "text"]
                    .iter()
                    .map(|v| vec![format!("--{long}"), v.to_string()])
                    .collect()
            } else {
                vec![vec![format!("--{long}")]]
            };
            for extra in tries {
                if let Some(changed) = method(&extra) {
                    assert_eq!(changed, default, "{extra:?} changes the method: list it in METHOD_FLAGS");
                }
            }
        }
    }

    #[test]
    fn a_setting_is_defaulted_only_when_none_of_its_flags_is_given() {
        let defaulted = defaulted_method_settings(&["temperature".into(), "no_dedup".into()]);
        assert!(!defaulted.contains("evolve_sampling") && !defaulted.contains("answer_sampling"));
        assert!(!defaulted.contains("dedup"));
        assert!(defaulted.contains("rounds") && defaulted.contains("judge_sampling"));
    }
}
