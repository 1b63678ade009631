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
    clean_reply_with(reply, &[])
}

/// [`clean_reply`], also stripping a leading `marker:` of an operation's
/// own markers (in any case, with `#` or `*` around it, a colon after it).
pub fn clean_reply_with(reply: &str, markers: &[String]) -> String {
    let mut text = reply.trim();
    loop {
        let before = text;
        if let Some(m) = LEADING_MARKER.find(text) {
            text = text[m.end()..].trim();
        }
        for marker in markers {
            if let Some(rest) = strip_marker(text, marker) {
                text = rest.trim();
            }
        }
        text = strip_quotes(text).trim();
        if text == before {
            return text.to_string();
        }
    }
}

fn strip_marker<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let core = marker.trim().trim_matches(|c| c == '#' || c == ':').trim();
    let start = text.trim_start_matches(|c: char| c == '#' || c == '*' || c.is_whitespace());
    let head = start.get(..core.len())?;
    if core.is_empty() || !head.eq_ignore_ascii_case(core) {
        return None;
    }
    start[core.len()..].trim_start_matches(['#', '*', ' ']).strip_prefix(':').map(|r| r.trim_start_matches(['*', ' ']))
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
    fn strips_an_operations_own_markers() {
        let markers = vec!["#new problem#".to_string(), "original problem".to_string()];
        let with = |reply: &str| super::clean_reply_with(reply, &markers);
        assert_eq!(with("#New Problem#: Add 2 and 3."), "Add 2 and 3.");
        assert_eq!(with("**NEW PROBLEM:** \"Add 2 and 3.\""), "Add 2 and 3.");
        assert_eq!(with("New problems arise: add 2 and 3."), "New problems arise: add 2 and 3.");
        assert_eq!(with("Original problem solved? No."), "Original problem solved? No.");
        assert_eq!(clean_reply("#New Problem#: Add."), "#New Problem#: Add.", "not a marker of the evol set");
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
