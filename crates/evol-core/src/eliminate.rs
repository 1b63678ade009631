//! Elimination evolving: the rules that decide an evolution failed.
//!
//! Four rules come from the method (see the project's spec): no information
//! gain (an LLM judge says "Equal"), an answer that says sorry in fewer than
//! 80 words, an answer of only punctuation and stop words, and an evolved
//! instruction that copies words of the evolving prompt. Two more guard
//! against broken replies: an empty evolution and one cut off by the token
//! limit. A reply withheld by a content filter fails too. Each rule can be
//! switched off; every rejection names its rule.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// Why an evolution failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The judge found the evolved instruction equal to its parent.
    NoInformationGain,
    /// The answer contains "sorry" and has fewer than 80 words.
    AnswerSorry,
    /// The answer is only punctuation and stop words.
    AnswerStopWordsOnly,
    /// The evolved instruction copies words of the evolving prompt.
    CopiedPromptWords,
    /// The reply was empty once cleaned.
    EmptyEvolution,
    /// The answer was empty (found even with the stop-word rule off: an
    /// empty answer is a broken reply, not a judgement call).
    EmptyAnswer,
    /// The evolved instruction is a near duplicate of its parent, an
    /// ancestor, or a seed (`duplicate_of` names it).
    NearDuplicate,
    /// The evolving reply was cut off by the token limit.
    TruncatedEvolution,
    /// The reply lacks the line its operation's final marker introduces
    /// (a multi-step method whose final step cannot be read).
    UnparsableEvolution,
    /// The answer asks for input instead of answering: it starts with
    /// "Understood", "Thank you" or "Sure" and ends with a question mark,
    /// or says "please provide" (Auto Evol-Instruct's failure rules).
    AnswerAsksForInput,
    /// A reply was withheld by the server's content filter.
    ContentFiltered,
    /// A model call failed (after retries) or was refused.
    RequestFailed,
    /// A reasoning model's answer was cut off by the token limit while it
    /// was still thinking: there is a trace but no answer.
    TruncatedAnswer,
    /// The evolved instruction (or its answer) shares a run of words with
    /// a benchmark item (`detail` names the item and the words).
    Contaminated,
    /// The evolved instruction (or its answer) is not in the language it
    /// should be in (`detail`: the language found, with its confidence).
    LanguageChanged,
    /// The answer breaks a constraint the instruction states (`detail`
    /// names it, with what was found).
    ConstraintFailed,
    /// The rewritten instruction no longer states a text its constraint
    /// needs (a keyword, an end phrase...; `detail` names it).
    ConstraintLost,
    /// A `verifiable` operation found no constraint of its kinds that fits
    /// the instruction beside those it holds (no call was made).
    NoConstraintFits,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::NoInformationGain => "no_information_gain",
            Reason::AnswerSorry => "answer_sorry",
            Reason::AnswerStopWordsOnly => "answer_stop_words_only",
            Reason::CopiedPromptWords => "copied_prompt_words",
            Reason::EmptyEvolution => "empty_evolution",
            Reason::EmptyAnswer => "empty_answer",
            Reason::NearDuplicate => "near_duplicate",
            Reason::TruncatedEvolution => "truncated_evolution",
            Reason::UnparsableEvolution => "unparsable_evolution",
            Reason::AnswerAsksForInput => "answer_asks_for_input",
            Reason::ContentFiltered => "content_filtered",
            Reason::RequestFailed => "request_failed",
            Reason::TruncatedAnswer => "truncated_answer",
            Reason::Contaminated => "contaminated",
            Reason::LanguageChanged => "language_changed",
            Reason::ConstraintFailed => "constraint_failed",
            Reason::ConstraintLost => "constraint_lost",
            Reason::NoConstraintFits => "no_constraint_fits",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rules are on. All are on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub equality: bool,
    pub sorry: bool,
    pub stop_words: bool,
    pub copied_prompt: bool,
    /// Written only when off, so the identities of runs begun before the
    /// rule existed are unchanged.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub asks_for_input: bool,
    /// The language rule (`language_changed`), for runs that keep each
    /// text's language; written only when off.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub language: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Rules {
    /// Every rule off.
    pub const OFF: Rules = Rules {
        equality: false,
        sorry: false,
        stop_words: false,
        copied_prompt: false,
        asks_for_input: false,
        language: false,
    };
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            equality: true,
            sorry: true,
            stop_words: true,
            copied_prompt: true,
            asks_for_input: true,
            language: true,
        }
    }
}

