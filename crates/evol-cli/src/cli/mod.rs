//! The command line as typed: raw flags, before validation, one file per
//! command family; the flags every family shares are defined here once.

mod curate;
mod eval;
mod output;
mod run;
mod tools;

pub use curate::*;
pub use eval::*;
pub use output::*;
pub use run::*;
pub use tools::*;

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

/// The containers a dataset input may be, as choices `--help` lists (with
/// the aliases `evol_io::SeedFormat` reads).
fn seed_format() -> impl TypedValueParser<Value = evol_io::SeedFormat> {
    PossibleValuesParser::new([
        PossibleValue::new("auto"),
        PossibleValue::new("jsonl").alias("ndjson"),
        PossibleValue::new("json").alias("alpaca"),
        PossibleValue::new("csv"),
        PossibleValue::new("tsv"),
        PossibleValue::new("parquet"),
        PossibleValue::new("text").alias("txt"),
    ])
    .map(|s| s.parse().expect("every listed container is read"))
}

/// The layouts `evol export --to` writes, as choices `--help` lists.
fn export_format() -> impl TypedValueParser<Value = evol::settings::ExportFormat> {
    PossibleValuesParser::new(evol::settings::ExportFormat::NAMES)
        .map(|s| s.parse().expect("every listed layout is written"))
}

/// `on` or `off`.
pub(crate) fn on_off() -> impl TypedValueParser<Value = bool> {
    PossibleValuesParser::new(["on", "off"]).map(|s| s == "on")
}

/// A reasoning effort, as choices `--help` lists.
pub(crate) fn effort() -> impl TypedValueParser<Value = evol_llm::Effort> {
    PossibleValuesParser::new(evol_llm::Effort::NAMES).map(|s| s.parse().expect("every listed effort is read"))
}

/// How the kept answer of K is picked, as choices `--help` lists.
pub(crate) fn pick() -> impl TypedValueParser<Value = evol_core::best_of::Pick> {
    PossibleValuesParser::new(evol_core::best_of::Pick::NAMES)
        .map(|s| evol_core::best_of::Pick::parse(&s).expect("every listed pick is read"))
}

/// Where `evol export` puts thinking traces, as choices `--help` lists.
fn trace_export() -> impl TypedValueParser<Value = evol::settings::TraceExport> {
    PossibleValuesParser::new(evol::settings::TraceExport::NAMES)
        .map(|s| s.parse().expect("every listed place is written"))
}

