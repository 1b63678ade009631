//! Settings of the curation commands: `score`, `select` and `dedup`.

use std::path::{Path, PathBuf};

use super::{dedup_params, non_empty, sampling, usage, FromArgs};
use super::{DecontaminateSettings, DedupFiles, DedupSettings, Embeddings, ModelSettings, ScoreSettings};
use super::{SelectSettings, UsageError};
use crate::cli::{AttemptArgs, DecontaminateArgs, DedupArgs, ScoreArgs, SelectArgs};

impl FromArgs<DedupArgs> for DedupSettings {
    type Error = UsageError;

    fn from_args(args: DedupArgs) -> Result<DedupSettings, UsageError> {
        let DedupArgs {
            input,
            output,
            clusters,
            against,
            field,
            format,
            exact_only,
            skip_invalid,
            explain,
            params,
            json: _,
        } = args;
        let params = dedup_params(params, "near duplicates")?;
        let field = field.parse().map_err(|e: String| usage(format!("--field: {e}")))?;
        let files = match (input, output) {
            (Some(input), Some(output)) => {
                let clusters = clusters.unwrap_or_else(|| default_clusters(&output));
                for (what, path) in
                    std::iter::once(("the input", &input)).chain(against.iter().map(|c| ("a corpus", c)))
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
            (None, None) if explain => None,
            (Some(_), None) => return Err(usage("-o OUT is required: where to write the kept rows")),
            _ => return Err(usage("a dataset file to deduplicate is required with -o")),
        };
        Ok(DedupSettings { files, against, field, format, params, exact_only, skip_invalid, explain })
    }
}

impl FromArgs<DecontaminateArgs> for DecontaminateSettings {
    type Error = UsageError;

    fn from_args(args: DecontaminateArgs) -> Result<DecontaminateSettings, UsageError> {
        let DecontaminateArgs { input, benchmark, output, contaminated, ngram, field, format, json: _ } = args;
        let min = evol_dedup::contamination::MIN_ITEM_WORDS;
        if !(min..=1000).contains(&ngram) {
            return Err(usage(format!("--ngram must be between {min} and 1000 words")));
        }
        let field = field.parse().map_err(|e: String| usage(format!("--field: {e}")))?;
        let contaminated = contaminated.unwrap_or_else(|| sibling(&output, "contaminated"));
        for (what, path) in std::iter::once(("the input", &input)).chain(benchmark.iter().map(|b| ("a benchmark", b))) {
            if same(path, &output) || same(path, &contaminated) {
                return Err(usage(format!("`{}` is {what} and an output: write elsewhere", path.display())));
            }
        }
        if same(&output, &contaminated) {
            return Err(usage("-o and --contaminated name the same file"));
        }
        Ok(DecontaminateSettings { input, output, contaminated, benchmarks: benchmark, ngram, field, format })
    }
}

/// Two paths that name one file (as given, or once resolved).
fn same(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// `kept.jsonl` -> `kept.KIND.jsonl` (another extension kept in the name).
fn sibling(output: &Path, kind: &str) -> PathBuf {
    let name = match output.extension().and_then(|e| e.to_str()) {
        Some("jsonl") | None => output.file_stem().unwrap_or_default().to_string_lossy().into_owned(),
        Some(_) => output.file_name().unwrap_or_default().to_string_lossy().into_owned(),
    };
    output.with_file_name(format!("{name}.{kind}.jsonl"))
}

/// `kept.jsonl` -> `kept.clusters.jsonl`; an output of another extension
/// keeps it in the name (`kept.json` -> `kept.json.clusters.jsonl`), so two
/// outputs that differ only in extension never share a clusters file.
fn default_clusters(output: &Path) -> PathBuf {
    sibling(output, "clusters")
}

impl FromArgs<ScoreArgs> for ScoreSettings {
    type Error = UsageError;

    fn from_args(args: ScoreArgs) -> Result<ScoreSettings, UsageError> {
        use evol_core::score::Measure;
        let ScoreArgs {
            input,
            output,
            difficulty,
            deita,
            field,
            response_field,
            group_field,
            group_size,
            score_max_tokens,
            format,
            skip_invalid,
            attempt: AttemptArgs { fresh, retry_failed },
            models,
            quiet: _,
            json: _,
        } = args;
        let mut measures = Vec::new();
        if difficulty {
            measures.push(Measure::Difficulty);
        }
        if deita {
            measures.extend([Measure::Complexity, Measure::Quality]);
        }
        if measures.is_empty() {
            return Err(usage("say what to score: --difficulty, --deita, or both"));
        }
        if !(1..=32).contains(&group_size) {
            return Err(usage("--group-size must be between 1 and 32"));
        }
        let field = field.parse().map_err(|e: String| usage(format!("--field: {e}")))?;
        let response_field = non_empty("--response-field", &response_field)?;
        let group_field = non_empty("--group-field", &Some(group_field))?.unwrap_or_default();
        let model = ModelSettings::from_args(models)?;
        let sampling =
            evol_llm::Sampling { thinking: model.thinking, ..sampling("--score-", 0.0, 1.0, score_max_tokens)? };
        let execution = model.execution(retry_failed);
        Ok(ScoreSettings {
            input,
            output,
            fresh,
            measures,
            field,
            response_field,
            group_field,
            group_size,
            format,
            skip_invalid,
            sampling,
            model,
            execution,
        })
    }
}

impl FromArgs<SelectArgs> for SelectSettings {
    type Error = UsageError;

    fn from_args(args: SelectArgs) -> Result<SelectSettings, UsageError> {
        let SelectArgs {
            input,
            output,
            budget,
            by,
            threshold,
            embed_endpoint,
            embed_model,
            api_key_env,
            embed_batch,
            embed_concurrency,
            max_requests,
            max_tokens_total,
            field,
            format,
            fresh,
            quiet: _,
            json: _,
        } = args;
        let by: Vec<String> = by.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if by.is_empty() {
            return Err(usage("--by names no field"));
        }
        if budget == 0 {
            return Err(usage("--budget must be at least 1"));
        }
        if !(threshold.is_finite() && (-1.0..=1.0).contains(&threshold)) {
            return Err(usage("--threshold must be a cosine similarity, from -1 to 1"));
        }
        if !(1..=2048).contains(&embed_batch) {
            return Err(usage("--embed-batch must be between 1 and 2048"));
        }
        if !(1..=1024).contains(&embed_concurrency) {
            return Err(usage("--embed-concurrency must be between 1 and 1024"));
        }
        let field = field.parse().map_err(|e: String| usage(format!("--field: {e}")))?;
        let embeddings = match (embed_endpoint, embed_model) {
            (None, None) => Embeddings::Lexical,
            (Some(_), None) => return Err(usage("--embed-endpoint needs --embed-model")),
            (Some(url), Some(model)) => {
                evol_openai::parse_base_url(&url).map_err(|e| usage(format!("--embed-endpoint: {e}")))?;
                let api_key = std::env::var(&api_key_env).ok().filter(|k| !k.trim().is_empty());
                Embeddings::Server { url, model, api_key }
            }
            (None, Some(name)) => Embeddings::Local { name },
        };
        let caps = evol_core::cost::Caps { max_requests, max_tokens: max_tokens_total, max_cost: None };
        Ok(SelectSettings {
            input,
            output,
            fresh,
            budget,
            by,
            threshold,
            embeddings,
            embed_batch,
            concurrency: embed_concurrency,
            caps,
            field,
            format,
        })
    }
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
}
