//! Text in any language: which language it is in ([`detect`]), how many
//! words it has ([`word_count`]), whether it apologises ([`Refusals`]) and
//! whether it says nothing but stop words ([`StopWords`]).
//!
//! Languages are named by ISO 639-1 codes (`en`, `zh`, `hi`, `ar`), as the
//! Hugging Face Hub reads a dataset card's `language:` list.
//!
//! - Detection is `whatlang`'s (offline, trigrams and scripts, with a
//!   confidence). A text too short to tell, or mostly code, maths or
//!   numbers, is [`Detection::Undetermined`]: never a guess.
//! - Words are counted by Unicode word segmentation (ICU4X's
//!   `icu_segmenter`: UAX #29 rules, with a dictionary for Chinese and
//!   Japanese and an LSTM model for Thai, Lao, Khmer and Burmese), so a
//!   Chinese sentence of twelve characters counts as its five or six words,
//!   not as one "word" (no spaces) nor as twelve.
//! - Refusal phrases are data: one file a language (`refusals/*.txt`,
//!   embedded), which a user may extend or replace from a directory.
//! - Stop words: the project's own English list (the rule's as it always
//!   was) and stopwords-iso's for every other language.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::LazyLock;

use icu_segmenter::options::WordBreakInvariantOptions;
use icu_segmenter::WordSegmenter;

/// The languages `evol` has refusal phrases for out of the box (and checks
/// in its tests): ISO 639-1 codes.
pub const BUILTIN: [&str; 16] =
    ["en", "zh", "hi", "ja", "ko", "ar", "es", "fr", "de", "pt", "ru", "id", "vi", "th", "tr", "it"];

/// The built-in refusal phrases, by language.
const REFUSALS: [(&str, &str); 16] = [
    ("en", include_str!("../refusals/en.txt")),
    ("zh", include_str!("../refusals/zh.txt")),
    ("hi", include_str!("../refusals/hi.txt")),
    ("ja", include_str!("../refusals/ja.txt")),
    ("ko", include_str!("../refusals/ko.txt")),
    ("ar", include_str!("../refusals/ar.txt")),
    ("es", include_str!("../refusals/es.txt")),
    ("fr", include_str!("../refusals/fr.txt")),
    ("de", include_str!("../refusals/de.txt")),
    ("pt", include_str!("../refusals/pt.txt")),
    ("ru", include_str!("../refusals/ru.txt")),
    ("id", include_str!("../refusals/id.txt")),
    ("vi", include_str!("../refusals/vi.txt")),
    ("th", include_str!("../refusals/th.txt")),
    ("tr", include_str!("../refusals/tr.txt")),
    ("it", include_str!("../refusals/it.txt")),
];

/// Fewer letters than this (once code, maths, numbers and links are set
/// aside) and a text's language is not told.
pub const MIN_LETTERS: usize = 12;

/// Below this share of letters in a text (code, maths, tables of numbers),
/// its language is not told either.
pub const MIN_LETTER_SHARE: f64 = 0.3;

/// A detection below this confidence is not trusted.
pub const MIN_CONFIDENCE: f64 = 0.5;

/// What a text's language was found to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Detection {
    /// The language, with the detector's confidence (0 to 1).
    Detected { language: &'static str, confidence: f64 },
    /// Too short, mostly code or maths, or not told apart with confidence.
    Undetermined,
}

impl Detection {
    pub fn language(&self) -> Option<&'static str> {
        match self {
            Detection::Detected { language, .. } => Some(language),
            Detection::Undetermined => None,
        }
    }
}

/// The most bytes of a text read to tell its language: enough prose for
/// the detector, and a cost that does not grow with a long answer.
pub const DETECT_BYTES: usize = 1024;

/// The language of `text` (its first [`DETECT_BYTES`]), or
/// [`Detection::Undetermined`].
pub fn detect(text: &str) -> Detection {
    let end = (DETECT_BYTES..=text.len().max(DETECT_BYTES)).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    let text = &text[..end.min(text.len())];
    let prose = prose(text);
    let letters = prose.chars().filter(|c| c.is_alphabetic()).count();
    let visible = text.chars().filter(|c| !c.is_whitespace()).count().max(1);
    if letters < MIN_LETTERS || (letters as f64) < MIN_LETTER_SHARE * visible as f64 {
        return Detection::Undetermined;
    }
    let Some(info) = whatlang::detect(&prose) else { return Detection::Undetermined };
    let Some(language) = iso639_1(info.lang()) else { return Detection::Undetermined };
    // Chinese and Japanese share the ideographs; Japanese text has kana.
    // The script decides where the detector's trigrams are unsure.
    let confidence = info.confidence();
    if confidence < MIN_CONFIDENCE && !matches!(language, "zh" | "ja" | "ko" | "th" | "hi" | "ar") {
        return Detection::Undetermined;
    }
    Detection::Detected { language, confidence }
}

