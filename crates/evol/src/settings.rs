//! The settings of every job, validated: plain values a program builds
//! (the `evol` binary builds them from its flags) and hands to a job. A
//! job trusts them: whatever could be wrong in them was refused when they
//! were made.

use std::path::PathBuf;
use std::time::Duration;

use evol_core::cost::{Caps, Price, Prices};
use evol_core::{Method, OperatorSet, Templates};
use evol_llm::Sampling;
use evol_openai::RetryPolicy;
use evol_store::ingest::IngestOptions;

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
    /// The dataset includes the seeds (answered, unless answering is off).
    pub include_seeds: bool,
    pub ingest: IngestOptions,
    pub method: Method,
    pub templates: Templates,
    pub models: RoleModels,
    pub backend: Backend,
    pub execution: Execution,
    /// The command line's words after `evol` (`run SEEDS -o OUT ...`), for
    /// the dataset card's "make it again"; empty when a program runs the
    /// job.
    pub command: Vec<String>,
    /// The method settings (by their names in `stats.json`) left at their
    /// defaults: a resume takes the earlier run's value of these, so a run
    /// begun by an older evol, or before a default changed, resumes with
    /// the same command line. Empty: every setting is compared.
    pub defaulted: std::collections::BTreeSet<String>,
    /// Benchmarks whose items evolutions must not overlap (none: no check),
    /// and the run of words that makes an overlap.
    pub benchmarks: Vec<PathBuf>,
    pub benchmark_ngram: usize,
    /// A directory of refusal phrases (`CODE.txt`) for the sorry rule, with
    /// the built-in ones or, with `refusals_replace`, instead of them.
    pub refusals: Option<PathBuf>,
    pub refusals_replace: bool,
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
    /// How a reasoning model is asked to think (every role, unless a
    /// command sets a role's own).
    pub thinking: evol_llm::Thinking,
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
}

#[derive(Debug)]
pub struct DedupFiles {
    pub input: PathBuf,
    pub output: PathBuf,
    pub clusters: PathBuf,
}

/// `evol decontaminate`'s settings, validated.
#[derive(Debug)]
pub struct DecontaminateSettings {
    pub input: PathBuf,
    /// Where the rows kept go.
    pub output: PathBuf,
    /// Where the rows left out are listed.
    pub contaminated: PathBuf,
    /// The benchmark files (any test set `evol answer` reads).
    pub benchmarks: Vec<PathBuf>,
    /// The run length, in words.
    pub ngram: usize,
    pub field: evol_io::TextField,
    pub format: evol_io::SeedFormat,
}

/// `evol score`'s settings, validated.
pub struct ScoreSettings {
    pub input: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
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

/// `evol optimize`'s settings, validated.
pub struct OptimizeRunSettings {
    pub seeds: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
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

/// The model of an evaluation command (`evol answer`, `judge`, `arena`):
/// the one model it calls and how to reach it.
pub struct EvalModel {
    pub model: ModelSettings,
    pub execution: Execution,
    pub sampling: Sampling,
    /// The run seed of the request seeds (and the bootstrap).
    pub seed: u64,
}

/// `evol magpie`'s settings.
pub struct MagpieSettings {
    pub output: PathBuf,
    pub fresh: bool,
    /// Generations to ask for (each its own call and request seed).
    pub count: u64,
    pub eval: EvalModel,
    /// What opens the user's turn the model continues.
    pub opening: Opening,
    /// The system message before the turn (what steers the topic, the
    /// persona or the language).
    pub system: Option<String>,
    /// The near-duplicate check; `None`: exact duplicates only.
    pub dedup: Option<evol_dedup::Params>,
    /// Generations of fewer words are left out (`too_short`).
    pub min_words: usize,
}

/// What opens a user's turn for `evol magpie` to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// The model's own chat template (the embedded engine owns it).
    Own,
    /// A known template family's opening (a server's model).
    Family(TemplateFamily),
    /// This text as it is, `{system}` in it replaced by the system message.
    Text(String),
}

impl Opening {
    /// How the opening is recorded in a job's identity.
    pub fn identity(&self) -> serde_json::Value {
        match self {
            Opening::Own => serde_json::json!("own"),
            Opening::Family(family) => serde_json::json!({ "family": family.name() }),
            Opening::Text(text) => serde_json::json!({ "text": text }),
        }
    }
}

/// Chat-template families whose user-turn opening is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateFamily {
    /// `<|im_start|>user` (Qwen, SmolLM, many others).
    ChatMl,
    Llama3,
    Gemma,
    Phi3,
    Mistral,
}

