//! Scores a model gives: the paper's difficulty (1 to 10) and DEITA's
//! complexity and quality (1 to 6), read from its reply.
//!
//! Reading is tolerant of prose (`I would rate it a 7 out of 10.`) and
//! strict about what it returns: a number in the measure's range, or
//! nothing. A reply with no such number is recorded as unreadable, with
//! the reply, and counted; it is never replaced by a default value.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// What a score measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// How difficult and complex an instruction is, 1 to 10 (WizardLM).
    Difficulty,
    /// An instruction's complexity among its evolutions, 1 to 6 (DEITA).
    Complexity,
    /// A response's quality among its variants, 1 to 6 (DEITA).
    Quality,
}

impl Measure {
    pub fn name(self) -> &'static str {
        match self {
            Measure::Difficulty => "difficulty",
            Measure::Complexity => "complexity",
            Measure::Quality => "quality",
        }
    }

    /// The lowest and highest score.
    pub fn range(self) -> (f64, f64) {
        match self {
            Measure::Difficulty => (1.0, 10.0),
            Measure::Complexity | Measure::Quality => (1.0, 6.0),
        }
    }
}

impl std::fmt::Display for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A score as recorded: the number, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The score; null when the reply could not be read or the call failed.
    pub score: Option<f64>,
    /// The reply, when no score could be read from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// The error, when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Scored {
    /// A score read from `reply` (or the reply kept as unreadable).
    pub fn read(reply: &str, measure: Measure) -> Scored {
        let (low, high) = measure.range();
        Scored::of(parse_score(reply, low, high), reply)
    }

    /// A score read from `reply`, or, when none was, the reply kept.
    pub fn of(score: Option<f64>, reply: &str) -> Scored {
        match score {
            Some(score) => Scored { score: Some(score), unreadable: None, error: None },
            None => Scored { score: None, unreadable: Some(reply.to_string()), error: None },
        }
    }

    pub fn failed(error: String) -> Scored {
        Scored { score: None, unreadable: None, error: Some(error) }
    }
}

/// A number: digits with an optional decimal part.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+(?:[.,]\d+)?").unwrap());

/// Restatements of the scale ("on a scale of 1 to 10", "(1-10)",
/// "（1～10）") and denominators ("/10", "out of 10", "sur 10", "满分10分",
/// "10点満点", "10점 만점", "10 में से", "من 10"), whose numbers are not
/// the score.
static SCALE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(?:(?:scale|range)\s*(?:of|from)?\s*|from\s+|[(（])\d+\s*(?:-|–|~|～|to|到|至)\s*\d+[)）]?",
        r"|(?:/|\b(?:out\s+of|sur|von|из|su|dari|trên)\b|จาก|(?:^|\s)من)\s*\d+(?:[.,]\d+)?",
        r"|满分\s*\d+\s*分?|滿分\s*\d+\s*分?|\d+\s*点満点中?|\d+\s*점\s*만점에?|\d+\s*में\s*से",
    ))
    .unwrap()
});

/// Words that announce the score ("score: 7", "I rate it 7", "评分为7",
/// "स्कोर: 7"), in every language `evol_lang::Cues` knows.
static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    let labels = alternation(evol_lang::Cues::get().score_labels());
    Regex::new(&format!(r"(?i)(?:{labels})\W{{0,12}}?(?:is|of|at|as|a|an|为|為|是|は|:|=|-|\s)*\s*\**\s*$")).unwrap()
});

/// `words` as a regex alternation, longest first.
fn alternation(words: &[String]) -> String {
    let mut words: Vec<&String> = words.iter().collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    words.iter().map(|w| regex::escape(w)).collect::<Vec<_>>().join("|")
}

/// The score in a reply: a number in `low..=high`, preferring one that a
/// label announces ("Score: 7"), else the first. Numbers that restate the
/// scale or are its denominator do not count. Digits of any script count
/// (`७`, `７`). `None` when there is none.
pub fn parse_score(reply: &str, low: f64, high: f64) -> Option<f64> {
    let reply = evol_lang::ascii_digits(reply);
    let text = SCALE.replace_all(&reply, |m: &regex::Captures| " ".repeat(m[0].len()));
    let candidates: Vec<(usize, f64)> = NUMBER
        .find_iter(&text)
        .filter(|m| !glued_to_word(&text, m.start(), m.end()))
        .filter_map(|m| m.as_str().replace(',', ".").parse::<f64>().ok().map(|v| (m.start(), v)))
        .filter(|(_, v)| (low..=high).contains(v))
        .collect();
    let labelled = candidates.iter().find(|(at, _)| {
        let before = &text[..*at];
        let window = &before[before.char_indices().rev().nth(24).map_or(0, |(i, _)| i)..];
        LABEL.is_match(window)
    });
    labelled.or(candidates.first()).map(|(_, v)| *v)
}

/// A number that is part of a word (`GPT4`, `3D`), not a score. Only
/// letters of Latin, Greek and Cyrillic glue: Chinese, Japanese and Korean
/// write a number against its counter or particle ("7分", "7점"), and that
/// number is the score.
fn glued_to_word(text: &str, start: usize, end: usize) -> bool {
    let glues = |c: char| c.is_alphabetic() && (c as u32) < 0x0530;
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    before.is_some_and(glues) || after.is_some_and(|c| glues(c) && c != 'x')
}

