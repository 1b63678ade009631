//! Text that is safe to show and store.
//!
//! Two dangers come with text `evol` did not write (server error bodies,
//! model names, seed ids, replies):
//! - it may hold a secret the run knows: a server or proxy that echoes the
//!   `Authorization` header, or a URL with `user:password@` in an error.
//!   [`register`] the run's secrets once, and [`scrub`] every text before
//!   it is shown or stored; [`redact_url`] drops a URL's credentials for
//!   display;
//! - it may hold terminal control sequences (ANSI CSI, OSC window titles,
//!   cursor moves, a bell) or bidirectional overrides that reorder what is
//!   shown. [`shown`] escapes them as visible `\u{..}` text, so that a
//!   terminal prints them and never obeys them.
//!
//! Written by hand (but base64): the only job is a few lines of string replacement, and
//! the secret registry must be process-wide (an error message can come from
//! any layer).

use std::borrow::Cow;
use std::sync::RwLock;

/// What a scrubbed secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not registered (they would match common
/// text and prove nothing).
const MIN_SECRET: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds a secret to be scrubbed from every text passed to [`scrub`].
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Registers the credentials of a URL: `user:password`, the password
/// alone, their percent-decoded forms, and the Basic authorization an HTTP
/// client makes of them.
pub fn register_url(url: &str) {
    use base64::Engine as _;
    if let Some((user, password)) = credentials(url) {
        for part in [format!("{user}:{password}"), password.to_string()] {
            register(&part);
            register(&percent_decoded(&part));
        }
        let basic = percent_decoded(&format!("{user}:{password}"));
        register(&base64::engine::general_purpose::STANDARD.encode(basic));
    }
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    scrub_with(text, &secrets)
}

fn scrub_with<'a>(text: &'a str, secrets: &[String]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

/// A URL without its credentials: `http://user:pw@host/v1` is shown as
/// `http://<redacted>@host/v1`.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    match userinfo_span(url) {
        Some((start, end)) => Cow::Owned(format!("{}{REDACTED}{}", &url[..start], &url[end..])),
        None => Cow::Borrowed(url),
    }
}

/// Where the `user:password` part of a URL lies (the bytes before the `@`
/// of its authority).
fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')? + start;
    Some((start, at))
}

fn credentials(url: &str) -> Option<(&str, &str)> {
    let (start, end) = userinfo_span(url)?;
    let info = &url[start..end];
    let (user, password) = info.split_once(':').unwrap_or((info, ""));
    (!password.is_empty()).then_some((user, password))
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a character must not reach a terminal as it is: C0 and C1
/// controls (but newline and tab), DEL, and the bidirectional embeddings,
/// overrides and isolates.
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` as a terminal may print it: every unsafe character (see
/// [`is_unsafe`]) written as `\u{1b}`-style text, and secrets scrubbed.
pub fn shown(text: &str) -> Cow<'_, str> {
    let scrubbed = scrub(text);
    if !scrubbed.chars().any(is_unsafe) {
        return scrubbed;
    }
    let mut out = String::with_capacity(scrubbed.len() + 16);
    for c in scrubbed.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Like [`shown`], on one line: newlines and tabs are escaped too.
pub fn shown_inline(text: &str) -> String {
    shown(text).replace('\n', "\\n").replace('\t', "\\t")
}

/// `text` shown on one line (see [`shown_inline`]) in a terminal table's
/// cell of `columns` columns: cut to fit (with `…`) and padded with spaces,
/// by display width, so wide (CJK) characters take their two columns and
/// combining marks none.
pub fn cell_of_width(text: &str, columns: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let shown = shown_inline(text);
    let width = |c: char| c.width().unwrap_or(0);
    let total: usize = shown.chars().map(width).sum();
    let mut out = String::new();
    let mut used = 0;
    if total <= columns {
        out.push_str(&shown);
        used = total;
    } else if columns > 0 {
        for c in shown.chars() {
            if used + width(c) > columns - 1 {
                break;
            }
            used += width(c);
            out.push(c);
        }
        out.push('…');
        used += 1;
    }
    out.extend(std::iter::repeat_n(' ', columns.saturating_sub(used)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_cut_and_padded_by_display_width() {
        use unicode_width::UnicodeWidthStr;
        assert_eq!(cell_of_width("abc", 5), "abc  ");
        assert_eq!(cell_of_width("通义千问", 10), "通义千问  ", "four wide characters take eight columns");
        assert_eq!(
            cell_of_width("通义千问-大模型", 8),
            "通义千… ",
            "a wide character that does not fit leaves a space"
        );
        assert_eq!(cell_of_width("नमस्ते", 6).width(), 6);
        for text in ["模型模型模型模型", "mixed 模型 text", "ไทย", "\u{1b}[2Jx"] {
            for columns in 1..12 {
                assert_eq!(cell_of_width(text, columns).width(), columns, "{text:?} in {columns}");
            }
        }
        assert!(!cell_of_width("\u{1b}[2J", 10).contains('\u{1b}'));
    }

    #[test]
    fn secrets_are_scrubbed_longest_first() {
        let secrets = vec!["sk-abcdef-long".to_string(), "sk-abcdef".to_string()];
        assert_eq!(scrub_with("key sk-abcdef-long and sk-abcdef", &secrets), "key <redacted> and <redacted>");
        assert!(matches!(scrub_with("nothing here", &secrets), Cow::Borrowed(_)));
    }

    #[test]
    fn registered_secrets_leave_every_text() {
        register("sk-test-registry-1234");
        register("ab"); // too short to mean anything
        assert_eq!(scrub("Bearer sk-test-registry-1234 refused"), "Bearer <redacted> refused");
        assert_eq!(scrub("ab cd"), "ab cd");
        assert_eq!(shown("\u{1b}[2Jsk-test-registry-1234"), "\\u{1b}[2J<redacted>");
    }

    #[test]
    fn url_credentials_are_redacted_and_registered() {
        assert_eq!(redact_url("http://me:pa55word@host:8000/v1"), "http://<redacted>@host:8000/v1");
        assert_eq!(redact_url("http://host:8000/v1?a=b@c"), "http://host:8000/v1?a=b@c");
        assert_eq!(redact_url("http://host/v1"), "http://host/v1");
        register_url("https://user:s%40cret-word@example.test/v1");
        assert_eq!(scrub("to https://user:s%40cret-word@example.test"), "to https://<redacted>@example.test");
        assert_eq!(scrub("the password s@cret-word"), "the password <redacted>");
        assert_eq!(scrub("Authorization: Basic dXNlcjpzQGNyZXQtd29yZA=="), "Authorization: Basic <redacted>");
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        let hostile = "a\u{1b}]0;owned\u{7}b\u{1b}[2J\r\u{9b}c\u{202e}d";
        let out = shown(hostile);
        assert!(!out.chars().any(is_unsafe), "{out}");
        assert_eq!(out, "a\\u{1b}]0;owned\\u{7}b\\u{1b}[2J\\u{d}\\u{9b}c\\u{202e}d");
        assert_eq!(shown("plain\ttext\nlines"), "plain\ttext\nlines");
        assert_eq!(shown_inline("two\nlines"), "two\\nlines");
    }
}