/// One of the rules, as an operation names those that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Equality,
    Sorry,
    StopWords,
    CopiedPrompt,
    /// Auto Evol-Instruct's: the answer asks for input (opt-in per
    /// operation).
    AsksForInput,
}

impl Rule {
    /// The method's four rules: what an operation gets unless it says
    /// otherwise.
    pub fn all() -> Vec<Rule> {
        vec![Rule::Equality, Rule::Sorry, Rule::StopWords, Rule::CopiedPrompt]
    }

    pub fn name(self) -> &'static str {
        match self {
            Rule::Equality => "equality",
            Rule::Sorry => "sorry",
            Rule::StopWords => "stop_words",
            Rule::CopiedPrompt => "copied_prompt",
            Rule::AsksForInput => "asks_for_input",
        }
    }
}

impl Rules {
    /// The rules that apply to what `op` makes: those on for the run that
    /// the operation names.
    pub fn for_operation(&self, op: &crate::ops::Operation) -> Rules {
        Rules {
            equality: self.equality && op.applies(Rule::Equality),
            sorry: self.sorry && op.applies(Rule::Sorry),
            stop_words: self.stop_words && op.applies(Rule::StopWords),
            copied_prompt: self.copied_prompt && op.applies(Rule::CopiedPrompt),
            asks_for_input: self.asks_for_input && op.applies(Rule::AsksForInput),
            language: self.language,
        }
    }
}

/// Below this many words, an answer that says "sorry" fails.
pub const SORRY_WORD_LIMIT: usize = 80;

/// Words of the evolving prompts that must not show up in an evolution.
const PROMPT_WORDS: &[&str] =
    &["given prompt", "rewritten prompt", "#rewritten prompt#", "created prompt", "#created prompt#"];

static REFUSALS: LazyLock<evol_lang::Refusals> = LazyLock::new(evol_lang::Refusals::builtin);

/// The languages whose refusal phrases and stop words an answer is read
/// with: English (models often refuse in it whatever they were asked in)
/// and the answer's own; every language when the answer is too short to
/// tell.
fn answer_languages(answer: &str) -> Vec<&'static str> {
    match evol_lang::detect(answer).language() {
        Some("en") => vec!["en"],
        Some(language) => vec!["en", language],
        None => ALL_LANGUAGES.clone(),
    }
}

static ALL_LANGUAGES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut all: Vec<&'static str> = evol_lang::BUILTIN.to_vec();
    all.extend(evol_lang::StopWords::get().languages().filter(|l| !evol_lang::BUILTIN.contains(l)));
    all
});

/// Rule 4: the evolved instruction copies words of the evolving prompt:
/// an operation's own marker words (none: the `evol` set's), or their
/// translations (`evol_lang::Cues`), as a model that translates the
/// prompt's headings writes them.
pub fn copies_words(instruction: &str, markers: &[String]) -> bool {
    let cues = evol_lang::Cues::get();
    if markers.is_empty() {
        cues.holds_marker(instruction, PROMPT_WORDS)
    } else {
        cues.holds_marker(instruction, markers)
    }
}

/// What the language rule finds in a text.
#[derive(Debug, Clone, PartialEq)]
pub enum LanguageCheck {
    /// Written in the language expected.
    Kept,
    /// Written in another one: the rejection's detail.
    Changed(String),
    /// Not told (too short, mostly code or maths, or unsure): let through,
    /// and counted.
    Undetermined,
}

/// The language rule: whether `text` is written in `expected`.
pub fn language_changed(text: &str, expected: &str) -> LanguageCheck {
    match evol_lang::detect(text) {
        evol_lang::Detection::Detected { language, .. } if language == expected => LanguageCheck::Kept,
        evol_lang::Detection::Detected { language, confidence } => LanguageCheck::Changed(format!(
            "written in {} ({language}, confidence {confidence:.2}), not {} ({expected})",
            evol_lang::name(language),
            evol_lang::name(expected)
        )),
        evol_lang::Detection::Undetermined => LanguageCheck::Undetermined,
    }
}

