//! Generated text as it grows: UTF-8 reassembly across tokens, stop
//! strings, and how much of the text is safe to stream.
//!
//! A token may end in the middle of a UTF-8 character, and the text may end
//! in the first part of a stop string; neither may be shown to a client
//! yet. This is written by hand because it is small and specific to
//! token-by-token generation.

/// The text of one generation.
#[derive(Debug, Default)]
pub struct TextState {
    stop: Vec<String>,
    /// Bytes of an unfinished UTF-8 character.
    pending: Vec<u8>,
    text: String,
    /// How much of `text` was handed out by [`TextState::take_stream`].
    streamed: usize,
    stopped: bool,
}

impl TextState {
    pub fn new(stop: Vec<String>) -> TextState {
        TextState { stop: stop.into_iter().filter(|s| !s.is_empty()).collect(), ..TextState::default() }
    }

    /// Adds a token's bytes; returns true when a stop string was completed
    /// (the text is then cut before it).
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if self.stopped {
            return true;
        }
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_some() => {
                // Invalid bytes (not just unfinished): replace them.
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return self.append(&s);
            }
            Err(e) => e.valid_up_to(),
        };
        let done: Vec<u8> = self.pending.drain(..valid).collect();
        let s = String::from_utf8(done).expect("checked above");
        self.append(&s)
    }

    fn append(&mut self, s: &str) -> bool {
        let from = self.text.len().saturating_sub(self.max_stop_len());
        self.text.push_str(s);
        let mut from = from;
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let found = self.stop.iter().filter_map(|stop| self.text[from..].find(stop.as_str()).map(|i| from + i)).min();
        if let Some(at) = found {
            self.text.truncate(at);
            self.stopped = true;
        }
        self.stopped
    }

    fn max_stop_len(&self) -> usize {
        self.stop.iter().map(String::len).max().unwrap_or(0)
    }

    /// The new text that can be shown now: all of it except a tail that may
    /// still become a stop string.
    pub fn take_stream(&mut self) -> Option<String> {
        let mut safe = self.text.len();
        if !self.stopped {
            for stop in &self.stop {
                for len in (1..stop.len()).rev() {
                    if stop.is_char_boundary(len) && self.text.ends_with(&stop[..len]) {
                        safe = safe.min(self.text.len() - len);
                        break;
                    }
                }
            }
        }
        if safe <= self.streamed {
            return None;
        }
        let piece = self.text[self.streamed..safe].to_string();
        self.streamed = safe;
        Some(piece)
    }

    /// Everything not yet streamed, at the end of generation. The first
    /// bytes of a character the model never finished (generation cut off
    /// in the middle of it) are dropped rather than shown as U+FFFD.
    pub fn take_rest(&mut self) -> Option<String> {
        self.pending.clear();
        (self.streamed < self.text.len()).then(|| {
            let piece = self.text[self.streamed..].to_string();
            self.streamed = self.text.len();
            piece
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_tokens() {
        let mut t = TextState::new(vec![]);
        let bytes = "é!".as_bytes();
        assert!(!t.push(&bytes[..1]));
        assert_eq!(t.take_stream(), None);
        t.push(&bytes[1..]);
        assert_eq!(t.take_stream().as_deref(), Some("é!"));
    }

    #[test]
    fn stop_strings_cut_and_hold_back() {
        let mut t = TextState::new(vec!["\nUser:".into()]);
        assert!(!t.push(b"Hello"));
        assert!(!t.push(b"\nUs"));
        assert_eq!(t.take_stream().as_deref(), Some("Hello"), "a possible stop prefix is held back");
        assert!(t.push(b"er: more"));
        assert_eq!(t.text(), "Hello");
        assert_eq!(t.take_rest(), None);
    }

    #[test]
    fn a_held_back_prefix_that_is_not_a_stop_is_released() {
        let mut t = TextState::new(vec!["STOP".into()]);
        t.push(b"ST");
        assert_eq!(t.take_stream(), None);
        t.push(b"ART");
        assert_eq!(t.take_stream().as_deref(), Some("START"));
    }

    #[test]
    fn earliest_stop_wins_and_rest_flushes() {
        let mut t = TextState::new(vec!["b".into(), "xyz".into()]);
        assert!(t.push(b"axyzb"));
        assert_eq!(t.text(), "a");
        let mut t = TextState::new(vec!["zz".into()]);
        t.push(b"abz");
        assert_eq!(t.take_stream().as_deref(), Some("ab"));
        assert_eq!(t.take_rest().as_deref(), Some("z"));
    }

    #[test]
    fn an_unfinished_last_character_is_dropped() {
        let mut t = TextState::new(vec![]);
        t.push(b"ok ");
        t.push(&"\u{1f389}".as_bytes()[..2]);
        assert_eq!(t.take_rest().as_deref(), Some("ok "));
        assert_eq!(t.text(), "ok ");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut t = TextState::new(vec![]);
        t.push(&[0xff, b'a']);
        assert_eq!(t.take_rest().as_deref(), Some("\u{fffd}a"));
    }
}
