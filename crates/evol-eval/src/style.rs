//! An answer's style, the covariates of a style-controlled rating: its
//! length and how much markdown it uses.

/// The style of one answer: `[length in characters, markdown density]`.
pub fn features(answer: &str) -> [f64; crate::rating::STYLE_FEATURES] {
    let length = answer.chars().count();
    let density = if length == 0 { 0.0 } else { markdown_elements(answer) as f64 * 1000.0 / length as f64 };
    [length as f64, density]
}

/// Markdown elements: headings, list items, table rows, code fences, and
/// bold spans.
pub fn markdown_elements(text: &str) -> usize {
    let mut count = 0;
    for line in text.lines() {
        let t = line.trim_start();
        let heading = t.starts_with('#') && t.trim_start_matches('#').starts_with(' ');
        let bullet = ["- ", "* ", "+ "].iter().any(|p| t.starts_with(p));
        let numbered = {
            let digits = t.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && (t[digits..].starts_with(". ") || t[digits..].starts_with(") "))
        };
        let table = t.starts_with('|') && t.trim_end().ends_with('|') && t.len() > 1;
        let fence = t.starts_with("```");
        count += usize::from(heading || bullet || numbered || table || fence);
    }
    count + text.matches("**").count() / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_markdown_and_length() {
        let text = "# Title\n\nSome **bold** words.\n\n- one\n- two\n1. first\n| a | b |\n```\ncode\n```\n#hashtag";
        assert_eq!(markdown_elements(text), 1 + 1 + 2 + 1 + 1 + 2);
        assert_eq!(markdown_elements("Plain prose, no markup at all."), 0);
        let [length, density] = features("abcd");
        assert_eq!((length, density), (4.0, 0.0));
        assert_eq!(features(""), [0.0, 0.0]);
        let [_, density] = features("- a\n- b");
        assert!((density - 2000.0 / 7.0).abs() < 1e-9);
        // Characters, not bytes.
        assert_eq!(features("日本語")[0], 3.0);
    }
}
