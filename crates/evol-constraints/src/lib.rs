//! Constraints a program can check: the kinds IFEval defined (word,
//! sentence and paragraph counts, keywords, letter frequency, formats,
//! case, punctuation, start and end...), each recorded as an id with its
//! arguments, and a checker for each.
//!
//! The ids and argument names are IFEval's (`length_constraints:number_words`
//! with `num_words` and `relation`), so a row's constraints serve as the
//! `ground_truth` of reinforcement learning with verifiable rewards in the
//! layout open-instruct and Tulu 3 use ([`GroundTruth`]). Where IFEval
//! reads English only, these checkers read every script: words and
//! sentences are found by Unicode segmentation (Chinese, Japanese and Thai
//! have no spaces; `।` and `。` end sentences), a comma is also `，`, `、`
//! and `،`, a quotation may use `“”` or `「」`, and keywords stand as whole
//! words only in scripts written with spaces.
//!
//! This crate knows nothing of models or files: a checker takes an answer's
//! text and says which constraint it breaks and why.

use std::sync::LazyLock;

use icu_segmenter::options::SentenceBreakInvariantOptions;
use icu_segmenter::SentenceSegmenter;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// How a count compares with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relation {
    #[serde(rename = "less than")]
    LessThan,
    #[serde(rename = "at least")]
    AtLeast,
}

impl Relation {
    fn holds(self, count: usize, threshold: u32) -> bool {
        match self {
            Relation::LessThan => count < threshold as usize,
            Relation::AtLeast => count >= threshold as usize,
        }
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Relation::LessThan => "less than",
            Relation::AtLeast => "at least",
        })
    }
}

/// One constraint: IFEval's id (the variant's name when serialized, as
/// `id`) and its arguments (`kwargs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "id", content = "kwargs", deny_unknown_fields)]
pub enum Constraint {
    /// The whole answer in one language (ISO 639-1).
    #[serde(rename = "language:response_language")]
    ResponseLanguage { language: String },
    #[serde(rename = "length_constraints:number_sentences")]
    Sentences { num_sentences: u32, relation: Relation },
    /// Paragraphs separated by the markdown divider `***`: exactly this many.
    #[serde(rename = "length_constraints:number_paragraphs")]
    Paragraphs { num_paragraphs: u32 },
    #[serde(rename = "length_constraints:number_words")]
    Words { num_words: u32, relation: Relation },
    /// Exactly `num_paragraphs` paragraphs (separated by blank lines), the
    /// `nth_paragraph`-th (from 1) starting with `first_word`.
    #[serde(rename = "length_constraints:nth_paragraph_first_word")]
    ParagraphFirstWord { num_paragraphs: u32, nth_paragraph: u32, first_word: String },
    /// At least this many placeholders in square brackets, such as `[name]`.
    #[serde(rename = "detectable_content:number_placeholders")]
    Placeholders { num_placeholders: u32 },
    /// A postscript starting with the marker (`P.S.`, `P.P.S`, ...).
    #[serde(rename = "detectable_content:postscript")]
    Postscript { postscript_marker: String },
    /// Exactly this many markdown bullet points (`* ` or `- `).
    #[serde(rename = "detectable_format:number_bullet_lists")]
    Bullets { num_bullets: u32 },
    /// One of "My answer is yes.", "My answer is no.", "My answer is maybe.".
    #[serde(rename = "detectable_format:constrained_response")]
    ConstrainedResponse {},
    /// At least this many sections highlighted with markdown, `*like this*`.
    #[serde(rename = "detectable_format:number_highlighted_sections")]
    Highlights { num_highlights: u32 },
    /// At least this many sections, each starting with the splitter and its
    /// number (`SECTION 1`).
    #[serde(rename = "detectable_format:multiple_sections")]
    Sections { section_spliter: String, num_sections: u32 },
    /// The whole answer is JSON (a markdown code fence around it allowed).
    #[serde(rename = "detectable_format:json_format")]
    Json {},
    /// A title in double angle brackets, `<<like this>>`.
    #[serde(rename = "detectable_format:title")]
    Title {},
    /// Two different answers separated by six asterisks, `******`.
    #[serde(rename = "combination:two_responses")]
    TwoResponses {},
    /// The answer first repeats the request word for word.
    #[serde(rename = "combination:repeat_prompt")]
    RepeatPrompt { prompt_to_repeat: String },
    /// The answer ends with this exact phrase (nothing after it).
    #[serde(rename = "startend:end_checker")]
    EndPhrase { end_phrase: String },
    /// The whole answer wrapped in double quotation marks.
    #[serde(rename = "startend:quotation")]
    Quotation {},
    /// Words written all in capitals: fewer than, or at least, this many.
    #[serde(rename = "change_case:capital_word_frequency")]
    CapitalWords { capital_frequency: u32, capital_relation: Relation },
    /// English, all in capital letters.
    #[serde(rename = "change_case:english_capital")]
    EnglishCapital {},
    /// English, all in small letters.
    #[serde(rename = "change_case:english_lowercase")]
    EnglishLowercase {},
    /// No comma at all (`,`, `，`, `、`, `،`).
    #[serde(rename = "punctuation:no_comma")]
    NoComma {},
    /// Every keyword present (any case).
    #[serde(rename = "keywords:existence")]
    Keywords { keywords: Vec<String> },
    /// The keyword's occurrences (any case): fewer than, or at least, this many.
    #[serde(rename = "keywords:frequency")]
    KeywordFrequency { keyword: String, frequency: u32, relation: Relation },
    /// None of the words, as whole words (any case).
    #[serde(rename = "keywords:forbidden_words")]
    ForbiddenWords { forbidden_words: Vec<String> },
    /// The letter's occurrences (any case): fewer than, or at least, this many.
    #[serde(rename = "keywords:letter_frequency")]
    LetterFrequency { letter: String, let_frequency: u32, let_relation: Relation },
}

