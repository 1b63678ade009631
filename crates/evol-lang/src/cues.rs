//! The words the elimination rules and the reply readers look for, in
//! every language: one TOML file a language (`cues/*.toml`, embedded).
//!
//! - `asks_opening`, `asks`: an answer that asks for input instead of
//!   answering (Auto Evol-Instruct's rule): it opens with an
//!   acknowledgement and ends with a question, or it holds a request for
//!   material ("please provide"). `…` in a phrase stands for any text
//!   between its parts, in order.
//! - `equal`, `not_equal`: the equality judge's verdict when it writes it
//!   in another language.
//! - `score_labels`, `answer_labels`: the words that announce a score
//!   ("Score: 7", "评分：7") and name an answer in a judge's scores
//!   ("Assistant 1: 8", "助手1：8").
//! - `markers`: the built-in operator sets' marker words ("rewritten
//!   prompt"), translated: a model that translates the prompt's headings
//!   copies them all the same.
//!
//! Phrases match as whole words where their script is written with
//! spaces, anywhere in Chinese, Japanese and Thai, in lower case.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;
use unicode_normalization::char::is_combining_mark;

use crate::{contains_phrase, find_phrase};

const FILES: [(&str, &str); 16] = [
    ("en", include_str!("../cues/en.toml")),
    ("zh", include_str!("../cues/zh.toml")),
    ("hi", include_str!("../cues/hi.toml")),
    ("ja", include_str!("../cues/ja.toml")),
    ("ko", include_str!("../cues/ko.toml")),
    ("ar", include_str!("../cues/ar.toml")),
    ("es", include_str!("../cues/es.toml")),
    ("fr", include_str!("../cues/fr.toml")),
    ("de", include_str!("../cues/de.toml")),
    ("pt", include_str!("../cues/pt.toml")),
    ("ru", include_str!("../cues/ru.toml")),
    ("id", include_str!("../cues/id.toml")),
    ("vi", include_str!("../cues/vi.toml")),
    ("th", include_str!("../cues/th.toml")),
    ("tr", include_str!("../cues/tr.toml")),
    ("it", include_str!("../cues/it.toml")),
];

/// One language's cues, as its file holds them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LanguageCues {
    #[serde(default)]
    asks_opening: Vec<String>,
    #[serde(default)]
    asks: Vec<String>,
    #[serde(default)]
    equal: Vec<String>,
    #[serde(default)]
    not_equal: Vec<String>,
    #[serde(default)]
    score_labels: Vec<String>,
    #[serde(default)]
    answer_labels: Vec<String>,
    #[serde(default)]
    markers: BTreeMap<String, Vec<String>>,
}

/// What a verdict reply says, when it says one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Equality {
    Equal,
    NotEqual,
}

/// Every language's cues, merged.
#[derive(Debug, Default)]
pub struct Cues {
    asks_opening: Vec<String>,
    asks: Vec<Vec<String>>,
    equal: Vec<String>,
    not_equal: Vec<String>,
    score_labels: Vec<String>,
    answer_labels: Vec<String>,
    /// A marker (lower case, `#` trimmed) to its translations.
    markers: BTreeMap<String, Vec<String>>,
}

static CUES: LazyLock<Cues> = LazyLock::new(|| {
    Cues::parse(FILES.iter().copied()).unwrap_or_else(|e| panic!("a built-in cue file is broken: {e}"))
});

/// The question marks that end a question in the scripts covered (Latin,
/// CJK full width, Arabic).
const QUESTION_MARKS: [char; 3] = ['?', '？', '؟'];