/// Auto Evol-Instruct's failure rule: the answer asks for input instead of
/// answering (an acknowledgement ending in a question, or a request for
/// material), in any language (`evol_lang::Cues`).
pub fn asks_for_input(answer: &str) -> bool {
    evol_lang::Cues::get().asks_for_input(answer)
}

/// What an evolving reply makes, for `op`: the cleaned instruction, or why
/// the evolution failed. The checks of the reply alone, in order: a
/// content filter, the token limit, the final marker (for an operation
/// that has one), an empty result, copied prompt words.
pub fn read_evolution(
    op: &crate::ops::Operation,
    rules: &Rules,
    reply: &str,
    finish: evol_llm::FinishReason,
) -> Result<String, (Reason, String)> {
    use evol_llm::FinishReason;
    let cleaned = |text: &str| crate::clean::clean_reply_with(text, &op.markers);
    if finish == FinishReason::ContentFilter {
        return Err((Reason::ContentFiltered, cleaned(reply)));
    }
    if finish == FinishReason::Length {
        return Err((Reason::TruncatedEvolution, cleaned(reply)));
    }
    let instruction = match &op.final_marker {
        None => cleaned(reply),
        Some(marker) => match rfind_ignore_case(reply, marker) {
            Some(at) => cleaned(&reply[at + marker.len()..]),
            None => return Err((Reason::UnparsableEvolution, reply.trim().to_string())),
        },
    };
    if instruction.is_empty() {
        return Err((Reason::EmptyEvolution, instruction));
    }
    if rules.copied_prompt && copies_words(&instruction, &op.markers) {
        return Err((Reason::CopiedPromptWords, instruction));
    }
    Ok(instruction)
}

/// The byte offset of the last occurrence of `needle` in `haystack`,
/// ignoring ASCII case.
fn rfind_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).rev().find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Rule 2: the answer says sorry (in English or its own language: see
/// `evol_lang::Refusals`) and is shorter than 80 words, counted by word
/// segmentation in every script.
pub fn is_sorry_answer(answer: &str) -> bool {
    says_sorry(&REFUSALS, answer)
}

/// [`is_sorry_answer`] with `refusals`' phrases (a user's, with the
/// built-in ones or instead of them).
pub fn says_sorry(refusals: &evol_lang::Refusals, answer: &str) -> bool {
    // Cheapest first: most answers hold no phrase of any language.
    refusals.might_say_sorry(answer)
        && evol_lang::word_count(answer) < SORRY_WORD_LIMIT
        && refusals.says_sorry(answer, &answer_languages(answer))
}

/// Rule 3: the answer holds nothing but punctuation and stop words (of
/// English or its own language).
pub fn is_stop_words_only(answer: &str) -> bool {
    // Most answers have a word that is no language's stop word: ruled out
    // before their language is detected.
    let lists = evol_lang::StopWords::get();
    lists.only_stop_words(answer, &ALL_LANGUAGES) && lists.only_stop_words(answer, &answer_languages(answer))
}

/// The judge's verdict, read leniently: only an explicit "Equal" fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Equal,
    NotEqual,
    /// Neither word: treated as a pass, since only "Equal" fails.
    Unclear,
}

/// The verdict of an equality reply, in English or the judge's own
/// language ("Not Equal", "不相等", "असमान").
pub fn parse_verdict(reply: &str) -> Verdict {
    match evol_lang::Cues::get().equality(reply) {
        Some(evol_lang::Equality::NotEqual) => Verdict::NotEqual,
        Some(evol_lang::Equality::Equal) => Verdict::Equal,
        None => Verdict::Unclear,
    }
}