/// Turn simple seed instructions into a larger, harder, more diverse
/// instruction dataset with Evol-Instruct (WizardLM).
#[derive(Parser, Debug)]
#[command(name = "evol", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evolve seed instructions through rounds, filter failed evolutions,
    /// answer what survives, and write the dataset.
    #[command(long_about = RUN_ABOUT, after_help = "Examples:\n  evol run seeds.jsonl -o out                       # the embedded default model\n  evol run seeds.jsonl -o out --rounds 4 --endpoint http://localhost:8000/v1 --model qwen\n  evol run seeds.parquet -o out --instruction-field question --config servers.toml\n  evol run seeds.jsonl -o out --ops code --max-cost 5 --dry-run")]
    Run(Box<RunArgs>),
    /// Instructions from no seeds (Magpie): an aligned model writes the
    /// user's message from the opening of a user's turn; deduplicated,
    /// ready to evolve with `evol run`.
    #[command(long_about = MAGPIE_ABOUT, after_help = "Examples:\n  evol magpie -o generated --count 200                 # the embedded default model\n  evol magpie -o generated --topic \"tide tables\" --language hi --endpoint http://localhost:8000/v1 --template-family chatml\n  evol run generated/instructions.jsonl -o out")]
    #[command(mut_arg("model", |a| a.help("Model that writes the instructions: an aligned (instruction-tuned) model. With --endpoint: the served name (default: the server's only model). Without: a model from `evol models list` (default: smollm2-135m-instruct, pulled on first use).")))]
    Magpie(Box<MagpieArgs>),
    /// Serve the embedded engine as an OpenAI-compatible HTTP server.
    ///
    /// POST /v1/chat/completions (plain, or `stream: true` as server-sent
    /// events), GET /v1/models, GET /health (status, and what the engine has
    /// done: steps, batch fill, tokens, time). Every client shares the one
    /// continuous batch. Bad requests get OpenAI-style 400 errors, including
    /// what this server cannot honour rather than ignore: tools, a
    /// response_format other than text, logprobs, n other than 1, sampling
    /// it does not implement (penalties, logit_bias, top_k, min_p, ...),
    /// `reasoning_effort`, chat template variables other than
    /// `enable_thinking` (which reaches the template), and unknown fields. Message text that spells a special token is kept as
    /// text. Slow clients are cut off (--header-timeout, --body-timeout) and
    /// at most --max-connections are open at once. Ctrl-C or SIGTERM stops
    /// it after the requests in progress.
    #[command(
        after_help = "Examples:\n  evol serve --port 8080\n  evol serve --model smollm2-135m-instruct --parallel 8"
    )]
    Serve(Box<ServeArgs>),
    /// Fetch and list the models of the embedded engine.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Write the built-in prompt templates to a directory, to edit and pass
    /// back with `evol run --templates DIR`.
    #[command(
        after_help = "Examples:\n  evol templates my-templates/\n  evol run seeds.jsonl -o out --templates my-templates/"
    )]
    Templates(TemplatesArgs),
    /// Show a run's progress from its journal, while it runs or after.
    #[command(after_help = "Examples:\n  evol status out\n  evol status out --json")]
    Status(StatusArgs),
    /// Rewrite a run's output files from its journal, and write its
    /// dataset in the ecosystem's layouts (Alpaca, ShareGPT, chat messages,
    /// TRL preference pairs) as JSONL, Parquet or a Hugging Face dataset
    /// directory with a dataset card.
    #[command(long_about = EXPORT_ABOUT, after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Merge the outputs of a sharded run (`evol run --shard I/N`) into one,
    /// checking that no seed is missing or doubled.
    #[command(after_help = "Examples:\n  evol merge out-0 out-1 out-2 -o merged")]
    Merge(MergeArgs),
    /// Manage the provider batches of a `--batch-api` run.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Remove exact and near duplicates from a dataset file, keeping the
    /// first of each cluster.
    #[command(long_about = DEDUP_ABOUT, after_help = "Examples:\n  evol dedup data.jsonl -o kept.jsonl\n  evol dedup data.parquet -o kept.jsonl --against train.jsonl --threshold 0.7\n  evol dedup --explain")]
    Dedup(DedupArgs),
    /// Leave out the rows of a dataset that overlap a benchmark's items (a
    /// run of 13 words in common).
    #[command(long_about = DECONTAMINATE_ABOUT, after_help = "Examples:\n  evol decontaminate data.jsonl --benchmark testset.jsonl -o clean.jsonl\n  evol decontaminate out/dataset.jsonl --benchmark gsm8k.parquet mmlu.jsonl -o clean.jsonl --json")]
    Decontaminate(DecontaminateArgs),
    /// Score a dataset's rows with a model: difficulty (1-10), DEITA
    /// complexity and quality (1-6).
    #[command(long_about = SCORE_ABOUT, after_help = "Examples:\n  evol score data.jsonl -o scored --difficulty --endpoint http://localhost:8000/v1\n  evol score data.jsonl -o scored --deita --json")]
    #[command(mut_arg("model", |a| a.help("Model that scores the rows. With --endpoint: the served name (default: the server's only model). Without: a model from `evol models list` (default: smollm2-135m-instruct, pulled on first use).")))]
    Score(Box<ScoreArgs>),
    /// Select the best rows of a dataset within a budget, the DEITA way:
    /// by score, skipping rows too similar to one already taken.
    #[command(long_about = SELECT_ABOUT, after_help = "Examples:\n  evol select scored/scored.jsonl -o selected --budget 6000\n  evol select scored/scored.jsonl -o selected --budget 6000 --threshold 0.85 --json")]
    Select(SelectArgs),
    /// List and print the operator sets (`evol`, `code`, `math`, `auto`),
    /// to copy, edit and pass to `evol run --ops-file`.
    #[command(subcommand)]
    Ops(OpsCommand),
    /// Auto Evol-Instruct: let an optimiser model improve the evolving
    /// method on your seeds, and write it as an operator file.
    #[command(long_about = OPTIMIZE_ABOUT, after_help = "Examples:\n  evol optimize seeds.jsonl -o method --endpoint http://localhost:8000/v1\n  evol run seeds.jsonl -o out --ops-file method/method.toml")]
    #[command(mut_arg("model", |a| a.help("Model that evolves the dev seeds with each method tried, and the optimiser, answerer and judge unless --optimizer-model, --answer-model or --judge-model name others. With --endpoint: the served name (default: the server's only model). Without: a model from `evol models list` (default: smollm2-135m-instruct, pulled on first use).")))]
    Optimize(Box<OptimizeArgs>),
    /// A model's answers to a test set (such as the Evol-Instruct test set),
    /// to judge with `evol judge` or `evol arena`.
    #[command(long_about = ANSWER_ABOUT, after_help = "Examples:\n  evol answer testset.jsonl -o answers-mine --endpoint http://localhost:8000/v1 --model mine\n  evol answer testset.jsonl -o answers-local   # the embedded default model")]
    #[command(mut_arg("model", |a| a.help("Model that answers the test set. With --endpoint: the served name (default: the server's only model). Without: a model from `evol models list` (default: smollm2-135m-instruct, pulled on first use).")))]
    Answer(Box<AnswerArgs>),
    /// Judge a candidate model's answers against a reference's, both
    /// orders: "X% of the reference" overall, by skill and by difficulty,
    /// win / tie / loss.
    #[command(long_about = JUDGE_ABOUT, after_help = "Examples:\n  evol judge testset.jsonl --candidate answers-mine --reference answers-ref -o judged --judge-model gpt-4o --endpoint https://api.openai.com/v1\n  evol judge testset.jsonl --candidate a --reference b -o judged --single-order --json")]
    #[command(mut_arg("model", |a| a.help("Model that judges, unless --judge-model names another. With --endpoint: the served name (default: the server's only model). Without: a model from `evol models list` (default: smollm2-135m-instruct, pulled on first use).")))]
    Judge(Box<JudgeArgs>),
    /// Battles between models on the same questions, judged both ways:
    /// Bradley-Terry ratings with intervals, and Arena Learning data.
    #[command(long_about = ARENA_ABOUT, after_help = "Examples:\n  evol arena --answers a b c -o arena --judge-model judge --endpoint http://localhost:8000/v1\n  evol arena --answers a b -o arena --judge-model judge --target a --learn lessons\n  evol arena --battles arena/battles.jsonl -o refit --style-control")]
    #[command(mut_arg("model", |a| a.help("Model that judges the battles, unless --judge-model names another. With --endpoint: the served name (default: the server's only model). Without: a model from `evol models list` (default: smollm2-135m-instruct, pulled on first use).")))]
    Arena(Box<ArenaArgs>),
    /// Write a self-contained HTML report of a run (charts, an
    /// evolution-tree browser, the dataset) and of `evol judge` and `evol
    /// arena` results.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Show the settings a command line resolves to (flags, --config file,
    /// environment), secrets masked.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
}

