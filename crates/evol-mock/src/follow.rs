//! Answers that follow the constraints an instruction states, as a model
//! that reads them would (or break one, at a set rate).
//!
//! The simulator finds a constraint by the wording `evol` gives it
//! ([`Constraint::describe`]): each kind's sentence is matched by a pattern
//! of its own, its arguments read back. It then shapes an answer made of
//! its usual words to keep every one it found.

use std::sync::LazyLock;

use evol_constraints::{Constraint, Relation};
use regex::Regex;

/// Each kind's wording, with its arguments as groups.
static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    let n = r"(\d+)";
    let rel = "(fewer than|at least)";
    let q = "\"([^\"]+)\"";
    [
        ("language", "Write the whole answer in ([A-Z][a-z]+) and in no other language".to_string()),
        ("sentences", format!("The answer must have {rel} {n} sentences")),
        ("paragraphs", format!("exactly {n} paragraphs, separated from each other by the markdown divider")),
        ("words", format!("The answer must be {rel} {n} words long")),
        ("first_word", format!("exactly {n} paragraphs, separated by blank lines, and paragraph number {n} must begin with the word {q}")),
        ("placeholders", format!("at least {n} placeholders in square brackets")),
        ("postscript", format!("a postscript on its own line, beginning with {q}")),
        ("bullets", format!("exactly {n} markdown bullet points")),
        ("constrained", "Answer with one of these sentences and nothing else".to_string()),
        ("highlights", format!("Highlight at least {n} parts of the answer")),
        ("sections", format!("at least {n} sections, each beginning with \"(\\S+) N\"")),
        ("json", "The whole answer must be valid JSON".to_string()),
        ("title", "a title in double angle brackets".to_string()),
        ("two", "Give two different answers, separated by six asterisks".to_string()),
        ("end", format!("End the answer with the exact phrase {q}")),
        ("quotation", "Wrap the whole answer in double quotation marks".to_string()),
        ("capital_words", format!("Use {rel} {n} words written entirely in capital letters")),
        ("upper", "in English and in capital letters only".to_string()),
        ("lower", "in English and in small letters only".to_string()),
        ("no_comma", "Do not use any comma in the answer".to_string()),
        ("keywords", "The answer must include the words ((?:\"[^\"]+\"(?:, )?)+)".to_string()),
        ("frequency", format!("The word {q} must appear {rel} {n} times")),
        ("forbidden", "Do not use the words ((?:\"[^\"]+\"(?:, )?)+) in the answer".to_string()),
        ("letter", format!("The letter {q} must appear {rel} {n} times")),
    ]
    .into_iter()
    .map(|(kind, pattern)| (kind, Regex::new(&pattern).expect("a valid pattern")))
    .collect()
});

static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new("\"([^\"]+)\"").expect("valid"));

fn relation(text: &str) -> Relation {
    if text == "fewer than" {
        Relation::LessThan
    } else {
        Relation::AtLeast
    }
}

/// The constraints `instruction` states in `evol`'s wording, in the order
/// of their kinds.
pub fn recognise(instruction: &str) -> Vec<Constraint> {
    let mut found = Vec::new();
    for (kind, pattern) in PATTERNS.iter() {
        let Some(c) = pattern.captures(instruction) else { continue };
        let text = |i: usize| c.get(i).map_or("", |m| m.as_str()).to_string();
        let num = |i: usize| text(i).parse::<u32>().unwrap_or(1);
        let list = |i: usize| QUOTED.captures_iter(&text(i)).map(|q| q[1].to_string()).collect::<Vec<_>>();
        let constraint = match *kind {
            "language" => {
                let name = text(1);
                let Some(code) = ["en", "fr", "de", "es", "pt", "ru", "zh", "ja", "hi", "ar", "th", "ko"]
                    .into_iter()
                    .find(|code| evol_lang::name(code) == name)
                else {
                    continue;
                };
                Constraint::ResponseLanguage { language: code.to_string() }
            }
            "sentences" => Constraint::Sentences { num_sentences: num(2), relation: relation(&text(1)) },
            "paragraphs" => Constraint::Paragraphs { num_paragraphs: num(1) },
            "words" => Constraint::Words { num_words: num(2), relation: relation(&text(1)) },
            "first_word" => {
                Constraint::ParagraphFirstWord { num_paragraphs: num(1), nth_paragraph: num(2), first_word: text(3) }
            }
            "placeholders" => Constraint::Placeholders { num_placeholders: num(1) },
            "postscript" => Constraint::Postscript { postscript_marker: text(1) },
            "bullets" => Constraint::Bullets { num_bullets: num(1) },
            "constrained" => Constraint::ConstrainedResponse {},
            "highlights" => Constraint::Highlights { num_highlights: num(1) },
            "sections" => Constraint::Sections { section_spliter: text(2), num_sections: num(1) },
            "json" => Constraint::Json {},
            "title" => Constraint::Title {},
            "two" => Constraint::TwoResponses {},
            "end" => Constraint::EndPhrase { end_phrase: text(1) },
            "quotation" => Constraint::Quotation {},
            "capital_words" => {
                Constraint::CapitalWords { capital_frequency: num(2), capital_relation: relation(&text(1)) }
            }
            "upper" => Constraint::EnglishCapital {},
            "lower" => Constraint::EnglishLowercase {},
            "no_comma" => Constraint::NoComma {},
            "keywords" => Constraint::Keywords { keywords: list(1) },
            "frequency" => {
                Constraint::KeywordFrequency { keyword: text(1), frequency: num(3), relation: relation(&text(2)) }
            }
            "forbidden" => Constraint::ForbiddenWords { forbidden_words: list(1) },
            "letter" => {
                Constraint::LetterFrequency { letter: text(1), let_frequency: num(3), let_relation: relation(&text(2)) }
            }
            _ => continue,
        };
        found.push(constraint);
    }
    found
}