/// `evol answer`'s settings.
pub struct AnswerSettings {
    pub testset: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
    pub format: evol_io::SeedFormat,
    pub name: Option<String>,
    pub system: Option<String>,
    pub limit: Option<usize>,
    pub eval: EvalModel,
    /// Answers sampled per question (each its own request seed); with more
    /// than one, each is checked against the question's reference answer
    /// when there is one.
    pub samples: u32,
    /// The test set's field holding the reference answer.
    pub reference_field: Option<String>,
    /// Which answer a row keeps (among the correct ones, with a reference).
    pub pick: Pick,
    /// With [`Pick::Score`]: the model that ranks the answers (`None`: the
    /// answering model itself).
    pub judge_model: Option<String>,
}

impl AnswerSettings {
    /// Answers to the test set at `testset`, written to `output`, by the
    /// model of `eval`: one answer a question, no system message, every
    /// question, the container found by extension or content.
    pub fn new(testset: PathBuf, output: PathBuf, eval: EvalModel) -> AnswerSettings {
        AnswerSettings {
            testset,
            output,
            fresh: false,
            format: evol_io::SeedFormat::Auto,
            name: None,
            system: None,
            limit: None,
            eval,
            samples: 1,
            reference_field: None,
            pick: Pick::First,
            judge_model: None,
        }
    }
}

/// Which of a question's K answers its row keeps (see [`evol_core::best_of`]).
pub use evol_core::best_of::Pick;

/// `evol judge`'s settings.
pub struct JudgeSettings {
    pub testset: PathBuf,
    pub candidate: PathBuf,
    pub reference: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
    pub format: evol_io::SeedFormat,
    pub both_orders: bool,
    pub bootstrap: usize,
    pub eval: EvalModel,
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
    pub pairs_per_question: Option<usize>,
    pub bootstrap: usize,
    pub anchor: Option<(String, f64)>,
    pub style_control: bool,
    /// Arena Learning: the target and the directory of its data.
    pub learn: Option<(String, PathBuf)>,
    pub min_margin: f64,
    pub eval: EvalModel,
}

impl RunSettings {
    /// The servers, if the run uses servers.
    pub fn servers(&self) -> Option<&Servers> {
        self.backend.servers()
    }
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
}

/// Where `evol select` takes its vectors from.
pub enum Embeddings {
    /// Hashed TF-IDF of words and word pairs (no model).
    Lexical,
    /// A server's `/v1/embeddings`. (No `Debug`: it holds the key.)
    Server { url: String, model: String, api_key: Option<String> },
    /// A static embedding model of the catalogue, run in-process.
    Local { name: String },
}

/// `evol select`'s settings, validated.
pub struct SelectSettings {
    pub input: PathBuf,
    pub output: PathBuf,
    pub fresh: bool,
    /// How many rows to take.
    pub budget: usize,
    /// The score: the product of these numeric fields.
    pub by: Vec<String>,
    /// The most cosine similarity a row may have to a row taken.
    pub threshold: f32,
    pub embeddings: Embeddings,
    /// Texts per embeddings request.
    pub embed_batch: usize,
    /// Embedding requests in flight at once.
    pub concurrency: usize,
    /// Caps on the embedding requests (and the tokens they read).
    pub caps: evol_core::cost::Caps,
    pub field: evol_io::TextField,
    pub format: evol_io::SeedFormat,
}

impl Endpoint {
    /// A server at `url` with the defaults a `--config` entry has: weight
    /// 1, the command's limits, no model or key of its own.
    pub fn at(url: &str) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            model: None,
            api_key_env: None,
            weight: 1.0,
            rpm: None,
            tpm: None,
            max_concurrency: None,
            api_key: None,
        }
    }
}

impl Servers {
    /// OpenAI-compatible servers at `urls` (each ending in `/v1`), with the
    /// `evol` binary's defaults: adaptive concurrency, a 600 s timeout, six
    /// retries, a stall after 180 s; keys from `OPENAI_API_KEY`.
    pub fn at(urls: &[&str]) -> Servers {
        let endpoints = urls
            .iter()
            .map(|url| Endpoint {
                api_key: std::env::var("OPENAI_API_KEY").ok().filter(|k| !k.trim().is_empty()),
                ..Endpoint::at(url)
            })
            .collect();
        Servers {
            endpoints,
            api_key_env: "OPENAI_API_KEY".to_string(),
            adaptive: true,
            timeout: Duration::from_secs(600),
            retry: RetryPolicy { max_retries: 6, max_retry_after: Duration::from_secs(120), ..RetryPolicy::default() },
            stall_timeout: Duration::from_secs(180),
            batch: None,
        }
    }
}

