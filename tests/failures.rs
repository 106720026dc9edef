//! Every `Failure` variant, reached through the runner and matched by type: no reason text is
//! compared. One lone cluster per run, so each script decides its one outcome.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::ErrorKind;
use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::report::{AnswerProblem, Failure, SplitCause, StopCause};
use dynbatch::{Batcher, Cluster, Video};
use dynbatch::{RunConfig, RunEvent, Runner};

fn one() -> Vec<Cluster> {
    let mut c = Cluster::new(
        "c0",
        vec![
            Video::new("I Tried Espresso for 30 Days", 5.0),
            Video::new("I Tried Espresso Gear for 100 Days", 4.6),
        ],
    );
    c.size = 20;
    c.avg_performance = 4.5;
    c.thread_sources = (0..5).map(|s| format!("source {s}")).collect();
    vec![c]
}

/// The failure of the one cluster when the backend plays `steps`.
async fn failure(steps: Vec<MockStep>, config: RunConfig) -> Failure {
    let input = one();
    let mock = MockBackend::scripted(steps);
    let runner = Runner::new(mock, TokioTimer).with_config(config);
    let report = Batcher::default()
        .discover(&input, "x", &runner)
        .await
        .unwrap();
    report.check_accounting().unwrap();
    let outcome = &report.outcomes[0];
    assert!(
        outcome.reason.is_some(),
        "a failure has its reason for people too"
    );
    // The JSON report carries it as data.
    let json = serde_json::to_value(outcome).unwrap();
    let back: Failure = serde_json::from_value(json["failure"].clone()).unwrap();
    assert_eq!(Some(&back), outcome.failure.as_ref());
    outcome.failure.clone().unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_failure_is_a_variant_with_its_data() {
    let config = RunConfig::default;

    // Answers that cannot be used, for a cluster that cannot be split.
    for (step, problem) in [
        (MockStep::Truncated, AnswerProblem::CutOff),
        (MockStep::Malformed, AnswerProblem::NotJson),
        (MockStep::Refusal, AnswerProblem::Refused),
    ] {
        assert_eq!(
            failure(vec![step], config()).await,
            Failure::Unusable { problem }
        );
    }

    // Left out twice.
    assert_eq!(
        failure(
            vec![MockStep::Missing(vec![1]), MockStep::Missing(vec![1])],
            config()
        )
        .await,
        Failure::NotAnswered { asked_again: true }
    );

    // An account-wide error fails the request that met it, with the error's class.
    match failure(vec![MockStep::Unauthorized], config()).await {
        Failure::Backend { error, attempts } => {
            assert_eq!((error, attempts), (ErrorKind::Authentication, 1));
        }
        other => panic!("{other:?}"),
    }

    // Transient errors until the extra-call budget is gone.
    let tight = RunConfig::builder().max_extra_calls(2).build().unwrap();
    match failure(vec![MockStep::ServerError; 10], tight).await {
        Failure::BudgetExhausted { cap, last_error } => {
            assert_eq!(cap, 2);
            assert_eq!(last_error, Some(ErrorKind::Overloaded));
        }
        other => panic!("{other:?}"),
    }

    // A server that asks to wait longer than max_retry_after.
    assert_eq!(
        failure(
            vec![MockStep::Unavailable(Some(Duration::from_secs(600)))],
            config()
        )
        .await,
        Failure::RetryAfterTooLong { after_ms: 600_000 }
    );

    // A rate limit that outlasts the patience stops the run.
    let patience = RunConfig::builder()
        .rate_limit_patience(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(
        failure(
            vec![MockStep::RateLimited(Some(Duration::from_secs(60))); 3],
            patience
        )
        .await,
        Failure::Stopped {
            cause: StopCause::RateLimitPatience,
            sent: true
        }
    );

    // Too big for the context window, alone.
    let small = RunConfig::builder()
        .request_with(|r| {
            r.model_limits = Some(dynbatch::prompt::ModelLimits {
                context_window: 100,
                max_output_tokens: 50,
            });
        })
        .build()
        .unwrap();
    assert_eq!(failure(vec![], small).await, Failure::TooBigToSend);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_is_a_stop_of_its_own() {
    // Four one-cluster batches, one at a time; the interrupt comes with the first in flight.
    let input: Vec<Cluster> = (0..4)
        .map(|i| {
            let mut c = one().remove(0);
            c.id = format!("c{i}");
            c
        })
        .collect();
    let config = dynbatch::BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .build()
        .unwrap();
    let plan = Batcher::new(config).plan(&input).unwrap();
    assert_eq!(plan.batches.len(), 4);
    let mock = MockBackend::new().with_latency(Duration::from_secs(1), TokioTimer);
    let runner = Runner::new(mock, TokioTimer)
        .with_config(RunConfig::builder().concurrency(1).build().unwrap());
    let report = runner.run_until(plan, &input, "x", async {}).await.unwrap();
    report.check_accounting().unwrap();
    let stopped = report
        .outcomes
        .iter()
        .filter(|o| {
            o.failure
                == Some(Failure::Stopped {
                    cause: StopCause::Interrupted,
                    sent: false,
                })
        })
        .count();
    assert_eq!(stopped, 3, "{:?}", report.outcomes);
}

/// An invalid `RunConfig` cannot be made: the builder and serde both refuse it, naming the
/// field; what they accept, the runner runs.
#[tokio::test]
async fn an_invalid_run_config_is_an_error_naming_the_field() {
    let input = one();
    for (built, json, field) in [
        (
            RunConfig::builder().concurrency(0).build(),
            r#"{"concurrency": 0}"#,
            "concurrency",
        ),
        (
            RunConfig::builder().requests_per_minute(Some(0)).build(),
            r#"{"requests_per_minute": 0}"#,
            "requests_per_minute",
        ),
        (
            RunConfig::builder().merge_similarity(1.5).build(),
            r#"{"merge_similarity": 1.5}"#,
            "merge_similarity",
        ),
        (
            RunConfig::builder().request_timeout(Duration::ZERO).build(),
            r#"{"request_timeout": {"secs": 0, "nanos": 0}}"#,
            "request_timeout",
        ),
        (
            RunConfig::builder()
                .base_delay(Duration::from_secs(9))
                .build(),
            r#"{"base_delay": {"secs": 9, "nanos": 0}}"#,
            "base_delay",
        ),
    ] {
        assert_eq!(built.unwrap_err().field, field);
        let err = serde_json::from_str::<RunConfig>(json).unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    assert!(serde_json::from_str::<RunConfig>(r#"{"concurency": 2}"#).is_err());
    let config: RunConfig = serde_json::from_str(r#"{"concurrency": 2}"#).unwrap();
    assert_eq!(config.concurrency(), 2);
    assert_eq!(
        serde_json::from_str::<RunConfig>(&serde_json::to_string(&config).unwrap()).unwrap(),
        config
    );
    let runner = Runner::new(MockBackend::new(), TokioTimer).with_config(config);
    let report = Batcher::default()
        .discover(&input, "x", &runner)
        .await
        .unwrap();
    assert_eq!(report.outcome_counts(), (1, 0));
}

/// Events carry the same typed data as outcomes: the error's class and the server's delay on
/// retries and 429s, the cause of a split, the failure of failed clusters, the cause of a stop.
#[tokio::test(start_paused = true)]
async fn events_carry_typed_errors() {
    let mut input = one();
    let mut second = input[0].clone();
    second.id = "c1".into();
    input.push(second);
    let mock = MockBackend::scripted(vec![
        MockStep::RateLimited(Some(Duration::from_secs(3))),
        MockStep::ServerError,
        MockStep::Malformed,
        MockStep::Refusal,
        MockStep::Unauthorized,
    ]);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let runner = Runner::new(mock, TokioTimer)
        .with_config(RunConfig::builder().concurrency(1).build().unwrap())
        .on_event(move |e| sink.lock().unwrap().push(e.clone()));
    let report = Batcher::default()
        .discover(&input, "x", &runner)
        .await
        .unwrap();
    report.check_accounting().unwrap();
    let events = events.lock().unwrap().clone();
    let mut seen = (false, false, false, false, false);
    for event in &events {
        match event {
            RunEvent::RateLimited { error, .. } => {
                assert_eq!(error.kind, ErrorKind::RateLimited);
                assert_eq!(error.retry_after_ms, Some(3_000));
                seen.0 = true;
            }
            RunEvent::Retried { error, .. } => {
                assert_eq!(error.kind, ErrorKind::Overloaded);
                assert!(error.message.contains("500"), "{}", error.message);
                seen.1 = true;
            }
            RunEvent::Split { cause, .. } => {
                assert_eq!(
                    *cause,
                    SplitCause::Unusable {
                        problem: AnswerProblem::NotJson
                    }
                );
                seen.2 = true;
            }
            RunEvent::Failed { failure, .. } => {
                assert!(
                    matches!(
                        failure,
                        Failure::Unusable {
                            problem: AnswerProblem::Refused
                        } | Failure::Backend {
                            error: ErrorKind::Authentication,
                            ..
                        } | Failure::Stopped { .. }
                    ),
                    "{failure:?}"
                );
                seen.3 = true;
            }
            RunEvent::Stopped { cause, .. } => {
                assert_eq!(
                    *cause,
                    StopCause::AccountWide {
                        error: ErrorKind::Authentication
                    }
                );
                seen.4 = true;
            }
            _ => {}
        }
        // Every event reads back from its JSON as it was.
        let json = serde_json::to_string(event).unwrap();
        assert_eq!(&serde_json::from_str::<RunEvent>(&json).unwrap(), event);
    }
    assert_eq!(seen, (true, true, true, true, true), "{events:#?}");
}
