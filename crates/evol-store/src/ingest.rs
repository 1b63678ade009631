//! The seed file, read once and streamed: into the journal on a new run,
//! through a digest on a resume (to check the file did not change), into an
//! estimate on a dry run. One reading for all three, so they agree on
//! which seeds a run has.

use evol_core::rng::order_key;
use evol_core::Shard;
use evol_io::seeds::{open_seeds, Item, Place, SeedReader};
use evol_io::{Fields, SeedError, SeedFormat};

use crate::journal::{SeedRow, SqliteJournal};
use crate::StoreError;

/// How to read a seed file.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub format: SeedFormat,
    /// The fields holding the instruction and the id, when named.
    pub fields: Fields,
    /// Take only the first this many seeds of the file.
    pub limit: Option<u64>,
    /// Take only this shard's seeds (all shards count in the digest).
    pub shard: Option<Shard>,
    /// Skip malformed records (counted) instead of stopping.
    pub skip_invalid: bool,
    /// The run seed, which orders the dataset.
    pub run_seed: u64,
    /// Index every seed (all shards) for the run's near-duplicate check.
    pub dedup: Option<evol_dedup::Params>,
}

/// What was read from the seed file.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The digest of every seed of the file (within the limit), all shards.
    pub digest: String,
    /// How many seeds the file has (within the limit), all shards.
    pub total: u64,
    /// The first few malformed records skipped, and how many there were.
    pub invalid: Vec<(Place, String)>,
    pub invalid_count: usize,
    pub empty: Vec<Place>,
    pub empty_count: usize,
    /// How the records hold their instruction, as a log line names it
    /// (`Alpaca (...)`, with "and other layouts" when they differ).
    pub layout: Option<String>,
    /// Every seed of the file (all shards), with `dedup`.
    pub seed_index: Option<std::sync::Arc<evol_core::dedup::SeedIndex>>,
}

/// How many skipped records are named in warnings.
const SHOWN: usize = 5;

/// The seeds of a file, as rows for the journal, counting what it skips.
pub struct Scan {
    reader: SeedReader,
    read: usize,
    name: String,
    options: IngestOptions,
    input: Input,
    digest: evol_digest::Digest,
    seed_index: Option<evol_core::dedup::SeedIndex>,
}

impl Scan {
    pub fn open(path: &std::path::Path, options: IngestOptions) -> Result<Scan, StoreError> {
        let reader = open_seeds(path, options.format, &options.fields)?;
        let name = reader.name().to_string();
        let dedup = options.dedup;
        Ok(Scan {
            reader,
            read: 0,
            name,
            options,
            input: Input::default(),
            digest: evol_digest::Digest::new(),
            seed_index: dedup.map(evol_core::dedup::SeedIndex::new),
        })
    }

    /// What was read, once the scan is done. A file without any seed is an
    /// error.
    pub fn finish(mut self) -> Result<Input, StoreError> {
        if self.input.total == 0 {
            return Err(SeedError::NoSeeds { path: self.name }.into());
        }
        self.input.digest = self.digest.full_hex();
        self.input.layout =
            self.reader.layout().map(
                |(layout, mixed)| {
                    if mixed {
                        format!("{layout} and other layouts")
                    } else {
                        layout.to_string()
                    }
                },
            );
        self.input.seed_index = self.seed_index.map(|index| std::sync::Arc::new(index.finish()));
        Ok(self.input)
    }
}

impl Iterator for Scan {
    type Item = Result<SeedRow, StoreError>;

    fn next(&mut self) -> Option<Result<SeedRow, StoreError>> {
        let limit = self.options.limit.unwrap_or(u64::MAX);
        loop {
            if self.input.total >= limit {
                // The rest of the file is not read: `--limit 5` of a huge
                // or partly broken file reads five seeds.
                return None;
            }
            let item = self.reader.next()?;
            let pos = self.read;
            self.read += 1;
            let item = match item {
                Ok(item) => item,
                Err(e) => return Some(Err(e.into())),
            };
            // A seed named like an evolution (`a.r1`) would share its id
            // with the first evolution of the seed `a` in every output.
            let item = match item {
                Item::Seed(place, seed) if evolution_like(&seed.id) => Item::Invalid(
                    place,
                    format!(
                        "the id `{}` ends like an evolution's id (SEED.rROUND) and would collide with one: rename it",
                        seed.id
                    ),
                ),
                item => item,
            };
            match item {
                Item::Seed(place, seed) => {
                    self.input.total += 1;
                    self.digest.push_part(&seed.id);
                    self.digest.push_part(&seed.instruction);
                    if let Some(index) = &mut self.seed_index {
                        index.add(&seed.id, &seed.instruction);
                    }
                    if self.options.shard.is_some_and(|s| !s.contains(&seed.id)) {
                        continue;
                    }
                    let order_key = order_key(self.options.run_seed, &seed.id);
                    let place = format!("`{}` {place}", self.name);
                    return Some(Ok(SeedRow { pos: pos as i64, seed, place, order_key }));
                }
                Item::Invalid(place, message) if self.options.skip_invalid => {
                    self.input.invalid_count += 1;
                    if self.input.invalid.len() < SHOWN {
                        self.input.invalid.push((place, message));
                    }
                }
                Item::Invalid(place, message) => {
                    return Some(Err(SeedError::Invalid { path: self.name.clone(), place, message }.into()))
                }
                Item::Empty(place) => {
                    self.input.empty_count += 1;
                    if self.input.empty.len() < SHOWN {
                        self.input.empty.push(place);
                    }
                }
            }
        }
    }
}

/// Whether `id` has the shape of an evolution's id: `SEED.r` and a round.
fn evolution_like(id: &str) -> bool {
    match id.rsplit_once(".r") {
        Some((seed, round)) => !seed.is_empty() && !round.is_empty() && round.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Reads the seed file once, streaming: on a new run its seeds (of this
/// shard) are loaded into the journal; on a resume they are only digested
/// and counted, to check that the file did not change. A journal whose run
/// never began (it stopped before its first call) is loaded afresh, from
/// this file.
pub fn ingest(path: &std::path::Path, options: IngestOptions, journal: &SqliteJournal) -> Result<Input, StoreError> {
    let mut scan = Scan::open(path, options)?;
    if journal.seeds_loaded()? && journal.has_begun()? {
        for row in &mut scan {
            row?;
        }
    } else {
        journal.load_seeds(&mut scan)?;
    }
    scan.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_shaped_like_an_evolutions_are_refused() {
        assert!(evolution_like("a.r1") && evolution_like("s.r1.r12"));
        assert!(!evolution_like("a.r") && !evolution_like(".r1") && !evolution_like("a.rx") && !evolution_like("ar1"));
        assert!(!evolution_like("数学.题目"));
    }
}
