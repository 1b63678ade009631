//! Flags of the commands that read a run's output: `status`, `export`, `merge`, `report` and `batch`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{export_format, trace_export};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run's output directory.
    pub output: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also read the whole journal and check every page and index (`PRAGMA
    /// integrity_check`); exit 1 if it is damaged. Opening a journal checks
    /// it only after an unclean stop.
    #[arg(long)]
    pub check: bool,
}

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
    /// Where a reasoning model's thinking traces go: `none` (left out),
    /// `inline` (`<think>...</think>` before the answer, as open-r1 and
    /// OpenThoughts publish) or `field` (a `reasoning_content` column,
    /// kept with --plain too).
    #[arg(long, value_name = "WHERE", default_value = "none", value_parser = trace_export())]
    pub reasoning: evol::settings::TraceExport,
    /// The largest Parquet file of a dataset directory, in megabytes.
    #[arg(long, value_name = "MB", default_value_t = 500)]
    pub max_file_mb: u64,
    /// Print what was written as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(super) const EXPORT_ABOUT: &str = "Rewrite a run's output files (records, dataset) from its journal, and, with --to, write its dataset in another layout.

OUT is a run's output directory (its dataset rows, with their lineage), any dataset file or an `evol score` / `evol select` output (its rows, with their other fields such as the scores as columns), or an `evol arena --learn` directory (its SFT records, or with --format dpo its preference pairs). --to PATH writes a `.jsonl` file, a `.parquet` file (zstd), or, for any other path, a Hugging Face dataset directory: data/train-0000K-of-0000N.parquet files of at most --max-file-mb each and a README.md dataset card (YAML front matter with configs, features and split sizes; a body saying how the data was made, and the command that makes it again), which `datasets.load_dataset(PATH)` loads and the Hub accepts as is.

Layouts (--format): alpaca (`instruction`, `input`, `output`), sharegpt (`conversations` of `{from, value}`), messages (`messages` of `{role, content}`), jsonl (evol's own `instruction`, `output`), dpo (TRL's `prompt`, `chosen`, `rejected`). The lineage (id, seed_id, parent_id, round, operation, models) and scores (difficulty) are extra columns unless --plain.";

pub(super) const EXPORT_EXAMPLES: &str = "Examples:
  evol export OUT                                   # rewrite OUT's files from its journal
  evol export OUT --format messages --to train.parquet
  evol export OUT --format sharegpt --plain --to sharegpt.jsonl
  evol export OUT --format alpaca --to hub/         # then: datasets.load_dataset(\"hub\")
  evol export LEARN_DIR --format dpo --to dpo.parquet";

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shards' output directories, one per shard.
    #[arg(required = true, num_args = 1..)]
    pub shards: Vec<PathBuf>,
    /// Where to write the merged run (a new or empty directory).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
}

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

pub(super) const REPORT_EXAMPLES: &str = "The file needs no network to view: styles, script and data are inside it. Every text from seeds and models is shown as text, never run. The view is kept in the address (#seed=ID&q=TEXT&page=N), so a link opens the same seed and search.

Examples:
  evol report OUT -o report.html
  evol report OUT judge-out arena-out -o report.html";

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