/// Checks an answer against the answer rules that are on.
/// Why an answer reply cannot stand, if it cannot: withheld by a content
/// filter, cut off while its model was still thinking (a trace, no
/// answer), or caught by an answer rule ([`check_answer`]). The rules
/// read the answer alone, never the trace.
pub fn check_answer_reply(rules: &Rules, reply: &evol_llm::ChatResponse) -> Option<Reason> {
    check_answer_reply_with(rules, &REFUSALS, reply)
}

/// [`check_answer_reply`] with `refusals`' phrases.
pub fn check_answer_reply_with(
    rules: &Rules,
    refusals: &evol_lang::Refusals,
    reply: &evol_llm::ChatResponse,
) -> Option<Reason> {
    use evol_llm::FinishReason;
    match reply.finish_reason {
        FinishReason::ContentFilter => Some(Reason::ContentFiltered),
        FinishReason::Length if reply.text.trim().is_empty() && reply.reasoning.is_some() => {
            Some(Reason::TruncatedAnswer)
        }
        _ => check_answer_with(rules, refusals, &reply.text),
    }
}

pub fn check_answer(rules: &Rules, answer: &str) -> Option<Reason> {
    check_answer_with(rules, &REFUSALS, answer)
}

/// [`check_answer`] with `refusals`' phrases.
pub fn check_answer_with(rules: &Rules, refusals: &evol_lang::Refusals, answer: &str) -> Option<Reason> {
    if rules.sorry && says_sorry(refusals, answer) {
        return Some(Reason::AnswerSorry);
    }
    if rules.stop_words && is_stop_words_only(answer) {
        return Some(Reason::AnswerStopWordsOnly);
    }
    if answer.trim().is_empty() {
        return Some(Reason::EmptyAnswer);
    }
    if rules.asks_for_input && asks_for_input(answer) {
        return Some(Reason::AnswerAsksForInput);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> String {
        vec!["word"; n].join(" ")
    }

    #[test]
    fn an_empty_answer_is_rejected_whatever_rules_are_off() {
        let off = Rules::OFF;
        assert_eq!(check_answer(&off, " \n "), Some(Reason::EmptyAnswer));
        assert_eq!(check_answer(&Rules::default(), ""), Some(Reason::AnswerStopWordsOnly), "as before");
        assert_eq!(check_answer(&off, "of the"), None);
    }

    #[test]
    fn the_sorry_rule_reads_refusals_and_counts_words_in_every_script() {
        // Short refusals: "Sorry, I cannot help with this request."
        for refusal in [
            "抱歉，我无法帮助你完成这个请求。",
            "माफ़ कीजिए, मैं इस अनुरोध में आपकी मदद नहीं कर सकता।",
            "申し訳ありませんが、このご依頼にはお応えできません。",
            "عذراً، لا يمكنني المساعدة في هذا الطلب.",
            "抱歉。",
            "Sorry, I can't help with that.",
        ] {
            assert!(is_sorry_answer(refusal), "{refusal}");
        }
        // Long answers that mention the English word "sorry" (a lesson on
        // apologising: "In English, 'sorry' is used to apologise...") are
        // answers: counted by segmentation, each has well over 80 words.
        let zh = "在英语中，人们用 sorry 来道歉。".to_string()
            + &"光合作用是植物利用阳光、水和二氧化碳制造葡萄糖并释放氧气的过程，它为地球上几乎所有的生命提供了能量和食物。".repeat(4);
        let ja = "英語では sorry という言葉で謝ります。".to_string()
            + &"光合成とは、植物が太陽の光と水と二酸化炭素を使ってブドウ糖を作り、酸素を放出する仕組みのことです。"
                .repeat(4);
        let ar = "في اللغة الإنجليزية تُستخدم كلمة sorry للاعتذار. ".to_string()
            + &"التمثيل الضوئي هو العملية التي تستخدم فيها النباتات ضوء الشمس والماء وثاني أكسيد الكربون لصنع الغذاء وإطلاق الأكسجين في الهواء. ".repeat(4);
        for long in [zh, ja, ar] {
            assert!(evol_lang::word_count(&long) >= SORRY_WORD_LIMIT, "{long}");
            assert!(!is_sorry_answer(&long), "{long}");
        }
        // Stop words in another language: Chinese "of, and" alone says
        // nothing; a Hindi sentence ("Paris is the capital of France.") does.
        assert!(is_stop_words_only("的，和。"));
        assert!(!is_stop_words_only("पेरिस फ़्रांस की राजधानी है।"));
        assert!(!is_stop_words_only("42"));
    }

    #[test]
    fn asks_for_input_follows_auto_evol_instructs_rules() {
        assert!(asks_for_input("Understood. Which instruction should I rewrite?"));
        assert!(asks_for_input("Thank you! Could you share the text?"));
        assert!(asks_for_input("Sure, what would you like me to do?"));
        assert!(asks_for_input("To answer this, please provide the data set."));
        assert!(!asks_for_input("Sure. The answer is 42."));
        assert!(!asks_for_input("Is this a question? Yes: here is the answer."));
        let on = Rules::default();
        assert_eq!(check_answer(&on, "Understood. What next?"), Some(Reason::AnswerAsksForInput));
        assert_eq!(check_answer(&Rules { asks_for_input: false, ..on }, "Understood. What next?"), None);
        // In other scripts: "Sure! Which poem do you mean?" (Chinese),
        // "Please provide the data." (Hindi), and a fine Arabic answer that
        // ends with a question it answers itself: "Why is the sky blue?
        // Because air scatters blue light more." (no acknowledgement).
        assert_eq!(check_answer(&on, "好的！您指的是哪首诗？"), Some(Reason::AnswerAsksForInput));
        assert_eq!(check_answer(&on, "कृपया डेटा प्रदान करें।"), Some(Reason::AnswerAsksForInput));
        assert_eq!(check_answer(&on, "لأن الهواء يشتت الضوء الأزرق أكثر. لماذا السماء زرقاء؟"), None);
    }

    #[test]
    fn evolutions_are_read_with_the_operations_markers() {
        use evol_llm::FinishReason::{Length, Stop};
        let auto = crate::OperatorSet::builtin("auto").unwrap().operations.at(0).clone();
        let rules = Rules::default();
        let reply = "Step 1 #Methods List#: a, b\nStep 4 #Review#: fine\n#Finally Rewritten Instruction#: Sort the list in place.";
        assert_eq!(read_evolution(&auto, &rules, reply, Stop).unwrap(), "Sort the list in place.");
        let lower = "... #finally rewritten instruction#:\n\"Do X.\"";
        assert_eq!(read_evolution(&auto, &rules, lower, Stop).unwrap(), "Do X.");
        let (reason, kept) = read_evolution(&auto, &rules, "Step 1: I would add...", Stop).unwrap_err();
        assert_eq!((reason, kept.as_str()), (Reason::UnparsableEvolution, "Step 1: I would add..."));
        let copied = "#Finally Rewritten Instruction#: Apply the #Plan# to X.";
        assert_eq!(read_evolution(&auto, &rules, copied, Stop).unwrap_err().0, Reason::CopiedPromptWords);
        assert_eq!(
            read_evolution(&auto, &rules, "#Finally Rewritten Instruction#:", Stop).unwrap_err().0,
            Reason::EmptyEvolution
        );
        assert_eq!(read_evolution(&auto, &rules, reply, Length).unwrap_err().0, Reason::TruncatedEvolution);
        let math = crate::OperatorSet::builtin("math").unwrap().operations.at(0).clone();
        assert_eq!(read_evolution(&math, &rules, "#New Problem#: Add 2 and 3.", Stop).unwrap(), "Add 2 and 3.");
        let leak = "Solve the original problem with x = 2.";
        assert_eq!(read_evolution(&math, &rules, leak, Stop).unwrap_err().0, Reason::CopiedPromptWords);
        assert!(
            read_evolution(&math, &rules, "Explain the rewritten prompt idea.", Stop).is_ok(),
            "its own words only"
        );
    }

    #[test]
    fn sorry_threshold_is_exactly_80_words() {
        let with_sorry = |n: usize| format!("Sorry {}", words(n - 1));
        assert_eq!(with_sorry(79).split_whitespace().count(), 79);
        assert!(is_sorry_answer(&with_sorry(79)));
        assert!(!is_sorry_answer(&with_sorry(80)));
        assert!(!is_sorry_answer(&with_sorry(200)));
        assert!(is_sorry_answer("I'm SORRY, I can't help."));
        assert!(!is_sorry_answer(&words(10)));
    }

    #[test]
    fn stop_word_only_answers_fail() {
        assert!(is_stop_words_only("The, and... of it!"));
        assert!(is_stop_words_only("I don't."));
        assert!(is_stop_words_only("I don’t."));
        assert!(is_stop_words_only(""));
        assert!(is_stop_words_only("?!... --"));
        assert!(!is_stop_words_only("The answer is 42."));
        assert!(!is_stop_words_only("Paris"));
    }

    #[test]
    fn copied_prompt_words_in_any_case() {
        assert!(copies_words("Rewrite the GIVEN PROMPT to be harder", &[]));
        assert!(copies_words("#Rewritten Prompt#: foo", &[]));
        assert!(copies_words("as the rewritten prompt says", &[]));
        assert!(copies_words("#created prompt#", &[]));
        assert!(copies_words("Created Prompt: x", &[]));
        assert!(copies_words("#The Given Prompt#: x", &[]));
        assert!(!copies_words("Write a prompt for a given task.", &[]));
        assert!(!copies_words("Explain prompt engineering.", &[]));
        // Translated headings: "Rewritten prompt: ..." in Chinese, Hindi and
        // Arabic; the code set's "harder question" in Japanese.
        assert!(copies_words("改写后的提示：写一首诗。", &[]));
        assert!(copies_words("पुनर्लिखित प्रॉम्प्ट: एक कविता लिखिए।", &[]));
        assert!(copies_words("الموجه المعاد كتابته: اكتب قصيدة.", &[]));
        let code = crate::ops::OperatorSet::builtin("code").unwrap();
        assert!(copies_words("より難しい質問：二分探索を実装せよ。", &code.operations.iter().next().unwrap().markers));
        // "Write a prompt for a chatbot." in Chinese: no heading.
        assert!(!copies_words("为聊天机器人写一个提示。", &[]));
    }

    #[test]
    fn every_marker_of_the_built_in_sets_has_translations() {
        for name in ["evol", "code", "math", "auto"] {
            let set = crate::ops::OperatorSet::builtin(name).unwrap();
            for marker in set.operations.iter().flat_map(|op| &op.markers) {
                assert!(evol_lang::Cues::get().translations(marker).len() >= 10, "{name}: {marker}");
            }
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(parse_verdict("Equal"), Verdict::Equal);
        assert_eq!(parse_verdict(" equal."), Verdict::Equal);
        assert_eq!(parse_verdict("Not Equal"), Verdict::NotEqual);
        assert_eq!(parse_verdict("NOT EQUAL"), Verdict::NotEqual);
        assert_eq!(parse_verdict("not-equal"), Verdict::NotEqual);
        assert_eq!(parse_verdict("They are not equal."), Verdict::NotEqual);
        assert_eq!(parse_verdict("I cannot tell"), Verdict::Unclear);
        assert_eq!(parse_verdict("Inequality"), Verdict::Unclear);
        // A judge that answers in the instructions' language: "not equal"
        // (Chinese, Hindi), "equal" (Japanese, Arabic).
        assert_eq!(parse_verdict("不相等"), Verdict::NotEqual);
        assert_eq!(parse_verdict("समान नहीं"), Verdict::NotEqual);
        assert_eq!(parse_verdict("等しい"), Verdict::Equal);
        assert_eq!(parse_verdict("متساويان"), Verdict::Equal);
    }

    #[test]
    fn answer_rules_can_be_switched_off() {
        let all = Rules::default();
        let none = Rules::OFF;
        assert_eq!(check_answer(&all, "Sorry, no."), Some(Reason::AnswerSorry));
        assert_eq!(check_answer(&none, "Sorry, no."), None);
        assert_eq!(check_answer(&all, "the of"), Some(Reason::AnswerStopWordsOnly));
        assert_eq!(check_answer(&none, "the of"), None);
        assert_eq!(check_answer(&all, "Berlin is the capital."), None);
    }
}
