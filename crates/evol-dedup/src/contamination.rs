//! Benchmark decontamination: a text is contaminated when it shares a run
//! of `n` words (13 by default, as lm-eval's overlap checker) with a
//! benchmark item, both in their normal form. Text of scripts written
//! without spaces is cut into its words (see [`normalize`]), so for
//! Chinese, Japanese or Thai the run is of `n` words too.
//!
//! Hand-written: the check is a set of hashed word runs, a few dozen
//! lines; the n-gram crates found work on bytes or characters, not on the
//! normal form the rest of this crate compares in.

use std::collections::{BTreeSet, HashMap};

use xxhash_rust::xxh3::xxh3_64;

use crate::normalize::{normalize, words};

/// The run length lm-eval's checker uses.
pub const DEFAULT_NGRAM: usize = 13;

/// Items shorter than this many words are too short to tell a copy from a
/// common phrase: they are not indexed (and counted).
pub const MIN_ITEM_WORDS: usize = 8;

/// The benchmark items a text is checked against, by their word runs.
#[derive(Debug, Default)]
pub struct Benchmarks {
    n: usize,
    /// Each run's key (its length folded into its hash) -> the first item
    /// that has it.
    runs: HashMap<u64, u32>,
    /// The run lengths indexed: `n`, and the whole length of each item
    /// shorter than `n`.
    lengths: BTreeSet<usize>,
    names: Vec<String>,
    too_short: usize,
}

/// A benchmark item a text overlaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The item's name (its file and id).
    pub item: &'a str,
    /// The first run of words they share, in normal form.
    pub words: String,
}

impl Benchmarks {
    /// An empty index of runs of `n` words (at least [`MIN_ITEM_WORDS`]).
    pub fn new(n: usize) -> Benchmarks {
        Benchmarks { n: n.max(MIN_ITEM_WORDS), ..Benchmarks::default() }
    }

    /// The run length.
    pub fn ngram(&self) -> usize {
        self.n
    }

    /// Indexes an item's text under `name`. An item shorter than `n` words
    /// is indexed whole (a text that contains all of it overlaps it); one
    /// shorter than [`MIN_ITEM_WORDS`] is left out and counted.
    pub fn add(&mut self, name: String, text: &str) {
        let normal = normalize(text);
        let hashes: Vec<u64> = words(&normal).map(|w| xxh3_64(w.as_bytes())).collect();
        if hashes.len() < MIN_ITEM_WORDS {
            self.too_short += 1;
            return;
        }
        let len = self.n.min(hashes.len());
        self.lengths.insert(len);
        let id = self.names.len() as u32;
        self.names.push(name);
        for run in hashes.windows(len) {
            self.runs.entry(key(run)).or_insert(id);
        }
    }

    /// Items indexed, and items left out as too short.
    pub fn items(&self) -> usize {
        self.names.len()
    }

    pub fn too_short(&self) -> usize {
        self.too_short
    }

    /// The first benchmark item `text` shares a run of words with, if any.
    pub fn find(&self, text: &str) -> Option<Hit<'_>> {
        if self.runs.is_empty() {
            return None;
        }
        let normal = normalize(text);
        let all: Vec<&str> = words(&normal).collect();
        let hashes: Vec<u64> = all.iter().map(|w| xxh3_64(w.as_bytes())).collect();
        for &len in self.lengths.iter().rev() {
            for (at, run) in hashes.windows(len).enumerate() {
                if let Some(&id) = self.runs.get(&key(run)) {
                    return Some(Hit { item: &self.names[id as usize], words: all[at..at + len].join(" ") });
                }
            }
        }
        None
    }
}

/// A run's key: its words' hashes combined in order, with its length.
fn key(run: &[u64]) -> u64 {
    run.iter().fold(run.len() as u64, |h, w| h.rotate_left(5).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEM: &str = "Write a Python function that returns the longest palindromic substring of a given string, \
                        and explain its time complexity in one sentence.";

    fn index() -> Benchmarks {
        let mut b = Benchmarks::new(DEFAULT_NGRAM);
        b.add("testset.jsonl#7".into(), ITEM);
        b.add("testset.jsonl#8".into(), "请用三句话解释为什么天空是蓝色的，并给出一个日常生活中的例子。");
        b.add("short".into(), "What is 2 + 2?");
        b
    }

    #[test]
    fn a_copy_or_a_light_edit_is_found_and_named() {
        let b = index();
        assert_eq!(b.find(ITEM).unwrap().item, "testset.jsonl#7");
        // Edited around the copied run, in another case and punctuation.
        let edited = "Please, WRITE a python function that returns the longest palindromic substring of a given \
                      string -- then test it on three inputs.";
        let hit = b.find(edited).unwrap();
        assert_eq!(hit.item, "testset.jsonl#7");
        assert_eq!(hit.words.split(' ').count(), DEFAULT_NGRAM);
        // Chinese is cut into its words: a copied run of 13 words is found
        // ("Background: explain in three sentences why the sky is blue, and
        // give an example from everyday life."), a run of 13 characters
        // (fewer words) is not.
        let copied = "背景：请用三句话解释为什么天空是蓝色的，并给出一个日常生活中的例子。";
        assert_eq!(b.find(copied).unwrap().item, "testset.jsonl#8");
        assert!(b.find("背景：请用三句话解释为什么天空是蓝色的。").is_none());
    }

    #[test]
    fn unrelated_or_merely_similar_text_is_not_a_hit() {
        let b = index();
        assert!(b.find("Write a Rust function that returns the shortest path in a weighted graph.").is_none());
        assert!(b.find("请用两句话解释为什么海水是咸的。").is_none(), "shares fewer than 13 words in a row");
        assert!(b.find("What is 2 + 2?").is_none(), "a too-short item is not indexed");
        assert_eq!((b.items(), b.too_short()), (2, 1));
    }

    #[test]
    fn an_item_shorter_than_the_run_is_found_whole() {
        let mut b = Benchmarks::new(DEFAULT_NGRAM);
        b.add("gsm#1".into(), "Natalia sold clips to forty eight of her friends in April");
        assert!(b.find("Note: natalia sold clips to forty-eight of her friends in April, and then more.").is_some());
        assert!(b.find("Natalia sold clips to forty eight of her friends").is_none(), "only part of it");
    }
}