/// An answer that breaks a constraint: which, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id}: {found}")]
pub struct Broken {
    pub id: &'static str,
    pub found: String,
}

/// A constraint that cannot be read: an unknown id, or arguments that do
/// not fit it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("constraint {index}: {message}")]
pub struct BadConstraint {
    pub index: usize,
    pub message: String,
}

/// Every id, in IFEval's order of kinds.
pub const IDS: &[&str] = &[
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "startend:quotation",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
];

/// The answers `detectable_format:constrained_response` allows.
pub const CONSTRAINED_RESPONSES: [&str; 3] = ["My answer is yes.", "My answer is no.", "My answer is maybe."];

impl Constraint {
    /// IFEval's id of this constraint's kind: the variant's serde name, the
    /// one place each id is written (and listed in [`IDS`]).
    pub fn id(&self) -> &'static str {
        let value = serde_json::to_value(self).expect("a constraint serializes");
        let id = value["id"].as_str().unwrap_or_default();
        IDS.iter().find(|&&known| known == id).unwrap_or_else(|| panic!("`{id}` is missing from IDS"))
    }

    /// The arguments, as IFEval's `kwargs` object.
    pub fn kwargs(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("a constraint serializes");
        value.get_mut("kwargs").map(serde_json::Value::take).unwrap_or_else(|| serde_json::json!({}))
    }

    /// A constraint from its id and `kwargs` (`null` for none).
    pub fn from_parts(id: &str, kwargs: &serde_json::Value) -> Result<Constraint, String> {
        if !IDS.contains(&id) {
            return Err(format!("unknown constraint id `{id}`"));
        }
        // IFEval writes null for the arguments a kind does not use.
        let kwargs = match kwargs {
            serde_json::Value::Null => serde_json::json!({}),
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect(),
            ),
            other => return Err(format!("`{id}`: kwargs must be an object, not {other}")),
        };
        let constraint: Constraint = serde_json::from_value(serde_json::json!({ "id": id, "kwargs": kwargs }))
            .map_err(|e| format!("`{id}`: {e}"))?;
        constraint.validate().map_err(|e| format!("`{id}`: {e}"))?;
        Ok(constraint)
    }

    /// Arguments that parse but cannot be met or checked.
    fn validate(&self) -> Result<(), String> {
        match self {
            Constraint::ResponseLanguage { language } if !evol_lang::is_known(language) => {
                Err(format!("`{language}` is not a language code this checker knows"))
            }
            Constraint::ParagraphFirstWord { num_paragraphs, nth_paragraph, first_word } => {
                if *nth_paragraph == 0 || nth_paragraph > num_paragraphs {
                    Err(format!("nth_paragraph must be from 1 to num_paragraphs ({num_paragraphs})"))
                } else if first_word.trim().is_empty() {
                    Err("first_word is empty".into())
                } else {
                    Ok(())
                }
            }
            Constraint::LetterFrequency { letter, .. } if letter.chars().count() != 1 => {
                Err(format!("letter must be one letter, not `{letter}`"))
            }
            Constraint::Sections { section_spliter, .. } if section_spliter.trim().is_empty() => {
                Err("section_spliter is empty".into())
            }
            Constraint::Keywords { keywords: words } | Constraint::ForbiddenWords { forbidden_words: words }
                if words.iter().any(|w| w.trim().is_empty()) =>
            {
                Err("an empty keyword".into())
            }
            Constraint::KeywordFrequency { keyword, .. } if keyword.trim().is_empty() => Err("keyword is empty".into()),
            Constraint::Postscript { postscript_marker } if postscript_marker.trim().is_empty() => {
                Err("postscript_marker is empty".into())
            }
            Constraint::EndPhrase { end_phrase } if end_phrase.trim().is_empty() => Err("end_phrase is empty".into()),
            Constraint::RepeatPrompt { prompt_to_repeat } if prompt_to_repeat.trim().is_empty() => {
                Err("prompt_to_repeat is empty".into())
            }
            _ => Ok(()),
        }
    }

    /// Whether `answer` keeps this constraint; if not, what was found.
    pub fn check(&self, answer: &str) -> Result<(), Broken> {
        let broken = |found: String| Err(Broken { id: self.id(), found });
        match self {
            Constraint::ResponseLanguage { language } => match evol_lang::detect(answer).language() {
                Some(found) if found != language => broken(format!(
                    "the answer is in {} ({found}), not {} ({language})",
                    evol_lang::name(found),
                    evol_lang::name(language)
                )),
                // Too short or mixed to tell: not counted against it (as IFEval).
                _ => Ok(()),
            },
            Constraint::Sentences { num_sentences, relation } => {
                let n = sentence_count(answer);
                compare(n, *relation, *num_sentences, "sentences").or_else(broken)
            }
            Constraint::Paragraphs { num_paragraphs } => match divided_paragraphs(answer) {
                None => broken("an empty paragraph between `***` dividers".into()),
                Some(n) if n != *num_paragraphs as usize => broken(format!("{n} paragraphs, not {num_paragraphs}")),
                Some(_) => Ok(()),
            },
            Constraint::Words { num_words, relation } => {
                compare(evol_lang::word_count(answer), *relation, *num_words, "words").or_else(broken)
            }
            Constraint::ParagraphFirstWord { num_paragraphs, nth_paragraph, first_word } => {
                let paragraphs: Vec<&str> = BLANK_LINE.split(answer).map(str::trim).filter(|p| !p.is_empty()).collect();
                if paragraphs.len() != *num_paragraphs as usize {
                    return broken(format!("{} paragraphs, not {num_paragraphs}", paragraphs.len()));
                }
                let paragraph = paragraphs[*nth_paragraph as usize - 1];
                let first = evol_lang::words(paragraph).first().map(|w| w.to_lowercase()).unwrap_or_default();
                let wanted = first_word.trim().to_lowercase();
                // A script without spaces has no word to cut: its first
                // characters must be the word.
                if first == wanted
                    || (first.starts_with(&wanted) && !first.chars().next().is_some_and(evol_lang::is_spaced_letter))
                {
                    Ok(())
                } else {
                    broken(format!("paragraph {nth_paragraph} starts with `{first}`, not `{wanted}`"))
                }
            }
            Constraint::Placeholders { num_placeholders } => {
                let n = PLACEHOLDER.find_iter(answer).count();
                compare(n, Relation::AtLeast, *num_placeholders, "placeholders in square brackets").or_else(broken)
            }
            Constraint::Postscript { postscript_marker } => {
                if postscript(answer, postscript_marker) {
                    Ok(())
                } else {
                    broken(format!("no line starts with `{postscript_marker}`"))
                }
            }
            Constraint::Bullets { num_bullets } => {
                let n = answer.lines().filter(|l| is_bullet(l)).count();
                if n == *num_bullets as usize {
                    Ok(())
                } else {
                    broken(format!("{n} bullet points, not {num_bullets}"))
                }
            }
            Constraint::ConstrainedResponse {} => {
                if CONSTRAINED_RESPONSES.iter().any(|r| answer.contains(r)) {
                    Ok(())
                } else {
                    broken("none of the allowed answers (`My answer is yes.`, `... no.`, `... maybe.`)".into())
                }
            }
            Constraint::Highlights { num_highlights } => {
                compare(highlights(answer), Relation::AtLeast, *num_highlights, "highlighted sections").or_else(broken)
            }
            Constraint::Sections { section_spliter, num_sections } => {
                let splitter =
                    Regex::new(&format!(r"\s?{}\s?\d+\s?", regex::escape(section_spliter.trim()))).expect("escaped");
                let n = splitter.split(answer).count() - 1;
                compare(n, Relation::AtLeast, *num_sections, &format!("sections marked `{section_spliter} N`"))
                    .or_else(broken)
            }
            Constraint::Json {} => {
                let text = unfenced(answer);
                match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(_) => Ok(()),
                    Err(e) => broken(format!("not JSON ({e})")),
                }
            }
            Constraint::Title {} => {
                if TITLE.find_iter(answer).any(|m| !m.as_str()[2..m.len() - 2].trim().is_empty()) {
                    Ok(())
                } else {
                    broken("no title in double angle brackets (<<title>>)".into())
                }
            }
            Constraint::TwoResponses {} => {
                let parts: Vec<&str> = answer.split("******").collect();
                let filled: Vec<&str> = parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect();
                let inner_empty = parts.len() > 2 && parts[1..parts.len() - 1].iter().any(|p| p.trim().is_empty());
                if filled.len() != 2 || inner_empty {
                    broken(format!("{} answers separated by `******`, not 2", filled.len()))
                } else if filled[0] == filled[1] {
                    broken("the two answers are the same".into())
                } else {
                    Ok(())
                }
            }
            Constraint::RepeatPrompt { prompt_to_repeat } => {
                if answer.trim().to_lowercase().starts_with(&prompt_to_repeat.trim().to_lowercase()) {
                    Ok(())
                } else {
                    broken("the answer does not start by repeating the request".into())
                }
            }
            Constraint::EndPhrase { end_phrase } => {
                if answer.trim().to_lowercase().ends_with(&end_phrase.trim().to_lowercase()) {
                    Ok(())
                } else {
                    broken(format!("the answer does not end with `{}`", end_phrase.trim()))
                }
            }
            Constraint::Quotation {} => {
                let text = answer.trim();
                let quoted = ['"', '“', '「', '『', '«', '„']
                    .into_iter()
                    .zip(['"', '”', '」', '』', '»', '“'])
                    .any(|(open, close)| text.chars().count() > 1 && text.starts_with(open) && text.ends_with(close));
                if quoted {
                    Ok(())
                } else {
                    broken("the answer is not wrapped in double quotation marks".into())
                }
            }
            Constraint::CapitalWords { capital_frequency, capital_relation } => {
                let n = evol_lang::words(answer).iter().filter(|w| is_capital_word(w)).count();
                compare(n, *capital_relation, *capital_frequency, "words in capitals").or_else(broken)
            }
            Constraint::EnglishCapital {} => {
                if answer.chars().any(char::is_lowercase) || !answer.chars().any(char::is_uppercase) {
                    broken("not all in capital letters".into())
                } else {
                    english(answer).or_else(broken)
                }
            }
            Constraint::EnglishLowercase {} => {
                if answer.chars().any(char::is_uppercase) || !answer.chars().any(char::is_lowercase) {
                    broken("not all in small letters".into())
                } else {
                    english(answer).or_else(broken)
                }
            }
            Constraint::NoComma {} => match answer.chars().find(|c| COMMAS.contains(c)) {
                Some(c) => broken(format!("a comma (`{c}`)")),
                None => Ok(()),
            },
            Constraint::Keywords { keywords } => {
                let text = answer.to_lowercase();
                let missing: Vec<&str> =
                    keywords.iter().map(|k| k.trim()).filter(|k| !text.contains(&k.to_lowercase())).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    broken(format!("missing {}", quoted_list(&missing)))
                }
            }
            Constraint::KeywordFrequency { keyword, frequency, relation } => {
                let n = answer.to_lowercase().matches(&keyword.trim().to_lowercase()).count();
                compare(n, *relation, *frequency, &format!("times `{}`", keyword.trim())).or_else(broken)
            }
            Constraint::ForbiddenWords { forbidden_words } => {
                let text = answer.to_lowercase();
                let found: Vec<&str> = forbidden_words
                    .iter()
                    .map(|w| w.trim())
                    .filter(|w| evol_lang::contains_phrase(&text, &w.to_lowercase()))
                    .collect();
                if found.is_empty() {
                    Ok(())
                } else {
                    broken(format!("forbidden {}", quoted_list(&found)))
                }
            }
            Constraint::LetterFrequency { letter, let_frequency, let_relation } => {
                let wanted: Vec<char> = letter.to_lowercase().chars().collect();
                let n = answer.chars().flat_map(char::to_lowercase).filter(|c| wanted.contains(c)).count();
                compare(n, *let_relation, *let_frequency, &format!("times the letter `{letter}`")).or_else(broken)
            }
        }
    }
}

