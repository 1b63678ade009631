//! Near duplicates inside a run: an evolution that barely changed its
//! parent, an ancestor or any seed is a failed evolution
//! ([`Reason::NearDuplicate`](crate::eliminate::Reason)).
//!
//! [`SeedIndex`] holds every seed of the file (all shards, so a shard
//! decides as the whole run would); a chain keeps its own accepted
//! instructions ([`Ancestors`]). The comparison is `evol-dedup`'s, with the
//! run's [`Params`](evol_dedup::Params) from the [`Method`](crate::Method).

use evol_dedup::{similarity, Fingerprint, FrozenBuilder, FrozenIndex, Hasher, Names, Params};

/// Seeds added before they are fingerprinted together, on every core.
const BATCH: usize = 8192;

/// The instruction an evolution duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    /// The seed's or the earlier evolution's id.
    pub id: String,
    /// The estimated Jaccard similarity (1 for an exact duplicate).
    pub similarity: f64,
}

/// Every seed of a run, searchable for near duplicates ([`FrozenIndex`]:
/// about 250 bytes a seed with the default settings, id included).
#[derive(Debug)]
pub struct SeedIndex {
    hasher: Hasher,
    building: Option<FrozenBuilder>,
    index: Option<FrozenIndex>,
    ids: Names,
    pending: Vec<(Box<str>, String)>,
}

impl SeedIndex {
    /// An empty index; add seeds with [`SeedIndex::add`], then
    /// [`SeedIndex::finish`].
    pub fn new(params: Params) -> SeedIndex {
        SeedIndex {
            hasher: Hasher::new(params),
            building: Some(FrozenBuilder::new(params)),
            index: None,
            ids: Names::default(),
            pending: Vec::new(),
        }
    }

    pub fn add(&mut self, id: &str, instruction: &str) {
        self.pending.push((id.into(), instruction.to_string()));
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    /// Indexes the seeds still pending.
    pub fn finish(mut self) -> SeedIndex {
        self.flush();
        self.pending = Vec::new();
        self.ids.shrink_to_fit();
        self.index = self.building.take().map(FrozenBuilder::finish);
        self
    }

    fn flush(&mut self) {
        let texts: Vec<&str> = self.pending.iter().map(|(_, t)| t.as_str()).collect();
        let prints = self.hasher.fingerprints(&texts);
        let building = self.building.as_mut().expect("seeds are added before `finish`");
        for ((id, _), print) in self.pending.drain(..).zip(prints) {
            building.push(&print);
            self.ids.push(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The seed `print` duplicates, if any (none before `finish`).
    pub fn find(&self, print: &Fingerprint) -> Option<Duplicate> {
        let found = self.index.as_ref()?.find(print)?;
        Some(Duplicate { id: self.ids.get(found.index).to_string(), similarity: found.similarity })
    }
}

/// A chain's seed and accepted evolutions, newest last.
#[derive(Debug, Default)]
pub struct Ancestors {
    prints: Vec<(String, Fingerprint)>,
}

impl Ancestors {
    pub fn push(&mut self, id: &str, print: Fingerprint) {
        self.prints.push((id.to_string(), print));
    }

    /// The closest ancestor `print` duplicates at `threshold`: the most
    /// similar, the newest of equals.
    pub fn find(&self, print: &Fingerprint, threshold: f64) -> Option<Duplicate> {
        let mut best: Option<Duplicate> = None;
        for (id, other) in self.prints.iter().rev() {
            let s = if other.exact == print.exact {
                1.0
            } else {
                match (print.signature(), other.signature()) {
                    (Some(a), Some(b)) => similarity(a, b),
                    _ => 0.0,
                }
            };
            if s >= threshold && best.as_ref().is_none_or(|b| s > b.similarity) {
                best = Some(Duplicate { id: id.clone(), similarity: s });
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(seed: usize, n: usize) -> String {
        (0..n).map(|i| format!("w{}x{i}", seed)).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn seeds_are_found_by_id_whatever_the_batches() {
        let mut index = SeedIndex::new(Params::default());
        for i in 0..(BATCH + 10) {
            index.add(&format!("s{i}"), &words(i, 30));
        }
        let index = index.finish();
        assert_eq!(index.len(), BATCH + 10);
        let copy = index.hasher().fingerprint(&format!("{}!", words(BATCH + 3, 30).to_uppercase()));
        assert_eq!(index.find(&copy), Some(Duplicate { id: format!("s{}", BATCH + 3), similarity: 1.0 }));
        let near = index.hasher().fingerprint(&format!("{} and one more", words(7, 60)));
        assert_eq!(index.find(&near), None, "30 words of 63: not a near duplicate");
        let near = index.hasher().fingerprint(&words(7, 30).replace("w7x29", "changed"));
        assert_eq!(index.find(&near).map(|d| d.id), Some("s7".to_string()));
    }

    #[test]
    fn the_closest_ancestor_is_named() {
        let hasher = Hasher::new(Params::default());
        let mut chain = Ancestors::default();
        let base = words(1, 60);
        chain.push("a", hasher.fingerprint(&base));
        // Twenty words more: no longer a near duplicate of `a`.
        let longer = format!("{base} {}", words(3, 20));
        chain.push("a.r1", hasher.fingerprint(&longer));
        let found = chain.find(&hasher.fingerprint(&format!("{longer} yes")), 0.8).unwrap();
        assert_eq!(found.id, "a.r1");
        assert!(chain.find(&hasher.fingerprint(&words(2, 60)), 0.8).is_none());
        assert_eq!(chain.find(&hasher.fingerprint(&base.to_uppercase()), 0.8).unwrap().similarity, 1.0);
    }
}