impl ModelSettings {
    /// `model` (none: the server's only one, or the embedded engine's
    /// default) on `backend`, 64 calls in flight, no cap and no prices.
    pub fn new(backend: Backend, model: Option<&str>) -> ModelSettings {
        ModelSettings {
            backend,
            model: model.map(String::from),
            concurrency: 64,
            caps: Caps::default(),
            prices: Prices::default(),
            default_price: None,
            request_seeds: true,
            thinking: Default::default(),
        }
    }
}

impl EvalModel {
    /// The one model of an evaluation job, sampled with `sampling`, its
    /// request seeds drawn from `seed`.
    pub fn new(model: ModelSettings, sampling: Sampling, seed: u64) -> EvalModel {
        let execution = model.execution(false);
        EvalModel { model, execution, sampling, seed }
    }
}

/// A layout `evol export --to` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Alpaca,
    ShareGpt,
    Messages,
    Jsonl,
    /// Preference pairs in TRL's layout (an `evol arena --learn` directory).
    Dpo,
}

impl ExportFormat {
    pub const NAMES: [&'static str; 5] = ["alpaca", "sharegpt", "messages", "jsonl", "dpo"];

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Alpaca => "alpaca",
            ExportFormat::ShareGpt => "sharegpt",
            ExportFormat::Messages => "messages",
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Dpo => "dpo",
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<ExportFormat, String> {
        match s {
            "alpaca" => Ok(ExportFormat::Alpaca),
            "sharegpt" => Ok(ExportFormat::ShareGpt),
            "messages" => Ok(ExportFormat::Messages),
            "jsonl" => Ok(ExportFormat::Jsonl),
            "dpo" => Ok(ExportFormat::Dpo),
            other => Err(format!("`{other}` is not a layout ({})", ExportFormat::NAMES.join(", "))),
        }
    }
}

/// Where an export puts a reasoning model's thinking trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceExport {
    /// Left out.
    #[default]
    None,
    /// In the assistant's text, `<think>\n...\n</think>\n\n` before the
    /// answer (as open-r1 and OpenThoughts publish).
    Inline,
    /// In its own column, `reasoning_content`.
    Field,
}

impl TraceExport {
    pub const NAMES: [&'static str; 3] = ["none", "inline", "field"];

    pub fn name(self) -> &'static str {
        match self {
            TraceExport::None => "none",
            TraceExport::Inline => "inline",
            TraceExport::Field => "field",
        }
    }
}

impl std::str::FromStr for TraceExport {
    type Err = String;

    fn from_str(s: &str) -> Result<TraceExport, String> {
        match s {
            "none" => Ok(TraceExport::None),
            "inline" => Ok(TraceExport::Inline),
            "field" => Ok(TraceExport::Field),
            other => Err(format!("`{other}` is not a place for traces ({})", TraceExport::NAMES.join(", "))),
        }
    }
}

/// `evol export`'s settings.
pub struct ExportSettings {
    /// A run's directory, a dataset file (or `evol score` / `evol select`
    /// output), or an `evol arena --learn` directory.
    pub output: PathBuf,
    /// Where to write the rows in `format` (none: only the run's own files
    /// are rewritten from its journal).
    pub to: Option<PathBuf>,
    pub format: ExportFormat,
    /// No lineage or score columns.
    pub plain: bool,
    /// Leave out rows whose answer was cut off by the token limit.
    pub drop_truncated: bool,
    /// Where the answers' thinking traces go.
    pub reasoning: TraceExport,
    /// The most bytes a file of a dataset directory holds.
    pub max_file_bytes: u64,
}

/// `evol merge`'s settings.
pub struct MergeSettings {
    /// The shards' directories (journals or exports).
    pub shards: Vec<PathBuf>,
    /// A new directory for the merged run.
    pub output: PathBuf,
}

/// `evol report`'s settings.
pub struct ReportSettings {
    /// One run's directory, and any `evol judge` and `evol arena` outputs.
    pub dirs: Vec<PathBuf>,
    /// The HTML file to write.
    pub output: PathBuf,
}
