//! Deterministic randomness: every random choice of a run comes from an RNG
//! keyed by (run seed, seed id, round, attempt), so the same inputs make the
//! same choices whatever the concurrency or the order in which calls finish.

use evol_digest::Digest;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The RNG for one evolution attempt of one seed in one round.
pub fn step_rng(run_seed: u64, seed_id: &str, round: u32, attempt: u32) -> ChaCha8Rng {
    keyed_rng(run_seed, &[b"step", seed_id.as_bytes(), &round.to_le_bytes(), &attempt.to_le_bytes()])
}

/// An RNG keyed by the run seed and any list of byte strings. Parts are
/// length-prefixed so that ("ab", "c") and ("a", "bc") differ.
pub fn keyed_rng(run_seed: u64, parts: &[&[u8]]) -> ChaCha8Rng {
    let digest = parts.iter().fold(Digest::new().raw(run_seed.to_le_bytes()), |d, part| d.part(part));
    ChaCha8Rng::from_seed(digest.bytes())
}

/// A record's place in the shuffled dataset: a keyed hash of its id, so the
/// order depends only on the run seed and the ids, never on when records
/// were decided or which shard decided them.
pub fn order_key(run_seed: u64, id: &str) -> i64 {
    Digest::new().raw(b"dataset-order").raw(run_seed.to_le_bytes()).raw(id).u64() as i64
}

/// The shard (0-based, of `shards`) a seed belongs to: a hash of its id
/// alone, so every run seed and every machine agree.
pub fn shard_of(seed_id: &str, shards: u32) -> u32 {
    (Digest::new().raw(seed_id).u64() % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn same_key_same_stream_other_key_other_stream() {
        let a = step_rng(7, "s1", 2, 0).next_u64();
        assert_eq!(a, step_rng(7, "s1", 2, 0).next_u64());
        assert_ne!(a, step_rng(8, "s1", 2, 0).next_u64());
        assert_ne!(a, step_rng(7, "s2", 2, 0).next_u64());
        assert_ne!(a, step_rng(7, "s1", 3, 0).next_u64());
        assert_ne!(a, step_rng(7, "s1", 2, 1).next_u64());
    }

    #[test]
    fn parts_are_length_prefixed() {
        let a = keyed_rng(0, &[b"ab", b"c"]).next_u64();
        let b = keyed_rng(0, &[b"a", b"bc"]).next_u64();
        assert_ne!(a, b);
    }

    #[test]
    fn shards_split_evenly_and_order_keys_follow_the_seed() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("line-{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (850..=1150).contains(&n)), "{counts:?}");
        assert_eq!(order_key(1, "a"), order_key(1, "a"));
        assert_ne!(order_key(1, "a"), order_key(2, "a"));
        assert_eq!(shard_of("x", 1), 0);
    }
}
