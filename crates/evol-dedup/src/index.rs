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
/// Each band's entries are sorted by band key, then position, so a
/// bucket's texts are contiguous and in the order they came; a directory
/// over the keys' top bits points at the few entries (eight on average)
/// among which a key's bucket starts and ends. A lookup is one directory
/// read and a short scan per band, never a search of the whole band. An
/// entry packs the key's other bits and the position into five bytes or
/// so ([`Buckets`]). About 6 bytes per band, 21 for the exact hash and one
/// byte per hash of each text.
#[derive(Debug)]
pub struct FrozenIndex {
    params: Params,
    /// Exact hashes, sorted, each with its text's position.
    exact: Directory,
    exact_at: Box<[u32]>,
    bands: Vec<Buckets>,
    signatures: Vec<u8>,
    len: u32,
}

/// One band's entries: each `(key << 32) | position`, sorted, with the
/// key's top `bits` bits given by the directory slot it is in and the
/// rest packed with the position into `width` bytes, little-endian. The
/// entries of slot `s` are `starts[s]..starts[s + 1]`.
#[derive(Debug)]
struct Buckets {
    bits: u32,
    /// Bits of an entry that hold the position.
    position_bits: u32,
    width: usize,
    starts: Box<[u32]>,
    /// `width` bytes per entry, then 8 bytes of padding so that every
    /// entry can be read as a whole `u64`.
    packed: Box<[u8]>,
}

impl Buckets {
    /// `entries`: `(key << 32) | position` of every text with words, in
    /// any order; `len`: the number of texts.
    fn new(mut entries: Vec<u64>, len: u32) -> Buckets {
        entries.sort_unstable();
        let bits = directory_bits(entries.len());
        let position_bits = u32::BITS - len.saturating_sub(1).leading_zeros();
        let width = (32 - bits + position_bits).div_ceil(8).max(1) as usize;
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut packed = vec![0u8; entries.len() * width + 8];
        let mut at = 0;
        for slot in 0..1u64 << bits {
            starts.push(at as u32);
            while at < entries.len() && entries[at] >> (64 - bits) == slot {
                let e = entries[at];
                let rest = (e >> 32) & ((1 << (32 - bits)) - 1);
                let value = rest << position_bits | (e & 0xffff_ffff);
                packed[at * width..at * width + width].copy_from_slice(&value.to_le_bytes()[..width]);
                at += 1;
            }
        }
        starts.push(at as u32);
        Buckets { bits, position_bits, width, starts: starts.into(), packed: packed.into() }
    }

    /// Entry `i`: the key's packed bits, then the position.
    fn entry(&self, i: usize) -> (u64, u32) {
        let bytes: [u8; 8] = self.packed[i * self.width..i * self.width + 8].try_into().expect("padded");
        let value = u64::from_le_bytes(bytes) & (u64::MAX >> (64 - 8 * self.width));
        (value >> self.position_bits, (value & ((1 << self.position_bits) - 1)) as u32)
    }

    /// The entries of `key`'s directory slot.
    fn slot(&self, key: u32) -> (usize, usize) {
        let slot = (u64::from(key) >> (32 - self.bits)) as usize;
        (self.starts[slot] as usize, self.starts[slot + 1] as usize)
    }

    /// The range of entries of `key`'s bucket, scanned in from both ends
    /// of its slot (`slot`, from [`Buckets::slot`]).
    fn bucket(&self, key: u32, (from, to): (usize, usize)) -> std::ops::Range<usize> {
        let rest = u64::from(key) & ((1 << (32 - self.bits)) - 1);
        let start = (from..to).find(|&i| self.entry(i).0 >= rest).unwrap_or(to);
        let end = (start..to).rev().find(|&i| self.entry(i).0 <= rest).map_or(start, |i| i + 1);
        start..end
    }

