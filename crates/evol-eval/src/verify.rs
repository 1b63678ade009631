//! Checking an answer against a reference answer, for maths: the final
//! answer is read from the last `\boxed{...}` (else the last number, else a
//! GSM8K-style `#### ANSWER` line), then compared after normalisation:
//! integers and decimals with thousands separators, fractions (`3/4`,
//! `\frac{3}{4}`, `\dfrac`), signs, percentages and units around a number
//! (`$5`, `12 cm`). Numbers compare exactly, as fractions. An answer that
//! holds nothing to read is [`Check::Unreadable`]: counted, never guessed.

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Correct,
    Wrong,
    /// No final answer could be read from the candidate.
    Unreadable,
}

/// A final answer in comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An exact number, as a reduced fraction (numerator, positive
    /// denominator).
    Number(i128, i128),
    /// Anything else, with spaces, `$` and `\left`/`\right` taken out.
    Text(String),
}

/// Checks `candidate` (a model's whole answer) against `reference` (the
/// seed's reference answer: a bare final answer, a boxed one, or a worked
/// solution ending in one).
pub fn check(candidate: &str, reference: &str) -> Check {
    let (Some(got), Some(want)) = (final_answer(candidate), reference_answer(reference)) else {
        return Check::Unreadable;
    };
    if got == want {
        Check::Correct
    } else {
        Check::Wrong
    }
}

/// A reference answer: a worked solution's final answer, or a bare
/// answer as it is.
fn reference_answer(reference: &str) -> Option<Value> {
    if reference.contains("\\boxed") || reference.contains("\\fbox") || reference.contains("####") {
        return final_answer(reference);
    }
    match value(reference) {
        Some(v @ Value::Number(..)) => Some(v),
        Some(v) if reference.split_whitespace().count() <= 3 => Some(v),
        _ => final_answer(reference),
    }
}

/// The final answer of a worked solution, normalised.
pub fn final_answer(text: &str) -> Option<Value> {
    if let Some(boxed) = last_boxed(text) {
        return value(&boxed);
    }
    if let Some(at) = text.rfind("####") {
        return value(text[at + 4..].lines().next().unwrap_or_default());
    }
    last_number(text).and_then(|n| value(&n))
}

