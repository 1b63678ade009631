//! Exact and near-duplicate detection for instruction datasets.
//!
//! A text is first normalised ([`normalize`]: Unicode NFKC, lower case,
//! punctuation and symbols dropped, whitespace collapsed, ideographs as
//! words of their own). Two texts whose normalised forms are equal are
//! exact duplicates. Near duplicates are found by MinHash over word
//! shingles (runs of [`Params::shingle`] words) with LSH banding: a text's
//! signature is the minimum of each of [`Params::hashes`] hash functions
//! over its shingles; the signature is cut into [`Params::bands`] bands,
//! and two texts sharing a whole band become candidates; a candidate is a
//! near duplicate when the share of equal signature values, the estimate of
//! the shingle sets' Jaccard similarity, reaches [`Params::threshold`].
//! [`curve`] gives the probability that a pair of a given true similarity
//! is caught, the S-curve the defaults are chosen by.
//!
//! [`Index`] holds the texts kept so far and answers, for a new text's
//! [`Fingerprint`], which kept text it duplicates. Callers decide the
//! order: keeping the first of each cluster in a fixed order makes the
//! result deterministic. Signatures are stored as their low 8 bits
//! ("b-bit MinHash", Li and König 2010), which keeps 100 bytes per text for
//! the default 100 hashes; the estimate corrects for the 1/256 chance that
//! two different values share their low bits.
//!
//! Everything here is pure computation: no files, no threads but rayon's
//! for fingerprinting many texts at once.

pub mod contamination;
mod curve;
mod index;
mod minhash;
mod normalize;

pub use contamination::Benchmarks;
pub use curve::{caught, flagged, Explanation};
pub use index::{FrozenBuilder, FrozenIndex, Index, Match, Names, BUCKET_CHECKS};
pub use minhash::{similarity, Fingerprint, Hasher};
pub use normalize::{normalize, words};

use serde::{Deserialize, Serialize};

/// One line of a duplicates file (the run's `duplicates.jsonl`, `evol
/// dedup`'s clusters file): a text left out and the earlier one it
/// duplicates, each named by `R` (a dataset row's id, or a file row's
/// place and id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateLine<R> {
    pub removed: R,
    pub kept: R,
    /// The estimated Jaccard similarity, to three decimals (1 for an exact
    /// duplicate).
    pub similarity: f64,
    pub exact: bool,
}

impl<R> DuplicateLine<R> {
    pub fn new(removed: R, kept: R, found: Match) -> DuplicateLine<R> {
        DuplicateLine { removed, kept, similarity: shown_similarity(found.similarity), exact: found.exact }
    }
}

/// A similarity as every record and duplicates file writes it: to three
/// decimals.
pub fn shown_similarity(similarity: f64) -> f64 {
    (similarity * 1000.0).round() / 1000.0
}

/// How texts are compared. Validated by [`Params::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Words per shingle.
    pub shingle: usize,
    /// Hash functions in a signature.
    pub hashes: usize,
    /// LSH bands; `hashes` must be a multiple of it.
    pub bands: usize,
    /// The estimated Jaccard similarity from which a pair is a near
    /// duplicate.
    pub threshold: f64,
}

impl Default for Params {
    /// Three-word shingles, 100 hashes in 20 bands of 5, threshold 0.8
    /// (see the README for the S-curve they give).
    fn default() -> Params {
        Params { shingle: 3, hashes: 100, bands: 20, threshold: 0.8 }
    }
}

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("the shingle size must be 1 to 16 words, found {0}")]
    Shingle(usize),
    #[error("the number of hashes must be 1 to 1024, found {0}")]
    Hashes(usize),
    #[error("the number of bands must divide the number of hashes ({hashes}), found {bands}")]
    Bands { hashes: usize, bands: usize },
    #[error("the threshold must be above 0 and at most 1, found {0}")]
    Threshold(f64),
}

impl Params {
    /// The same settings, checked.
    pub fn validate(self) -> Result<Params, ParamError> {
        if !(1..=16).contains(&self.shingle) {
            return Err(ParamError::Shingle(self.shingle));
        }
        if !(1..=1024).contains(&self.hashes) {
            return Err(ParamError::Hashes(self.hashes));
        }
        if self.bands == 0 || !self.hashes.is_multiple_of(self.bands) {
            return Err(ParamError::Bands { hashes: self.hashes, bands: self.bands });
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ParamError::Threshold(self.threshold));
        }
        Ok(self)
    }

    /// Hashes per band.
    pub fn rows(&self) -> usize {
        self.hashes / self.bands
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked() {
        assert_eq!(Params::default().validate(), Ok(Params::default()));
        assert_eq!(Params::default().rows(), 5);
        let bad = |p: Params| p.validate().unwrap_err().to_string();
        assert!(bad(Params { shingle: 0, ..Params::default() }).contains("shingle"));
        assert!(bad(Params { hashes: 0, ..Params::default() }).contains("hashes"));
        assert!(bad(Params { bands: 7, ..Params::default() }).contains("divide"));
        assert!(bad(Params { bands: 0, ..Params::default() }).contains("divide"));
        assert!(bad(Params { threshold: 0.0, ..Params::default() }).contains("threshold"));
        assert!(bad(Params { threshold: f64::NAN, ..Params::default() }).contains("threshold"));
        assert!(bad(Params { threshold: 1.5, ..Params::default() }).contains("threshold"));
    }
}