impl Constraint {
    /// The constraint said in plain English, as an instruction states it
    /// to whoever answers (each argument in it, texts in quotation marks).
    pub fn describe(&self) -> String {
        let fewer = |relation: Relation| match relation {
            Relation::LessThan => "fewer than",
            Relation::AtLeast => "at least",
        };
        let quoted =
            |words: &[String]| words.iter().map(|w| format!("\"{}\"", w.trim())).collect::<Vec<_>>().join(", ");
        match self {
            Constraint::ResponseLanguage { language } => {
                format!("Write the whole answer in {} and in no other language.", evol_lang::name(language))
            }
            Constraint::Sentences { num_sentences, relation } => {
                format!("The answer must have {} {num_sentences} sentences.", fewer(*relation))
            }
            Constraint::Paragraphs { num_paragraphs } => format!(
                "The answer must have exactly {num_paragraphs} paragraphs, separated from each other by the markdown divider ***."
            ),
            Constraint::Words { num_words, relation } => {
                format!("The answer must be {} {num_words} words long.", fewer(*relation))
            }
            Constraint::ParagraphFirstWord { num_paragraphs, nth_paragraph, first_word } => format!(
                "The answer must have exactly {num_paragraphs} paragraphs, separated by blank lines, and paragraph number {nth_paragraph} must begin with the word \"{}\".",
                first_word.trim()
            ),
            Constraint::Placeholders { num_placeholders } => format!(
                "The answer must contain at least {num_placeholders} placeholders in square brackets, such as [address]."
            ),
            Constraint::Postscript { postscript_marker } => format!(
                "End the answer with a postscript on its own line, beginning with \"{}\".",
                postscript_marker.trim()
            ),
            Constraint::Bullets { num_bullets } => format!(
                "The answer must be exactly {num_bullets} markdown bullet points, each on its own line starting with \"* \"."
            ),
            Constraint::ConstrainedResponse {} => format!(
                "Answer with one of these sentences and nothing else: {}.",
                CONSTRAINED_RESPONSES.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ")
            ),
            Constraint::Highlights { num_highlights } => format!(
                "Highlight at least {num_highlights} parts of the answer with markdown, *like this*."
            ),
            Constraint::Sections { section_spliter, num_sections } => format!(
                "Split the answer into at least {num_sections} sections, each beginning with \"{} N\" where N is its number.",
                section_spliter.trim()
            ),
            Constraint::Json {} => "The whole answer must be valid JSON.".to_string(),
            Constraint::Title {} => "Give the answer a title in double angle brackets, such as <<a title>>.".to_string(),
            Constraint::TwoResponses {} => {
                "Give two different answers, separated by six asterisks: ******.".to_string()
            }
            Constraint::RepeatPrompt { prompt_to_repeat } => format!(
                "Before answering, repeat this request word for word, without changing it: \"{}\".",
                prompt_to_repeat.trim()
            ),
            Constraint::EndPhrase { end_phrase } => format!(
                "End the answer with the exact phrase \"{}\", with nothing after it.",
                end_phrase.trim()
            ),
            Constraint::Quotation {} => "Wrap the whole answer in double quotation marks.".to_string(),
            Constraint::CapitalWords { capital_frequency, capital_relation } => format!(
                "Use {} {capital_frequency} words written entirely in capital letters.",
                fewer(*capital_relation)
            ),
            Constraint::EnglishCapital {} => {
                "Write the whole answer in English and in capital letters only.".to_string()
            }
            Constraint::EnglishLowercase {} => {
                "Write the whole answer in English and in small letters only, with no capital letter.".to_string()
            }
            Constraint::NoComma {} => "Do not use any comma in the answer.".to_string(),
            Constraint::Keywords { keywords } => {
                format!("The answer must include the words {}.", quoted(keywords))
            }
            Constraint::KeywordFrequency { keyword, frequency, relation } => format!(
                "The word \"{}\" must appear {} {frequency} times in the answer.",
                keyword.trim(),
                fewer(*relation)
            ),
            Constraint::ForbiddenWords { forbidden_words } => {
                format!("Do not use the words {} in the answer.", quoted(forbidden_words))
            }
            Constraint::LetterFrequency { letter, let_frequency, let_relation } => format!(
                "The letter \"{letter}\" must appear {} {let_frequency} times in the answer.",
                fewer(*let_relation)
            ),
        }
    }