impl Cues {
    /// The built-in cues of the [`crate::BUILTIN`] languages.
    pub fn get() -> &'static Cues {
        &CUES
    }

    fn parse<'a>(files: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Cues, String> {
        let mut cues = Cues::default();
        for (code, text) in files {
            let file: LanguageCues = toml::from_str(text).map_err(|e| format!("cues/{code}.toml: {e}"))?;
            let lower = |list: Vec<String>| list.into_iter().map(|p| p.trim().to_lowercase());
            cues.asks_opening.extend(lower(file.asks_opening));
            cues.asks
                .extend(lower(file.asks).map(|p| p.split('…').map(|part| part.trim().to_string()).collect::<Vec<_>>()));
            cues.equal.extend(lower(file.equal));
            cues.not_equal.extend(lower(file.not_equal));
            cues.score_labels.extend(lower(file.score_labels));
            cues.answer_labels.extend(lower(file.answer_labels));
            for (marker, translations) in file.markers {
                cues.markers.entry(marker_key(&marker)).or_default().extend(lower(translations));
            }
        }
        for list in [
            &mut cues.asks_opening,
            &mut cues.equal,
            &mut cues.not_equal,
            &mut cues.score_labels,
            &mut cues.answer_labels,
        ] {
            dedup(list);
        }
        cues.markers.values_mut().for_each(dedup);
        if cues.asks.iter().flatten().chain(cues.asks_opening.iter()).any(String::is_empty) {
            return Err("an empty phrase".into());
        }
        Ok(cues)
    }

    /// Whether `answer` asks for input instead of answering, in any
    /// language: it opens with an acknowledgement ("Sure", "好的") and
    /// ends with a question mark, or it holds a request for material
    /// ("please provide", "请提供").
    pub fn asks_for_input(&self, answer: &str) -> bool {
        let text = answer.trim();
        let lower = text.to_lowercase();
        let question = text.ends_with(QUESTION_MARKS);
        // A phrase in a spaced script opens the answer as a word ("sure",
        // not "surely").
        let opens = |phrase: &String| find_phrase(&lower, phrase) == Some(0);
        (question && self.asks_opening.iter().any(opens)) || self.asks.iter().any(|parts| in_order(&lower, parts))
    }

    /// The verdict an equality judge's reply states, in any language ("not
    /// equal" looked for before "equal"); `None` when it states neither.
    pub fn equality(&self, reply: &str) -> Option<Equality> {
        let text = words_only(reply);
        if self.not_equal.iter().any(|p| contains_phrase(&text, p)) {
            Some(Equality::NotEqual)
        } else if self.equal.iter().any(|p| contains_phrase(&text, p)) {
            Some(Equality::Equal)
        } else {
            None
        }
    }

    /// The words that announce a score, in every language (lower case).
    pub fn score_labels(&self) -> &[String] {
        &self.score_labels
    }

    /// The words that name an answer in a judge's scores, in every
    /// language (lower case).
    pub fn answer_labels(&self) -> &[String] {
        &self.answer_labels
    }

    /// The translations of a marker word of the built-in sets (any case,
    /// with or without its `#`s); none for a marker of one's own.
    pub fn translations(&self, marker: &str) -> &[String] {
        self.markers.get(&marker_key(marker)).map_or(&[], Vec::as_slice)
    }

    /// Whether `text` holds one of `markers` or one of their translations.
    pub fn holds_marker<S: AsRef<str>>(&self, text: &str, markers: &[S]) -> bool {
        let lower = text.replace('＃', "#").to_lowercase();
        markers.iter().map(AsRef::as_ref).any(|marker| {
            lower.contains(&marker.to_lowercase())
                || self.translations(marker).iter().any(|t| contains_phrase(&lower, t))
        })
    }
}

fn marker_key(marker: &str) -> String {
    marker.trim().trim_matches('#').trim().to_lowercase()
}

fn dedup(list: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|p| seen.insert(p.clone()));
}

/// The parts of a phrase in `text`, in order, each as a phrase.
fn in_order(text: &str, parts: &[String]) -> bool {
    let mut rest = text;
    for part in parts {
        let Some(at) = find_phrase(rest, part) else { return false };
        rest = &rest[at + part.len()..];
    }
    true
}

/// `text` in lower case, each run of characters that are neither letters,
/// combining marks (Devanagari vowel signs, Thai tones, Arabic harakat,
/// which `is_alphanumeric` does not count) nor digits made one space (so
/// "Not  Equal." reads "not equal").
fn words_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() || is_combining_mark(c) {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out
}

/// `text` with every decimal digit of the scripts covered written as an
/// ASCII digit (`७` and `٧` and `７` read as `7`), so the numbers of a
/// reply are read whatever script it writes them in. Hand-written: no
/// well-kept crate gives a Unicode digit's value; each script's digits are
/// ten code points from its zero.
pub fn ascii_digits(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        return Cow::Borrowed(text);
    }
    let digit = |c: char| {
        let c = c as u32;
        DIGIT_ZEROS.iter().find(|&&zero| (zero..zero + 10).contains(&c)).map(|zero| (b'0' + (c - zero) as u8) as char)
    };
    if !text.chars().any(|c| digit(c).is_some()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| digit(c).unwrap_or(c)).collect())
}

