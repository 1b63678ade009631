//! How the journal keeps committed calls and decided records small.
//!
//! - A call is found by the first 16 bytes of the BLAKE3 hash of its key
//!   ([`key_digest`]), whatever the length of the seed id in it.
//! - Its record (the reply, the finish reason, what it used, the question's
//!   digest: what a resume needs) is kept as its JSON in one zstd frame.
//!   Replies of one job share most of their words and all of their JSON
//!   keys, and a frame of a few hundred bytes has no room to learn them, so
//!   once a journal has seen [`TRAIN_AFTER`] records a dictionary is trained
//!   on them ([`zstd::dict::from_samples`]) and kept in the journal; every
//!   later record is compressed with it. Record bodies (`records`) are kept
//!   the same way, with a dictionary of their own. Each row names the dictionary it
//!   needs (0: none), so records of every dictionary (a resumed run's, a
//!   merged shard's) read back.
//! - A dictionary's id is derived from its bytes, so two journals never give
//!   one id to two dictionaries and a merge copies them as they are.

use std::collections::HashMap;
use std::io;

use zstd::bulk::{Compressor, Decompressor};

/// Records to see before training a dictionary.
pub(crate) const TRAIN_AFTER: usize = 1024;
/// The largest dictionary trained.
const DICTIONARY_BYTES: usize = 16 * 1024;
/// zstd's level: about the cost of the JSON encoding itself.
const LEVEL: i32 = 3;
/// The most a record may grow to when read back (a frame states its own
/// size; this bounds a damaged one).
const LARGEST_RECORD: usize = 1 << 30;

/// The id of records compressed without a dictionary.
pub(crate) const NO_DICTIONARY: i64 = 0;

/// The fixed-size digest a call is stored under.
pub(crate) fn key_digest(key: &str) -> [u8; 16] {
    let hash = blake3::hash(key.as_bytes());
    let mut digest = [0; 16];
    digest.copy_from_slice(&hash.as_bytes()[..16]);
    digest
}

/// A dictionary's id: the first 8 bytes of its BLAKE3 hash, never 0.
pub(crate) fn dictionary_id(bytes: &[u8]) -> i64 {
    let hash = blake3::hash(bytes);
    let id = i64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
    if id == NO_DICTIONARY {
        1
    } else {
        id
    }
}

/// A trained dictionary, to store before any record compressed with it.
pub(crate) struct Dictionary {
    pub id: i64,
    pub bytes: Vec<u8>,
}

/// Compresses and expands one kind of row (call records, or record
/// bodies); trains a dictionary from the first it compresses.
pub(crate) struct Codec {
    plain: Compressor<'static>,
    /// The dictionary new records are compressed with.
    current: Option<(i64, Compressor<'static>)>,
    /// One expander per dictionary met.
    expanders: HashMap<i64, Decompressor<'static>>,
    /// Records kept to train on, until a dictionary is in use.
    samples: Vec<Vec<u8>>,
    /// Training failed (too little text to learn from): no more tries.
    untrainable: bool,
}

impl Codec {
    pub fn new() -> io::Result<Codec> {
        let mut plain = Compressor::new(LEVEL)?;
        frame_settings(&mut plain)?;
        let mut expanders = HashMap::new();
        expanders.insert(NO_DICTIONARY, Decompressor::new()?);
        Ok(Codec { plain, current: None, expanders, samples: Vec::new(), untrainable: false })
    }

    /// Compresses new records with this dictionary (one the journal holds),
    /// and reads those made with it.
    pub fn use_dictionary(&mut self, dictionary: &Dictionary) -> io::Result<()> {
        let mut compressor = Compressor::with_dictionary(LEVEL, &dictionary.bytes)?;
        frame_settings(&mut compressor)?;
        self.learn(dictionary)?;
        self.current = Some((dictionary.id, compressor));
        self.samples = Vec::new();
        Ok(())
    }

    /// Whether a dictionary is known for reading.
    pub fn knows(&self, id: i64) -> bool {
        self.expanders.contains_key(&id)
    }

    /// Makes records of this dictionary readable.
    pub fn learn(&mut self, dictionary: &Dictionary) -> io::Result<()> {
        self.expanders.insert(dictionary.id, Decompressor::with_dictionary(&dictionary.bytes)?);
        Ok(())
    }

    /// Compresses a record: the id of the dictionary used, and the frame.
    pub fn compress(&mut self, record: &[u8]) -> io::Result<(i64, Vec<u8>)> {
        match &mut self.current {
            Some((id, compressor)) => Ok((*id, compressor.compress(record)?)),
            None => {
                if !self.untrainable {
                    self.samples.push(record.to_vec());
                }
                Ok((NO_DICTIONARY, self.plain.compress(record)?))
            }
        }
    }

