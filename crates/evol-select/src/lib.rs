//! DEITA's data selection, and the vectors it compares.
//!
//! [`select`]: rows sorted by score, highest first (ties in row order),
//! each taken only if its cosine similarity to every row already taken is
//! at most the threshold, until the budget is reached. Each row is compared
//! with the rows *taken*, so of two near-identical rows the first (by
//! score, then position) is kept and the second dropped; comparing each
//! row with its nearest neighbour in the whole pool instead, as one
//! well-known implementation does, drops both.
//!
//! Vectors come from an embedding model, or from [`lexical`]: a hashed
//! TF-IDF of words and word pairs, for when no model is given (named as
//! such in every output). Everything here is pure computation.

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

/// What a selection did with each row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// The rows taken, in the order taken (highest score first).
    pub taken: Vec<usize>,
    /// Rows left out as too similar to a taken one: (row, the taken row it
    /// is closest to, their cosine similarity).
    pub similar: Vec<(usize, usize, f32)>,
    /// Rows without a score, never taken.
    pub unscored: Vec<usize>,
}

/// Takes up to `budget` rows by descending score, skipping any whose
/// cosine similarity to a row already taken exceeds `threshold`. `vectors`
/// must be L2-normalised and of one length (cosine is their dot product).
pub fn select(scores: &[Option<f64>], vectors: &[Vec<f32>], budget: usize, threshold: f32) -> Selection {
    assert_eq!(scores.len(), vectors.len(), "a vector per row");
    let mut selection = Selection::default();
    let mut order: Vec<(usize, f64)> = Vec::with_capacity(scores.len());
    for (row, score) in scores.iter().enumerate() {
        match score {
            Some(s) if s.is_finite() => order.push((row, *s)),
            _ => selection.unscored.push(row),
        }
    }
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let dim = vectors.first().map_or(0, Vec::len);
    // The taken rows' vectors, one after another.
    let mut taken: Vec<f32> = Vec::with_capacity(budget.min(order.len()) * dim);
    for (row, _) in order {
        if selection.taken.len() >= budget {
            break;
        }
        let v = &vectors[row];
        match nearest(&taken, dim, v) {
            Some((at, similarity)) if similarity > threshold => {
                selection.similar.push((row, selection.taken[at], similarity));
            }
            _ => {
                taken.extend_from_slice(v);
                selection.taken.push(row);
            }
        }
    }
    selection
}