/// The prose of a text: without fenced and inline code, LaTeX, links and
/// numbers, which say nothing of its language.
fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut inline = false;
        let mut maths = false;
        for word in line.split_inclusive(char::is_whitespace) {
            if word.starts_with("http://") || word.starts_with("https://") {
                out.push(' ');
                continue;
            }
            for c in word.chars() {
                match c {
                    '`' => inline = !inline,
                    '$' => maths = !maths,
                    _ if inline || maths => {}
                    _ if c.is_numeric() => out.push(' '),
                    _ => out.push(c),
                }
            }
        }
        out.push('\n');
    }
    out
}

/// ISO 639-1 for the languages the detector knows (Esperanto, Akan and a
/// few others have a code of their own; Persian as `fa`).
fn iso639_1(lang: whatlang::Lang) -> Option<&'static str> {
    use whatlang::Lang::*;
    Some(match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "nb",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        Cym => "cy",
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// The English name of a language code, for prompts ("Write in Hindi"),
/// or the code itself for one the detector does not know.
pub fn name(code: &str) -> &str {
    if code == "zh" {
        // The detector's name is the spoken language's (Mandarin); the
        // written one is Chinese.
        return "Chinese";
    }
    whatlang::Lang::all().iter().find(|l| iso639_1(**l) == Some(code)).map_or(code, |l| l.eng_name())
}

/// Whether `code` is a language code `evol` knows (the detector's).
pub fn is_known(code: &str) -> bool {
    whatlang::Lang::all().iter().any(|l| iso639_1(*l) == Some(code))
}

static SEGMENTER: LazyLock<icu_segmenter::WordSegmenterBorrowed<'static>> =
    LazyLock::new(|| WordSegmenter::new_auto(WordBreakInvariantOptions::default()));

/// The words of `text`, by Unicode word segmentation (numbers count as
/// words; punctuation, spaces and symbols do not). A segment is a word when
/// it holds a letter or a digit: the segmenter's own word type misses some
/// (Devanagari words ending in a vowel sign or a nasal mark).
pub fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in SEGMENTER.segment_str(text) {
        let segment = &text[start..end];
        if segment.chars().any(char::is_alphanumeric) {
            out.push(segment);
        }
        start = end;
    }
    out
}

/// How many words `text` has (see [`words`]).
pub fn word_count(text: &str) -> usize {
    words(text).len()
}

/// What a count by language calls a text whose language is not told
/// (ISO 639-2's code for "undetermined").
pub const UNDETERMINED: &str = "und";

/// A refusal-phrase file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RefusalsError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}`: the file name must be a language code and `.txt` (such as `hi.txt`)")]
    Name { path: String },
}

/// Refusal phrases ("sorry" and what means it), by language. A phrase
/// written in a script with spaces between words matches whole words; one
/// in Chinese, Japanese or Thai matches anywhere.
#[derive(Debug, Clone)]
pub struct Refusals {
    by_language: BTreeMap<String, Vec<String>>,
    /// Every phrase of every language, to rule most texts out at once.
    any: aho_corasick::AhoCorasick,
}

impl Default for Refusals {
    fn default() -> Refusals {
        Refusals::builtin()
    }
}

impl Refusals {
    /// The built-in phrases of the [`BUILTIN`] languages.
    pub fn builtin() -> Refusals {
        let by_language = REFUSALS.iter().map(|(code, text)| (code.to_string(), phrases(text))).collect();
        Refusals::of(by_language)
    }

    fn of(by_language: BTreeMap<String, Vec<String>>) -> Refusals {
        let any = aho_corasick::AhoCorasick::new(by_language.values().flatten()).expect("phrases make an automaton");
        Refusals { by_language, any }
    }

    /// Whether `text` holds any language's phrase anywhere (a quick test
    /// that rules most texts out; [`Refusals::says_sorry`] decides).
    pub fn might_say_sorry(&self, text: &str) -> bool {
        self.any.is_match(&text.to_lowercase())
    }