/// How texts are compared for near duplicates (MinHash with LSH banding).
#[derive(Args, Debug, Clone)]
pub struct DedupParamArgs {
    /// Words per shingle.
    #[arg(long, default_value_t = 3, value_name = "WORDS", help_heading = "Near duplicates")]
    pub shingle: usize,
    /// MinHash values per text.
    #[arg(long, default_value_t = 100, value_name = "N", help_heading = "Near duplicates")]
    pub hashes: usize,
    /// LSH bands (must divide --hashes): texts sharing a band are compared.
    #[arg(long, default_value_t = 20, value_name = "N", help_heading = "Near duplicates")]
    pub bands: usize,
    /// Estimated Jaccard similarity of word shingles from which two texts
    /// are near duplicates.
    #[arg(long, default_value_t = 0.8, value_name = "S", help_heading = "Near duplicates")]
    pub threshold: f64,
}

/// Settings of the embedded llama.cpp engine.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// A local GGUF file to run instead of a catalogued model.
    #[arg(long, value_name = "FILE", help_heading = "Embedded engine")]
    pub model_path: Option<PathBuf>,

    /// Chat format: a built-in name (chatml, gemma, llama3, plain), a Jinja
    /// file, or Jinja text (default: the model's own template).
    #[arg(long, value_name = "TEMPLATE", help_heading = "Embedded engine")]
    pub chat_template: Option<String>,

    /// CPU threads (default: the physical cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Embedded engine")]
    pub threads: Option<u32>,

    /// KV-cache tokens in all; each parallel sequence gets an equal share.
    #[arg(long, default_value_t = 65_536, help_heading = "Embedded engine")]
    pub ctx_size: u32,

    /// Sequences decoded together in one batch; more requests wait in a queue.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Embedded engine")]
    pub parallel: u32,

    /// Tokens per decode step; long prompts are fed in chunks of what is left.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Embedded engine")]
    pub batch_size: u32,

    /// Compute every prompt in full instead of reusing the KV cache of a
    /// prefix it shares with an earlier request.
    #[arg(long, help_heading = "Embedded engine")]
    pub no_prefix_cache: bool,

    /// KV-cache number format: q8_0 (default; decodes long sequences much
    /// faster on a CPU), f16 (exact), or q4_0 (smallest).
    #[arg(long, default_value = "q8_0", value_name = "TYPE", help_heading = "Embedded engine")]
    pub kv_cache: String,
}