    /// The texts an instruction must state as they are for this constraint
    /// to be told (keywords, phrases, markers): an instruction rewritten to
    /// hold the constraint that lacks one of them lost it.
    pub fn literals(&self) -> Vec<&str> {
        match self {
            Constraint::ParagraphFirstWord { first_word, .. } => vec![first_word.trim()],
            Constraint::Postscript { postscript_marker } => vec![postscript_marker.trim()],
            Constraint::Sections { section_spliter, .. } => vec![section_spliter.trim()],
            Constraint::EndPhrase { end_phrase } => vec![end_phrase.trim()],
            Constraint::Keywords { keywords: words } | Constraint::ForbiddenWords { forbidden_words: words } => {
                words.iter().map(|w| w.trim()).collect()
            }
            Constraint::KeywordFrequency { keyword, .. } => vec![keyword.trim()],
            _ => Vec::new(),
        }
    }
}

/// Checks every constraint; the first broken one, if any.
pub fn check_all(constraints: &[Constraint], answer: &str) -> Result<(), Broken> {
    constraints.iter().try_for_each(|c| c.check(answer))
}

/// The constraints of a row in the layout open-instruct and Tulu 3 use for
/// verifiable rewards: `{"instruction_id": [...], "kwargs": [...]}`, one
/// `kwargs` object per id, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub instruction_id: Vec<String>,
    pub kwargs: Vec<serde_json::Value>,
}

