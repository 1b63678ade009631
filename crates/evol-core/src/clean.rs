//! Turning a model's reply into the evolved instruction.

use std::sync::LazyLock;

use regex::Regex;

/// A marker the model may echo before its rewrite: `#Rewritten Prompt#:`,
/// `**Created Prompt:**`, `The rewritten prompt:` and the like.
static LEADING_MARKER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^[\s*#]*(?:the\s+)?(?:rewritten|created)\s+prompt\s*[#*]*\s*:[\s*]*").unwrap());

const QUOTES: &[(char, char)] = &[('"', '"'), ('\'', '\''), ('“', '”'), ('‘', '’'), ('`', '`')];

/// Cleans a reply into an instruction: strips an echoed rewrite marker at the
/// start, surrounding quotes and surrounding whitespace. Text in the middle
/// is left alone (a marker there is for the elimination rules to catch).
pub fn clean_reply(reply: &str) -> String {
    let mut text = reply.trim();
    loop {
        let before = text;
        if let Some(m) = LEADING_MARKER.find(text) {
            text = text[m.end()..].trim();
        }
        text = strip_quotes(text).trim();
        if text == before {
            return text.to_string();
        }
    }
}

fn strip_quotes(text: &str) -> &str {
    if let Some(inner) = text.strip_prefix("```").and_then(|t| t.strip_suffix("```")) {
        return inner;
    }
    for &(open, close) in QUOTES {
        if let Some(inner) = text.strip_prefix(open).and_then(|t| t.strip_suffix(close)) {
            // Only strip a pair that encloses the whole text: `"A" or "B"` stays.
            if !inner.contains(close) && !inner.contains(open) {
                return inner;
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::clean_reply;

    fn check(reply: &str, expected: &str) {
        assert_eq!(clean_reply(reply), expected, "reply: {reply:?}");
    }

    #[test]
    fn strips_echoed_markers_in_any_case() {
        check("#Rewritten Prompt#: Do X.", "Do X.");
        check("  #rewritten prompt#:\n\nDo X.\n", "Do X.");
        check("#Created Prompt#:Do Y", "Do Y");
        check("**Rewritten Prompt:** Do X.", "Do X.");
        check("The rewritten prompt: Do X.", "Do X.");
        check("REWRITTEN PROMPT:\n\"Do X.\"", "Do X.");
    }

    #[test]
    fn strips_surrounding_quotes_and_whitespace() {
        check("\"Do X.\"", "Do X.");
        check("“Do X.”", "Do X.");
        check("'Do X.'", "Do X.");
        check("\n\t Do X. \n", "Do X.");
        check("```Do X.```", "Do X.");
    }

    #[test]
    fn keeps_inner_quotes_and_markers() {
        check("\"A\" or \"B\"?", "\"A\" or \"B\"?");
        check("Say 'hi' to 'Bob'", "Say 'hi' to 'Bob'");
        check("Explain the #Rewritten Prompt# idea", "Explain the #Rewritten Prompt# idea");
        check("`a` and `b`", "`a` and `b`");
    }

    #[test]
    fn empty_replies_stay_empty() {
        check("", "");
        check("  \"\"  ", "");
        check("#Rewritten Prompt#:", "");
    }
}
