//! When to retry a failed request and how long to wait first.
//!
//! Retried: connection errors, timeouts, unreadable bodies and the statuses
//! 408, 409, 429, 500, 502, 503, 504, except a 429 whose error code is
//! `insufficient_quota` (waiting will not bring money back). The wait is the
//! server's `retry-after-ms` or `Retry-After` (seconds or an HTTP date) when
//! it sends one, else exponential backoff with jitter; both are capped.

use std::time::{Duration, SystemTime};

pub use evol_llm::RetryPolicy;
use evol_llm::{ErrorKind, Signals};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// How an HTTP status is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Retry,
    Fail(ErrorKind),
}

/// Classifies a non-success status; `error_code` is the body's `error.code`.
pub fn classify_status(status: StatusCode, error_code: Option<&str>) -> StatusClass {
    match status.as_u16() {
        429 if error_code == Some("insufficient_quota") => StatusClass::Fail(ErrorKind::Quota),
        408 | 409 | 429 | 500 | 502 | 503 | 504 => StatusClass::Retry,
        401 | 403 => StatusClass::Fail(ErrorKind::Auth),
        404 => StatusClass::Fail(ErrorKind::NotFound),
        _ => StatusClass::Fail(ErrorKind::Rejected),
    }
}

/// The wait a server asks for, from `retry-after-ms` or `Retry-After`.
pub fn server_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The limits a server states in its rate-limit headers
/// (`x-ratelimit-limit-requests`, `x-ratelimit-limit-tokens`, as OpenAI and
/// many others send; taken as per-minute limits).
pub fn server_limits(headers: &HeaderMap) -> Signals {
    let number = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).filter(|&n| n > 0)
    };
    Signals {
        requests_per_minute: number("x-ratelimit-limit-requests"),
        tokens_per_minute: number("x-ratelimit-limit-tokens"),
        ..Signals::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn statuses() {
        for code in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(StatusCode::from_u16(code).unwrap(), None), StatusClass::Retry, "{code}");
        }
        let fail = |code: u16, c: Option<&str>| classify_status(StatusCode::from_u16(code).unwrap(), c);
        assert_eq!(fail(400, None), StatusClass::Fail(ErrorKind::Rejected));
        assert_eq!(fail(422, None), StatusClass::Fail(ErrorKind::Rejected));
        assert_eq!(fail(401, None), StatusClass::Fail(ErrorKind::Auth));
        assert_eq!(fail(404, None), StatusClass::Fail(ErrorKind::NotFound));
        assert_eq!(fail(429, Some("insufficient_quota")), StatusClass::Fail(ErrorKind::Quota));
        assert_eq!(fail(429, Some("rate_limit_exceeded")), StatusClass::Retry);
        assert_eq!(fail(501, None), StatusClass::Fail(ErrorKind::Rejected));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(server_hint(&headers(&[("retry-after", "3")]), now), Some(Duration::from_secs(3)));
        assert_eq!(server_hint(&headers(&[("retry-after", "1.5")]), now), Some(Duration::from_millis(1500)));
        assert_eq!(
            server_hint(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")]), now),
            Some(Duration::from_millis(250))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(server_hint(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(server_hint(&headers(&[("retry-after", &past)]), now), Some(Duration::ZERO));
        assert_eq!(server_hint(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(server_hint(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(server_hint(&HeaderMap::new(), now), None);
    }

    #[test]
    fn rate_limit_headers() {
        let s = server_limits(&headers(&[("x-ratelimit-limit-requests", "500"), ("x-ratelimit-limit-tokens", "oops")]));
        assert_eq!((s.requests_per_minute, s.tokens_per_minute), (Some(500), None));
        assert_eq!(server_limits(&HeaderMap::new()), Signals::default());
    }
}