    /// Once enough records were seen without a dictionary, trains one on
    /// them. The caller stores it, then calls [`Codec::use_dictionary`].
    pub fn train(&mut self) -> Option<Dictionary> {
        if self.current.is_some() || self.untrainable || self.samples.len() < TRAIN_AFTER {
            return None;
        }
        let samples = std::mem::take(&mut self.samples);
        match zstd::dict::from_samples(&samples, DICTIONARY_BYTES) {
            Ok(bytes) => Some(Dictionary { id: dictionary_id(&bytes), bytes }),
            // Too little to learn from: plain frames do.
            Err(_) => {
                self.untrainable = true;
                None
            }
        }
    }

    /// Expands a record compressed with dictionary `id` (which must be
    /// known: see [`Codec::knows`]).
    pub fn expand(&mut self, id: i64, frame: &[u8]) -> io::Result<Vec<u8>> {
        let expander = self
            .expanders
            .get_mut(&id)
            .ok_or_else(|| io::Error::other(format!("its dictionary {id} is not in the journal")))?;
        expander.decompress(frame, LARGEST_RECORD)
    }
}

/// Frames state their size (to read back exactly) but carry no checksum
/// (SQLite's pages are checked) and no dictionary id (the row names it).
fn frame_settings(compressor: &mut Compressor<'static>) -> io::Result<()> {
    compressor.include_checksum(false)?;
    compressor.include_contentsize(true)?;
    compressor.include_dictid(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Vec<u8> {
        format!(
            r#"{{"text":"Explain idea number {i} in {} sentences, with an example from {}.","finish_reason":"stop","usage":{{"prompt_tokens":{},"completion_tokens":{}}},"retries":0,"error":null,"prompt":"{:032x}","attempt":0}}"#,
            i % 7 + 2,
            ["physics", "cooking", "history", "भारत", "東京"][i % 5],
            100 + i % 50,
            20 + i % 30,
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
        )
        .into_bytes()
    }

    #[test]
    fn records_read_back_before_and_after_the_dictionary() {
        let mut codec = Codec::new().unwrap();
        let mut frames = Vec::new();
        for i in 0..TRAIN_AFTER + 100 {
            let (id, frame) = codec.compress(&record(i)).unwrap();
            frames.push((id, frame));
            if let Some(dictionary) = codec.train() {
                assert_ne!(dictionary.id, NO_DICTIONARY);
                codec.use_dictionary(&dictionary).unwrap();
            }
        }
        assert!(frames[..TRAIN_AFTER].iter().all(|(id, _)| *id == NO_DICTIONARY));
        let trained = frames[TRAIN_AFTER].0;
        assert_ne!(trained, NO_DICTIONARY);
        assert!(frames[TRAIN_AFTER..].iter().all(|(id, _)| *id == trained));
        for (i, (id, frame)) in frames.iter().enumerate() {
            assert_eq!(codec.expand(*id, frame).unwrap(), record(i), "record {i}");
        }
        // The dictionary pays: the same record takes far fewer bytes.
        let plain = frames[TRAIN_AFTER - 1].1.len();
        let with = codec.compress(&record(TRAIN_AFTER - 1)).unwrap().1.len();
        assert!(with * 2 < plain, "{with} bytes with the dictionary against {plain} without");
    }

    #[test]
    fn a_frame_of_an_unknown_dictionary_is_an_error_not_a_guess() {
        let mut codec = Codec::new().unwrap();
        let err = codec.expand(42, b"anything").unwrap_err();
        assert!(err.to_string().contains("dictionary 42"), "{err}");
        assert!(codec.expand(NO_DICTIONARY, b"not a frame").is_err());
    }

    #[test]
    fn records_too_short_to_learn_from_stay_plain() {
        let mut codec = Codec::new().unwrap();
        for _ in 0..TRAIN_AFTER {
            codec.compress(b"").unwrap();
        }
        assert!(codec.train().is_none());
        // It does not try again, nor keep samples.
        codec.compress(b"x").unwrap();
        assert!(codec.samples.is_empty());
        let (id, frame) = codec.compress(b"x").unwrap();
        assert_eq!(codec.expand(id, &frame).unwrap(), b"x");
    }

    #[test]
    fn keys_and_dictionaries_have_fixed_ids() {
        assert_eq!(key_digest(r#"["s",1,"evolve"]"#), key_digest(r#"["s",1,"evolve"]"#));
        assert_ne!(key_digest(r#"["s",1,"evolve"]"#), key_digest(r#"["s",1,"judge"]"#));
        assert_eq!(dictionary_id(b"abc"), dictionary_id(b"abc"));
        assert_ne!(dictionary_id(b"abc"), dictionary_id(b"abd"));
    }
}
