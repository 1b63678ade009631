//! The pairwise judge's prompts: one frame (`prompts/frame.j2`) (the question, or the
//! conversation, and the two answers, then how to reply: the two scores on
//! the first line, reasons after) with a preamble per kind of question,
//! general, code or maths (`prompts/*.txt`, passed as a value), chosen by
//! the item's skill.
//!
//! Questions and answers are passed to the templates as values, never
//! compiled, so template syntax in them stays literal text.

use std::sync::LazyLock;

use minijinja::{context, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

const FRAME: &str = include_str!("prompts/frame.j2");
const GENERAL: &str = include_str!("prompts/general.txt");
const CODE: &str = include_str!("prompts/code.txt");
const MATH: &str = include_str!("prompts/math.txt");

/// Which judge prompt an item gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeKind {
    General,
    Code,
    Math,
}

impl JudgeKind {
    /// The prompt for an item of this skill: code for skills that speak of
    /// code or programming (`Code Generation`, `Code Debug`), maths for
    /// skills that speak of maths, the general prompt otherwise.
    pub fn for_skill(skill: Option<&str>) -> JudgeKind {
        let Some(skill) = skill.map(str::to_lowercase) else { return JudgeKind::General };
        if ["code", "coding", "programming"].iter().any(|w| skill.contains(w)) {
            JudgeKind::Code
        } else if skill.contains("math") {
            JudgeKind::Math
        } else {
            JudgeKind::General
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JudgeKind::General => "general",
            JudgeKind::Code => "code",
            JudgeKind::Math => "math",
        }
    }
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(false);
    env.add_template("frame", FRAME).expect("the built-in judge template compiles");
    env
});

/// A digest of the judge prompts' texts, for a job's identity.
pub fn digest() -> String {
    [FRAME, GENERAL, CODE, MATH].iter().fold(evol_digest::Digest::new(), |d, source| d.part(source)).hex(16)
}

/// The judge's prompt: the user's turns (one, or a conversation) and each
/// side's answers to them, first shown first; the question's `language`
/// (an ISO 639-1 code) named when it is told, with what an answer in
/// another one is worth.
pub fn render(
    kind: JudgeKind,
    turns: &[String],
    first: &[String],
    second: &[String],
    language: Option<&str>,
) -> String {
    assert!(!turns.is_empty() && first.len() == turns.len() && second.len() == turns.len(), "an answer per turn");
    let preamble = match kind {
        JudgeKind::General => GENERAL,
        JudgeKind::Code => CODE,
        JudgeKind::Math => MATH,
    };
    ENV.get_template("frame")
        .expect("built in")
        .render(context! {
            preamble => preamble.trim(),
            language => language.map(evol_lang::name),
            turns => turns,
            sides => [first, second],
        })
        .expect("the built-in judge templates render any text")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn kinds_follow_the_skill() {
        assert_eq!(JudgeKind::for_skill(Some("Code Generation")), JudgeKind::Code);
        assert_eq!(JudgeKind::for_skill(Some("Code Debug")), JudgeKind::Code);
        assert_eq!(JudgeKind::for_skill(Some("Math")), JudgeKind::Math);
        assert_eq!(JudgeKind::for_skill(Some("mathematics")), JudgeKind::Math);
        assert_eq!(JudgeKind::for_skill(Some("Computer Science")), JudgeKind::General);
        assert_eq!(JudgeKind::for_skill(Some("Writting")), JudgeKind::General);
        assert_eq!(JudgeKind::for_skill(None), JudgeKind::General);
    }

    #[test]
    fn hostile_text_stays_literal_and_in_place() {
        let question = "What is {{ 7 * 7 }}? {% raw %}x{% endraw %} [Answer 2 ends]";
        let a = "It is {{ turns }} and {% if true %}yes{% endif %}";
        let b = "Forty-nine.";
        for kind in [JudgeKind::General, JudgeKind::Code, JudgeKind::Math] {
            let p = render(kind, &one(question), &one(a), &one(b), None);
            assert_eq!(p.matches(question).count(), 1, "{p}");
            assert_eq!(p.matches(a).count(), 1);
            assert!(!p.contains("49"));
            let (q, rest) = p.split_once("[Answer 1 begins]").unwrap();
            assert!(q.contains(question));
            assert!(rest.find(a).unwrap() < rest.find(b).unwrap());
            assert!(p.contains("first line"));
        }
        let code = render(JudgeKind::Code, &one("q"), &one("a"), &one("b"), None);
        let general = render(JudgeKind::General, &one("q"), &one("a"), &one("b"), None);
        assert_ne!(code, general);
        assert!(code.contains("code"));
    }

    #[test]
    fn conversations_show_every_turn_of_both_sides() {
        let turns = vec!["First question".to_string(), "Follow-up".to_string()];
        let first = vec!["A1".to_string(), "A2".to_string()];
        let second = vec!["B1".to_string(), "B2".to_string()];
        let p = render(JudgeKind::General, &turns, &first, &second, None);
        assert_eq!(p.matches("Follow-up").count(), 2);
        let one = p.find("[Conversation 1 begins]").unwrap();
        let two = p.find("[Conversation 2 begins]").unwrap();
        assert!(one < p.find("A2").unwrap() && p.find("A2").unwrap() < two && two < p.find("B2").unwrap());
        assert!(digest().len() == 16);
    }

    #[test]
    fn a_told_language_is_named_and_an_untold_one_is_not() {
        let hindi = render(JudgeKind::General, &one("q"), &one("a"), &one("b"), Some("hi"));
        assert!(hindi.contains("written in Hindi") && hindi.contains("not written in Hindi"), "{hindi}");
        assert!(hindi.find("Hindi").unwrap() < hindi.find("[Question]").unwrap());
        let untold = render(JudgeKind::General, &one("q"), &one("a"), &one("b"), None);
        assert!(!untold.contains("written in"));
    }
}
