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

/// A read-only index of a set of texts known at once (a run's seeds), in
/// sorted arrays: about 8 bytes per band and one byte per hash of each
/// text, half of [`Index`]'s hash tables. Built with [`FrozenBuilder`];
/// [`FrozenIndex::find`] answers as [`Index::find`] would for the same
/// texts inserted in the same order.
#[derive(Debug)]
pub struct FrozenIndex {
    params: Params,
    /// (exact hash, position), sorted.
    exact: Vec<(u128, u32)>,
    /// Per band: (key, position), sorted.
    bands: Vec<Vec<(u32, u32)>>,
    signatures: Vec<u8>,
    len: u32,
}

/// Gathers the texts of a [`FrozenIndex`].
#[derive(Debug)]
pub struct FrozenBuilder {
    index: FrozenIndex,
}

impl FrozenBuilder {
    pub fn new(params: Params) -> FrozenBuilder {
        FrozenBuilder {
            index: FrozenIndex {
                params,
                exact: Vec::new(),
                bands: (0..params.bands).map(|_| Vec::new()).collect(),
                signatures: Vec::new(),
                len: 0,
            },
        }
    }

    /// Adds a text; returns its position.
    pub fn push(&mut self, fingerprint: &Fingerprint) -> u32 {
        let index = &mut self.index;
        let at = index.len;
        assert!(at < NONE, "an index holds fewer than 2^32 - 1 texts");
        index.exact.push((fingerprint.exact, at));
        match fingerprint.signature() {
            Some(signature) => {
                index.signatures.extend_from_slice(signature);
                for (band, key) in fingerprint.bands().iter().enumerate() {
                    index.bands[band].push((*key, at));
                }
            }
            None => index.signatures.resize(index.signatures.len() + index.params.hashes, 0),
        }
        index.len += 1;
        at
    }

    pub fn finish(mut self) -> FrozenIndex {
        let index = &mut self.index;
        index.exact.sort_unstable();
        for band in &mut index.bands {
            band.sort_unstable();
            band.shrink_to_fit();
        }
        index.exact.shrink_to_fit();
        index.signatures.shrink_to_fit();
        self.index
    }
}

impl FrozenIndex {
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// As [`Index::find`]: an exact duplicate, else the most similar text
    /// sharing a band at the threshold or above (the earliest of equals),
    /// looking at the [`BUCKET_CHECKS`] latest texts of each bucket.
    pub fn find(&self, fingerprint: &Fingerprint) -> Option<Match> {
        self.find_among(fingerprint, u32::MAX, |_| true)
    }

    /// [`FrozenIndex::find`] among the texts before position `before` that
    /// `kept` keeps: what an [`Index`] holding just those, inserted in
    /// order, would answer. So a dataset known in advance is deduplicated
    /// in two passes (index every row, then decide each in order) in the
    /// memory of this index.
    pub fn find_among(&self, fingerprint: &Fingerprint, before: u32, kept: impl Fn(u32) -> bool) -> Option<Match> {
        let exact = self.exact.partition_point(|(hash, _)| *hash < fingerprint.exact);
        let same = self.exact[exact..].iter().take_while(|(hash, at)| *hash == fingerprint.exact && *at < before);
        if let Some(&(_, at)) = same.into_iter().find(|(_, at)| kept(*at)) {
            return Some(Match { index: at, similarity: 1.0, exact: true });
        }
        let signature = fingerprint.signature()?;
        let mut best: Option<Match> = None;
        let mut seen: Vec<u32> = Vec::new();
        for (band, key) in fingerprint.bands().iter().enumerate() {
            let entries = &self.bands[band];
            let end = entries.partition_point(|&(k, at)| k < *key || (k == *key && at < before));
            let start = entries[..end].partition_point(|(k, _)| k < key);
            let candidates = entries[start..end].iter().rev().filter(|(_, at)| kept(*at)).take(BUCKET_CHECKS);
            for &(_, at) in candidates {
                if seen.contains(&at) {
                    continue;
                }
                seen.push(at);
                let from = at as usize * self.params.hashes;
                let s = similarity(signature, &self.signatures[from..from + self.params.hashes]);
                let better = match best {
                    None => true,
                    Some(b) => s > b.similarity || (s == b.similarity && at < b.index),
                };
                if s >= self.params.threshold && better {
                    best = Some(Match { index: at, similarity: s, exact: false });
                }
            }
        }
        best
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
    fn a_frozen_index_answers_as_the_index_does() {
        let h = Hasher::new(Params::default());
        // Each new text, an exact copy of it, then a near copy.
        let texts: Vec<String> = (0..300)
            .map(|i| {
                let base = sentence(i - i % 3, 40);
                match i % 3 {
                    0 => base,
                    1 => base.to_uppercase(),
                    _ => format!("{} changed", base.rsplit_once(' ').unwrap().0),
                }
            })
            .collect();
        let mut index = Index::new(Params::default());
        let mut frozen = FrozenBuilder::new(Params::default());
        for t in &texts[..200] {
            index.insert(&h.fingerprint(t));
            frozen.push(&h.fingerprint(t));
        }
        frozen.push(&h.fingerprint("!!"));
        index.insert(&h.fingerprint("!!"));
        let frozen = frozen.finish();
        assert_eq!(frozen.len(), 201);
        let mut found = 0;
        for t in texts.iter().chain(["?"].iter().map(|s| s.to_string()).collect::<Vec<_>>().iter()) {
            let print = h.fingerprint(t);
            assert_eq!(frozen.find(&print), index.find(&print), "{t}");
            found += usize::from(frozen.find(&print).is_some());
        }
        assert!(found > 200, "{found}");

        // Among the earlier kept texts only: as an index of just those.
        let prints: Vec<Fingerprint> = texts.iter().map(|t| h.fingerprint(t)).collect();
        let mut all = FrozenBuilder::new(Params::default());
        for p in &prints {
            all.push(p);
        }
        let all = all.finish();
        let mut kept = vec![false; prints.len()];
        let mut incremental = Index::new(Params::default());
        let mut positions = Vec::new();
        for (i, p) in prints.iter().enumerate() {
            let two_pass = all.find_among(p, i as u32, |q| kept[q as usize]).map(|m| m.index);
            let one_pass = incremental.find(p).map(|m| positions[m.index as usize]);
            assert_eq!(two_pass, one_pass, "text {i}");
            if one_pass.is_none() {
                kept[i] = true;
                incremental.insert(p);
                positions.push(i as u32);
            }
        }
        let removed = kept.iter().filter(|k| !**k).count();
        assert_eq!(removed, 200);
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