    /// The first entry of `bucket` whose position is `before` or later
    /// (positions ascend in a bucket; a bucket is short but for texts
    /// made from one template, so this halves it).
    fn first_from(&self, bucket: std::ops::Range<usize>, before: u32) -> usize {
        let (mut low, mut high) = (bucket.start, bucket.end);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.entry(middle).1 < before {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }
}

/// Directory bits for `len` keys: a power of two of slots holding
/// [`PER_SLOT`] keys or more on average (at least two slots).
fn directory_bits(len: usize) -> u32 {
    (len / PER_SLOT).max(1).next_power_of_two().trailing_zeros().max(1)
}

/// Sorted keys with a directory over their top bits: the keys whose top
/// `bits` bits are `s` are `keys[starts[s]..starts[s + 1]]`.
#[derive(Debug)]
struct Directory {
    keys: Box<[u128]>,
    starts: Box<[u32]>,
    bits: u32,
}

/// Keys a directory's slots hold on average, at least: a slot's keys fill
/// about a cache line.
const PER_SLOT: usize = 8;

impl Directory {
    fn new(mut keys: Vec<u128>) -> Directory {
        keys.sort_unstable();
        let bits = directory_bits(keys.len());
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut at = 0;
        for slot in 0..1usize << bits {
            starts.push(at as u32);
            while at < keys.len() && (keys[at] >> (128 - bits)) as usize == slot {
                at += 1;
            }
        }
        starts.push(at as u32);
        Directory { keys: keys.into_boxed_slice(), starts: starts.into_boxed_slice(), bits }
    }

    /// The keys from `low` to `high` (inclusive), which must share their
    /// top bits: scanned in from both ends of their slot.
    fn range(&self, low: u128, high: u128) -> std::ops::Range<usize> {
        let slot = (low >> (128 - self.bits)) as usize;
        debug_assert_eq!(slot, (high >> (128 - self.bits)) as usize);
        let (from, to) = (self.starts[slot] as usize, self.starts[slot + 1] as usize);
        let keys = &self.keys[from..to];
        let start = keys.iter().position(|k| *k >= low).unwrap_or(keys.len());
        let end = keys.len() - keys.iter().rev().position(|k| *k <= high).unwrap_or(keys.len());
        from + start..from + end.max(start)
    }
}

/// Gathers the texts of a [`FrozenIndex`]. What it holds is laid out by
/// band, so that [`FrozenBuilder::finish`] packs one band at a time and
/// frees its keys as it goes.
#[derive(Debug)]
pub struct FrozenBuilder {
    params: Params,
    exact: Vec<u128>,
    /// Per band, each text's key (0 for a text with no word).
    keys: Vec<Vec<u32>>,
    /// The texts with no word, which are in no bucket, in order.
    wordless: Vec<u32>,
    signatures: Vec<u8>,
    len: u32,
}

impl FrozenBuilder {
    pub fn new(params: Params) -> FrozenBuilder {
        FrozenBuilder {
            params,
            exact: Vec::new(),
            keys: (0..params.bands).map(|_| Vec::new()).collect(),
            wordless: Vec::new(),
            signatures: Vec::new(),
            len: 0,
        }
    }

    /// Adds a text; returns its position.
    pub fn push(&mut self, fingerprint: &Fingerprint) -> u32 {
        let at = self.len;
        assert!(at < NONE, "an index holds fewer than 2^32 - 1 texts");
        self.exact.push(fingerprint.exact);
        match fingerprint.signature() {
            Some(signature) => {
                self.signatures.extend_from_slice(signature);
                for (keys, key) in self.keys.iter_mut().zip(fingerprint.bands()) {
                    keys.push(*key);
                }
            }
            None => {
                self.signatures.resize(self.signatures.len() + self.params.hashes, 0);
                self.keys.iter_mut().for_each(|keys| keys.push(0));
                self.wordless.push(at);
            }
        }
        self.len += 1;
        at
    }

