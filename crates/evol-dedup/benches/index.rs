//! The near-duplicate index on the million-seed job's texts, without the
//! model calls: templated seeds ("Explain idea number N and why it
//! matters.") and their evolutions (a seed and one of twelve clauses), as
//! `scripts/bench-scale` sends them through `evol-mock`. Times fingerprinting,
//! the run's check of each evolution against the seeds, and the dataset's
//! dedup of the evolutions; prints the decisions' digest so two builds can be
//! compared.
//!
//! `cargo bench -p evol-dedup --bench index -- [TEXTS]` (default 1,000,000).

use std::time::Instant;

use evol_dedup::{Fingerprint, FrozenBuilder, FrozenIndex, Hasher, Match, Params};
use evol_mock::CLAUSES;

fn main() {
    let n: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let seeds: Vec<String> = (0..n).map(|i| format!("Explain idea number {i} and why it matters.")).collect();
    let evolved: Vec<String> = seeds
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{s} {}", CLAUSES[(i.wrapping_mul(0x9E37_79B9) >> 7) % CLAUSES.len()]))
        .collect();
    let hasher = Hasher::new(Params::default());

    let started = Instant::now();
    let seed_prints = hasher.fingerprints(&seeds);
    let evolved_prints = hasher.fingerprints(&evolved);
    println!("fingerprints: {:.2} s for {} texts", started.elapsed().as_secs_f64(), 2 * n);

    let started = Instant::now();
    let seeds_index = frozen(&seed_prints);
    let built = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut digest = 0u64;
    let mut found = 0usize;
    for p in &evolved_prints {
        if let Some(m) = seeds_index.find(p) {
            found += 1;
            digest = fold(digest, m);
        }
    }
    println!(
        "run check: index built in {built:.2} s, {n} lookups in {:.2} s, {found} found, digest {digest:x}",
        started.elapsed().as_secs_f64()
    );
    drop(seeds_index);

    let started = Instant::now();
    let rows = frozen(&evolved_prints);
    let built = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut kept = vec![false; n];
    let (mut removed, mut digest) = (0usize, 0u64);
    for (i, p) in evolved_prints.iter().enumerate() {
        match rows.find_among(p, i as u32, |q| kept[q as usize]) {
            None => kept[i] = true,
            Some(m) => {
                removed += 1;
                digest = fold(digest, m);
            }
        }
    }
    println!(
        "dataset dedup: index built in {built:.2} s, {n} decisions in {:.2} s, {removed} removed, digest {digest:x}",
        started.elapsed().as_secs_f64()
    );
}

fn frozen(prints: &[Fingerprint]) -> FrozenIndex {
    let mut builder = FrozenBuilder::new(Params::default());
    for p in prints {
        builder.push(p);
    }
    builder.finish()
}

/// Adds a decision to the digest: which text was found, how similar.
fn fold(digest: u64, found: Match) -> u64 {
    digest.wrapping_mul(31).wrapping_add(u64::from(found.index)).wrapping_add((found.similarity * 1e6) as u64)
}
