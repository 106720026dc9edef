//! The limiter's unit tests: pacing, headers, refusals, inference.

use super::*;

fn info(limit: u64, remaining: u64) -> RateLimitInfo {
    RateLimitInfo {
        requests: LimitStatus {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: None,
        },
        ..RateLimitInfo::default()
    }
}

/// A cost of `n` tokens, all of them prompt.
fn tok(n: u64) -> Cost {
    Cost {
        input: n,
        output: 0,
    }
}

#[test]
fn a_configured_limit_allows_a_full_bucket_then_the_refill_rate() {
    let t0 = Instant::now();
    let config = RunConfig {
        requests_per_minute: Some(120),
        ..RunConfig::default()
    };
    let mut l = Limiter::new(&config, t0);
    for _ in 0..120 {
        assert_eq!(l.ready_at(t0, tok(10)), None);
        l.take(t0, tok(10));
    }
    let next = l.ready_at(t0, tok(10)).unwrap();
    assert_about(next - t0, Duration::from_millis(500));
    l.take(next, tok(10));
    assert_about(
        l.ready_at(next, tok(10)).unwrap() - next,
        Duration::from_millis(500),
    );
}

/// Waits are rounded up to the next microsecond, never down.
fn assert_about(wait: Duration, expected: Duration) {
    assert!(
        wait >= expected && wait <= expected + Duration::from_micros(2),
        "{wait:?} for {expected:?}"
    );
}

#[test]
fn tokens_and_requests_are_both_respected() {
    let t0 = Instant::now();
    let config = RunConfig {
        requests_per_minute: Some(600),
        tokens_per_minute: Some(6000),
        ..RunConfig::default()
    };
    let mut l = Limiter::new(&config, t0);
    l.take(t0, tok(6000));
    // 1000 tokens take 10 s to come back at 100 tokens per second.
    assert_about(
        l.ready_at(t0, tok(1000)).unwrap() - t0,
        Duration::from_secs(10),
    );
    assert_eq!(l.too_large(tok(6001)), Some((LimitKind::Tokens, 6000)));
    assert_eq!(l.too_large(tok(6000)), None);
}

#[test]
fn headers_teach_the_limit_and_the_level() {
    let t0 = Instant::now();
    let mut l = Limiter::new(&RunConfig::default(), t0);
    assert_eq!(l.ready_at(t0, tok(1)), None); // unknown: no pacing
    let ticket = l.take(t0, tok(1));
    let t1 = t0 + Duration::from_millis(300);
    let changes = l.on_answer(t1, &ticket, Some(&info(120, 0)));
    assert_eq!(
        changes,
        vec![(LimitKind::Requests, 120, LimitSource::Headers)]
    );
    // Remaining 0 when it was counted, some refill since: the next goes once one is back.
    let at = l.ready_at(t1, tok(1)).unwrap();
    assert!(
        at > t1 && at <= t1 + Duration::from_micros(500_002),
        "{:?}",
        at - t1
    );
    assert_eq!(l.summary().requests_per_minute, Some(120));
}

#[test]
fn headers_count_requests_sent_since() {
    let t0 = Instant::now();
    let mut l = Limiter::new(&RunConfig::default(), t0);
    let first = l.take(t0, tok(1));
    for _ in 0..5 {
        l.take(t0, tok(1));
    }
    // The first request saw 10 of 11 left; five went after it: 5 are left now.
    l.on_answer(t0, &first, Some(&info(11, 10)));
    for _ in 0..5 {
        assert_eq!(l.ready_at(t0, tok(1)), None);
        l.take(t0, tok(1));
    }
    assert!(l.ready_at(t0, tok(1)).is_some());
}

#[test]
fn refused_requests_are_not_counted_against_the_server() {
    let t0 = Instant::now();
    let config = RunConfig {
        requests_per_minute: Some(2),
        ..RunConfig::default()
    };
    let mut l = Limiter::new(&config, t0);
    let tickets: Vec<Ticket> = (0..4).map(|_| l.take(t0, tok(1))).collect();
    for t in &tickets[2..] {
        l.on_rate_limited(t0, t, None, Some(&info(2, 0)), &config);
    }
    // The first saw 1 left after itself; of the three sent after it, two were refused.
    l.on_answer(t0, &tickets[0], Some(&info(2, 1)));
    l.on_answer(t0, &tickets[1], Some(&info(2, 0)));
    assert_about(
        l.ready_at(t0, tok(1)).unwrap() - t0,
        Duration::from_secs(30),
    );
}