    pub fn finish(self) -> FrozenIndex {
        let len = self.len;
        let mut exact: Vec<(u128, u32)> = self.exact.into_iter().zip(0..).collect();
        exact.sort_unstable();
        let exact_at = exact.iter().map(|(_, at)| *at).collect();
        let exact = Directory::new(exact.into_iter().map(|(hash, _)| hash).collect());
        let wordless = self.wordless;
        let bands = self
            .keys
            .into_iter()
            .map(|keys| {
                let mut entries = Vec::with_capacity(keys.len() - wordless.len());
                let mut skip = wordless.iter().peekable();
                for (at, key) in (0..).zip(keys) {
                    if skip.next_if_eq(&&at).is_none() {
                        entries.push(u64::from(key) << 32 | u64::from(at));
                    }
                }
                Buckets::new(entries, len)
            })
            .collect();
        let mut signatures = self.signatures;
        signatures.shrink_to_fit();
        FrozenIndex { params: self.params, exact, exact_at, bands, signatures, len }
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
        // Each band's slot is read first, for all bands at once, then each
        // band's bucket, so that their cache misses overlap instead of
        // following one another.
        let slots: Vec<(usize, usize)> =
            fingerprint.bands().iter().zip(&self.bands).map(|(key, buckets)| buckets.slot(*key)).collect();
        let buckets: Vec<std::ops::Range<usize>> = fingerprint
            .bands()
            .iter()
            .zip(&self.bands)
            .zip(slots)
            .map(|((key, b), slot)| b.bucket(*key, slot))
            .collect();
        let mut best = Best::new(self.params.threshold);
        for (buckets, bucket) in self.bands.iter().zip(buckets) {
            // Positions ascend within a bucket: those before `before`.
            let end = if before == u32::MAX { bucket.end } else { buckets.first_from(bucket.clone(), before) };
            let positions = (bucket.start..end).rev().map(|i| buckets.entry(i).1);
            for at in positions.filter(|at| kept(*at)).take(BUCKET_CHECKS) {
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

/// The names (row ids) of an index's texts by position, packed in one
/// string: a name costs its bytes and eight more, not an allocation each.
#[derive(Debug, Default)]
pub struct Names {
    text: String,
    ends: Vec<u64>,
}

impl Names {
    pub fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len() as u64);
    }

    /// The name at `position` (which must have been pushed).
    pub fn get(&self, position: u32) -> &str {
        let i = position as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
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
    fn buckets_and_directories_find_what_a_search_would() {
        // Keys crowded at the slots' edges and repeated many times.
        let mut state = 3u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            state
        };
        for texts in [1u32, 7, 3000, 20_000] {
            let mut entries: Vec<u64> = Vec::new();
            for at in 0..texts {
                let r = next();
                let key = match r % 4 {
                    0 => (r >> 32) as u32,
                    1 => ((r >> 40) as u32) << 8,
                    2 => u32::MAX - (r % 64) as u32,
                    _ => 0x8000_0000 - 1 + (r % 3) as u32,
                };
                // A few texts have no entry (no word).
                if r % 10 != 9 {
                    entries.push(u64::from(key) << 32 | u64::from(at));
                }
            }
            let buckets = Buckets::new(entries.clone(), texts);
            assert!(buckets.width <= 5, "{texts} texts: {} bytes", buckets.width);
            let probes: Vec<u32> =
                entries.iter().map(|e| (e >> 32) as u32).chain((0..300).map(|_| next() as u32)).collect();
            for key in probes {
                let mut expected: Vec<u32> =
                    entries.iter().filter(|e| (*e >> 32) as u32 == key).map(|e| *e as u32).collect();
                expected.sort_unstable();
                let range = buckets.bucket(key, buckets.slot(key));
                let found: Vec<u32> = range.clone().map(|i| buckets.entry(i).1).collect();
                assert_eq!(found, expected, "key {key:x} of {texts} texts");
                let before = expected.get(expected.len() / 2).copied().unwrap_or(0);
                let cut = buckets.first_from(range.clone(), before) - range.start;
                assert_eq!(cut, expected.iter().filter(|at| **at < before).count());
            }
        }

        let mut hashes: Vec<u128> = (0..5000).map(|i| u128::from(next()) << (64 * (i % 2))).collect();
        hashes.extend_from_within(..100);
        let directory = Directory::new(hashes.clone());
        for hash in hashes.iter().copied().chain([0, u128::MAX]) {
            let expected = hashes.iter().filter(|h| **h == hash).count();
            let range = directory.range(hash, hash);
            assert_eq!(range.len(), expected);
            assert!(directory.keys[range].iter().all(|h| *h == hash));
        }
        assert!(Directory::new(Vec::new()).range(5, 5).is_empty());
    }

    #[test]
    fn names_come_back_by_position() {
        let mut names = Names::default();
        for name in ["s1", "", "ताज", "长城-2"] {
            names.push(name);
        }
        assert_eq!((0..4).map(|i| names.get(i)).collect::<Vec<_>>(), ["s1", "", "ताज", "长城-2"]);
        assert_eq!(names.len(), 4);
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