/// An answer of `words` (the simulator's vocabulary, in the request's
/// language, joined by `space`) that keeps every constraint but the one at
/// `skip`.
pub fn follow(constraints: &[Constraint], words: &[&str], space: &str, skip: Option<usize>) -> String {
    let kept: Vec<&Constraint> =
        constraints.iter().enumerate().filter(|(i, _)| Some(*i) != skip).map(|(_, c)| c).collect();
    let has = |f: &dyn Fn(&Constraint) -> bool| kept.iter().any(|c| f(c));
    // How many words and sentences the body needs.
    let mut least_words = 40usize;
    let mut most_words = usize::MAX;
    let mut sentences = 4usize;
    for c in &kept {
        match c {
            Constraint::Words { num_words, relation: Relation::AtLeast } => {
                least_words = least_words.max(*num_words as usize + 10)
            }
            Constraint::Words { num_words, relation: Relation::LessThan } => {
                most_words = most_words.min((*num_words as usize).saturating_sub(20).max(5))
            }
            Constraint::Sentences { num_sentences, relation: Relation::AtLeast } => {
                sentences = sentences.max(*num_sentences as usize + 1)
            }
            Constraint::Sentences { num_sentences, relation: Relation::LessThan } => {
                sentences = sentences.min((*num_sentences as usize).saturating_sub(1).max(1))
            }
            _ => {}
        }
    }
    let total = least_words.min(most_words).max(sentences);
    let per = total.div_ceil(sentences).max(1);
    let mut body: Vec<String> = (0..sentences)
        .map(|s| {
            let mut sentence: String =
                (0..per).map(|w| words[(s * per + w) % words.len()]).collect::<Vec<_>>().join(space);
            if let Some(first) = sentence.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            sentence.push('.');
            sentence
        })
        .collect();
    for c in &kept {
        match c {
            Constraint::Keywords { keywords } => body[0] = format!("{}{space}{}", keywords.join(space), body[0]),
            Constraint::KeywordFrequency { keyword, frequency, relation: Relation::AtLeast } => {
                body[0] = format!("{}{space}{}", vec![keyword.as_str(); *frequency as usize].join(space), body[0])
            }
            Constraint::LetterFrequency { letter, let_frequency, let_relation: Relation::AtLeast } => {
                body[0] = format!("{}{space}{}", letter.repeat(*let_frequency as usize), body[0])
            }
            Constraint::CapitalWords { capital_frequency, capital_relation: Relation::AtLeast } => {
                body[0] = format!("{}{space}{}", vec!["NOTE"; *capital_frequency as usize].join(space), body[0])
            }
            Constraint::Placeholders { num_placeholders } => {
                let marks: Vec<String> = (0..*num_placeholders).map(|i| format!("[item {}]", i + 1)).collect();
                body[0] = format!("{}{space}{}", marks.join(space), body[0])
            }
            Constraint::Highlights { num_highlights } => {
                for sentence in body.iter_mut().take(*num_highlights as usize) {
                    *sentence = format!("*{sentence}*");
                }
                if body.len() < *num_highlights as usize {
                    body[0] = format!("{}{space}{}", vec!["*note*"; *num_highlights as usize].join(space), body[0]);
                }
            }
            _ => {}
        }
    }
    // The body laid out: bullets, paragraphs or sections.
    let split = |n: usize| -> Vec<String> {
        let n = n.max(1);
        (0..n).map(|i| body.iter().skip(i).step_by(n).cloned().collect::<Vec<_>>().join(space)).collect()
    };
    let mut text = body.join(space);
    for c in &kept {
        match c {
            Constraint::Bullets { num_bullets } => {
                text = split(*num_bullets as usize).iter().map(|p| format!("* {p}")).collect::<Vec<_>>().join("\n")
            }
            Constraint::Paragraphs { num_paragraphs } => text = split(*num_paragraphs as usize).join("\n***\n"),
            Constraint::ParagraphFirstWord { num_paragraphs, nth_paragraph, first_word } => {
                let mut parts = split(*num_paragraphs as usize);
                let nth = &mut parts[*nth_paragraph as usize - 1];
                *nth = format!("{first_word}{space}{nth}");
                text = parts.join("\n\n");
            }
            Constraint::Sections { section_spliter, num_sections } => {
                text = split(*num_sections as usize)
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("{section_spliter} {}\n{p}", i + 1))
                    .collect::<Vec<_>>()
                    .join("\n\n")
            }
            _ => {}
        }
    }
    if has(&|c| matches!(c, Constraint::Title {})) {
        text = format!("<<{}>>\n\n{text}", words[0]);
    }
    if let Some(Constraint::Postscript { postscript_marker }) =
        kept.iter().find(|c| matches!(c, Constraint::Postscript { .. }))
    {
        text = format!("{text}\n\n{postscript_marker} {}.", words[1 % words.len()]);
    }
    if let Some(Constraint::EndPhrase { end_phrase }) = kept.iter().find(|c| matches!(c, Constraint::EndPhrase { .. }))
    {
        text = format!("{text}\n\n{end_phrase}");
    }
    if has(&|c| matches!(c, Constraint::TwoResponses {})) {
        text = format!("{text}\n******\n{}", body.iter().rev().cloned().collect::<Vec<_>>().join(space));
    }
    if has(&|c| matches!(c, Constraint::Quotation {})) {
        text = format!("\"{text}\"");
    }
    if has(&|c| matches!(c, Constraint::Json {})) {
        text = serde_json::json!({ "answer": text }).to_string();
    }
    if has(&|c| matches!(c, Constraint::NoComma {})) {
        text = text.replace([',', '，', '、', '،'], "");
    }
    if has(&|c| matches!(c, Constraint::EnglishLowercase {})) {
        text = text.to_lowercase();
    }
    if has(&|c| matches!(c, Constraint::EnglishCapital {})) {
        text = text.to_uppercase();
    }
    if has(&|c| matches!(c, Constraint::ConstrainedResponse {})) {
        text = evol_constraints::CONSTRAINED_RESPONSES[0].to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: &[&str] = &["tides", "follow", "the", "moon", "across", "warm", "seas"];

    fn examples() -> Vec<Constraint> {
        vec![
            Constraint::Sentences { num_sentences: 6, relation: Relation::AtLeast },
            Constraint::Words { num_words: 120, relation: Relation::LessThan },
            Constraint::Paragraphs { num_paragraphs: 3 },
            Constraint::Placeholders { num_placeholders: 2 },
            Constraint::Postscript { postscript_marker: "P.P.S".into() },
            Constraint::Highlights { num_highlights: 2 },
            Constraint::Title {},
            Constraint::EndPhrase { end_phrase: "Any other questions?".into() },
            Constraint::CapitalWords { capital_frequency: 3, capital_relation: Relation::AtLeast },
            Constraint::NoComma {},
            Constraint::Keywords { keywords: vec!["harbour".into(), "gravity".into()] },
            Constraint::KeywordFrequency { keyword: "orbit".into(), frequency: 3, relation: Relation::AtLeast },
            Constraint::ForbiddenWords { forbidden_words: vec!["storm".into()] },
            Constraint::LetterFrequency { letter: "z".into(), let_frequency: 5, let_relation: Relation::AtLeast },
        ]
    }

    #[test]
    fn each_wording_is_recognised_and_followed() {
        let all = examples();
        let text = all.iter().map(Constraint::describe).collect::<Vec<_>>().join(" ");
        let mut found = recognise(&format!("Explain the tides. {text}"));
        let mut expected = all.clone();
        found.sort_by_key(|c| c.id());
        expected.sort_by_key(|c| c.id());
        assert_eq!(found, expected);
        let answer = follow(&all, WORDS, " ", None);
        assert_eq!(evol_constraints::check_all(&all, &answer), Ok(()), "{answer}");
        let broken = follow(&all, WORDS, " ", Some(6));
        assert_eq!(evol_constraints::check_all(&all, &broken).unwrap_err().id, "detectable_format:title");
        for whole in [
            vec![Constraint::Json {}, Constraint::NoComma {}],
            vec![Constraint::Bullets { num_bullets: 4 }, Constraint::NoComma {}],
            vec![Constraint::Quotation {}, Constraint::Words { num_words: 50, relation: Relation::LessThan }],
            vec![Constraint::TwoResponses {}, Constraint::EnglishLowercase {}],
            vec![
                Constraint::Sections { section_spliter: "SECTION".into(), num_sections: 3 },
                Constraint::Words { num_words: 300, relation: Relation::AtLeast },
            ],
            vec![Constraint::ParagraphFirstWord { num_paragraphs: 3, nth_paragraph: 2, first_word: "gravity".into() }],
        ] {
            let described = whole.iter().map(Constraint::describe).collect::<Vec<_>>().join(" ");
            assert_eq!(recognise(&described).len(), whole.len(), "{described}");
            let answer = follow(&whole, WORDS, " ", None);
            assert_eq!(evol_constraints::check_all(&whole, &answer), Ok(()), "{answer}");
        }
    }
}