    /// The built-in phrases, with each `CODE.txt` of `dir` added to its
    /// language's (`replace`: instead of them). One phrase a line; `#`
    /// starts a comment.
    pub fn with_dir(dir: &Path, replace: bool) -> Result<Refusals, RefusalsError> {
        let mut refusals = Refusals::builtin();
        let entries =
            std::fs::read_dir(dir).map_err(|source| RefusalsError::Read { path: dir.display().to_string(), source })?;
        for entry in entries {
            let path = entry.map_err(|source| RefusalsError::Read { path: dir.display().to_string(), source })?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("txt") {
                continue;
            }
            let code = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            if code.is_empty() || !code.chars().all(|c| c.is_ascii_lowercase()) || code.len() > 3 {
                return Err(RefusalsError::Name { path: path.display().to_string() });
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|source| RefusalsError::Read { path: path.display().to_string(), source })?;
            let list = refusals.by_language.entry(code).or_default();
            if replace {
                list.clear();
            }
            list.extend(phrases(&text));
        }
        Ok(Refusals::of(refusals.by_language))
    }

    /// The languages with phrases.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.by_language.keys().map(String::as_str)
    }

    /// Whether `text` holds a refusal phrase of any of `languages`.
    pub fn says_sorry(&self, text: &str, languages: &[&str]) -> bool {
        let lower = text.to_lowercase();
        languages
            .iter()
            .filter_map(|l| self.by_language.get(*l))
            .flatten()
            .any(|phrase| contains_phrase(&lower, phrase))
    }
}

fn phrases(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `phrase` in `text` (both lower case): as whole words when the phrase
/// starts and ends with letters of a script written with spaces.
pub fn contains_phrase(text: &str, phrase: &str) -> bool {
    find_phrase(text, phrase).is_some()
}

/// Where `phrase` first stands in `text`, as [`contains_phrase`] reads it.
pub fn find_phrase(text: &str, phrase: &str) -> Option<usize> {
    let whole = spaced(phrase.chars().next()) || spaced(phrase.chars().next_back());
    if !whole {
        return text.find(phrase);
    }
    text.match_indices(phrase).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Whether `c` is a letter of a script written with spaces between words.
fn spaced(c: Option<char>) -> bool {
    c.is_some_and(is_spaced_letter)
}

/// Whether `c` is a letter of a script written with spaces between words
/// (Latin, Cyrillic, Arabic, Devanagari, Hangul...), not of one written
/// without them (Han, kana, Thai, Lao, Khmer, Burmese).
pub fn is_spaced_letter(c: char) -> bool {
    c.is_alphabetic() && !unspaced(c)
}

/// A letter of a script written without spaces between words (Han, kana,
/// Thai, Lao, Khmer, Burmese).
fn unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF // Thai, Lao
        | 0x1000..=0x109F // Burmese
        | 0x1780..=0x17FF // Khmer
        | 0x3040..=0x30FF // kana
        | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3134F // Han
    )
}

/// Stop words by language: a text made only of them (and punctuation)
/// says nothing.
pub struct StopWords {
    by_language: BTreeMap<&'static str, HashSet<&'static str>>,
}

/// The project's English list, as the rule always had it.
const ENGLISH: &str = include_str!("../stopwords/en.txt");

static STOP_WORDS: LazyLock<StopWords> = LazyLock::new(StopWords::new);

impl StopWords {
    fn new() -> StopWords {
        let mut by_language = BTreeMap::new();
        by_language.insert("en", ENGLISH.lines().map(str::trim).filter(|w| !w.is_empty()).collect());
        for code in stop_words::available_languages() {
            if *code == "en" {
                continue;
            }
            let Some(list) = stop_words::lookup(code) else { continue };
            // A number is an answer, whatever a list says.
            let words = list.iter().copied().filter(|w| !w.chars().any(|c| c.is_numeric())).collect();
            by_language.insert(*code, words);
        }
        StopWords { by_language }
    }

    /// The lists, loaded once.
    pub fn get() -> &'static StopWords {
        &STOP_WORDS
    }

    /// The languages with a list.
    pub fn languages(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_language.keys().copied()
    }

    /// Whether every word of `text` is a stop word of one of `languages`
    /// (a text without words counts: it says nothing either).
    pub fn only_stop_words(&self, text: &str, languages: &[&str]) -> bool {
        let lists: Vec<&HashSet<&str>> = languages.iter().filter_map(|l| self.by_language.get(l)).collect();
        words(text).into_iter().all(|w| {
            let w = w.replace('’', "'").to_lowercase();
            let w = w.trim_matches('\'');
            lists.iter().any(|list| list.contains(w))
        })
    }
}

mod cues;
pub use cues::{ascii_digits, Cues, Equality};

#[cfg(test)]
mod tests;