/// Where the models are and how to call them: the flags every command
/// that calls models shares.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.
    /// Repeat it (or separate URLs with commas) to spread calls over several
    /// servers. Without it, the embedded llama.cpp engine runs the model.
    #[arg(long, env = "OPENAI_BASE_URL", value_delimiter = ',', help_heading = "Server")]
    pub endpoint: Vec<String>,

    /// A TOML file with `[[endpoints]]` (url, model, api_key_env, weight,
    /// rpm, tpm, max_concurrency) and `[prices]` ("model" = { prompt = ..,
    /// completion = .. } per million tokens). See the README.
    #[arg(long, value_name = "FILE", help_heading = "Server")]
    pub config: Option<PathBuf>,

    /// Requests per minute allowed per server (default: none, or what the
    /// server's rate-limit headers say).
    #[arg(long, help_heading = "Server")]
    pub rpm: Option<u32>,

    /// Tokens per minute allowed per server (prompt + completion).
    #[arg(long, help_heading = "Server")]
    pub tpm: Option<u64>,

    /// Keep each server's concurrency fixed at --concurrency instead of
    /// adapting it to 429s, 503s and timeouts.
    #[arg(long, help_heading = "Server")]
    pub no_adaptive: bool,

    /// Send calls through the provider's batch API (`/v1/files` +
    /// `/v1/batches`, about half the price at OpenAI and others): calls are
    /// gathered into waves, one batch each, polled until done. One server only.
    #[arg(long, help_heading = "Batch API")]
    pub batch_api: bool,

    /// Seconds to gather calls before a wave is sent as a batch.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS", help_heading = "Batch API")]
    pub batch_wave: f64,

    /// Seconds between polls of a batch in flight.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS", help_heading = "Batch API")]
    pub batch_poll: f64,

    /// Most requests in one batch (and in flight in all).
    #[arg(long, default_value_t = 50_000, value_name = "N", help_heading = "Batch API")]
    pub batch_max_requests: usize,

    /// Batches one request may go into (when earlier ones expire or fail
    /// without answering it) before it counts as failed.
    #[arg(long, default_value_t = 3, value_name = "N", help_heading = "Batch API")]
    pub batch_attempts: u32,

    /// Name of the environment variable that holds the API key.
    #[arg(long, default_value = "OPENAI_API_KEY", value_name = "VAR", help_heading = "Server")]
    pub api_key_env: String,

    /// Model that evolves instructions. With --endpoint: the served name
    /// (default: the server's only model). Without: a model from `evol
    /// models list` (default: smollm2-135m-instruct, pulled on first use).
    #[arg(short, long, help_heading = "Server")]
    pub model: Option<String>,

    /// Most model calls in flight on each server (a server's
    /// `max_concurrency` in --config overrides it; the run's total is the
    /// sum over its servers). With the embedded engine: in all.
    #[arg(long, default_value_t = 64, help_heading = "Server")]
    pub concurrency: usize,

    /// Seconds one request attempt may take before it is retried.
    #[arg(long, default_value_t = 600.0, value_name = "SECONDS", help_heading = "Server")]
    pub timeout: f64,

    /// Retries of a request after connection errors, timeouts, 408, 409, 429
    /// and 5xx replies, with exponential backoff and jitter.
    #[arg(long, default_value_t = 6, help_heading = "Server")]
    pub max_retries: u32,

    /// Longest wait a server's Retry-After may impose, in seconds.
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS", help_heading = "Server")]
    pub max_retry_wait: f64,

    /// Stop the run (as Ctrl-C does, exit code 4) when calls keep failing
    /// and none has succeeded for this many seconds: every server is down
    /// or fails everything. Calls waiting for a server are not marked
    /// failed: rerun the same command once one answers.
    #[arg(long, default_value_t = 180.0, value_name = "SECONDS", help_heading = "Server")]
    pub stall_timeout: f64,

    /// Do not send a per-request `seed` (for servers that reject it).
    #[arg(long, help_heading = "Server")]
    pub no_request_seed: bool,

    /// Switch a reasoning model's thinking on or off through its chat
    /// template (`chat_template_kwargs: {enable_thinking}` on vLLM and
    /// SGLang, Qwen3's switch; the embedded engine's template too).
    /// Default: the model's own.
    #[arg(long, value_name = "on|off", value_parser = on_off(), help_heading = "Thinking")]
    pub thinking: Option<bool>,

    /// How hard a reasoning model thinks: minimal, low, medium or high
    /// (`reasoning_effort`, as OpenAI's API takes it; servers only).
    #[arg(long, value_name = "EFFORT", value_parser = effort(), help_heading = "Thinking")]
    pub reasoning_effort: Option<evol_llm::Effort>,

    /// Stop sending when the run's cost reaches this (in the unit of the
    /// prices; calls in flight may pass it slightly).
    #[arg(long, help_heading = "Budget")]
    pub max_cost: Option<f64>,

    /// Stop sending when the run has used this many tokens (prompt +
    /// completion).
    #[arg(long, help_heading = "Budget")]
    pub max_tokens_total: Option<u64>,

    /// Stop sending after this many requests.
    #[arg(long, help_heading = "Budget")]
    pub max_requests: Option<u64>,

    /// Price of a million prompt tokens, for models without an entry in the
    /// --config price table.
    #[arg(long, value_name = "PRICE", help_heading = "Budget")]
    pub price_prompt: Option<f64>,

    /// Price of a million completion tokens (see --price-prompt).
    #[arg(long, value_name = "PRICE", help_heading = "Budget")]
    pub price_completion: Option<f64>,

    /// Price of a million prompt tokens served from the provider's prefix
    /// cache (default: --price-prompt).
    #[arg(long, value_name = "PRICE", help_heading = "Budget")]
    pub price_cached_prompt: Option<f64>,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What a job that calls models does with what an earlier attempt left in