impl GroundTruth {
    pub fn new(constraints: &[Constraint]) -> GroundTruth {
        GroundTruth {
            instruction_id: constraints.iter().map(|c| c.id().to_string()).collect(),
            kwargs: constraints.iter().map(Constraint::kwargs).collect(),
        }
    }

    /// The row's `ground_truth` text as open-instruct's IFEval verifier
    /// reads it (`ast.literal_eval(label)[0]`): a one-item list of this
    /// object, as JSON (no argument is ever null, so it is also a Python
    /// literal).
    pub fn to_label(&self) -> String {
        serde_json::to_string(&[self]).expect("a ground truth serializes")
    }

    /// A `ground_truth` text back: the one-item list [`to_label`] writes,
    /// the object alone, or either encoded once more as a JSON string.
    ///
    /// [`to_label`]: GroundTruth::to_label
    pub fn from_label(label: &str) -> Result<GroundTruth, String> {
        let mut value: serde_json::Value = serde_json::from_str(label).map_err(|e| format!("not JSON: {e}"))?;
        for _ in 0..2 {
            value = match value {
                serde_json::Value::String(inner) => {
                    serde_json::from_str(&inner).map_err(|e| format!("not JSON inside its string: {e}"))?
                }
                serde_json::Value::Array(mut items) if items.len() == 1 => items.remove(0),
                other => other,
            };
        }
        serde_json::from_value(value).map_err(|e| format!("not a ground truth (`instruction_id` and `kwargs`): {e}"))
    }

