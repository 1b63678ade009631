//! Flags of the evaluation commands: `answer`, `judge` and `arena`.

use std::path::PathBuf;

use clap::Args;

use super::{pick, seed_format, AttemptArgs, ModelArgs};

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
    /// Sample K answers to each one-turn question (each its own request
    /// seed, each journaled) and keep one (--pick). With --reference-field,
    /// each is checked against the question's reference answer: the row
    /// keeps a correct one, a question with none is left without an answer.
    /// Each question with a worse answer than the kept one (wrong, else
    /// scored lower) gives a preference pair in OUT/pairs.jsonl.
    #[arg(long = "answers", alias = "samples", value_name = "K", default_value_t = 1)]
    pub samples: u32,
    /// The test set's field holding each question's reference answer (a
    /// final answer, `\boxed{...}`, or a worked solution ending in one),
    /// or its constraints (`ground_truth`, as `evol run --ops verifiable`
    /// writes it): an answer is then correct when it keeps every one, and
    /// a wrong one names the constraint it broke (`broken`).
    #[arg(long, value_name = "NAME")]
    pub reference_field: Option<String>,
    /// Which of the K answers a row keeps (among the correct ones, with a
    /// reference): `first`, `shortest`, or `score` (the judge model ranks
    /// them together, each scored 1 to 6 for quality, one call; the
    /// highest kept, the first of equals; the scores are on the row).
    /// Default: `first` with a reference, else `score`.
    #[arg(long, value_name = "first|shortest|score", value_parser = pick())]
    pub pick: Option<evol_core::best_of::Pick>,
    /// The model that ranks the answers with `--pick score` (default: the
    /// answering model), on the same servers.
    #[arg(long, value_name = "NAME")]
    pub judge_model: Option<String>,
    /// Layout of the test set: auto (by extension, else by content), jsonl, json, csv, tsv, parquet or text.
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

pub(super) const ANSWER_ABOUT: &str = "\
A model's answers to a test set, resumable: every call goes through the journal in OUT (rerun the same command to finish a stopped job; nothing answered is asked again), with the budgets, rate control, retries and progress of `evol run`.

The test set is JSONL, a JSON array, CSV/TSV, Parquet or a Hugging Face dataset directory, with one question a row: its id (`idx`, `id` or `question_id`; the row number when there is none), the question (`Instruction`, `instruction`, `question` or `prompt`), or `turns`, a list of user turns answered one after the other in one conversation; and, if present, `Skill` (or `category`) and `Difficulty`, carried to the answers for `evol judge`. The Evol-Instruct test set (218 questions, 29 skills, difficulty 1-10) reads as it is.

Writes OUT/answers.jsonl, one row per question in test-set order: `id`, `model` (--name, or the model's), `instruction` (or `turns`), `skill`, `difficulty`, `answer` (or `answers`, one per turn), `reasoning` (or `reasonings`: a reasoning model's thinking trace, kept apart from the answer; absent when it did not think), `finish_reason`, `usage` (prompt and completion tokens, and `reasoning_tokens` when the server reports them); a failed call is written with `answer: null` and its `error`. And OUT/stats.json.";

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

pub(super) const JUDGE_ABOUT: &str = "\
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

pub(super) const ARENA_ABOUT: &str = "\
Battles between models on the same questions, judged by a judge model, and ratings from them (WizardArena, Chatbot Arena).

Each question the models answered (their answers files from `evol answer`) gives a battle to every pair of them (or --pairs-per-question K pairs drawn, seeded), judged in both orders with the judge prompt of `evol judge`: two games, the higher score wins each, equal scores tie.

Ratings: the Bradley-Terry maximum-likelihood fit of the games (a tie half a win to each side) on the Elo scale (400 points per factor of 10 in the odds), the mean rating 1000 or --anchor MODEL=RATING; 95% intervals from --bootstrap rounds (each pair's outcome counts resampled, seeded); rank = 1 + the number of models whose interval lies wholly above. A weak prior keeps the rating of a model that never wins finite; battles that leave models in groups that never met are refused. --style-control adds each game's differences in answer length and markdown density as covariates and shows the style-controlled leaderboard beside the plain one.

Writes OUT/ratings.json (per model: rating, ci_low, ci_high, rank, battles, wins, ties, losses), OUT/leaderboard.md, OUT/battles.jsonl (one row per judged game: id, model_a shown first, model_b, winner, both scores, the judge, the answers' lengths and markdown densities) and OUT/unjudged.jsonl (games whose reply held no scores, or whose call failed). `evol arena --battles FILE...` refits from battle logs alone, calling no model.

Arena Learning: --target MODEL --learn DIR writes DIR/sft.jsonl (for every question the target lost, the answer of the model that beat it by most) and DIR/dpo.jsonl (`prompt`, `chosen`, `rejected`, both models and the margin, for every battle of the target that both games decided the same way), each only where the winner led by at least --min-margin points a game.

Every judge call goes through the journal in OUT: rerun to resume; rerun with more answers files and only the new battles are judged.";
