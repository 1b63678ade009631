//! Flags of the commands that evolve: `run`, `templates`, `ops` and `optimize`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{effort, on_off, pick, seed_format, AttemptArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Seed file: JSONL (`instruction`, optional `input`, `id`), a JSON array
    /// in the Alpaca layout, CSV/TSV, Parquet, plain text with one
    /// instruction per line, or a Hugging Face dataset directory.
    pub seeds: PathBuf,

    /// Output directory.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,

    #[command(flatten)]
    pub attempt: AttemptArgs,

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

    /// Evolve conversations of N turns (2 to 9): the seed and its answer
    /// are the first turn; each round a follow-up operator (the
    /// `conversation` set: deepen, change, challenge, related) writes the
    /// next user message from the conversation so far, which is answered
    /// in its context. A turn that fails (any rule, with its reason) ends
    /// the conversation, kept up to its last good turn; dataset.jsonl has
    /// one row per conversation (`history`, then the last turn).
    #[arg(long, value_name = "N", conflicts_with_all = ["rounds", "no_answer"], help_heading = "Method")]
    pub turns: Option<u32>,

    /// Operations to draw from: `[SET:]LIST`. SET is a built-in operator
    /// set (`evol`, the default: add_constraints, deepen, concretize,
    /// reasoning, complicate_input, breadth; `code`: Code Evol-Instruct;
    /// `math`: upward and downward maths evolution; `auto`: Auto
    /// Evol-Instruct's method; `verifiable`: each round adds a constraint
    /// a program checks (IFEval's kinds: length, keywords, format,
    /// content, style), every answer that breaks one is rejected
    /// `constraint_failed`, rows carry `ground_truth`; `tree`:
    /// Tree-Instruct, adding --tree-nodes nodes) or the --ops-file's; LIST is
    /// comma-separated operator names, `all`, or kinds (`in-depth`,
    /// `in-breadth`, `upward`, `downward`), each optionally `=WEIGHT`:
    /// `--ops code`, `--ops math:downward`, `--ops add_constraints=2,breadth=1`.
    /// Drawn in proportion to the weights (the set's, 1 unless it says).
    /// `evol ops list` shows them all.
    #[arg(long, default_value = "all", help_heading = "Method")]
    pub ops: String,

    /// Tree-Instruct (`--ops tree`): the numbers of nodes a step adds to
    /// the instruction's tree, comma-separated, one drawn per step (the
    /// set's own: 3,6,10). More nodes, harder instructions; with
    /// --score-difficulty the difficulty is reported per number.
    #[arg(long, value_name = "N,...", value_delimiter = ',', help_heading = "Method")]
    pub tree_nodes: Vec<u32>,

    /// An operator set of your own (TOML: `[[operator]]` tables with a
    /// name, kind, template, method, weight, rules, constraints;
    /// `[templates]`): `evol
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

    /// Answer each evolution K times, each its own request seed and
    /// journaled call, and keep one (--pick). Every answer goes on the
    /// record (evolved.jsonl's `answers`: its text, trace, the rule that
    /// rejects it, its score, which one is kept); an evolution none of
    /// whose answers passes the answer rules is rejected with them.
    /// OUT/pairs.jsonl gets a preference pair per dataset row that has a
    /// worse answer: the kept one against the worst (rejected by a rule,
    /// else the lowest scored), with the score margin.
    #[arg(long, value_name = "K", default_value_t = 1, help_heading = "Method")]
    pub answers: u32,

    /// Which of K answers a row keeps, among those the answer rules pass:
    /// `score` (the default: the score model ranks them together, each
    /// scored 1 to 6 for quality, one call; the highest kept, the first of
    /// equals; a ranking that cannot be read is kept on the record and
    /// counted, and the first answer kept), `first` or `shortest`.
    #[arg(long, value_name = "first|shortest|score", value_parser = pick(), requires = "answers", help_heading = "Method")]
    pub pick: Option<evol_core::best_of::Pick>,

    /// The language evolutions and answers are written in: `auto` (each
    /// seed's own, detected; the default), or an ISO 639-1 code (`hi`,
    /// `zh`, `ar`...) for every seed: evolving into another language than
    /// the seed's (cross-lingual). The prompts say which language to write
    /// in, and the language rule rejects a text found in another one
    /// (`language_changed`). `off`: neither, as releases before it did.
    #[arg(long, value_name = "auto|CODE|off", default_value = "auto", help_heading = "Method")]
    pub language: String,

    /// Rounds of answer improvement (WizardLM-2's Evol-Answer): in each,
    /// the score model critiques the answer, the answering model rewrites
    /// it with the critique, and the score model scores the two together
    /// (1 to 6, in a drawn order); the rewrite replaces the answer only if
    /// it scores higher, and passes the answer rules (a cut-off rewrite
    /// never replaces one). Each round is on the record (evolved.jsonl's
    /// `improvements`; `original_response`, the answer before).
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Method")]
    pub improve_answers: u32,

    /// Put the seeds (answered too, unless --no-answer) into dataset.jsonl.
    #[arg(long, help_heading = "Method")]
    pub include_seeds: bool,

    /// Do not ask the judge whether an evolution adds anything.
    #[arg(long, help_heading = "Elimination")]
    pub no_equality_check: bool,

    /// Keep evolutions and answers found in another language than the
    /// one they should be in (the prompts still ask for it).
    #[arg(long, help_heading = "Elimination")]
    pub no_language_check: bool,

    /// Refusal phrases of your own for the sorry rule: a directory of
    /// `CODE.txt` files (an ISO 639-1 code: `hi.txt`), one phrase a line,
    /// `#` for comments, added to the built-in phrases of that language (a
    /// new language's file adds the language). Part of the run's settings.
    #[arg(long, value_name = "DIR", help_heading = "Elimination")]
    pub refusals: Option<PathBuf>,

    /// The --refusals files replace the built-in phrases of their languages
    /// instead of adding to them.
    #[arg(long, requires = "refusals", help_heading = "Elimination")]
    pub refusals_replace: bool,

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

    /// Benchmarks to keep out of the data (test sets as `evol answer`
    /// reads them): an evolution whose instruction or answer shares a run
    /// of --benchmark-ngram words with an item is rejected `contaminated`,
    /// the item named, before its judge and answer calls are made.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub benchmark: Vec<PathBuf>,

    /// The run of words that makes an overlap with a benchmark item
    /// (characters for scripts written without spaces).
    #[arg(long, value_name = "N", default_value_t = evol_dedup::contamination::DEFAULT_NGRAM)]
    pub benchmark_ngram: usize,

    /// The answering model's thinking switch (default: --thinking), e.g.
    /// evolve with thinking off and answer with it on.
    #[arg(long, value_name = "on|off", value_parser = on_off(), help_heading = "Thinking")]
    pub answer_thinking: Option<bool>,

    /// The answering model's reasoning effort (default: --reasoning-effort).
    #[arg(long, value_name = "EFFORT", value_parser = effort(), help_heading = "Thinking")]
    pub answer_reasoning_effort: Option<evol_llm::Effort>,

    /// The judge's (and the scorer's) thinking switch (default: --thinking).
    #[arg(long, value_name = "on|off", value_parser = on_off(), help_heading = "Thinking")]
    pub judge_thinking: Option<bool>,

    /// The judge's (and the scorer's) reasoning effort (default:
    /// --reasoning-effort).
    #[arg(long, value_name = "EFFORT", value_parser = effort(), help_heading = "Thinking")]
    pub judge_reasoning_effort: Option<evol_llm::Effort>,

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
    /// `conversations`, or chat `messages` (with --turns, a conversation
    /// opens with all its turns and goes on from its last user turn).
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
    /// it. `evol merge` joins the shards' outputs. `auto` reads it from the
    /// scheduler (a Slurm array task, a Kubernetes Indexed Job pod, a
    /// SkyPilot node); `auto/N` gives the count (Kubernetes needs it).
    #[arg(long, value_name = "I/N|auto[/N]", env = "EVOL_SHARD", help_heading = "Input")]
    pub shard: Option<String>,

    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

