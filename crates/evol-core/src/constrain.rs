//! Constraints added to instructions: which kind an operation draws, with
//! which arguments, and whether a rewritten instruction still states them.
//!
//! An operation with a list of constraint ids (the `verifiable` set) draws
//! one of them that fits the instruction and the constraints it already
//! holds, with arguments drawn from the chain's keyed randomness (so a
//! resumed run draws the same). Words a constraint names (keywords,
//! forbidden words, a paragraph's first word) are drawn from the
//! instruction's own words, so they are in its language whatever the
//! script. The checkers themselves are `evol_constraints`'.

use evol_constraints::{Constraint, Relation};
use rand::seq::IndexedRandom;
use rand::Rng;

/// The ids an operation may draw: every kind but `combination:repeat_prompt`,
/// whose argument is the request itself (which the rewrite changes).
pub fn drawable(id: &str) -> bool {
    evol_constraints::IDS.contains(&id) && id != "combination:repeat_prompt"
}

/// What a draw knows of the chain.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub instruction: &'a str,
    /// The constraints the instruction already holds.
    pub held: &'a [Constraint],
    /// The run keeps each text in one language: no constraint may ask for
    /// another.
    pub language_fixed: bool,
}

/// Phrases an answer may be asked to end with.
const END_PHRASES: &[&str] = &[
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "That is all I have to say.",
    "Any other questions?",
];

/// Languages an answer may be asked to be written in.
const LANGUAGES: &[&str] = &["en", "fr", "de", "es", "pt", "ru", "zh", "ja", "hi", "ar", "th", "ko"];

/// Kinds that shape the whole answer (or wrap it): none of them goes with any other
/// kind that shapes it or places something in it.
const WHOLE: &[&str] = &[
    "detectable_format:json_format",
    "detectable_format:constrained_response",
    "combination:two_responses",
    "startend:quotation",
];

/// Kinds that give the answer a structure or put a text at a place in it.
fn structural(id: &str) -> bool {
    id.starts_with("detectable_format:")
        || id.starts_with("detectable_content:")
        || id.starts_with("startend:")
        || id.starts_with("combination:")
        || id == "length_constraints:number_paragraphs"
        || id == "length_constraints:nth_paragraph_first_word"
}

/// Whether kinds `a` and `b` cannot be asked of one answer together.
fn conflict(a: &str, b: &str) -> bool {
    let one_way = |a: &str, b: &str| {
        (WHOLE.contains(&a) && structural(b))
            // Two ways of telling paragraphs apart.
            || (a == "length_constraints:number_paragraphs" && b == "length_constraints:nth_paragraph_first_word")
            // Whole-answer case against every other case rule, and
            // against any text whose case is given.
            || (a.starts_with("change_case:english_") && (b.starts_with("change_case:") || b.starts_with("startend:")
                || b == "detectable_content:postscript" || b == "detectable_format:multiple_sections"
                || b == "language:response_language"))
            // Another language against words drawn from this one's.
            || (a == "language:response_language" && (b.starts_with("keywords:")
                || b == "length_constraints:nth_paragraph_first_word" || b.starts_with("startend:end")
                || b == "change_case:capital_word_frequency"))
    };
    a == b || one_way(a, b) || one_way(b, a)
}

