//! [`RateLimitInfo`]: what a server says about the account's rate limits on each response, read
//! from the standard `x-ratelimit-*` headers (`OpenAI`, Azure `OpenAI`, vLLM and most gateways
//! send them) without tying the crate to one HTTP client.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One limit's state (requests or tokens) as a response reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
    /// A limit of `limit` per minute with `remaining` left, full again after `reset`.
    pub fn new(limit: Option<u64>, remaining: Option<u64>, reset: Option<Duration>) -> Self {
        Self {
            limit,
            remaining,
            reset,
        }
    }

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
/// use dynbatch::backend::RateLimitInfo;
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
#[non_exhaustive]
pub struct RateLimitInfo {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "LimitStatus::is_empty")]
    pub requests: LimitStatus,
    /// Tokens per minute (prompt plus `max_tokens`).
    #[serde(default, skip_serializing_if = "LimitStatus::is_empty")]
    pub tokens: LimitStatus,
    /// Input (prompt) tokens per minute, where the server limits them apart (Anthropic).
    #[serde(default, skip_serializing_if = "LimitStatus::is_empty")]
    pub input_tokens: LimitStatus,
    /// Output tokens per minute, where the server limits them apart (Anthropic, which counts
    /// a request's `max_tokens` when it starts).
    #[serde(default, skip_serializing_if = "LimitStatus::is_empty")]
    pub output_tokens: LimitStatus,
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
            ..Self::default()
        };
        (!info.is_empty()).then_some(info)
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.tokens.is_empty()
            && self.input_tokens.is_empty()
            && self.output_tokens.is_empty()
    }

    /// Reads Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
    /// {limit,remaining,reset}` headers through `header` (a case-insensitive lookup by name).
    /// Their `reset` is an RFC 3339 time, not a duration: it is read as the time left from
    /// `now` (zero when it has passed). Anthropic's `tokens` headers give the most restrictive
    /// of its input and output limits, not a limit on their sum: when the input or output
    /// headers are there, `tokens` is left empty (pacing the sum by it would halve the pace).
    /// `None` when none of them is there; values that do not parse are ignored.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use dynbatch::backend::RateLimitInfo;
    ///
    /// let headers = [
    ///     ("anthropic-ratelimit-requests-limit", "50"),
    ///     ("anthropic-ratelimit-requests-remaining", "49"),
    ///     ("anthropic-ratelimit-requests-reset", "2026-12-06T05:30:01Z"),
    /// ];
    /// let now = UNIX_EPOCH + Duration::from_secs(1_796_535_000); // 2026-12-06T05:30:00Z
    /// let info = RateLimitInfo::from_anthropic_headers(
    ///     |name| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v),
    ///     now,
    /// )
    /// .unwrap();
    /// assert_eq!(info.requests.limit, Some(50));
    /// assert_eq!(info.requests.reset, Some(Duration::from_secs(1)));
    /// ```
    pub fn from_anthropic_headers<'h>(
        header: impl Fn(&str) -> Option<&'h str>,
        now: std::time::SystemTime,
    ) -> Option<Self> {
        let number = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
        let status = |kind: &str| LimitStatus {
            limit: number(&format!("anthropic-ratelimit-{kind}-limit")),
            remaining: number(&format!("anthropic-ratelimit-{kind}-remaining")),
            reset: header(&format!("anthropic-ratelimit-{kind}-reset"))
                .and_then(parse_rfc3339)
                .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)),
        };
        let mut info = Self {
            requests: status("requests"),
            tokens: status("tokens"),
            input_tokens: status("input-tokens"),
            output_tokens: status("output-tokens"),
        };
        if !info.input_tokens.is_empty() || !info.output_tokens.is_empty() {
            info.tokens = LimitStatus::default();
        }
        (!info.is_empty()).then_some(info)
    }
}

/// Parses an RFC 3339 time (`2026-12-06T05:30:00Z`, `…00.5+01:00`). `None` for anything
/// else, or a time before 1970.
pub(crate) fn parse_rfc3339(text: &str) -> Option<std::time::SystemTime> {
    let text = text.trim();
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let padded: String = fraction[..len]
            .chars()
            .chain("000000000".chars())
            .take(9)
            .collect();
        nanos = padded.parse().ok()?;
        rest = &fraction[len..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    std::time::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
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
    fn anthropic_input_and_output_limits_replace_the_most_restrictive_one() {
        let headers = [
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-tokens-limit", "8000"),
            ("anthropic-ratelimit-tokens-remaining", "7000"),
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-input-tokens-remaining", "39000"),
            ("anthropic-ratelimit-output-tokens-limit", "8000"),
            ("anthropic-ratelimit-output-tokens-remaining", "7000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2026-12-06T05:30:30Z",
            ),
        ];
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_796_535_000);
        let read = |headers: &[(&str, &'static str)]| {
            let headers = headers.to_vec();
            RateLimitInfo::from_anthropic_headers(
                move |name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
                now,
            )
            .unwrap()
        };
        let info = read(&headers);
        assert_eq!(info.requests.limit, Some(50));
        assert!(info.tokens.is_empty(), "{info:?}");
        assert_eq!(info.input_tokens.remaining, Some(39_000));
        assert_eq!(info.output_tokens.limit, Some(8000));
        assert_eq!(info.output_tokens.reset, Some(Duration::from_secs(30)));
        // Without them, the tokens headers stand.
        let info = read(&headers[..3]);
        assert_eq!(info.tokens.limit, Some(8000));
    }

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
    fn rfc3339_times() {
        use std::time::UNIX_EPOCH;
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            at("2000-03-01T00:00:00Z"),
            Some(Duration::from_secs(951_868_800))
        );
        assert_eq!(
            at("2026-12-06T05:30:00Z"),
            Some(Duration::from_secs(1_796_535_000))
        );
        assert_eq!(
            at("2026-12-06T06:30:00.25+01:00"),
            Some(Duration::new(1_796_535_000, 250_000_000))
        );
        assert_eq!(at("2024-02-29T23:59:59-00:30"), at("2024-03-01T00:29:59Z"));
        for bad in [
            "",
            "2026-12-06",
            "2026-13-01T00:00:00Z",
            "2026-12-06T05:30:00",
            "1969-12-31T23:59:59Z",
            "2026-12-06T05:30:00.Z",
            "२०२६-12-06T05:30:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn anthropic_headers() {
        use std::time::UNIX_EPOCH;
        let now = UNIX_EPOCH + Duration::from_secs(1_796_535_000);
        let info = RateLimitInfo::from_anthropic_headers(
            |name| match name {
                "anthropic-ratelimit-tokens-limit" => Some("80000"),
                "anthropic-ratelimit-tokens-remaining" => Some("79000"),
                "anthropic-ratelimit-tokens-reset" => Some("2026-12-06T05:29:00Z"),
                "anthropic-ratelimit-requests-remaining" => Some("lots"),
                _ => None,
            },
            now,
        )
        .unwrap();
        assert_eq!(info.tokens.limit, Some(80_000));
        // A reset in the past is now.
        assert_eq!(info.tokens.reset, Some(Duration::ZERO));
        assert_eq!(info.requests, LimitStatus::default());
        assert_eq!(RateLimitInfo::from_anthropic_headers(|_| None, now), None);
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
