//! The judge's reply: two scores from 1 to 10 on its first line, then its
//! reasons.
//!
//! The first line that holds anything is read (markdown emphasis and
//! labels such as `Assistant 1:` or `Answer B -` taken off, `8/10` read as
//! 8); it must hold exactly two numbers, each from 1 to 10. Anything else
//! is unreadable: the reply is kept and counted, never given a score.

use std::sync::LazyLock;

use regex::Regex;

/// The lowest and highest score a judge gives.
pub const RANGE: (f64, f64) = (1.0, 10.0);

/// An answer's name before its score ("Assistant 1:", "Answer B -",
/// "助手1：", "उत्तर 2:"), in every language `evol_lang::Cues` knows.
static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    let mut labels: Vec<&String> = evol_lang::Cues::get().answer_labels().iter().collect();
    labels.sort_by_key(|l| std::cmp::Reverse(l.len()));
    let (spaced, unspaced): (Vec<&String>, Vec<&String>) =
        labels.into_iter().partition(|l| l.chars().next().is_some_and(evol_lang::is_spaced_letter));
    let join = |list: Vec<&String>| list.iter().map(|l| regex::escape(l)).collect::<Vec<_>>().join("|");
    Regex::new(&format!(
        r"(?i)(?:\b(?:{})|(?:{}))\s*[#(\[（]?\s*([0-9]+|[ab])\b\s*[)\]）]?",
        join(spaced),
        join(unspaced)
    ))
    .expect("valid")
});
static OUT_OF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([0-9]+(?:\.[0-9]+)?)\s*(?:/|out of)\s*10\b").expect("valid"));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"-?[0-9]+(?:\.[0-9]+)?").expect("valid"));

/// The two scores (first answer's, second answer's) of a judge's reply.
pub fn parse_pair(reply: &str) -> Option<(f64, f64)> {
    let reply = evol_lang::ascii_digits(reply);
    let line = reply.lines().map(str::trim).find(|l| !l.trim_matches(|c| "*#`>_ ".contains(c)).is_empty())?;
    let line = line.replace(['*', '`', '_'], " ");
    let line = LABEL.replace_all(&line, " ");
    let line = OUT_OF.replace_all(&line, "$1");
    let numbers: Vec<f64> = NUMBER.find_iter(&line).filter_map(|m| m.as_str().parse().ok()).collect();
    match numbers[..] {
        [a, b] if in_range(a) && in_range(b) => Some((a, b)),
        _ => None,
    }
}

fn in_range(x: f64) -> bool {
    x.is_finite() && (RANGE.0..=RANGE.1).contains(&x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scores_judges_write() {
        for (reply, want) in [
            ("8 7\nAssistant 1 gives a fuller answer.", (8.0, 7.0)),
            ("9, 6\n\nThe first answer is correct.", (9.0, 6.0)),
            ("  \n**7 8**\nBoth are fine.", (7.0, 8.0)),
            ("8.5 7.5\nReasons.", (8.5, 7.5)),
            ("Assistant 1: 8, Assistant 2: 4\nThe second misses the point.", (8.0, 4.0)),
            ("Answer A: 6/10, Answer B: 9/10", (6.0, 9.0)),
            ("Scores: 10 and 1\nOne is empty.", (10.0, 1.0)),
            ("3 out of 10, 5 out of 10", (3.0, 5.0)),
            ("# 4 4\nA tie.", (4.0, 4.0)),
            // Judges that write in the question's language: "Assistant 1:
            // 8, Assistant 2: 7" (Chinese, full-width digits), "Answer 1: 6,
            // Answer 2: 9" (Hindi, Devanagari digits), "Answer 1: 5, Answer 2:
            // 3" (Arabic), "Answer 1: 7/10, Answer 2: 4/10" (Japanese).
            ("助手１：８，助手２：７\n第一个回答更完整。", (8.0, 7.0)),
            ("उत्तर 1: ६, उत्तर 2: ९", (6.0, 9.0)),
            ("الإجابة 1: ٥، الإجابة 2: ٣", (5.0, 3.0)),
            ("回答1：7/10、回答2：4/10", (7.0, 4.0)),
        ] {
            assert_eq!(parse_pair(reply), Some(want), "{reply:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for reply in [
            "",
            "   \n  ",
            "Both answers are good.\n8 7",
            "8\n7",
            "8 7 6",
            "11 7",
            "0 5",
            "-3 5",
            "I would give them 8, 7 and 9.",
            "Answer 1 is better.",
            "NaN 7",
        ] {
            assert_eq!(parse_pair(reply), None, "{reply:?}");
        }
    }
}
