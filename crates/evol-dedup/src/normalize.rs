//! The normal form texts are compared in.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// A text's normal form: Unicode NFKC (full-width letters, ligatures and
/// other compatibility forms become their plain letters), lower case,
/// every character that is not a letter, digit or combining mark
/// (punctuation, symbols, control characters, any whitespace) turned into a
/// single space, no space at either end. Characters of scripts written
/// without spaces (Chinese, Japanese kana, Thai) stand as words of their
/// own, so those texts get word shingles too. Spellings that differ only
/// in optional marks are one: Arabic vowel marks (harakat) and the tatweel
/// stretching a word are dropped, and Devanagari's chandrabindu is read as
/// the anusvara it is often written as (पाँच and पांच, "five").
pub fn normalize(text: &str) -> String {
    if text.is_ascii() {
        return normalize_ascii(text);
    }
    match is_nfkc_quick(text.chars()) {
        IsNormalized::Yes => fold(text.len(), text.chars()),
        _ => fold(text.len(), text.nfkc()),
    }
}

/// [`normalize`] for ASCII text, which NFKC leaves as it is: a byte loop.
fn normalize_ascii(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut space = true;
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b.to_ascii_lowercase());
            space = false;
        } else if !space {
            out.push(b' ');
            space = true;
        }
    }
    if out.last() == Some(&b' ') {
        out.pop();
    }
    String::from_utf8(out).expect("ASCII")
}

/// Lower case, separators and the words of unspaced scripts, over
/// characters already in NFKC.
fn fold(len: usize, chars: impl Iterator<Item = char>) -> String {
    let mut out = String::with_capacity(len);
    let mut space = true;
    for c in chars.flat_map(char::to_lowercase).filter_map(spelling) {
        if c.is_alphanumeric() || (is_combining_mark(c) && !space) {
            if unspaced(c) {
                if !space {
                    out.push(' ');
                }
                out.push(c);
                out.push(' ');
                space = true;
            } else {
                out.push(c);
                space = false;
            }
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// A character as spellings that differ in optional marks share it: none
/// for Arabic harakat and tatweel, the anusvara for Devanagari's
/// chandrabindu.
fn spelling(c: char) -> Option<char> {
    match c as u32 {
        0x0640 | 0x064B..=0x065F | 0x0670 => None,
        0x0901 => Some('\u{0902}'),
        _ => Some(c),
    }
}

/// The words of a normalised text.
pub fn words(normalized: &str) -> impl Iterator<Item = &str> {
    normalized.split(' ').filter(|w| !w.is_empty())
}

/// A character of a script written without spaces between words.
fn unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0E7F      // Thai
        | 0x0E80..=0x0EFF    // Lao
        | 0x1000..=0x109F    // Myanmar
        | 0x1780..=0x17FF    // Khmer
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x3134F) // CJK extensions B to G
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_whitespace_punctuation_and_unicode_forms_go() {
        assert_eq!(normalize("  Hello,   WORLD!\n\tHow's it going?? "), "hello world how s it going");
        // Full-width letters and a ligature are their plain forms; a
        // decomposed accent is composed; a non-breaking space is a space.
        assert_eq!(normalize("Ｆｕｌｌ\u{a0}ﬁne cafe\u{301}"), normalize("full fine café"));
        assert_eq!(normalize("café"), "café");
        assert_eq!(normalize("x\u{1b}[2Jy"), "x 2jy");
        assert_eq!(normalize("— … !!"), "");
        assert_eq!(normalize(""), "");
        // The ASCII path and the general one agree.
        let ascii = "  Mixed CASE, with-punctuation & digits 42!  ";
        assert_eq!(normalize(ascii), fold(ascii.len(), ascii.chars()));
        assert_eq!(normalize(&format!("{ascii}é")), format!("{} é", normalize(ascii)));
    }

    #[test]
    fn spellings_that_differ_in_optional_marks_are_one() {
        // Hindi "five", with chandrabindu and with anusvara.
        assert_eq!(normalize("पाँच किताबें"), normalize("पांच किताबें"));
        // Arabic "Muhammad" with its vowel marks, and "book" stretched by
        // tatweel: the plain spellings.
        assert_eq!(normalize("مُحَمَّد"), normalize("محمد"));
        assert_eq!(normalize("كتـــاب"), "كتاب");
        // Marks that are letters' own stay: Hindi "book" keeps its vowels.
        assert_ne!(normalize("किताब"), normalize("कताब"));
    }

    #[test]
    fn scripts_without_spaces_are_split_into_characters() {
        assert_eq!(normalize("写一首诗。"), "写 一 首 诗");
        assert_eq!(words(&normalize("Write 一首诗 now")).collect::<Vec<_>>(), ["write", "一", "首", "诗", "now"]);
        assert_eq!(words("a  b").collect::<Vec<_>>(), ["a", "b"]);
    }
}
