//! Flags of the curation commands: `score`, `select` and `dedup`.

use std::path::PathBuf;

use clap::Args;

use super::{seed_format, AttemptArgs, DedupParamArgs, ModelArgs};

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
    #[command(flatten)]
    pub attempt: AttemptArgs,
    #[command(flatten)]
    pub models: ModelArgs,
    /// No progress display or log lines; errors only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the results as JSON on stdout (logs stay on stderr).
    #[arg(long)]
    pub json: bool,
}

pub(super) const SCORE_ABOUT: &str = "\
Score a dataset's rows with a model (the scorer: --model on --endpoint servers, or the embedded engine).

--difficulty asks for each instruction's difficulty and complexity from 1 to 10, the measure the WizardLM paper used to show that evolving makes instructions harder. --deita asks for DEITA's two scores: complexity, 1 to 6, with the versions of one instruction (rows sharing --group-field, as evol's own evolved.jsonl rows share `seed_id`) ranked and scored together in one call; and quality, 1 to 6, with the responses to one instruction ranked and scored together. A row alone is scored alone.

Replies are read tolerantly (the score may come with prose around it); a reply without a score in range is recorded as unreadable, with the reply, and counted: it is never given a default value.

Every call goes through the journal in OUT, as with `evol run`: rerun the same command to resume (nothing done is sent again), with the same budgets, rate control, retries, --batch-api and progress. Writes OUT/scored.jsonl (each row with `difficulty`, `complexity`, `quality`: the score, or null with `<measure>_unreadable` holding the reply or `<measure>_error` the failure) and OUT/stats.json (per measure: scored, unreadable, failed, mean, std).";

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
    /// Embedding requests in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub embed_concurrency: usize,
    /// Stop sending embedding requests after this many (a rerun goes on
    /// from the vectors kept).
    #[arg(long, value_name = "N", help_heading = "Budget")]
    pub max_requests: Option<u64>,
    /// Stop sending embedding requests once the servers have read this
    /// many tokens.
    #[arg(long, value_name = "N", help_heading = "Budget")]
    pub max_tokens_total: Option<u64>,
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

pub(super) const SELECT_ABOUT: &str = "\
Select the best rows of a dataset within a budget, the DEITA way.

Rows are sorted by score (--by: the product of the named numeric fields, by default DEITA's complexity x quality as `evol score --deita` writes them), highest first, ties in file order. A row is taken only if its cosine similarity to every row already taken is at most --threshold (0.9), until --budget rows are taken; so of two near-identical rows the higher-scored one is kept and the other dropped. Rows without a score are counted and never taken.

Similarity: embeddings from --embed-endpoint (an OpenAI-compatible /v1/embeddings, with --embed-model), cached in OUT's journal so a rerun computes none again; without one, a lexical similarity (hashed TF-IDF of words and word pairs), named as such in the output and stats.json.

Writes OUT/selected.jsonl (the rows taken, as read, in the order taken), OUT/similar.jsonl (each row left out as too similar: its place, the row taken it is closest to, their similarity) and OUT/stats.json.";

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

pub(super) const DEDUP_ABOUT: &str = "\
Remove exact and near duplicates from a dataset file, keeping the first of each cluster in file order.

Texts are normalised first (Unicode NFKC, lower case, punctuation and symbols dropped, whitespace collapsed); equal normal forms are exact duplicates. Near duplicates: MinHash over word shingles (--shingle words each), --hashes values cut into --bands bands; two texts sharing a band are compared, and are near duplicates when their estimated Jaccard similarity is at least --threshold. A row is removed when it duplicates a row kept before it (or a row of an --against corpus), so the result is the same every time. --explain prints the S-curve of the settings.

Writes OUT (the kept rows, byte for byte, in the input's layout) and the clusters file: one JSON line per removed row with `removed` (its place and id), `kept` (the file, place and id of the row it duplicates), `similarity` and `exact`.";

#[derive(Args, Debug)]
pub struct DecontaminateArgs {
    /// The dataset file: JSONL, a JSON array, CSV/TSV, Parquet, text or a
    /// Hugging Face dataset directory.
    pub input: PathBuf,
    /// The benchmarks: test sets as `evol answer` reads them (the
    /// Evol-Instruct test set as it is; any file with a question field).
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub benchmark: Vec<PathBuf>,
    /// Where to write the rows kept (same layout as the input).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Where to list the rows left out, with the benchmark item each
    /// overlaps and the words they share (default: OUT with
    /// `.contaminated.jsonl` for its extension).
    #[arg(long, value_name = "FILE")]
    pub contaminated: Option<PathBuf>,
    /// The run of words a row must share with an item to be left out
    /// (characters for scripts written without spaces).
    #[arg(long, default_value_t = evol_dedup::contamination::DEFAULT_NGRAM, value_name = "N")]
    pub ngram: usize,
    /// The field checked with the answer (`output` or `response`):
    /// `instruction` (with an Alpaca `input` joined), or any string field.
    #[arg(long, default_value = "instruction", value_name = "NAME")]
    pub field: String,
    /// Layout of the input: auto (by extension, else by content), jsonl, json, csv, tsv, parquet or text.
    #[arg(long, default_value = "auto", value_parser = seed_format())]
    pub format: evol_io::SeedFormat,
    /// Print the results as JSON on stdout (logs stay on stderr).
    #[arg(long)]
    pub json: bool,
}

pub(super) const DECONTAMINATE_ABOUT: &str = "\
Leave out the rows of a dataset that overlap a benchmark: data made to be trained on must not hold the questions it will be tested on.

A row overlaps a benchmark item when its instruction or its answer shares a run of --ngram words (13, as lm-eval's overlap checker) with the item, both in normal form (Unicode NFKC, lower case, punctuation and symbols as spaces); in Chinese, Japanese, Thai and other scripts written without spaces each character counts as a word. A copy, or a copy edited around the copied run, is found; text that only resembles an item is not. Items shorter than the run are checked whole; items of fewer than 8 words are too short to tell from a common phrase and are left unchecked (counted).

Writes OUT (the rows kept, as read) and the contaminated list (each row left out: its place, which field overlaps, the benchmark item as FILE#ID, the words they share).";
