//! The language a question is asked in, and the answers that leave it.
//!
//! A judge is told the question's language (the prompt names it, and says
//! that an answer in another one does not serve the person who asked);
//! `evol judge` and `evol arena` also count those answers themselves, so a
//! model that answers Hindi questions in English shows as such whatever the
//! judge made of it. A text too short or too code-like to tell is never
//! counted either way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The language of a question (its turns read together), when it can be
/// told: an ISO 639-1 code.
pub fn of_question(turns: &[String]) -> Option<&'static str> {
    evol_lang::detect(&turns.join("\n")).language()
}

/// The language `answers` are written in, when it can be told and it is
/// not `question`'s.
pub fn wrong(question: Option<&str>, answers: &[String]) -> Option<&'static str> {
    let question = question?;
    evol_lang::detect(&answers.join("\n")).language().filter(|found| *found != question)
}

/// The languages of a job's questions, and the answers each side wrote in
/// another one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LanguageCounts {
    /// Questions by language (`und`: not told).
    pub questions: BTreeMap<String, usize>,
    /// By model (or side): how many of its answers left the question's
    /// language, and into which ones.
    pub wrong: BTreeMap<String, BTreeMap<String, usize>>,
}

pub use evol_lang::UNDETERMINED;

impl LanguageCounts {
    /// A question asked in `language` (`None`: not told).
    pub fn question(&mut self, language: Option<&str>) {
        *self.questions.entry(language.unwrap_or(UNDETERMINED).to_string()).or_default() += 1;
    }

    /// `who` answered in `found`, not the question's language.
    pub fn wrong_answer(&mut self, who: &str, found: &str) {
        *self.wrong.entry(who.to_string()).or_default().entry(found.to_string()).or_default() += 1;
    }

    /// How many of `who`'s answers left the question's language.
    pub fn wrong_of(&self, who: &str) -> usize {
        self.wrong.get(who).map_or(0, |by| by.values().sum())
    }

    /// Whether any question is in a language other than English, or any
    /// answer left its question's language: what makes the counts worth a
    /// line of a report.
    pub fn worth_telling(&self) -> bool {
        !self.wrong.is_empty() || self.questions.keys().any(|l| l != "en" && l != UNDETERMINED)
    }

    /// The line a report gives the counts, when they are worth telling:
    /// "Questions by language: hi 6, zh 6. Answers in another language than
    /// the question's: candidate 4 (en 4), reference 0." Each of `who` is
    /// listed as `name` writes it, with its count (none listed: "none").
    pub fn line<'a>(&self, who: impl IntoIterator<Item = &'a str>, name: impl Fn(&str) -> String) -> Option<String> {
        if !self.worth_telling() {
            return None;
        }
        let counts = |by: &BTreeMap<String, usize>| by.iter().map(|(l, n)| format!("{l} {n}")).collect::<Vec<_>>();
        let each: Vec<String> = who
            .into_iter()
            .map(|w| match self.wrong.get(w) {
                Some(by) => format!("{} {} ({})", name(w), self.wrong_of(w), counts(by).join(", ")),
                None => format!("{} 0", name(w)),
            })
            .collect();
        let wrong = if each.is_empty() { "none".to_string() } else { each.join(", ") };
        Some(format!(
            "Questions by language: {}. Answers in another language than the question's: {wrong}.",
            counts(&self.questions).join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Vec<String> {
        vec![text.to_string()]
    }

    #[test]
    fn answers_in_another_language_are_told_and_short_ones_are_not() {
        // "Explain why the sky is blue." (Hindi)
        let question = of_question(&s("समझाइए कि आकाश नीला क्यों दिखाई देता है और सूर्यास्त के समय लाल क्यों।"));
        assert_eq!(question, Some("hi"));
        // The same answer in English, then in Hindi ("Air scatters blue
        // light more than red light, so the sky looks blue.").
        let english = s("The air in the atmosphere scatters the blue part of sunlight much more than the red part, which is why the sky looks blue to us during the day.");
        let hindi = s("हवा के अणु नीले प्रकाश को लाल प्रकाश की तुलना में अधिक बिखेरते हैं, इसलिए आकाश नीला दिखता है।");
        assert_eq!(wrong(question, &english), Some("en"));
        assert_eq!(wrong(question, &hindi), None);
        // Code alone, or a number: not told, never counted.
        assert_eq!(wrong(question, &s("```\nx = 42\n```")), None);
        assert_eq!(wrong(question, &s("42")), None);
        assert_eq!(wrong(None, &english), None);

        let mut counts = LanguageCounts::default();
        counts.question(question);
        counts.question(None);
        counts.wrong_answer("model-a", "en");
        counts.wrong_answer("model-a", "en");
        assert_eq!((counts.questions["hi"], counts.questions[UNDETERMINED]), (1, 1));
        assert_eq!((counts.wrong_of("model-a"), counts.wrong_of("model-b")), (2, 0));
        assert!(counts.worth_telling());
        assert_eq!(
            counts.line(["model-a", "model-b"], |w| format!("`{w}`")).unwrap(),
            "Questions by language: hi 1, und 1. Answers in another language than the question's: `model-a` 2 (en 2), `model-b` 0."
        );
        assert!(counts.line([], |w| w.to_string()).unwrap().ends_with("question's: none."));
        let mut english_only = LanguageCounts::default();
        english_only.question(Some("en"));
        assert!(!english_only.worth_telling());
        assert_eq!(english_only.line(["model-a"], |w| w.to_string()), None);
    }
}
