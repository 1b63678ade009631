//! Stable digests, in one place: every call key, run fingerprint, prompt
//! digest, batch request name and keyed random stream is a BLAKE3 hash
//! built here.
//!
//! A digest is made of parts. [`Digest::part`] writes a part with its
//! length before it, so that the parts ("ab", "c") and ("a", "bc") differ;
//! [`Digest::raw`] writes bytes as they are, for a fixed domain tag or a
//! fixed-width number. What a digest is made of is part of the files that
//! hold it (journals key their calls by one), so the bytes each caller
//! feeds in never change.

use std::io::Read;

/// A digest being built.
#[derive(Clone, Default)]
pub struct Digest(blake3::Hasher);

impl Digest {
    pub fn new() -> Digest {
        Digest::default()
    }

    /// Adds `bytes` after their length (eight bytes, little-endian).
    pub fn part(mut self, bytes: impl AsRef<[u8]>) -> Digest {
        self.push_part(bytes);
        self
    }

    /// [`Digest::part`] on a digest held in place (fed as a file is read).
    pub fn push_part(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Adds `bytes` as they are: a domain tag or a fixed-width number.
    pub fn raw(mut self, bytes: impl AsRef<[u8]>) -> Digest {
        self.0.update(bytes.as_ref());
        self
    }

    /// Adds everything `reader` yields, as [`Digest::raw`] does.
    pub fn read(mut self, reader: impl Read) -> std::io::Result<Digest> {
        self.0.update_reader(reader)?;
        Ok(self)
    }

    /// The digest's 32 bytes (a key for a random stream).
    pub fn bytes(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }

    /// The first eight bytes as a number.
    pub fn u64(&self) -> u64 {
        u64::from_le_bytes(self.bytes()[..8].try_into().expect("eight bytes"))
    }

    /// The first `chars` hex digits (at most 64).
    pub fn hex(&self, chars: usize) -> String {
        let mut hex = self.0.finalize().to_hex().to_string();
        hex.truncate(chars);
        hex
    }

    /// All 64 hex digits.
    pub fn full_hex(&self) -> String {
        self.hex(64)
    }
}

/// The full hex digest of some bytes.
pub fn of(bytes: impl AsRef<[u8]>) -> String {
    Digest::new().raw(bytes).full_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_told_apart_by_their_lengths() {
        assert_ne!(Digest::new().part("ab").part("c").full_hex(), Digest::new().part("a").part("bc").full_hex());
        assert_eq!(Digest::new().raw("ab").raw("c").full_hex(), Digest::new().raw("a").raw("bc").full_hex());
        assert_eq!(Digest::new().part("").part("x").full_hex(), Digest::new().part("").part("x").full_hex());
    }

    #[test]
    fn digests_are_the_published_blake3() {
        // BLAKE3 of the empty input, from the reference test vectors: a
        // digest stored in a journal must read back the same forever.
        assert_eq!(of(b""), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
        assert_eq!(Digest::new().hex(16), "af1349b9f5f9a1a6");
        let mut prefixed = 3u64.to_le_bytes().to_vec();
        prefixed.extend_from_slice("सूत्र".as_bytes()[..3].as_ref());
        assert_eq!(Digest::new().part(&"सूत्र".as_bytes()[..3]).full_hex(), of(&prefixed));
        assert_eq!(Digest::new().read(&b"abc"[..]).unwrap().full_hex(), of(b"abc"));
        assert_eq!(Digest::new().raw(b"abc").u64().to_le_bytes(), Digest::new().raw(b"abc").bytes()[..8]);
    }
}