    /// The constraints back, or the first that cannot be read.
    pub fn constraints(&self) -> Result<Vec<Constraint>, BadConstraint> {
        if self.instruction_id.len() != self.kwargs.len() {
            return Err(BadConstraint {
                index: self.instruction_id.len().min(self.kwargs.len()),
                message: format!("{} ids but {} kwargs", self.instruction_id.len(), self.kwargs.len()),
            });
        }
        self.instruction_id
            .iter()
            .zip(&self.kwargs)
            .enumerate()
            .map(|(index, (id, kwargs))| {
                Constraint::from_parts(id, kwargs).map_err(|message| BadConstraint { index, message })
            })
            .collect()
    }
}

static BLANK_LINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\r?\n[ \t]*\r?\n").expect("valid"));
static DIVIDER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s?\*\*\*\s?").expect("valid"));
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[[^\]\n]*?\]").expect("valid"));
static TITLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<<[^\n]+?>>").expect("valid"));
static SINGLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\*[^\n*]*\*").expect("valid"));
static DOUBLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\*\*[^\n*]*\*\*").expect("valid"));
static SENTENCES: LazyLock<icu_segmenter::SentenceSegmenterBorrowed<'static>> =
    LazyLock::new(|| SentenceSegmenter::new(SentenceBreakInvariantOptions::default()));