/// The content of the last `\boxed{...}` (or `\fbox{...}`), braces
/// balanced.
fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed{", "\\fbox{"].iter().filter_map(|m| text.rfind(m).map(|at| at + m.len())).max()?;
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The last number written in `text` (with its sign, separators, decimal
/// point or fraction bar).
fn last_number(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut end = chars.len();
    while end > 0 && !chars[end - 1].is_ascii_digit() {
        end -= 1;
    }
    if end == 0 {
        return None;
    }
    let mut start = end;
    while start > 0 {
        let c = chars[start - 1];
        let inner = start > 1 && chars[start - 2].is_ascii_digit();
        if c.is_ascii_digit() || (matches!(c, ',' | '.' | '/') && inner) {
            start -= 1;
        } else {
            break;
        }
    }
    if start > 0 && matches!(chars[start - 1], '-' | '−') {
        start -= 1;
    }
    Some(chars[start..end].iter().collect())
}

/// An answer's comparable form.
pub fn value(text: &str) -> Option<Value> {
    let mut t = text.trim().trim_end_matches('.').to_string();
    for wrapper in ["\\left", "\\right", "\\!", "\\,", "$", "\\%", "%", "\\text{", "\\mathrm{"] {
        t = t.replace(wrapper, "");
    }
    let t = t.trim();
    if t.is_empty() {
        return None;
    }
    if let Some(n) = number(t) {
        return Some(n);
    }
    // A number with unit or currency words around it (`12 cm`, `5
    // dollars`): the number. Not in an expression (`x^2 + 1`).
    let words: Vec<&str> = t.split_whitespace().map(|w| w.trim_matches(|c: char| c == '}' || c == '{')).collect();
    let numbers: Vec<Value> = words.iter().filter_map(|w| number(w)).collect();
    let units = words.iter().filter(|w| number(w).is_none()).all(|w| w.chars().all(char::is_alphabetic));
    if let ([only], true) = (numbers.as_slice(), units) {
        return Some(only.clone());
    }
    Some(Value::Text(t.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase()))
}

/// A number: an integer or decimal (thousands separators allowed), or a
/// fraction `a/b` or `\frac{a}{b}`, signed.
fn number(text: &str) -> Option<Value> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-').or_else(|| t.strip_prefix('−')) {
        Some(rest) => (true, rest.trim()),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let frac = ["\\frac", "\\dfrac", "\\tfrac"].iter().find_map(|m| t.strip_prefix(m));
    let (num, den) = if let Some(rest) = frac {
        let rest = rest.strip_prefix('{')?;
        let (a, rest) = rest.split_once('}')?;
        let b = rest.strip_prefix('{')?.strip_suffix('}')?;
        (decimal(a)?, decimal(b)?)
    } else if let Some((a, b)) = t.split_once('/') {
        (decimal(a)?, decimal(b)?)
    } else {
        (decimal(t)?, (1, 1))
    };
    // (a/b) / (c/d) = (a*d) / (b*c)
    let (n, d) = (num.0.checked_mul(den.1)?, num.1.checked_mul(den.0)?);
    if d == 0 {
        return None;
    }
    let sign = if negative ^ (n < 0) ^ (d < 0) { -1 } else { 1 };
    let (n, d) = (n.abs(), d.abs());
    let g = gcd(n, d).max(1);
    Some(Value::Number(sign * n / g, d / g))
}

/// A decimal (thousands separators allowed) as a fraction.
fn decimal(text: &str) -> Option<(i128, i128)> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    // Thousands separators: groups of three after the first.
    let groups: Vec<&str> = whole.split(',').collect();
    if groups.len() > 1 && (groups[0].is_empty() || groups[1..].iter().any(|g| g.len() != 3)) {
        return None;
    }
    let digits: String = groups.concat();
    if digits.is_empty() && frac.is_empty() {
        return None;
    }
    if !digits.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) || frac.len() > 18 || digits.len() > 30 {
        return None;
    }
    let n: i128 = format!("{digits}{frac}").parse().ok()?;
    Some((n, 10i128.checked_pow(frac.len() as u32)?))
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_are_read_from_boxes_hashes_or_the_last_number() {
        assert_eq!(final_answer("So the answer is \\boxed{\\frac{3}{4}}."), Some(Value::Number(3, 4)));
        assert_eq!(final_answer("\\boxed{1} then later \\boxed{42}"), Some(Value::Number(42, 1)));
        assert_eq!(final_answer("She sold 48 + 24 = 72 clips.\n#### 72"), Some(Value::Number(72, 1)));
        assert_eq!(final_answer("Total: 1,234.50 dollars, about 1200."), Some(Value::Number(1200, 1)));
        assert_eq!(final_answer("The result is -7/2"), Some(Value::Number(-7, 2)));
        assert_eq!(final_answer("答案是 12 个苹果。"), Some(Value::Number(12, 1)));
        assert_eq!(final_answer("I cannot tell."), None);
    }

    #[test]
    fn equal_numbers_in_any_notation_are_correct() {
        for (candidate, reference) in [
            ("\\boxed{0.75}", "3/4"),
            ("\\boxed{\\dfrac{6}{8}}", "0.75"),
            ("\\boxed{1,000}", "1000"),
            ("The answer is $5.", "5"),
            ("It measures \\boxed{12 \\text{ cm}}", "12"),
            ("\\boxed{50\\%}", "50"),
            ("\\boxed{-2}", "−2"),
            ("\\boxed{3.50}", "3.5"),
        ] {
            assert_eq!(check(candidate, reference), Check::Correct, "{candidate} vs {reference}");
        }
        assert_eq!(check("\\boxed{0.76}", "3/4"), Check::Wrong);
        assert_eq!(check("\\boxed{1,00}", "100"), Check::Wrong, "`1,00` is no thousands separator");
        assert_eq!(check("\\boxed{x^2 + 1}", "x^2+1"), Check::Correct, "expressions compare as text");
        assert_eq!(check("\\boxed{x^2 + 2}", "x^2+1"), Check::Wrong);
    }

    #[test]
    fn an_answer_with_nothing_to_read_is_unreadable_not_wrong() {
        assert_eq!(check("Let me think about it some more.", "42"), Check::Unreadable);
        assert_eq!(check("\\boxed{}", "42"), Check::Unreadable);
        assert_eq!(check("\\boxed{7", "7"), Check::Correct, "an unclosed box falls back to the last number");
    }
}
