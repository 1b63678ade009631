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

use crate::cli::{EngineArgs, ModelArgs, RunArgs};

/// A mistake in how `evol` was called.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// A usage error for a command that checks its own flags.
pub fn usage_error(message: impl Into<String>) -> anyhow::Error {
    usage(message).into()
}

/// One server of a run, from `--endpoint` or a `--config` file.
/// (No `Debug`: it holds the key.)
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub url: String,
    /// The served model name (default: `--model`, or the server's only one).
    pub model: Option<String>,
    /// The environment variable holding this server's key (default:
    /// `--api-key-env`).
    pub api_key_env: Option<String>,
    /// Share of the load relative to the other servers.
    #[serde(default = "one")]
    pub weight: f64,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    /// This server's concurrency ceiling (default: `--concurrency`).
    pub max_concurrency: Option<usize>,
    /// The key, read from the environment (never printed).
    #[serde(skip)]
    pub api_key: Option<String>,
}

fn one() -> f64 {
    1.0
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

/// Where a run's models live.
pub enum Backend {
    /// The embedded llama.cpp engine.
    Embedded(EngineSettings),
    /// OpenAI-compatible servers.
    Servers(Servers),
}

impl Backend {
    /// The servers, if the models live on servers.
    pub fn servers(&self) -> Option<&Servers> {
        match self {
            Backend::Servers(s) => Some(s),
            Backend::Embedded(_) => None,
        }
    }

    /// How long a command waits with no server answering before it stops
    /// (`--stall-timeout`; never, for the embedded engine).
    pub fn stall_after(&self) -> std::time::Duration {
        self.servers().map_or(std::time::Duration::MAX, |s| s.stall_timeout)
    }
}

/// The servers of a run and how to talk to them.
pub struct Servers {
    pub endpoints: Vec<Endpoint>,
    pub api_key_env: String,
    /// Adapt each server's concurrency to its health.
    pub adaptive: bool,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Stop when nothing has succeeded for this long while calls fail.
    pub stall_timeout: Duration,
    /// Send calls as provider batches (one server).
    pub batch: Option<evol_openai::BatchSettings>,
}

/// The model each role asks for (none: the server's only model, or the
/// embedded engine's default).
#[derive(Debug, Clone, Default)]
pub struct RoleModels {
    pub evolve: Option<String>,
    pub judge: Option<String>,
    pub answer: Option<String>,
    pub score: Option<String>,
    pub optimize: Option<String>,
}

/// The settings that may change between attempts of one run: how fast and
/// how far it goes, never what it produces. Recorded in `stats.json` as
/// used.
pub struct Execution {
    /// The most calls in flight on each server (its `max_concurrency` in a
    /// config file overrides it); with the embedded engine, in all.
    pub concurrency: usize,
    /// Send again the calls the journal holds as failed or cut short.
    pub retry_failed: bool,
    pub caps: Caps,
    /// Prices by model name, from the config file.
    pub prices: Prices,
    /// The price of models not in `prices`, from the flags.
    pub default_price: Option<Price>,
}

/// What `evol run` will do, validated: the raw flags are consumed here and
/// nothing past this point sees them.
pub struct RunSettings {
    pub seeds: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
    pub dry_run: bool,
    pub quiet: bool,
    /// The dataset includes the seeds (answered, unless answering is off).
    pub include_seeds: bool,
    pub ingest: IngestOptions,
    pub method: Method,
    pub templates: Templates,
    pub models: RoleModels,
    pub backend: Backend,
    pub execution: Execution,
}

impl RunSettings {
    /// Consumes the flags (and reads the `--config` and `--templates`
    /// files they name). A mistake in the flags or the config is a
    /// [`UsageError`]; templates that do not load are a plain error.
    pub fn from_args(args: RunArgs) -> anyhow::Result<RunSettings> {
        let dir = args.templates.clone();
        let ops_file = args.ops_file.clone();
        let file = ops_file.as_deref().map(read_operator_file).transpose()?;
        let (set, operations) =
            OperatorSet::choose(&args.ops, file).map_err(|e| usage(format!("--ops {}: {e}", args.ops)))?;
        let mut settings = RunSettings::validate(args, operations)?;
        settings.templates =
            load_templates(dir.as_deref(), &set, &settings.method.operations).map_err(|e| match &ops_file {
                Some(path) => anyhow::anyhow!("the operator file `{}`: {e:#}", path.display()),
                None => e,
            })?;
        Ok(settings)
    }

    fn validate(args: RunArgs, operations: OperationSet) -> Result<RunSettings, UsageError> {
        if !(1..=MAX_ROUNDS).contains(&args.rounds) {
            return Err(usage(format!("--rounds must be between 1 and {MAX_ROUNDS}")));
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
            .then(|| {
                sampling("--score-", 0.0, 1.0, args.score_max_tokens.or(args.judge_max_tokens).unwrap_or(max_tokens))
            })
            .transpose()?;
        let shard =
            args.shard.as_deref().map(|s| s.parse::<Shard>().map_err(|e| usage(format!("--shard {e}")))).transpose()?;
        let format = args.format.parse().map_err(usage)?;
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
        })
    }

    /// The servers, if the run uses servers.
    pub fn servers(&self) -> Option<&Servers> {
        self.backend.servers()
    }
}