/// its output directory: resume from it (the default) or start over.
#[derive(Args, Debug, Clone, Copy)]
pub struct AttemptArgs {
    /// Start over: remove the files and the journal already in the output
    /// directory instead of resuming from them.
    #[arg(long)]
    pub fresh: bool,
    /// On resume, send again the calls that failed or whose reply was cut
    /// (token limit, content filter), with a new request seed.
    #[arg(long)]
    pub retry_failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_command_says_what_its_model_does() {
        let command = Cli::command();
        let help = |name: &str| {
            let sub = command.find_subcommand(name).unwrap();
            let model = sub.get_arguments().find(|a| a.get_id() == "model").unwrap();
            model.get_help().unwrap().to_string()
        };
        assert!(help("run").starts_with("Model that evolves instructions"));
        for (name, does) in [("score", "scores"), ("answer", "answers"), ("judge", "judges"), ("arena", "judges")] {
            let said = help(name);
            assert!(said.contains(does) && !said.contains("evolves instructions"), "{name}: {said}");
        }
    }

    #[test]
    fn input_containers_are_typed_choices_with_their_aliases() {
        use evol_io::SeedFormat;
        let format = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli { command: Command::Dedup(d), .. }) => Ok(d.format),
            Ok(_) => unreachable!("a dedup command"),
            Err(e) => Err(e),
        };
        assert_eq!(format(&["evol", "dedup", "in.jsonl", "-o", "out.jsonl"]).unwrap(), SeedFormat::Auto);
        for (given, read) in
            [("ndjson", SeedFormat::Jsonl), ("parquet", SeedFormat::Parquet), ("txt", SeedFormat::Text)]
        {
            assert_eq!(format(&["evol", "dedup", "in", "-o", "out.jsonl", "--format", given]).unwrap(), read);
        }
        let err = format(&["evol", "dedup", "in", "-o", "out.jsonl", "--format", "xlsx"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(err.to_string().contains("--format") && err.to_string().contains("parquet"), "{err}");
        for name in evol::settings::ExportFormat::NAMES {
            let cli = Cli::try_parse_from(["evol", "export", "out", "--to", "x", "--format", name]).unwrap();
            let Command::Export(export) = cli.command else { unreachable!("an export command") };
            assert_eq!(export.format.name(), name);
        }
    }
}