/// Commas of every script: Latin, full-width, the ideographic enumeration
/// comma and the Arabic comma.
const COMMAS: [char; 4] = [',', '，', '、', '،'];

fn compare(count: usize, relation: Relation, threshold: u32, what: &str) -> Result<(), String> {
    if relation.holds(count, threshold) {
        Ok(())
    } else {
        Err(format!("{count} {what}, wanted {relation} {threshold}"))
    }
}

/// Sentences by Unicode segmentation: a segment counts when it holds a
/// letter or a digit.
fn sentence_count(text: &str) -> usize {
    let mut start = 0;
    let mut n = 0;
    for end in SENTENCES.segment_str(text) {
        if text[start..end].chars().any(char::is_alphanumeric) {
            n += 1;
        }
        start = end;
    }
    n
}

/// Paragraphs between `***` dividers (empty ones at either end dropped),
/// or `None` when one in the middle is empty.
fn divided_paragraphs(text: &str) -> Option<usize> {
    let parts: Vec<&str> = DIVIDER.split(text).collect();
    let last = parts.len() - 1;
    let mut n = parts.len();
    for (i, part) in parts.iter().enumerate() {
        if part.trim().is_empty() {
            if i == 0 || i == last {
                n -= 1;
            } else {
                return None;
            }
        }
    }
    Some(n)
}