/// A flag's text, trimmed; an empty one is a mistake.
fn non_empty(flag: &str, v: &Option<String>) -> Result<Option<String>, UsageError> {
    match v.as_deref().map(str::trim) {
        Some("") => Err(usage(format!("{flag} must not be empty"))),
        other => Ok(other.map(String::from)),
    }
}

/// The model flags every command that calls models shares, validated:
/// where the models are, how to call them, and what may be spent.
pub struct ModelSettings {
    pub backend: Backend,
    /// The model asked for with `--model` (none: the server's only model,
    /// or the embedded engine's default).
    pub model: Option<String>,
    pub concurrency: usize,
    pub caps: Caps,
    pub prices: Prices,
    pub default_price: Option<Price>,
    pub request_seeds: bool,
}

impl ModelSettings {
    /// The execution settings these model settings give an attempt.
    pub fn execution(&self, retry_failed: bool) -> Execution {
        Execution {
            concurrency: self.concurrency,
            retry_failed,
            caps: self.caps,
            prices: self.prices.clone(),
            default_price: self.default_price,
        }
    }

    pub fn from_args(args: ModelArgs) -> Result<ModelSettings, UsageError> {
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

/// The embedded engine's settings, validated.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "embedded"), allow(dead_code))]
pub struct EngineSettings {
    pub model_path: Option<PathBuf>,
    pub chat_template: Option<String>,
    pub threads: Option<u32>,
    pub ctx_size: u32,
    pub parallel: u32,
    pub batch_size: u32,
    pub prefix_cache: bool,
    #[cfg(feature = "embedded")]
    pub kv_cache: evol_llama::KvCache,
}

impl EngineSettings {
    pub fn from_args(args: EngineArgs) -> Result<EngineSettings, UsageError> {
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
    let text = std::fs::read_to_string(path)
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

impl Execution {
    /// The price table for the models a run uses: the config's entries, and
    /// the flags' price for the others.
    pub fn prices_for(&self, models: &[&str]) -> Prices {
        let mut prices = self.prices.clone();
        if let Some(price) = self.default_price {
            for m in models {
                prices.0.entry(m.to_string()).or_insert(price);
            }
        }
        prices
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
        let text =
            std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
        overrides.insert(name, text);
    }
    Templates::new(overrides, set, enabled)
        .map_err(|e| anyhow::anyhow!("templates in `{}` with the operator set `{}`: {e}", dir.display(), set.name))
}

/// Reads an operator file (`--ops-file`): a mistake names the file, the
/// operator and the field.
pub fn read_operator_file(path: &Path) -> anyhow::Result<OperatorSet> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the operator file `{}`: {e}", path.display()))?;
    OperatorSet::parse(&text).map_err(|e| anyhow::anyhow!("the operator file `{}`: {e}", path.display()))
}

/// Near-duplicate settings from their flags (`flag` names them in errors).
pub fn dedup_params(args: &crate::cli::DedupParamArgs, flag: &str) -> Result<evol_dedup::Params, UsageError> {
    let params =
        evol_dedup::Params { shingle: args.shingle, hashes: args.hashes, bands: args.bands, threshold: args.threshold };
    params.validate().map_err(|e| usage(format!("{flag}: {e}")))
}

/// `evol dedup`'s settings, validated.
#[derive(Debug)]
pub struct DedupSettings {
    /// The input and where its kept rows and clusters go; none with only
    /// `--explain`.
    pub files: Option<DedupFiles>,
    pub against: Vec<PathBuf>,
    pub field: evol_io::TextField,
    pub format: evol_io::SeedFormat,
    pub params: evol_dedup::Params,
    pub exact_only: bool,
    pub skip_invalid: bool,
    pub explain: bool,
    /// The summary as JSON on stdout.
    pub json: bool,
}

#[derive(Debug)]
pub struct DedupFiles {
    pub input: PathBuf,
    pub output: PathBuf,
    pub clusters: PathBuf,
}

impl DedupSettings {
    pub fn from_args(args: crate::cli::DedupArgs) -> Result<DedupSettings, UsageError> {
        let params = dedup_params(&args.params, "near duplicates")?;
        let field = args.field.parse().map_err(|e: String| usage(format!("--field: {e}")))?;
        let format = args.format.parse().map_err(|e: String| usage(format!("--format: {e}")))?;
        let files = match (args.input, args.output) {
            (Some(input), Some(output)) => {
                let clusters = args.clusters.unwrap_or_else(|| {
                    let stem = output.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                    output.with_file_name(format!("{stem}.clusters.jsonl"))
                });
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

/// `evol score`'s settings, validated.
pub struct ScoreSettings {
    pub input: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
    pub quiet: bool,
    pub measures: Vec<evol_core::score::Measure>,
    pub field: evol_io::TextField,
    pub response_field: Option<String>,
    pub group_field: String,
    pub group_size: usize,
    pub format: evol_io::SeedFormat,
    pub skip_invalid: bool,
    pub sampling: Sampling,
    pub model: ModelSettings,
    pub execution: Execution,
}

impl ScoreSettings {
    pub fn from_args(args: crate::cli::ScoreArgs) -> Result<ScoreSettings, UsageError> {
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
        let format = args.format.parse().map_err(|e: String| usage(format!("--format: {e}")))?;
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

/// `evol optimize`'s settings, validated.
pub struct OptimizeRunSettings {
    pub seeds: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
    pub quiet: bool,
    pub format: evol_io::SeedFormat,
    pub dev: usize,
    /// The set the method comes from, the operator whose literal method
    /// is optimised, that method's template name and its text.
    pub set: OperatorSet,
    pub operation: evol_core::Operation,
    pub method_name: String,
    pub start_method: String,
    pub templates: Templates,
    pub optimize: evol_core::optimize::OptimizeSettings,
    pub models: RoleModels,
    pub model: ModelSettings,
    pub execution: Execution,
}

impl OptimizeRunSettings {
    pub fn from_args(args: crate::cli::OptimizeArgs) -> anyhow::Result<OptimizeRunSettings> {
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
        let format = args.format.parse().map_err(|e: String| usage(format!("--format: {e}")))?;
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

/// The model of an evaluation command (`evol answer`, `judge`, `arena`):
/// the one model it calls and how to reach it.
pub struct EvalModel {
    pub model: ModelSettings,
    pub execution: Execution,
    pub sampling: Sampling,
    /// The run seed of the request seeds (and the bootstrap).
    pub seed: u64,
}

impl EvalModel {
    fn new(
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
}

/// `evol answer`'s settings.
pub struct AnswerSettings {
    pub testset: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
    pub quiet: bool,
    pub format: evol_io::SeedFormat,
    pub name: Option<String>,
    pub system: Option<String>,
    pub limit: Option<usize>,
    pub eval: EvalModel,
}

impl AnswerSettings {
    pub fn from_args(args: crate::cli::AnswerArgs) -> Result<AnswerSettings, UsageError> {
        let format = args.format.parse().map_err(|e: String| usage(format!("--format: {e}")))?;
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
            eval: EvalModel::new(model, None, args.retry_failed, sampling, args.seed)?,
        })
    }
}

/// `evol judge`'s settings.
pub struct JudgeSettings {
    pub testset: PathBuf,
    pub candidate: PathBuf,
    pub reference: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
    pub quiet: bool,
    pub format: evol_io::SeedFormat,
    pub both_orders: bool,
    pub bootstrap: usize,
    pub eval: EvalModel,
}

fn bootstrap_rounds(rounds: usize) -> Result<usize, UsageError> {
    if rounds > 100_000 {
        return Err(usage("--bootstrap must be at most 100000"));
    }
    Ok(rounds)
}

impl JudgeSettings {
    pub fn from_args(args: crate::cli::JudgeArgs) -> Result<JudgeSettings, UsageError> {
        let format = args.format.parse().map_err(|e: String| usage(format!("--format: {e}")))?;
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
            eval: EvalModel::new(
                model,
                Some(("--judge-model", &args.judge_model)),
                args.retry_failed,
                sampling,
                args.seed,
            )?,
        })
    }
}

/// Where an arena's games come from.
pub enum ArenaSource {
    /// Answers files, each with the name it goes under (none: the rows').
    Answers(Vec<(Option<String>, PathBuf)>),
    /// Battle logs to refit, calling no model.
    Battles(Vec<PathBuf>),
}

/// `evol arena`'s settings.
pub struct ArenaSettings {
    pub source: ArenaSource,
    pub output: PathBuf,
    pub fresh: bool,
    pub quiet: bool,
    pub pairs_per_question: Option<usize>,
    pub bootstrap: usize,
    pub anchor: Option<(String, f64)>,
    pub style_control: bool,
    /// Arena Learning: the target and the directory of its data.
    pub learn: Option<(String, PathBuf)>,
    pub min_margin: f64,
    pub eval: EvalModel,
}

impl ArenaSettings {
    pub fn from_args(args: crate::cli::ArenaArgs) -> Result<ArenaSettings, UsageError> {
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
            eval: EvalModel::new(
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