/// The taken vector most similar to `v`: its position and the cosine.
fn nearest(taken: &[f32], dim: usize, v: &[f32]) -> Option<(usize, f32)> {
    if dim == 0 || taken.is_empty() {
        return None;
    }
    let best = |(i, chunk): (usize, &[f32])| (i, dot(chunk, v));
    let better = |a: (usize, f32), b: (usize, f32)| if b.1 > a.1 || (b.1 == a.1 && b.0 < a.0) { b } else { a };
    // Many taken rows: compare on every core.
    if taken.len() / dim >= 4096 {
        taken.par_chunks(dim).enumerate().map(best).reduce_with(better)
    } else {
        taken.chunks(dim).enumerate().map(best).reduce(better)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight running sums, so the compiler vectorises the loop.
    let mut sums = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Scales a vector to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dimensions of the lexical vectors.
pub const LEXICAL_DIM: usize = 256;

/// The name outputs give the lexical fallback.
pub const LEXICAL: &str = "lexical: hashed TF-IDF of words and word pairs (256 dims)";

/// Buckets of the document-frequency table (a count per hashed term).
const DF_BUCKETS: usize = 1 << 22;

/// Lexical vectors: the TF-IDF weights of each text's words and word
/// pairs (after `evol-dedup`'s normalisation), hashed with signs into
/// [`LEXICAL_DIM`] dimensions, L2-normalised. Texts sharing rare words
/// and phrases are close; the weights come from the texts given.
///
/// Document frequencies are counted in a fixed table of hashed terms
/// (16 MB whatever the number of texts; two terms sharing a bucket share
/// a count, which only lowers a rare term's weight a little), and terms
/// are computed again for the weights rather than kept.
pub fn lexical(texts: &[&str]) -> Vec<Vec<f32>> {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    let df: Vec<AtomicU32> = (0..DF_BUCKETS).map(|_| AtomicU32::new(0)).collect();
    texts.par_iter().for_each(|t| {
        let mut seen = terms(t);
        seen.sort_unstable();
        seen.dedup();
        for term in seen {
            df[(term % DF_BUCKETS as u64) as usize].fetch_add(1, Relaxed);
        }
    });
    let n = texts.len() as f32;
    texts
        .par_iter()
        .map(|t| {
            let mut doc = terms(t);
            doc.sort_unstable();
            let mut v = vec![0f32; LEXICAL_DIM];
            for run in doc.chunk_by(|a, b| a == b) {
                let term = run[0];
                let count = run.len() as f32;
                let frequency = df[(term % DF_BUCKETS as u64) as usize].load(Relaxed).max(1) as f32;
                let idf = ((1.0 + n) / (1.0 + frequency)).ln() + 1.0;
                let weight = (1.0 + count.ln()) * idf;
                let sign = if term >> 63 == 0 { 1.0 } else { -1.0 };
                v[((term >> 32) % LEXICAL_DIM as u64) as usize] += sign * weight;
            }
            normalize(&mut v);
            v
        })
        .collect()
}

/// A text's terms: its normalised words and pairs of neighbouring words.
fn terms(text: &str) -> Vec<u64> {
    let normal = evol_dedup::normalize(text);
    let words: Vec<u64> = evol_dedup::words(&normal).map(|w| xxh3_64(w.as_bytes())).collect();
    let mut out = words.clone();
    for pair in words.windows(2) {
        out.push(xxh3_64(&[pair[0].to_le_bytes(), pair[1].to_le_bytes()].concat()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        normalize(&mut v);
        v
    }

    #[test]
    fn the_first_of_a_near_identical_pair_is_kept_and_the_second_dropped() {
        // Rows 0 and 2 are the same direction; 0 scores higher.
        let vectors = vec![unit(&[1.0, 0.0]), unit(&[0.0, 1.0]), unit(&[1.0, 0.01]), unit(&[1.0, 1.0])];
        let scores = [Some(9.0), Some(5.0), Some(8.0), Some(1.0)];
        let s = select(&scores, &vectors, 10, 0.9);
        assert_eq!(s.taken, [0, 1, 3]);
        assert_eq!(s.similar.len(), 1);
        assert_eq!((s.similar[0].0, s.similar[0].1), (2, 0));
        assert!(s.similar[0].2 > 0.99);
        // The nearest-neighbour-in-the-pool mistake would drop both 0 and
        // 2: here the higher-scored of the pair stays whatever the order.
        let scores = [Some(1.0), Some(5.0), Some(8.0), Some(1.0)];
        let s = select(&scores, &vectors, 10, 0.9);
        assert_eq!(s.taken, [2, 1, 3]);
        assert_eq!((s.similar[0].0, s.similar[0].1), (0, 2));
    }

    #[test]
    fn the_budget_ties_and_unscored_rows() {
        let vectors: Vec<Vec<f32>> = (0..5)
            .map(|i| {
                let mut v = vec![0.0; 5];
                v[i] = 1.0;
                v
            })
            .collect();
        let scores = [Some(2.0), None, Some(2.0), Some(3.0), Some(f64::NAN)];
        let s = select(&scores, &vectors, 2, 0.9);
        assert_eq!(s.taken, [3, 0], "highest first, ties in row order, at most the budget");
        assert_eq!(s.unscored, [1, 4]);
        // A threshold of 1 keeps exact copies too; below -1 nothing after the first.
        let copies = vec![unit(&[1.0, 2.0]); 3];
        assert_eq!(select(&[Some(1.0); 3], &copies, 5, 1.0).taken.len(), 3);
        assert_eq!(select(&[Some(1.0); 3], &copies, 5, 0.9).taken, [0]);
        assert!(select(&[], &[], 5, 0.9).taken.is_empty());
    }

    #[test]
    fn many_taken_rows_are_compared_on_every_core_with_the_same_result() {
        // 5000 random-ish directions: the parallel path decides as the
        // serial one would (checked against a plain loop).
        let dim = 16;
        let vectors: Vec<Vec<f32>> = (0..5000u64)
            .map(|i| {
                unit(
                    &(0..dim)
                        .map(|d| ((xxh3_64(&(i * 31 + d).to_le_bytes()) % 1000) as f32) - 500.0)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let scores: Vec<Option<f64>> = (0..5000).map(|i| Some(f64::from(i % 97))).collect();
        let fast = select(&scores, &vectors, 5000, 0.95);
        let mut order: Vec<usize> = (0..5000).collect();
        order.sort_by(|&a, &b| scores[b].unwrap().total_cmp(&scores[a].unwrap()).then(a.cmp(&b)));
        let mut slow: Vec<usize> = Vec::new();
        for row in order {
            if slow.iter().all(|&t| dot(&vectors[t], &vectors[row]) <= 0.95) {
                slow.push(row);
            }
        }
        assert_eq!(fast.taken, slow);
    }

    #[test]
    fn lexical_vectors_bring_texts_with_shared_words_close() {
        let texts = [
            "Write a poem about the sea at night.",
            "Write a poem about the sea at night!",
            "Explain how a binary search tree balances itself.",
            "Write a short poem about the sea in the morning.",
        ];
        let v = lexical(&texts);
        assert!(dot(&v[0], &v[1]) > 0.999);
        assert!(dot(&v[0], &v[3]) > dot(&v[0], &v[2]));
        assert!(dot(&v[0], &v[2]) < 0.3, "{}", dot(&v[0], &v[2]));
        assert!((dot(&v[2], &v[2]) - 1.0).abs() < 1e-5);
    }
}