/// A line that is a markdown bullet point: `* item` (not `**bold**`) or
/// `- item`.
fn is_bullet(line: &str) -> bool {
    let line = line.trim_start();
    (line.starts_with('*') && !line.starts_with("**") && line.len() > 1) || line.starts_with('-')
}

/// Sections highlighted as `*text*` or `**text**` (not empty).
fn highlights(text: &str) -> usize {
    let single = SINGLE.find_iter(text).filter(|m| !m.as_str().trim_matches('*').trim().is_empty()).count();
    let double = DOUBLE.find_iter(text).filter(|m| !m.as_str()[2..m.len() - 2].trim().is_empty()).count();
    single + double
}

/// Whether a line starts with the postscript marker, any case; `P.S.` and
/// `P.P.S` allow spaces after their dots.
fn postscript(text: &str, marker: &str) -> bool {
    let pattern = match marker.trim() {
        "P.P.S" | "P.P.S." => r"(?im)^\s*p\.\s?p\.\s?s".to_string(),
        "P.S." | "P.S" => r"(?im)^\s*p\.\s?s\.".to_string(),
        other => format!(r"(?im)^\s*{}", regex::escape(other)),
    };
    Regex::new(&pattern).expect("escaped").is_match(text)
}

/// The text inside a markdown code fence (```json ... ```), or the text.
fn unfenced(text: &str) -> &str {
    let mut t = text.trim();
    for fence in ["```json", "```Json", "```JSON", "```"] {
        if let Some(rest) = t.strip_prefix(fence) {
            t = rest;
            break;
        }
    }
    t.strip_suffix("```").unwrap_or(t).trim()
}

/// A word with cased letters, none of them small.
fn is_capital_word(word: &str) -> bool {
    word.chars().any(char::is_uppercase) && !word.chars().any(char::is_lowercase)
}

fn english(text: &str) -> Result<(), String> {
    match evol_lang::detect(&text.to_lowercase()).language() {
        Some(found) if found != "en" => {
            Err(format!("the answer is in {} ({found}), not English", evol_lang::name(found)))
        }
        _ => Ok(()),
    }
}

fn quoted_list(words: &[&str]) -> String {
    words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_paragraphs_and_bullets_are_counted_in_every_script() {
        assert_eq!(sentence_count("One. Two! Three?"), 3);
        assert_eq!(sentence_count("今天下雨。我们在家。"), 2);
        assert_eq!(sentence_count("आज बारिश है। हम घर पर हैं।"), 2);
        assert_eq!(sentence_count("…"), 0);
        assert_eq!(divided_paragraphs("***\na\n***\nb\n***"), Some(2));
        assert_eq!(divided_paragraphs("a *** *** b"), None);
        assert!(is_bullet("  * item") && is_bullet("- item") && !is_bullet("**bold**") && !is_bullet("*"));
        assert_eq!(highlights("*a* **b** ** ** *"), 2);
        assert_eq!(unfenced("```json\n[1]\n```"), "[1]");
        assert!(is_capital_word("NASA") && !is_capital_word("Nasa") && !is_capital_word("数据"));
    }

    #[test]
    fn every_id_is_listed_once_and_read_back() {
        let mut ids = IDS.to_vec();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), IDS.len());
        let c = Constraint::Words { num_words: 3, relation: Relation::AtLeast };
        assert_eq!(c.id(), "length_constraints:number_words");
        assert_eq!(Constraint::from_parts(c.id(), &c.kwargs()).unwrap(), c);
    }

    #[test]
    fn postscripts_allow_spaces_after_their_dots() {
        assert!(postscript("x\nP.S. y", "P.S."));
        assert!(postscript("x\n  p. s. y", "P.S."));
        assert!(!postscript("x P.S. y", "P.S."), "not at a line's start");
        assert!(postscript("x\nP.P.S y", "P.P.S"));
        assert!(postscript("x\nNB: y", "NB:"));
    }
}
