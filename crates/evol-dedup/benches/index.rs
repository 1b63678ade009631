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

use evol_dedup::{FrozenBuilder, Hasher, Params};

const CLAUSES: [&str; 12] = [
    "Explain each step of your reasoning.",
    "Limit the answer to three short paragraphs.",
    "Give one concrete example from everyday life.",
    "Compare at least two different approaches.",
    "Include a brief table that summarises the key points.",
    "Address one common misconception about it.",
    "Consider how the answer changes for a beginner.",
    "Justify every assumption you make.",
    "Cite the main trade-offs involved.",
    "Finish with a one-sentence summary.",
    "Avoid technical jargon where possible.",
    "Mention one historical development that matters here.",
];

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
    let mut builder = FrozenBuilder::new(Params::default());
    for p in &seed_prints {
        builder.push(p);
    }
    let seeds_index = builder.finish();
    let built = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut digest = 0u64;
    let mut found = 0usize;
    for p in &evolved_prints {
        if let Some(m) = seeds_index.find(p) {
            found += 1;
            digest = digest.wrapping_mul(31).wrapping_add(u64::from(m.index)).wrapping_add((m.similarity * 1e6) as u64);
        }
    }
    println!(
        "run check: index built in {built:.2} s, {n} lookups in {:.2} s, {found} found, digest {digest:x}",
        started.elapsed().as_secs_f64()
    );
    drop(seeds_index);

    let started = Instant::now();
    let mut builder = FrozenBuilder::new(Params::default());
    for p in &evolved_prints {
        builder.push(p);
    }
    let rows = builder.finish();
    let built = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut kept = vec![false; n];
    let (mut removed, mut digest) = (0usize, 0u64);
    for (i, p) in evolved_prints.iter().enumerate() {
        match rows.find_among(p, i as u32, |q| kept[q as usize]) {
            None => kept[i] = true,
            Some(m) => {
                removed += 1;
                digest =
                    digest.wrapping_mul(31).wrapping_add(u64::from(m.index)).wrapping_add((m.similarity * 1e6) as u64);
            }
        }
    }
    println!(
        "dataset dedup: index built in {built:.2} s, {n} decisions in {:.2} s, {removed} removed, digest {digest:x}",
        started.elapsed().as_secs_f64()
    );
}
