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
        let mut best = Best::new(self.params.threshold);
        for (band, key) in fingerprint.bands().iter().enumerate() {
            let mut at = self.heads[band].get(key).copied().unwrap_or(NONE);
            let mut checked = 0;
            while at != NONE && checked < BUCKET_CHECKS {
                checked += 1;
                best.offer(at, signature, self.signature(at));
                at = self.next[at as usize * self.params.bands + band];
            }
        }
        best.found
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

/// A read-only index of a set of texts known at once (a run's seeds, a
/// dataset about to be written). Built with [`FrozenBuilder`];
/// [`FrozenIndex::find`] answers as [`Index::find`] would for the same
/// texts inserted in the same order.
///
/// Each band's entries are packed into one `u64` each (band key above,
/// position below) and sorted, so a bucket's texts are contiguous and in
/// the order they came; a directory over the keys' top bits points at the
/// few entries (eight on average) among which a key's bucket starts and
/// ends. A lookup is one directory read and a short scan per band, never a
/// search of the whole band. About 9 bytes per band, 21 for the exact hash
/// and one byte per hash of each text.
#[derive(Debug)]
pub struct FrozenIndex {
    params: Params,
    /// Exact hashes, sorted, each with its text's position.
    exact: Directory<u128>,
    exact_at: Box<[u32]>,
    /// Per band: `(key << 32) | position`, sorted.
    bands: Vec<Directory<u64>>,
    signatures: Vec<u8>,
    len: u32,
}

/// Sorted keys with a directory over their top bits: the keys whose top
/// `bits` bits are `s` are `keys[starts[s]..starts[s + 1]]`.
#[derive(Debug)]
struct Directory<K> {
    keys: Box<[K]>,
    starts: Box<[u32]>,
    bits: u32,
}

/// Keys a directory's slots hold on average, at least: a slot's keys fill
/// about a cache line.
const PER_SLOT: usize = 8;

/// What a directory can index: unsigned integers whose top bits are
/// spread evenly (hashes).
trait Key: Copy + Ord {
    /// The top `bits` bits (0 < bits < 32), as a slot number.
    fn top(self, bits: u32) -> usize;
}

impl Key for u64 {
    fn top(self, bits: u32) -> usize {
        (self >> (64 - bits)) as usize
    }
}

impl Key for u128 {
    fn top(self, bits: u32) -> usize {
        (self >> (128 - bits)) as usize
    }
}

impl<K: Key> Directory<K> {
    fn new(mut keys: Vec<K>) -> Directory<K> {
        keys.sort_unstable();
        let slots = (keys.len() / PER_SLOT).max(1).next_power_of_two();
        let bits = slots.trailing_zeros().max(1);
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut at = 0;
        for slot in 0..1usize << bits {
            starts.push(at as u32);
            while at < keys.len() && keys[at].top(bits) == slot {
                at += 1;
            }
        }
        starts.push(at as u32);
        Directory { keys: keys.into_boxed_slice(), starts: starts.into_boxed_slice(), bits }
    }

    /// The keys from `low` to `high` (inclusive), which must share their
    /// top bits: scanned in from both ends of their slot.
    fn range(&self, low: K, high: K) -> std::ops::Range<usize> {
        let slot = low.top(self.bits);
        debug_assert_eq!(slot, high.top(self.bits));
        let (from, to) = (self.starts[slot] as usize, self.starts[slot + 1] as usize);
        let keys = &self.keys[from..to];
        let start = keys.iter().position(|k| *k >= low).unwrap_or(keys.len());
        let end = keys.len() - keys.iter().rev().position(|k| *k <= high).unwrap_or(keys.len());
        from + start..from + end.max(start)
    }
}

/// Gathers the texts of a [`FrozenIndex`].
#[derive(Debug)]
pub struct FrozenBuilder {
    params: Params,
    exact: Vec<(u128, u32)>,
    bands: Vec<Vec<u64>>,
    signatures: Vec<u8>,
    len: u32,
}

impl FrozenBuilder {
    pub fn new(params: Params) -> FrozenBuilder {
        FrozenBuilder {
            params,
            exact: Vec::new(),
            bands: (0..params.bands).map(|_| Vec::new()).collect(),
            signatures: Vec::new(),
            len: 0,
        }
    }

