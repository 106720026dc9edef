//! [`RateLimitInfo`]: what a server says about the account's rate limits on each response, read
//! from the standard `x-ratelimit-*` headers (`OpenAI`, Azure `OpenAI`, vLLM and most gateways
//! send them) without tying the crate to one HTTP client.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One limit's state (requests or tokens) as a response reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitStatus {
    /// The limit per minute (`x-ratelimit-limit-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What is left of it (`x-ratelimit-remaining-*`), counting this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// Time until the limit is back to full (`x-ratelimit-reset-*`, e.g. `6m0s`, `1s`, `20ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<Duration>,
}

impl LimitStatus {
    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }
}

/// The account's rate limits as one response reported them: requests per minute and tokens
/// per minute. Backends fill it in [`ChatResponse::rate_limits`](super::ChatResponse) and
/// [`BackendError::RateLimited`](super::BackendError); the runner learns its pacing from it.
///
/// ```
/// use std::time::Duration;
/// use dynbatch::RateLimitInfo;
///
/// let headers = [
///     ("x-ratelimit-limit-requests", "120"),
///     ("x-ratelimit-remaining-requests", "0"),
///     ("x-ratelimit-reset-requests", "500ms"),
///     ("x-ratelimit-limit-tokens", "200000"),
///     ("x-ratelimit-reset-tokens", "6m0s"),
/// ];
/// let info = RateLimitInfo::from_headers(|name| {
///     headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
/// })
/// .unwrap();
/// assert_eq!(info.requests.limit, Some(120));
/// assert_eq!(info.requests.reset, Some(Duration::from_millis(500)));
/// assert_eq!(info.tokens.reset, Some(Duration::from_secs(360)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitInfo {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "LimitStatus::is_empty")]
    pub requests: LimitStatus,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "LimitStatus::is_empty")]
    pub tokens: LimitStatus,
}

impl RateLimitInfo {
    /// Reads the six `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers through
    /// `header` (a case-insensitive lookup by name). `None` when none of them is there; values
    /// that do not parse are ignored.
    pub fn from_headers<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Option<Self> {
        let number = |name: &str| {
            header(name).and_then(|v| {
                let v = v.trim();
                v.parse::<u64>()
                    .ok()
                    .or_else(|| v.parse::<f64>().ok().filter(|f| *f >= 0.0).map(round_down))
            })
        };
        let status = |kind: &str| LimitStatus {
            limit: number(&format!("x-ratelimit-limit-{kind}")),
            remaining: number(&format!("x-ratelimit-remaining-{kind}")),
            reset: header(&format!("x-ratelimit-reset-{kind}")).and_then(parse_duration),
        };
        let info = Self {
            requests: status("requests"),
            tokens: status("tokens"),
        };
        (!info.is_empty()).then_some(info)
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.tokens.is_empty()
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked non-negative
fn round_down(f: f64) -> u64 {
    f.floor() as u64
}

/// Parses a duration as rate-limit headers write it: Go's format (`6m0s`, `1h2m3.5s`, `20ms`,
/// `1.5µs`), or a bare number of seconds (`0.5`). `None` for anything else.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut total = 0.0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_as_headers_write_them() {
        use std::time::Duration;
        assert_eq!(
            super::parse_duration("6m0s"),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            super::parse_duration("20ms"),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            super::parse_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(super::parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(super::parse_duration("soon"), None);
    }

    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("1.5µs"), Some(Duration::from_nanos(1500)));
        assert_eq!(parse_duration("100ns"), Some(Duration::from_nanos(100)));
        for bad in ["", "s", "1x", "m5", "-1s", "1..2s", "-3"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn headers_absent_or_garbled() {
        assert_eq!(RateLimitInfo::from_headers(|_| None), None);
        let info = RateLimitInfo::from_headers(|name| match name {
            "x-ratelimit-limit-requests" => Some("many"),
            "x-ratelimit-remaining-tokens" => Some("1234.9"),
            _ => None,
        })
        .unwrap();
        assert_eq!(info.requests, LimitStatus::default());
        assert_eq!(info.tokens.remaining, Some(1234));
    }
}