pub(super) const RUN_ABOUT: &str = "\
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

Shards: --shard I/N runs the seeds of shard I (0 to N-1), chosen by a hash of their ids; `evol merge` joins the shards' outputs into what one run would have made. --shard auto takes I/N from the scheduler's variables: SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (or the array's MIN, MAX and STEP), JOB_COMPLETION_INDEX (Kubernetes; write auto/N, it gives no count), SKYPILOT_NODE_RANK of SKYPILOT_NUM_NODES; it says which it found and refuses when it finds none or two that disagree. With auto/N each scheduler's index is the shard as it stands (an array numbered 0 to N-1).

Exit codes: 0 success, 1 run error, 2 usage error, 3 stopped at a budget cap, 4 stopped because no server answered for --stall-timeout, 130 interrupted (Ctrl-C or SIGTERM).";

#[derive(Args, Debug)]
pub struct TemplatesArgs {
    /// Directory to write the template files into.
    pub dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

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
    #[command(flatten)]
    pub attempt: AttemptArgs,
    #[command(flatten)]
    pub models: ModelArgs,
    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

pub(super) const OPTIMIZE_ABOUT: &str = "\
Auto Evol-Instruct: improve the evolving method itself with an optimiser model, on your seeds.

It starts from a universal evolving method (the built-in `auto` set, or --from FILE): list ways to make the instruction more complex, plan, rewrite adding 10 to 20 words, review, and end with the final instruction after `#Finally Rewritten Instruction#:`. It first measures that method's failure rate on --dev held-out seeds. Then each step: evolves --batch seeds --evolutions times in a row with the current method; shows these trajectories, failures marked, to the optimiser model, which analyses them and proposes a better method (--candidates times, each its own call); measures every candidate's failure rate on the held-out seeds; and keeps the best if it fails less than the current method, else stops. At most --steps steps.

A failure is what `evol run` eliminates (an empty, cut-off or copied evolution, a reply without the final line, which is recorded as `unparsable_evolution` and never replaced by the old instruction; the judge's \"Equal\"; an answer that says sorry or holds only stop words) plus Auto Evol-Instruct's own rule: an answer that asks for input (starts with \"Understood\", \"Thank you\" or \"Sure\" and ends with a question mark, or says \"please provide\"). So each measurement is an evolve, a judge and an answer call per held-out seed. A candidate reply without an `#Improved Method#:` section is recorded as unparsable and not measured.

Calls with the defaults (--dev 50, --batch 10, --evolutions 3, --candidates 5): 150 to measure the start, then per step 30 + 5 + 750 = 785; ten steps at most 8,000 calls.

Every call goes through the journal in METHOD_DIR, as with `evol run`: rerun the same command to resume (nothing done is sent again), with the same budgets (--max-cost, --max-tokens-total, --max-requests), rate control, retries and progress. Writes METHOD_DIR/method.toml after every step (the best method so far, an operator file: `evol run --ops-file METHOD_DIR/method.toml`), METHOD_DIR/history.jsonl (per step: the trajectories, each candidate with its analysis, method, failure rate and failures by reason, which was kept) and METHOD_DIR/stats.json.";

pub(super) const MAGPIE_ABOUT: &str = "\
Instructions written from no seeds (Magpie): an aligned model is given only what opens a user's turn in its chat template (after a system message that can steer the topic, the persona or the language) and writes the user's message itself. Resumable: every generation is a journaled call in OUT (rerun the same command to finish a stopped job; a larger --count adds to what is there), with the budgets, rate control, retries and progress of `evol run`.

On the embedded engine (no --endpoint) the model's own chat template gives the opening. A server is asked through its /v1/completions with the opening of a known template family (--template-family chatml, llama3, gemma, phi3 or mistral) or a text of your own (--prefix; `{system}` in it stands for the system message).

A generation is cut at its turn's end and left out when it is empty, cut off by the token limit (`truncated`), shorter than --min-words (`too_short`) or an exact or near duplicate of an earlier one (`duplicate`). Writes OUT/instructions.jsonl (`id`, `instruction`, `model`, `system`: seeds for `evol run`), OUT/left_out.jsonl (`id`, `reason`, `text`, and `duplicate_of` with `similarity`, or the error `detail`) and OUT/stats.json.";

#[derive(Args, Debug)]
pub struct MagpieArgs {
    /// Output directory: `instructions.jsonl`, `left_out.jsonl`,
    /// `stats.json` and the journal.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Generations to ask for, each its own call and request seed.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub count: u64,
    /// What the people asking are about: added to the system message
    /// ("They ask you about TOPIC.").
    #[arg(long, value_name = "TEXT")]
    pub topic: Option<String>,
    /// Who is asking: added to the system message ("The person you are
    /// talking to is PERSONA.").
    #[arg(long, value_name = "TEXT")]
    pub persona: Option<String>,
    /// The language they write in (ISO 639-1, such as hi or zh): added to
    /// the system message ("They write in Hindi.").
    #[arg(long, value_name = "CODE")]
    pub language: Option<String>,
    /// The system message itself (--topic, --persona and --language add to
    /// it). Without any of the four, the turn follows no system message.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// With --endpoint: the server's model's template family, whose
    /// opening of a user's turn is sent to /v1/completions: chatml (Qwen,
    /// SmolLM and many others), llama3, gemma, phi3 or mistral.
    #[arg(long, value_name = "NAME")]
    pub template_family: Option<String>,
    /// With --endpoint: the opening of a user's turn as it is, instead of a
    /// family's (`{system}` in it stands for the system message, and must
    /// be there when there is one, and only then).
    #[arg(long, value_name = "TEXT", conflicts_with = "template_family")]
    pub prefix: Option<String>,
    /// Sampling temperature (Magpie samples at 1).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Token limit of a generation: one cut off by it is left out.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Generations of fewer words are left out (`too_short`).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub min_words: usize,
    /// Leave out exact duplicates only, not near duplicates.
    #[arg(long)]
    pub no_dedup: bool,
    #[command(flatten)]
    pub dedup: super::DedupParamArgs,
    /// Seed of the request seeds.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub attempt: AttemptArgs,
    #[command(flatten)]
    pub models: ModelArgs,
    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
}