/// The line of one item of a ranked reply: `2: 5`, `[Instruction 2]: 5`,
/// `Response 2 - score 5`, `2) 5/6`, `回答2：5`.
static ITEM_LINE: LazyLock<Regex> = LazyLock::new(|| {
    let cues = evol_lang::Cues::get();
    let labels = alternation(&[cues.answer_labels(), cues.score_labels()].concat());
    Regex::new(&format!(
        r"(?im)^\W*(?:instruction|response|item|version|score|{labels})?\s*#?\s*(\d+)\s*[\]】]?\s*[:.)=\-–：）]+\s*(?:score\s*[:=]?\s*)?\**\s*(\d+(?:[.,]\d+)?)"
    ))
    .unwrap()
});

/// The scores of `n` items ranked in one reply, one line each (`1: 3`);
/// an item whose line is missing or out of range is `None`. A reply with a
/// single item may also give just the number.
pub fn parse_scores(reply: &str, n: usize, low: f64, high: f64) -> Vec<Option<f64>> {
    let reply = &*evol_lang::ascii_digits(reply);
    let mut scores = vec![None; n];
    for caps in ITEM_LINE.captures_iter(reply) {
        let (Ok(index), Ok(value)) = (caps[1].parse::<usize>(), caps[2].replace(',', ".").parse::<f64>()) else {
            continue;
        };
        if (1..=n).contains(&index) && (low..=high).contains(&value) && scores[index - 1].is_none() {
            scores[index - 1] = Some(value);
        }
    }
    if n == 1 && scores[0].is_none() {
        scores[0] = parse_score(reply, low, high);
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reply: &str, want: Option<f64>) {
        assert_eq!(parse_score(reply, 1.0, 10.0), want, "{reply:?}");
    }

    #[test]
    fn scores_are_read_from_replies_as_models_write_them() {
        check("7", Some(7.0));
        check(" 8\n", Some(8.0));
        check("Score: 6", Some(6.0));
        check("**Difficulty: 9/10**", Some(9.0));
        check("I would rate this instruction a 6 out of 10.", Some(6.0));
        check("On a scale of 1 to 10, this one is an 8.", Some(8.0));
        check("Difficulty (1-10): 4", Some(4.0));
        check("10/10", Some(10.0));
        check("7.5", Some(7.5));
        check("7,5", Some(7.5));
        check("Between 6 and 7.", Some(6.0));
        check("The task has 2 parts and 3 constraints. Score: 5", Some(5.0));
        check("It needs GPT4-level knowledge of 3D geometry; rating = 9", Some(9.0));
        check("Rating - 5", Some(5.0));
        // Other languages and digits: "score: 7 points" (Chinese),
        // "difficulty is 8" (Chinese), "rating: 6/10" (Japanese, full-width
        // digits), "score: 7 out of 10" (Hindi, Devanagari digits), "the
        // grade: 9 of 10" (Arabic, Arabic-Indic digits), "the task has 3
        // parts; score 4" (French), "out of 10, 8" (Korean).
        check("评分：7分", Some(7.0));
        check("难度为8", Some(8.0));
        check("評価：６/１０", Some(6.0));
        check("स्कोर: ७ (१० में से)", Some(7.0));
        check("الدرجة: ٩ من ١٠", Some(9.0));
        check("La tâche a 3 parties. Note : 4 sur 10", Some(4.0));
        check("10점 만점에 8점", Some(8.0));
        check("满分10分，我给7分", Some(7.0));
        // No number in range: unreadable, never a default.
        check("This is a hard one.", None);
        check("", None);
        check("11", None);
        check("0", None);
        check("out of 10", None);
        assert_eq!(parse_score("5", 1.0, 6.0), Some(5.0));
        assert_eq!(parse_score("9", 1.0, 6.0), None);
    }

    #[test]
    fn ranked_replies_give_one_score_per_item() {
        let reply = "1: 2\n2: 4\n3: 6";
        assert_eq!(parse_scores(reply, 3, 1.0, 6.0), [Some(2.0), Some(4.0), Some(6.0)]);
        let reply = "[Instruction 1]: 3\n[Instruction 2] - Score: 5\nInstruction 3: **6**";
        assert_eq!(parse_scores(reply, 3, 1.0, 6.0), [Some(3.0), Some(5.0), Some(6.0)]);
        let reply = "Here are the scores:\n1) 2/6\n2) 9\n";
        assert_eq!(parse_scores(reply, 3, 1.0, 6.0), [Some(2.0), None, None], "out of range and missing");
        assert_eq!(parse_scores("4", 1, 1.0, 6.0), [Some(4.0)]);
        assert_eq!(parse_scores("no idea", 2, 1.0, 6.0), [None, None]);
        // "Answer 1: 5, Answer 2: 3" in Chinese, with full-width digits.
        assert_eq!(parse_scores("回答１：５\n回答２：３", 2, 1.0, 6.0), [Some(5.0), Some(3.0)]);
    }

    #[test]
    fn an_unreadable_reply_is_kept_as_such() {
        let s = Scored::read("I cannot rate this.", Measure::Difficulty);
        assert_eq!(s, Scored { score: None, unreadable: Some("I cannot rate this.".into()), error: None });
        assert_eq!(Scored::read("Score: 3", Measure::Quality).score, Some(3.0));
        assert_eq!(Scored::read("Score: 8", Measure::Quality).score, None);
        let json = serde_json::to_string(&Scored::read("7", Measure::Difficulty)).unwrap();
        assert_eq!(json, r#"{"score":7.0}"#);
    }
}
