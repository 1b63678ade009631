//! MinHash signatures over word shingles.

use rayon::prelude::*;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::normalize::{normalize, words};
use crate::Params;

/// Makes fingerprints for one setting of [`Params`]. The hash functions
/// are fixed (derived from a constant), so a text's fingerprint is the same
/// in every run, on every machine.
#[derive(Debug, Clone)]
pub struct Hasher {
    params: Params,
    /// Multiply-add-shift hash functions `(a * x + b) >> 32` over 32-bit
    /// shingle hashes (`a` odd): strongly universal (Dietzfelbinger 1996).
    a: Box<[u64]>,
    b: Box<[u64]>,
}

/// What a text is compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// A 128-bit hash of the normalised text: equal for exact duplicates.
    pub exact: u128,
    /// The low 8 bits of each MinHash value; empty for a text with no word.
    signature: Box<[u8]>,
    /// One key per band, from the band's full 32-bit values.
    bands: Box<[u32]>,
}

impl Fingerprint {
    /// The b-bit signature, or `None` for a text with no word (which can
    /// only be an exact duplicate).
    pub fn signature(&self) -> Option<&[u8]> {
        (!self.signature.is_empty()).then_some(&*self.signature)
    }

    /// The band keys (empty for a text with no word).
    pub fn bands(&self) -> &[u32] {
        &self.bands
    }
}

impl Hasher {
    /// Hash functions for `params`, which must be valid
    /// ([`Params::validate`]).
    pub fn new(params: Params) -> Hasher {
        let mut state = 0x005E_ED0F_E701_u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            mix(state)
        };
        let (mut a, mut b) = (Vec::with_capacity(params.hashes), Vec::with_capacity(params.hashes));
        for _ in 0..params.hashes {
            a.push(next() | 1);
            b.push(next());
        }
        Hasher { params, a: a.into(), b: b.into() }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The fingerprint of `text` (normalised here).
    pub fn fingerprint(&self, text: &str) -> Fingerprint {
        let normal = normalize(text);
        let exact = xxh3_128(normal.as_bytes());
        let mut mins = vec![u32::MAX; self.params.hashes];
        let mut any = false;
        for x in shingles(&normal, self.params.shingle) {
            any = true;
            let x = u64::from(x);
            for ((min, a), b) in mins.iter_mut().zip(&*self.a).zip(&*self.b) {
                let v = (a.wrapping_mul(x).wrapping_add(*b) >> 32) as u32;
                *min = (*min).min(v);
            }
        }
        if !any {
            return Fingerprint { exact, signature: Box::new([]), bands: Box::new([]) };
        }
        let bands = mins
            .chunks(self.params.rows())
            .map(|band| {
                let h = band.iter().fold(0u64, |h, &v| mix(h ^ u64::from(v)));
                (h >> 32) as u32
            })
            .collect();
        let signature = mins.iter().map(|&v| v as u8).collect();
        Fingerprint { exact, signature, bands }
    }

    /// A fingerprint for exact duplicates only (no signature, no band).
    pub fn exact(text: &str) -> Fingerprint {
        Fingerprint { exact: xxh3_128(normalize(text).as_bytes()), signature: Box::new([]), bands: Box::new([]) }
    }

    /// The fingerprints of many texts, on every core.
    pub fn fingerprints<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Fingerprint> {
        texts.par_iter().map(|t| self.fingerprint(t.as_ref())).collect()
    }
}

/// The estimated Jaccard similarity of the shingle sets behind two b-bit
/// signatures of equal length: the share of equal values, less the 1/256
/// chance that two different values share their low 8 bits, rescaled.
pub fn similarity(a: &[u8], b: &[u8]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    if a.is_empty() {
        return 0.0;
    }
    let share = equal_bytes(a, b) as f64 / a.len() as f64;
    const CHANCE: f64 = 1.0 / 256.0;
    ((share - CHANCE) / (1.0 - CHANCE)).clamp(0.0, 1.0)
}

/// How many places two byte strings of equal length agree: 32 places at a
/// time into per-lane counters (a shape the compiler turns into vector
/// compares), the rest eight at a time (in `x ^ y` a byte is zero exactly
/// where they agree, and adding 0x7f to each byte's low seven bits sets its
/// high bit unless all eight are zero). A lookup compares a text with
/// hundreds of candidates, so this loop is most of its time.
fn equal_bytes(a: &[u8], b: &[u8]) -> usize {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let (a32, a_rest) = a.as_chunks::<32>();
    let (b32, b_rest) = b.as_chunks::<32>();
    // A lane counts at most one place per chunk: 32 chunks for the
    // largest signature (1024 hashes, `Params::validate`), under 256.
    debug_assert!(a32.len() < 256);
    let mut lanes = [0u8; 32];
    for (x, y) in a32.iter().zip(b32) {
        for i in 0..32 {
            lanes[i] += u8::from(x[i] == y[i]);
        }
    }
    let mut equal = lanes.iter().map(|&n| usize::from(n)).sum::<usize>();
    let (a8, a_rest) = a_rest.as_chunks::<8>();
    let (b8, b_rest) = b_rest.as_chunks::<8>();
    for (x, y) in a8.iter().zip(b8) {
        let d = u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
        // Each byte's high bit set where the bytes differ.
        equal += 8 - ((((d & LOW) + LOW) | d) & !LOW).count_ones() as usize;
    }
    equal + a_rest.iter().zip(b_rest).filter(|(x, y)| x == y).count()
}

