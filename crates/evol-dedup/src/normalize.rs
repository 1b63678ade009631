//! The normal form texts are compared in.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// A text's normal form: Unicode NFKC (full-width letters, ligatures and
/// other compatibility forms become their plain letters), lower case,
/// every character that is not a letter, digit or combining mark
/// (punctuation, symbols, control characters, any whitespace) turned into a
/// single space, no space at either end. Characters of scripts written
/// without spaces (Chinese, Japanese kana, Thai) stand as words of their
/// Runs of scripts written without spaces (Chinese, Japanese, Thai)
/// are cut into their words by Unicode word segmentation, so those texts
/// get word shingles too. Spellings that differ only
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
    // A run of characters of unspaced scripts, cut into words when it ends.
    let mut run = String::new();
    let mut space = true;
    for c in chars.flat_map(char::to_lowercase).filter_map(spelling) {
        if unspaced(c) {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            if !space {
                out.push(' ');
            }
            push_words(&mut out, &run);
            run.clear();
            space = true;
        }
        if c.is_alphanumeric() || (is_combining_mark(c) && !space) {
            out.push(c);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if !run.is_empty() {
        if !space {
            out.push(' ');
        }
        push_words(&mut out, &run);
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The words of a run of Chinese, Japanese, Thai, Lao, Khmer or Burmese
/// text, by Unicode word segmentation (`evol_lang::words`: a dictionary
/// for Chinese and Japanese, a model for the others), each followed by a
/// space. Shingles of these words are as specific as an English text's:
/// shingles of single characters are shared by unrelated texts ("请解释",
/// "是如何") and made near duplicates of them.
fn push_words(out: &mut String, run: &str) {
    for word in evol_lang::words(run) {
        out.push_str(word);
        out.push(' ');
    }
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
    fn scripts_without_spaces_are_cut_into_words() {
        // "Write a poem about the sea." and "Write 一首诗 now": Chinese
        // words, not characters.
        assert_eq!(normalize("写一首关于大海的诗。"), "写 一首 关于 大海 的 诗");
        assert_eq!(words(&normalize("Write 一首诗 now")).collect::<Vec<_>>(), ["write", "一首", "诗", "now"]);
        // Japanese ("I read a book in the library.") and Thai ("I like to
        // eat rice.") are cut the same way.
        assert!(words(&normalize("図書館で本を読みました。")).any(|w| w == "図書館"));
        assert!(words(&normalize("ฉันชอบกินข้าว")).count() >= 3);
        assert_eq!(words("a  b").collect::<Vec<_>>(), ["a", "b"]);
    }
}