#[test]
fn a_stray_429s_retry_after_holds_that_request_alone() {
    let t0 = Instant::now();
    let config = RunConfig::default();
    let mut l = Limiter::new(&config, t0);
    let ticket = l.take(t0, tok(1));
    let r = l.on_rate_limited(t0, &ticket, Some(Duration::from_secs(7)), None, &config);
    assert_eq!((r.wait, r.hold), (Duration::ZERO, Duration::from_secs(7)));
    assert!(!r.rate_caused);
    assert_eq!(l.ready_at(t0, tok(1)), None);
}

#[test]
fn retry_after_of_a_run_of_refusals_holds_everything() {
    let t0 = Instant::now();
    let config = RunConfig::default();
    let mut l = Limiter::new(&config, t0);
    let tickets: Vec<Ticket> = (0..8).map(|_| l.take(t0, tok(1))).collect();
    let mut last = Refusal::default();
    for t in &tickets {
        last = l.on_rate_limited(t0, t, Some(Duration::from_secs(7)), None, &config);
    }
    assert!(last.rate_caused);
    assert_eq!(last.wait, Duration::from_secs(7));
    assert_eq!(l.ready_at(t0, tok(1)), Some(t0 + Duration::from_secs(7)));
}

#[test]
fn a_run_of_429s_without_headers_infers_the_bucket_from_what_got_through() {
    let t0 = Instant::now();
    let config = RunConfig::default();
    let mut l = Limiter::new(&config, t0);
    // 60 answered within the first second, the 61st refused.
    for i in 0..60 {
        let t = t0 + Duration::from_millis(i * 16);
        let ticket = l.take(t, tok(1));
        l.on_answer(t, &ticket, None);
    }
    // Four sent one after the other, all refused: the bucket is dry.
    let t = t0 + Duration::from_secs(1);
    let tickets: Vec<Ticket> = (0..4).map(|_| l.take(t, tok(1))).collect();
    let verdicts: Vec<Refusal> = tickets
        .iter()
        .map(|ticket| l.on_rate_limited(t, ticket, None, None, &config))
        .collect();
    let caused: Vec<bool> = verdicts.iter().map(|v| v.rate_caused).collect();
    assert_eq!(caused, [false, false, false, true]);
    assert_eq!(
        verdicts[3].changes,
        vec![(LimitKind::Requests, 59, LimitSource::Inferred)]
    );
    // Paced from an empty bucket: about one a second.
    let at = l.ready_at(t, tok(1)).unwrap();
    assert!((at - t).as_secs_f64() > 0.9 && (at - t).as_secs_f64() < 1.1);
}

#[test]
fn input_and_output_token_limits_bind_apart() {
    let t0 = Instant::now();
    let mut l = Limiter::new(&RunConfig::default(), t0);
    let cost = Cost {
        input: 1000,
        output: 500,
    };
    let first = l.take(t0, cost);
    let status = |limit, remaining| LimitStatus {
        limit: Some(limit),
        remaining: Some(remaining),
        reset: None,
    };
    let info = RateLimitInfo {
        input_tokens: status(10_000, 9_000),
        output_tokens: status(2_000, 1_500),
        ..RateLimitInfo::default()
    };
    let changes = l.on_answer(t0, &first, Some(&info));
    assert!(changes.contains(&(LimitKind::OutputTokens, 2000, LimitSource::Headers)));
    // The output limit binds: 1,500 left is three more now, then one every 15 s (500 of
    // 2,000 a minute), though the input limit would take six more.
    for _ in 0..3 {
        assert_eq!(l.ready_at(t0, cost), None);
        l.take(t0, cost);
    }
    assert_about(l.ready_at(t0, cost).unwrap() - t0, Duration::from_secs(15));
    // A request with no output to reserve waits for nothing but the input limit.
    assert_eq!(l.ready_at(t0, tok(6000)), None);
    assert!(l.ready_at(t0, tok(6001)).is_some());
    assert_eq!(
        l.too_large(Cost {
            input: 10,
            output: 2001
        }),
        Some((LimitKind::OutputTokens, 2000))
    );
    let summary = l.summary();
    assert_eq!(summary.input_tokens_per_minute, Some(10_000));
    assert_eq!(summary.output_tokens_per_minute, Some(2_000));
    assert_eq!(summary.tokens_per_minute, None);
}