/// The zero of each script's decimal digits: Arabic-Indic, Extended
/// Arabic-Indic (Persian, Urdu), N'Ko, Devanagari, Bengali, Gurmukhi,
/// Gujarati, Oriya, Tamil, Telugu, Kannada, Malayalam, Thai, Lao, Tibetan,
/// Myanmar, Khmer, Mongolian, full width.
const DIGIT_ZEROS: [u32; 19] = [
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0E50, 0x0ED0,
    0x0F20, 0x1040, 0x17E0, 0x1810, 0xFF10,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_read_and_translates_every_marker_of_the_built_in_sets() {
        const MARKERS: [&str; 13] = [
            "given prompt",
            "rewritten prompt",
            "created prompt",
            "original problem",
            "new problem",
            "original question",
            "harder question",
            "instruction",
            "rewritten instruction",
            "finally rewritten instruction",
            "methods list",
            "plan",
            "review",
        ];
        for (code, text) in FILES.iter().filter(|(code, _)| *code != "en") {
            let file: LanguageCues = toml::from_str(text).unwrap();
            let keys: Vec<&str> = file.markers.keys().map(String::as_str).collect();
            let mut want = MARKERS.to_vec();
            want.sort_unstable();
            assert_eq!(keys, want, "{code}");
            for list in
                [&file.asks_opening, &file.asks, &file.equal, &file.not_equal, &file.score_labels, &file.answer_labels]
            {
                assert!(!list.is_empty(), "{code}");
            }
        }
        let cues = Cues::get();
        assert!(cues.translations("#Rewritten Prompt#").len() >= 15);
        assert!(cues.translations("my own marker").is_empty());
        assert!(Cues::parse([("xx", "asks = [1]")].into_iter()).unwrap_err().contains("cues/xx.toml"));
        assert!(Cues::parse([("xx", "colour = []")].into_iter()).unwrap_err().contains("colour"));
    }

    #[test]
    fn requests_for_input_are_told_in_every_script() {
        let cues = Cues::get();
        for answer in [
            "Sure! Which topic should the poem be about?",
            "Please provide the text you want summarised.",
            // "OK! Which city do you mean?"
            "好的！请问您指的是哪个城市？",
            // "Please provide the article to be summarised."
            "请提供需要总结的文章。",
            // "Understood. Which language should the code be in?"
            "承知しました。コードはどの言語で書けばよいですか？",
            // "Please provide the paragraph you want translated."
            "कृपया वह अनुच्छेद प्रदान करें जिसका अनुवाद करना है।",
            // "Certainly! What is the subject of the essay?"
            "بالتأكيد! ما هو موضوع المقال؟",
            // "Please provide the text to analyse."
            "Bitte geben Sie den zu analysierenden Text an.",
            // "Sure! What topic would you like?"
            "ได้เลย! คุณต้องการหัวข้ออะไร?",
        ] {
            assert!(cues.asks_for_input(answer), "{answer:?}");
        }
        for answer in [
            "Surely the answer is 42, is it not?",
            // "Of course the Earth is round: ships vanish hull first." (no question)
            "当然，地球是圆的：船只先消失船身。",
            // "The capital of France is Paris." (no question, no request)
            "फ़्रांस की राजधानी पेरिस है।",
            // "Thanks to photosynthesis plants make sugar." (Arabic, opens
            // with a different word, ends with a full stop)
            "بفضل التمثيل الضوئي تصنع النباتات السكر.",
        ] {
            assert!(!cues.asks_for_input(answer), "{answer:?}");
        }
    }

    #[test]
    fn verdicts_are_read_in_every_script() {
        let cues = Cues::get();
        for (reply, want) in [
            ("Equal", Some(Equality::Equal)),
            ("Not  Equal.", Some(Equality::NotEqual)),
            ("相等", Some(Equality::Equal)),
            ("不相等", Some(Equality::NotEqual)),
            ("同じではない", Some(Equality::NotEqual)),
            ("समान", Some(Equality::Equal)),
            // "unequal": a word of its own, not "equal" with a prefix.
            ("असमान", Some(Equality::NotEqual)),
            ("غير متساويين", Some(Equality::NotEqual)),
            ("متساويان", Some(Equality::Equal)),
            ("No son iguales", Some(Equality::NotEqual)),
            ("ไม่เท่ากัน", Some(Equality::NotEqual)),
            ("I cannot tell.", None),
        ] {
            assert_eq!(cues.equality(reply), want, "{reply:?}");
        }
    }

    #[test]
    fn translated_markers_are_caught_and_ordinary_words_are_not() {
        let cues = Cues::get();
        // "Rewritten prompt: write a poem about the sea."
        assert!(cues.holds_marker("改写后的提示：写一首关于大海的诗。", &["#Rewritten Prompt#"]));
        assert!(cues.holds_marker("पुनर्लिखित प्रॉम्प्ट: समुद्र पर एक कविता लिखिए।", &["rewritten prompt"]));
        assert!(cues.holds_marker("＃新しい問題＃ 三角形の面積を求めよ。", &["#new problem#"]));
        // "Propose a new problem about fractions." (a plain "new problem",
        // not the heading): kept.
        assert!(!cues.holds_marker("请提出一个关于分数的新问题。", &["#new problem#"]));
        assert!(cues.holds_marker("Given Prompt: hi", &["given prompt"]));
    }

    #[test]
    fn digits_of_every_script_read_as_ascii() {
        assert_eq!(ascii_digits("७/१०"), "7/10");
        assert_eq!(ascii_digits("٧ من ١٠"), "7 من 10");
        assert_eq!(ascii_digits("۸"), "8");
        assert_eq!(ascii_digits("８点"), "8点");
        assert_eq!(ascii_digits("๙"), "9");
        assert!(matches!(ascii_digits("plain 7"), Cow::Borrowed(_)));
        assert!(matches!(ascii_digits("评分：7"), Cow::Borrowed(_)));
    }
}
