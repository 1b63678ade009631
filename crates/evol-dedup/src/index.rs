//! The texts kept so far, searchable by fingerprint.

use rustc_hash::FxHashMap;

use crate::minhash::{similarity, Fingerprint};
use crate::Params;

/// No entry: the end of a bucket's chain.
const NONE: u32 = u32::MAX;

/// How many of the most recent texts sharing a band a lookup compares
/// with, per band. Bounds the work when very many texts share a band
/// without being near duplicates (short texts from one template); a true
/// near duplicate shares many bands, so it is still found through another.
pub const BUCKET_CHECKS: usize = 128;

/// An index of kept texts: their exact hashes, their band keys (each
/// band's bucket a chain through `next`, newest first) and their b-bit
/// signatures. About 14 bytes per band and one byte per hash of each text.
#[derive(Debug)]
pub struct Index {
    params: Params,
    exact: FxHashMap<u128, u32>,
    heads: Vec<FxHashMap<u32, u32>>,
    /// `next[i * bands + band]`: the previous text in text `i`'s bucket.
    next: Vec<u32>,
    /// `signatures[i * hashes ..]`: text `i`'s signature (zeros for a text
    /// with no word, which is in no bucket).
    signatures: Vec<u8>,
    len: u32,
}

/// The kept text a new one duplicates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// Its position in the index (the order of [`Index::insert`]).
    pub index: u32,
    /// The estimated Jaccard similarity; 1 for an exact duplicate.
    pub similarity: f64,
    /// Equal once normalised.
    pub exact: bool,
}

impl Index {
    pub fn new(params: Params) -> Index {
        Index {
            params,
            exact: FxHashMap::default(),
            heads: (0..params.bands).map(|_| FxHashMap::default()).collect(),
            next: Vec::new(),
            signatures: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept text `fingerprint` duplicates: an exact duplicate, else
    /// the near duplicate (a shared band and an estimated similarity at
    /// least the threshold) of highest similarity, the earliest of equals.
    pub fn find(&self, fingerprint: &Fingerprint) -> Option<Match> {
        if let Some(&index) = self.exact.get(&fingerprint.exact) {
            return Some(Match { index, similarity: 1.0, exact: true });
        }
        let signature = fingerprint.signature()?;
        let mut best: Option<Match> = None;
        let mut seen: Vec<u32> = Vec::new();
        for (band, key) in fingerprint.bands().iter().enumerate() {
            let mut at = self.heads[band].get(key).copied().unwrap_or(NONE);
            let mut checked = 0;
            while at != NONE && checked < BUCKET_CHECKS {
                checked += 1;
                if !seen.contains(&at) {
                    seen.push(at);
                    let s = similarity(signature, self.signature(at));
                    let better = match best {
                        None => true,
                        Some(b) => s > b.similarity || (s == b.similarity && at < b.index),
                    };
                    if s >= self.params.threshold && better {
                        best = Some(Match { index: at, similarity: s, exact: false });
                    }
                }
                at = self.next[at as usize * self.params.bands + band];
            }
        }
        best
    }

    /// Keeps a text; returns its position.
    pub fn insert(&mut self, fingerprint: &Fingerprint) -> u32 {
        let index = self.len;
        assert!(index < NONE, "an index holds fewer than 2^32 - 1 texts");
        self.exact.entry(fingerprint.exact).or_insert(index);
        match fingerprint.signature() {
            Some(signature) => {
                self.signatures.extend_from_slice(signature);
                for (band, key) in fingerprint.bands().iter().enumerate() {
                    let previous = self.heads[band].insert(*key, index).unwrap_or(NONE);
                    self.next.push(previous);
                }
            }
            None => {
                self.signatures.resize(self.signatures.len() + self.params.hashes, 0);
                self.next.resize(self.next.len() + self.params.bands, NONE);
            }
        }
        self.len += 1;
        index
    }

    /// [`Index::find`], then [`Index::insert`] when there is no match:
    /// keeps the first of each cluster in the order texts come.
    pub fn check(&mut self, fingerprint: &Fingerprint) -> Result<u32, Match> {
        match self.find(fingerprint) {
            Some(found) => Err(found),
            None => Ok(self.insert(fingerprint)),
        }
    }

    fn signature(&self, index: u32) -> &[u8] {
        let at = index as usize * self.params.hashes;
        &self.signatures[at..at + self.params.hashes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hasher;

    fn sentence(seed: usize, words: usize) -> String {
        (0..words).map(|i| format!("w{}", (seed * 7919 + i * 104_729) % 100_003)).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn keeps_the_first_of_each_cluster_and_names_it() {
        let h = Hasher::new(Params::default());
        let base = sentence(1, 60);
        // One word changed at the end: 3 of 58 shingles differ.
        let near = format!("{} changed", base.rsplit_once(' ').unwrap().0);
        let texts = [base.clone(), sentence(2, 60), near, base.to_uppercase(), sentence(3, 60)];
        let mut index = Index::new(Params::default());
        let verdicts: Vec<_> = texts.iter().map(|t| index.check(&h.fingerprint(t))).collect();
        assert_eq!(verdicts[0], Ok(0));
        assert_eq!(verdicts[1], Ok(1));
        let near = verdicts[2].unwrap_err();
        assert_eq!((near.index, near.exact), (0, false));
        assert!(near.similarity > 0.85 && near.similarity < 1.0, "{near:?}");
        assert_eq!(verdicts[3], Err(Match { index: 0, similarity: 1.0, exact: true }));
        assert_eq!(verdicts[4], Ok(2));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn texts_below_the_threshold_are_kept() {
        let h = Hasher::new(Params::default());
        let base = sentence(5, 40);
        // Half the words replaced: well below 0.8.
        let half: String = base
            .split(' ')
            .enumerate()
            .map(|(i, w)| if i % 2 == 0 { w.to_string() } else { format!("x{i}") })
            .collect::<Vec<_>>()
            .join(" ");
        let mut index = Index::new(Params::default());
        assert!(index.check(&h.fingerprint(&base)).is_ok());
        assert!(index.check(&h.fingerprint(&half)).is_ok());
        // A text with no word is only ever an exact duplicate.
        assert!(index.check(&h.fingerprint("!!")).is_ok());
        assert_eq!(index.check(&h.fingerprint("?")).unwrap_err().index, 2);
        assert!(index.find(&h.fingerprint(&sentence(9, 40))).is_none());
    }

    #[test]
    fn the_closest_of_several_kept_texts_is_named() {
        let params = Params { threshold: 0.5, ..Params::default() };
        let h = Hasher::new(params);
        let base = sentence(11, 60);
        let words: Vec<&str> = base.split(' ').collect();
        let cut = |n: usize| words[..words.len() - n].join(" ");
        let mut index = Index::new(params);
        index.insert(&h.fingerprint(&cut(20)));
        index.insert(&h.fingerprint(&cut(2)));
        let found = index.find(&h.fingerprint(&base)).unwrap();
        assert_eq!(found.index, 1, "{found:?}");
    }
}