    /// Adds a text; returns its position.
    pub fn push(&mut self, fingerprint: &Fingerprint) -> u32 {
        let at = self.len;
        assert!(at < NONE, "an index holds fewer than 2^32 - 1 texts");
        self.exact.push((fingerprint.exact, at));
        match fingerprint.signature() {
            Some(signature) => {
                self.signatures.extend_from_slice(signature);
                for (band, key) in fingerprint.bands().iter().enumerate() {
                    self.bands[band].push(u64::from(*key) << 32 | u64::from(at));
                }
            }
            None => self.signatures.resize(self.signatures.len() + self.params.hashes, 0),
        }
        self.len += 1;
        at
    }

    pub fn finish(self) -> FrozenIndex {
        let mut exact = self.exact;
        exact.sort_unstable();
        let exact_at = exact.iter().map(|(_, at)| *at).collect();
        let exact = Directory::new(exact.into_iter().map(|(hash, _)| hash).collect());
        let mut signatures = self.signatures;
        signatures.shrink_to_fit();
        FrozenIndex {
            params: self.params,
            exact,
            exact_at,
            bands: self.bands.into_iter().map(Directory::new).collect(),
            signatures,
            len: self.len,
        }
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
        let same = self.exact.range(fingerprint.exact, fingerprint.exact);
        let earlier = self.exact_at[same].iter().take_while(|at| **at < before);
        if let Some(&at) = earlier.into_iter().find(|at| kept(**at)) {
            return Some(Match { index: at, similarity: 1.0, exact: true });
        }
        let signature = fingerprint.signature()?;
        let mut best = Best::new(self.params.threshold);
        for (band, key) in fingerprint.bands().iter().enumerate() {
            let entries = &self.bands[band];
            let key = u64::from(*key) << 32;
            let bucket = &entries.keys[entries.range(key, key | u64::from(u32::MAX))];
            // Positions ascend within a bucket: those before `before`.
            let end = if before == u32::MAX { bucket.len() } else { bucket.partition_point(|e| (*e as u32) < before) };
            let candidates = bucket[..end].iter().rev().map(|e| *e as u32).filter(|at| kept(*at)).take(BUCKET_CHECKS);
            for at in candidates {
                let from = at as usize * self.params.hashes;
                best.offer(at, signature, &self.signatures[from..from + self.params.hashes]);
            }
        }
        best.found
    }
}

/// The best near duplicate among candidates: the most similar at the
/// threshold or above, the earliest of equals. The order candidates come
/// in does not matter, nor does a candidate offered twice (a text sharing
/// several bands): each is compared again rather than remembered, which
/// costs less than keeping a set of those seen.
struct Best {
    threshold: f64,
    found: Option<Match>,
}

impl Best {
    fn new(threshold: f64) -> Best {
        Best { threshold, found: None }
    }

    fn offer(&mut self, at: u32, signature: &[u8], other: &[u8]) {
        let s = similarity(signature, other);
        let better = match self.found {
            None => true,
            Some(b) => s > b.similarity || (s == b.similarity && at < b.index),
        };
        if s >= self.threshold && better {
            self.found = Some(Match { index: at, similarity: s, exact: false });
        }
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
    fn a_directory_finds_every_range_a_search_would() {
        // Keys crowded at the slots' edges and repeated many times.
        let mut state = 3u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            state
        };
        let mut keys: Vec<u64> = Vec::new();
        for _ in 0..2000 {
            let r = next();
            let key = match r % 4 {
                0 => r,
                1 => (r >> 8) << 8,
                2 => u64::MAX - (r % 64),
                _ => 0x8000_0000_0000_0000 - 1 + (r % 3),
            };
            keys.extend(std::iter::repeat_n(key, 1 + (r % 5) as usize));
        }
        let directory = Directory::new(keys.clone());
        keys.sort_unstable();
        assert!(directory.bits > 1);
        for probe in keys.iter().copied().chain((0..500).map(|_| next())) {
            for (low, high) in [(probe, probe), ((probe >> 32) << 32, (probe >> 32) << 32 | u64::from(u32::MAX))] {
                let expected: Vec<u64> = keys.iter().copied().filter(|k| (low..=high).contains(k)).collect();
                assert_eq!(directory.keys[directory.range(low, high)].to_vec(), expected, "{low:x}..={high:x}");
            }
        }
        let empty = Directory::<u128>::new(Vec::new());
        assert!(empty.range(5, 5).is_empty());
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