/// The 32-bit hashes of a normalised text's shingles: every run of `k`
/// consecutive words, or the whole text when it has fewer than `k` words.
fn shingles(normal: &str, k: usize) -> impl Iterator<Item = u32> + '_ {
    let hashes: Vec<u64> = words(normal).map(|w| xxh3_64(w.as_bytes())).collect();
    let count = if hashes.is_empty() { 0 } else { hashes.len().saturating_sub(k) + 1 };
    (0..count).map(move |i| {
        let run = &hashes[i..(i + k).min(hashes.len())];
        let h = run.iter().fold(k as u64, |h, &w| mix(h.rotate_left(29) ^ w));
        (h ^ (h >> 32)) as u32
    })
}

/// The splitmix64 finaliser: a bijection of `u64` with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hasher() -> Hasher {
        Hasher::new(Params::default())
    }

    /// Words `w0`, `w1`, ... of a made-up vocabulary.
    fn text(ids: impl IntoIterator<Item = usize>) -> String {
        ids.into_iter().map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
    }

    fn true_jaccard(a: &str, b: &str, k: usize) -> f64 {
        let set = |t: &str| shingles(&normalize(t), k).collect::<HashSet<_>>();
        let (x, y) = (set(a), set(b));
        x.intersection(&y).count() as f64 / x.union(&y).count() as f64
    }

    #[test]
    fn shingles_are_runs_of_words_and_short_texts_have_one() {
        assert_eq!(shingles("a b c d", 3).count(), 2);
        assert_eq!(shingles("a b", 3).count(), 1);
        assert_eq!(shingles("", 3).count(), 0);
        // Order matters inside a shingle, and so does the shingle size.
        let one = |s: &str, k| shingles(s, k).next().unwrap();
        assert_ne!(one("a b c", 3), one("c b a", 3));
        assert_ne!(one("a b", 2), one("a b", 3));
    }

    #[test]
    fn exact_duplicates_share_the_exact_hash_after_normalising() {
        let h = hasher();
        let a = h.fingerprint("Write a poem about the sea.");
        let b = h.fingerprint("  write A POEM, about the sea!! ");
        assert_eq!(a, b);
        assert_ne!(a.exact, h.fingerprint("Write a poem about the sky.").exact);
        let empty = h.fingerprint("?!");
        assert_eq!(empty.signature(), None);
        assert!(empty.bands().is_empty());
        assert_eq!(empty.exact, h.fingerprint("...").exact);
        let exact = Hasher::exact("Write a poem about the SEA");
        assert_eq!((exact.exact, exact.signature()), (a.exact, None));
    }

    #[test]
    fn the_estimate_follows_the_true_jaccard_similarity() {
        // Pairs of 60-word texts sharing a prefix of varying length; the
        // estimate from 100 8-bit values has a standard error near 0.05.
        let h = hasher();
        let mut worst: f64 = 0.0;
        let mut total_error = 0.0;
        let mut n = 0.0;
        for pair in 0..200usize {
            let shared = (pair * 7) % 61;
            let a = text((0..60).map(|i| pair * 1000 + i));
            let b = text((0..60).map(|i| if i < shared { pair * 1000 + i } else { pair * 1000 + 500 + i }));
            let truth = true_jaccard(&a, &b, 3);
            let (fa, fb) = (h.fingerprint(&a), h.fingerprint(&b));
            let estimate = similarity(fa.signature().unwrap(), fb.signature().unwrap());
            worst = worst.max((estimate - truth).abs());
            total_error += estimate - truth;
            n += 1.0;
        }
        assert!(worst < 0.2, "worst error {worst}");
        assert!((total_error / n).abs() < 0.02, "mean error {}", total_error / n);
    }

    #[test]
    fn unrelated_texts_estimate_near_zero_and_same_texts_one() {
        let h = hasher();
        let a = h.fingerprint(&text(0..50));
        let b = h.fingerprint(&text(100..150));
        assert!(similarity(a.signature().unwrap(), b.signature().unwrap()) < 0.1);
        assert_eq!(similarity(a.signature().unwrap(), a.signature().unwrap()), 1.0);
    }

    #[test]
    fn fingerprints_do_not_depend_on_the_machine_or_the_run() {
        // A fixed text's first signature bytes and band key, pinned: a
        // change here changes every dedup result, so it must be deliberate.
        let f = hasher().fingerprint("Explain how a binary search works, step by step.");
        let pinned = (f.signature().unwrap()[..4].to_vec(), f.bands()[0]);
        assert_eq!(pinned, (PINNED_SIGNATURE.to_vec(), PINNED_BAND));
        let many = hasher().fingerprints(&["a b c", "d e f"]);
        assert_eq!(many[1], hasher().fingerprint("d e f"));
    }

    #[test]
    fn equal_places_are_counted_at_every_length_and_value() {
        let mut state = 7u64;
        let mut byte = || {
            state = mix(state);
            // Mostly 0, 0x80 and 0xff, where carries and high bits matter.
            [0u8, 0x80, 0xff, 0x7f, 1, (state >> 8) as u8][(state % 6) as usize]
        };
        for len in (0..80).chain([1000, 1024]) {
            for _ in 0..20 {
                let a: Vec<u8> = (0..len).map(|_| byte()).collect();
                let b: Vec<u8> = (0..len).map(|_| byte()).collect();
                let slow = a.iter().zip(&b).filter(|(x, y)| x == y).count();
                assert_eq!(equal_bytes(&a, &b), slow, "{a:?} {b:?}");
                assert_eq!(equal_bytes(&a, &a), len);
            }
        }
    }

    const PINNED_SIGNATURE: [u8; 4] = [116, 122, 53, 167];
    const PINNED_BAND: u32 = 96_016_753;
}