/// Words of the instruction a constraint may name: whole words of letters
/// (at least four in a script with spaces, two in one without), each once,
/// in lower case, in order.
fn candidate_words(instruction: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in evol_lang::words(instruction) {
        if !word.chars().all(char::is_alphabetic) {
            continue;
        }
        let spaced = word.chars().next().is_some_and(evol_lang::is_spaced_letter);
        if word.chars().count() < if spaced { 4 } else { 2 } {
            continue;
        }
        let word = word.to_lowercase();
        if !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

/// Whether most of the instruction's letters have a case (Latin, Greek,
/// Cyrillic, Armenian...).
fn cased(instruction: &str) -> bool {
    let letters: Vec<char> = instruction.chars().filter(|c| c.is_alphabetic()).collect();
    let with_case = letters.iter().filter(|c| c.is_lowercase() || c.is_uppercase()).count();
    !letters.is_empty() && with_case * 2 > letters.len()
}

/// One constraint of `ids` that fits `context`, with its arguments, or
/// `None` when none fits.
pub fn draw(ids: &[String], context: Context<'_>, rng: &mut impl Rng) -> Option<Constraint> {
    let words: Vec<String> = candidate_words(context.instruction)
        .into_iter()
        .filter(|w| !context.held.iter().flat_map(Constraint::literals).any(|l| l.to_lowercase() == *w))
        .collect();
    let language = evol_lang::detect(context.instruction).language();
    let is_cased = cased(context.instruction);
    let fits = |id: &str| -> bool {
        if !drawable(id) || context.held.iter().any(|c| conflict(c.id(), id)) {
            return false;
        }
        match id {
            "keywords:existence" | "keywords:frequency" | "keywords:forbidden_words" => !words.is_empty(),
            "length_constraints:nth_paragraph_first_word" => !words.is_empty(),
            "keywords:letter_frequency" => context.instruction.chars().any(evol_lang::is_spaced_letter) && is_cased,
            "change_case:capital_word_frequency" => is_cased,
            "change_case:english_capital" | "change_case:english_lowercase" => language == Some("en"),
            "language:response_language" => !context.language_fixed,
            _ => true,
        }
    };
    let fitting: Vec<&str> = ids.iter().map(String::as_str).filter(|id| fits(id)).collect();
    let id = *fitting.choose(rng)?;
    let relation = |rng: &mut dyn rand::RngCore| {
        if rng.random_bool(0.5) {
            Relation::LessThan
        } else {
            Relation::AtLeast
        }
    };
    let some_words = |rng: &mut dyn rand::RngCore, most: usize| -> Vec<String> {
        let n = rng.random_range(1..=most.min(words.len()));
        words.choose_multiple(rng, n).cloned().collect()
    };
    let constraint = match id {
        "keywords:existence" => Constraint::Keywords { keywords: some_words(rng, 2) },
        "keywords:frequency" => Constraint::KeywordFrequency {
            keyword: some_words(rng, 1).remove(0),
            frequency: rng.random_range(2..=4),
            relation: Relation::AtLeast,
        },
        "keywords:forbidden_words" => Constraint::ForbiddenWords { forbidden_words: some_words(rng, 2) },
        "keywords:letter_frequency" => {
            let letters: Vec<char> = context
                .instruction
                .chars()
                .filter(|c| evol_lang::is_spaced_letter(*c))
                .flat_map(char::to_lowercase)
                .collect();
            let letter = *letters.choose(rng).expect("the kind fits only an instruction with letters");
            Constraint::LetterFrequency {
                letter: letter.to_string(),
                let_frequency: rng.random_range(3..=12),
                let_relation: Relation::AtLeast,
            }
        }
        "language:response_language" => {
            let others: Vec<&str> = LANGUAGES.iter().copied().filter(|l| Some(*l) != language).collect();
            Constraint::ResponseLanguage { language: others.choose(rng).expect("several").to_string() }
        }
        "length_constraints:number_sentences" => match relation(rng) {
            Relation::LessThan => {
                Constraint::Sentences { num_sentences: rng.random_range(3..=10), relation: Relation::LessThan }
            }
            Relation::AtLeast => {
                Constraint::Sentences { num_sentences: rng.random_range(3..=12), relation: Relation::AtLeast }
            }
        },
        "length_constraints:number_paragraphs" => Constraint::Paragraphs { num_paragraphs: rng.random_range(2..=5) },
        "length_constraints:number_words" => match relation(rng) {
            Relation::LessThan => {
                Constraint::Words { num_words: 50 * rng.random_range(2..=8), relation: Relation::LessThan }
            }
            Relation::AtLeast => {
                Constraint::Words { num_words: 50 * rng.random_range(2..=8), relation: Relation::AtLeast }
            }
        },
        "length_constraints:nth_paragraph_first_word" => {
            let num_paragraphs = rng.random_range(2..=4);
            Constraint::ParagraphFirstWord {
                num_paragraphs,
                nth_paragraph: rng.random_range(1..=num_paragraphs),
                first_word: some_words(rng, 1).remove(0),
            }
        }
        "detectable_content:number_placeholders" => {
            Constraint::Placeholders { num_placeholders: rng.random_range(1..=3) }
        }
        "detectable_content:postscript" => {
            Constraint::Postscript { postscript_marker: ["P.S.", "P.P.S"].choose(rng).expect("two").to_string() }
        }
        "detectable_format:number_bullet_lists" => Constraint::Bullets { num_bullets: rng.random_range(2..=6) },
        "detectable_format:constrained_response" => Constraint::ConstrainedResponse {},
        "detectable_format:number_highlighted_sections" => {
            Constraint::Highlights { num_highlights: rng.random_range(1..=3) }
        }
        "detectable_format:multiple_sections" => Constraint::Sections {
            section_spliter: ["Section", "SECTION", "Part", "PART"].choose(rng).expect("four").to_string(),
            num_sections: rng.random_range(2..=5),
        },
        "detectable_format:json_format" => Constraint::Json {},
        "detectable_format:title" => Constraint::Title {},
        "combination:two_responses" => Constraint::TwoResponses {},
        "startend:end_checker" => {
            Constraint::EndPhrase { end_phrase: END_PHRASES.choose(rng).expect("several").to_string() }
        }
        "startend:quotation" => Constraint::Quotation {},
        "change_case:capital_word_frequency" => match relation(rng) {
            Relation::LessThan => Constraint::CapitalWords {
                capital_frequency: rng.random_range(2..=6),
                capital_relation: Relation::LessThan,
            },
            Relation::AtLeast => Constraint::CapitalWords {
                capital_frequency: rng.random_range(2..=8),
                capital_relation: Relation::AtLeast,
            },
        },
        "change_case:english_capital" => Constraint::EnglishCapital {},
        "change_case:english_lowercase" => Constraint::EnglishLowercase {},
        "punctuation:no_comma" => Constraint::NoComma {},
        other => unreachable!("`{other}` is not drawable"),
    };
    Some(constraint)
}

/// The first constraint whose texts a rewritten instruction no longer
/// states, with the text it lacks (compared in lower case).
pub fn lost<'c>(constraints: &'c [Constraint], instruction: &str) -> Option<(&'c Constraint, &'c str)> {
    let text = instruction.to_lowercase();
    constraints
        .iter()
        .find_map(|c| c.literals().into_iter().find(|l| !text.contains(&l.to_lowercase())).map(|l| (c, l)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::keyed_rng;

    fn all() -> Vec<String> {
        evol_constraints::IDS.iter().filter(|id| drawable(id)).map(|s| s.to_string()).collect()
    }

    #[test]
    fn draws_are_keyed_fit_the_instruction_and_read_back() {
        let ids = all();
        for (instruction, english) in [
            ("Explain how tides depend on the moon and the sun.", true),
            ("解释潮汐如何取决于月亮和太阳的引力变化。", false),
            ("समझाइए कि ज्वार चंद्रमा और सूर्य पर कैसे निर्भर करते हैं।", false),
            ("อธิบายว่าน้ำขึ้นน้ำลงขึ้นอยู่กับดวงจันทร์อย่างไร", false),
        ] {
            let context = Context { instruction, held: &[], language_fixed: true };
            for i in 0..200u32 {
                let a = draw(&ids, context, &mut keyed_rng(7, &[&i.to_le_bytes()[..]])).unwrap();
                let b = draw(&ids, context, &mut keyed_rng(7, &[&i.to_le_bytes()[..]])).unwrap();
                assert_eq!(a, b, "the same key draws the same");
                assert_eq!(Constraint::from_parts(a.id(), &a.kwargs()).unwrap(), a, "{a:?} reads back");
                assert_ne!(a.id(), "language:response_language", "the run's language is fixed");
                if !english {
                    assert!(!a.id().starts_with("change_case:english"), "{a:?} for {instruction}");
                    assert!(!matches!(a, Constraint::LetterFrequency { .. } | Constraint::CapitalWords { .. }));
                }
                for literal in a.literals() {
                    if matches!(a, Constraint::Keywords { .. } | Constraint::ForbiddenWords { .. }) {
                        assert!(instruction.to_lowercase().contains(literal), "{literal} from {instruction}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_draw_avoids_what_is_held_and_what_conflicts_with_it() {
        let ids = all();
        let held = [Constraint::Json {}, Constraint::Keywords { keywords: vec!["tides".into()] }];
        let context =
            Context { instruction: "Explain how tides depend on the moon.", held: &held, language_fixed: false };
        for i in 0..300u32 {
            let c = draw(&ids, context, &mut keyed_rng(1, &[&i.to_le_bytes()[..]])).unwrap();
            assert!(!structural(c.id()), "{c:?} goes against JSON");
            assert!(!c.literals().contains(&"tides"), "{c:?} names a word already named");
            assert!(!held.iter().any(|h| h.id() == c.id()));
        }
        let only = vec!["detectable_format:title".to_string()];
        assert_eq!(draw(&only, context, &mut keyed_rng(1, &[])), None, "nothing fits");
        let words = vec!["keywords:existence".to_string()];
        let none = Context { instruction: "1 + 2 = ?", held: &[], language_fixed: false };
        assert_eq!(draw(&words, none, &mut keyed_rng(1, &[])), None, "no word to name");
    }

    #[test]
    fn a_rewrite_that_drops_a_named_text_lost_it() {
        let held = [Constraint::NoComma {}, Constraint::EndPhrase { end_phrase: "Any other questions?".into() }];
        assert_eq!(lost(&held, "Explain tides. End with \"any other questions?\""), None);
        let (c, text) = lost(&held, "Explain tides without commas.").unwrap();
        assert_eq!((c.id(), text), ("startend:end_checker", "Any other questions?"));
    }
}
