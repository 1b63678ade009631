//! The seed file, read once and streamed into the journal.

use anyhow::{anyhow, bail};
use evol_core::rng::order_key;
use evol_io::seeds::{open_seeds, Item, Place};
use evol_io::SeedError;
use evol_journal::{LoadError, SeedRow, SqliteJournal};

use crate::cli::RunArgs;
use crate::settings::RunSettings;

/// What was read from the seed file.
pub(super) struct Input {
    /// The digest of every seed of the file (within --limit), all shards.
    pub digest: String,
    /// How many seeds the file has (within --limit), all shards.
    pub total: u64,
    /// The first few malformed records skipped, and how many there were.
    pub invalid: Vec<(Place, String)>,
    pub invalid_count: usize,
    pub empty: Vec<Place>,
    pub empty_count: usize,
}

/// How many skipped records are named in warnings.
const SHOWN: usize = 5;

/// Reads the seed file once, streaming: on a new run its seeds (of this
/// shard) are loaded into the journal; on a resume they are only digested
/// and counted, to check that the file did not change. A journal whose run
/// never started (no identity recorded: it stopped before connecting to a
/// model, so no call was made) is loaded afresh, from this file.
pub(super) fn load_seeds(args: &RunArgs, settings: &RunSettings, journal: &SqliteJournal) -> anyhow::Result<Input> {
    let reader = open_seeds(&args.seeds, settings.format)?;
    let name = reader.name().to_string();
    let mut input =
        Input { digest: String::new(), total: 0, invalid: vec![], invalid_count: 0, empty: vec![], empty_count: 0 };
    let mut hasher = blake3::Hasher::new();
    let limit = args.limit.map_or(u64::MAX, |l| l as u64);
    let run_seed = settings.engine.run_seed;
    let shard = settings.shard;
    let rows = reader.enumerate().filter_map(|(pos, item)| {
        let item = match item {
            Ok(item) => item,
            Err(e) => return Some(Err(anyhow::Error::from(e))),
        };
        match item {
            Item::Seed(place, seed) => {
                if input.total >= limit {
                    return None;
                }
                input.total += 1;
                for part in [&seed.id, &seed.instruction] {
                    hasher.update(&(part.len() as u64).to_le_bytes());
                    hasher.update(part.as_bytes());
                }
                if shard.is_some_and(|s| !s.contains(&seed.id)) {
                    return None;
                }
                let order_key = order_key(run_seed, &seed.id);
                Some(Ok(SeedRow { pos: pos as i64, seed, place: format!("`{name}` {place}"), order_key }))
            }
            Item::Invalid(place, message) if args.skip_invalid => {
                input.invalid_count += 1;
                if input.invalid.len() < SHOWN {
                    input.invalid.push((place, message));
                }
                None
            }
            Item::Invalid(place, message) => {
                Some(Err(SeedError::Invalid { path: name.clone(), place, message }.into()))
            }
            Item::Empty(place) => {
                input.empty_count += 1;
                if input.empty.len() < SHOWN {
                    input.empty.push(place);
                }
                None
            }
        }
    });
    if journal.seeds_loaded()? && journal.meta(super::IDENTITY)?.is_some() {
        for row in rows {
            row?;
        }
    } else {
        journal.load_seeds(rows).map_err(|e| match e {
            LoadError::Input(e) => e,
            LoadError::Sqlite(e) => anyhow!("the journal failed: {e}"),
            duplicate => anyhow!("{duplicate}"),
        })?;
    }
    if input.total == 0 {
        bail!(SeedError::NoSeeds { path: args.seeds.display().to_string() });
    }
    input.digest = hasher.finalize().to_hex().to_string();
    Ok(input)
}

pub(super) fn report_skipped(args: &RunArgs, input: &Input) {
    let file = args.seeds.display();
    for (place, message) in &input.invalid {
        eprintln!("warning: `{file}` {place}: {message}; skipped");
    }
    for place in &input.empty {
        eprintln!("warning: `{file}` {place}: empty instruction; skipped");
    }
    let more = (input.invalid_count - input.invalid.len()) + (input.empty_count - input.empty.len());
    if more > 0 {
        eprintln!("warning: ... and {more} more skipped");
    }
}
