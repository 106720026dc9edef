//! Batch API round trip: export a plan, write a synthetic output file (some lines failing,
//! one missing, one unknown, order shuffled), import, and check the report the runner would
//! have produced.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use dynbatch::Batcher;
use dynbatch::RunConfig;
use dynbatch::backend::openai::{OpenAiBackend, OpenAiBatches, read_batch_file};
use dynbatch::batch::{BatchInput, export, import};
use dynbatch::report::OutcomeStatus;
use serde_json::{Value, json};

use crate::support_bundled;
use support_bundled::bundled;

fn completion(content: &str, finish: &str) -> Value {
    json!({"id": "chatcmpl-x", "model": "gpt-4o-mini", "choices": [{"index": 0,
           "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
           "usage": {"prompt_tokens": 1000, "completion_tokens": 500}})
}

fn answer(numbers: impl Iterator<Item = usize>) -> String {
    let clusters: Vec<Value> = numbers
        .map(|n| json!({"cluster": n, "patterns": [{"pattern": "Setup flex", "template": "I Made Espresso With a [X] Setup"}]}))
        .collect();
    json!({"clusters": clusters}).to_string()
}

fn ok_line(id: &str, content: &str, finish: &str) -> String {
    json!({"id": "batch_req_1", "custom_id": id, "response": {"status_code": 200, "request_id": "req_1",
           "body": completion(content, finish)}, "error": null})
    .to_string()
}

/// The Batch API client, used only to encode: it sends nothing.
fn encoder() -> OpenAiBatches {
    OpenAiBackend::builder()
        .api_key("unused")
        .build_batches()
        .unwrap()
}

#[tokio::test]
async fn export_then_import_gives_the_runners_report() {
    let input = bundled();
    let plan = Batcher::default().plan(&input).unwrap();
    let n = plan.batches.len();
    assert!(n >= 5, "{n}");
    let config = RunConfig::default();

    // Export: one line per batch, stable unique ids, the runner's exact body.
    let encoder = encoder();
    let jsonl = export(&plan, &input, "home espresso", &config, &encoder).unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n);
    let batch_input = BatchInput::new(&plan, &input, "home espresso", &config, &encoder).unwrap();
    let requests = batch_input.requests();
    // What the live backend would send for the same request.
    let live = OpenAiBackend::builder()
        .base_url("http://127.0.0.1:1/v1")
        .build()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let id = &batch_input.custom_ids()[i];
        assert_eq!(line["custom_id"], id.as_str());
        assert!(
            id.len() == 30
                && id
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-')),
            "{id}"
        );
        assert_eq!(line["method"], "POST");
        assert_eq!(line["url"], "/v1/chat/completions");
        assert_eq!(line["body"], live.body(&requests[i]));
    }
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n);
    let again = Batcher::default().plan(&input).unwrap();
    assert_eq!(
        export(&again, &input, "home espresso", &config, &encoder).unwrap(),
        jsonl
    );

    // A synthetic output: batch 0 fine, 1 in the error file, 2 missing, 3 truncated,
    // 4 answered but one cluster left out, the rest fine; plus an unknown id and garbage.
    let size = |b: usize| plan.batches[b].clusters.len();
    let id = |b: usize| batch_input.custom_ids()[b].clone();
    let mut output = vec![
        ok_line(&id(0), &answer(1..=size(0)), "stop"),
        ok_line(&id(3), &answer(1..=size(3))[..30], "length"),
        ok_line(&id(4), &answer(1..size(4)), "stop"),
        ok_line("dynbatch-9999-0000000000000000", &answer(1..=1), "stop"),
        "not json at all".to_owned(),
    ];
    for b in 5..n {
        output.push(ok_line(&id(b), &answer(1..=size(b)), "stop"));
    }
    output.reverse(); // order is not guaranteed
    let errors = json!({"id": "batch_req_2", "custom_id": id(1), "response": null,
                        "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}})
        .to_string();

    let mut results = read_batch_file("output", &output.join("\n"));
    results.extend(read_batch_file("errors", &errors));
    let report = import(plan.clone(), &input, "home espresso", &config, results)
        .await
        .unwrap();
    report.check_accounting().unwrap();
    let of = |b: usize| {
        report
            .outcomes
            .iter()
            .filter(|o| o.batch == b)
            .collect::<Vec<_>>()
    };
    assert!(of(0).iter().all(|o| o.status == OutcomeStatus::Succeeded));
    assert!(
        of(1)
            .iter()
            .all(|o| o.reason.as_deref().unwrap().contains("batch_expired"))
    );
    assert!(of(2).iter().all(|o| {
        o.reason
            .as_deref()
            .unwrap()
            .contains("no result line for dynbatch-0002-")
    }));
    assert!(of(3).iter().all(|o| {
        o.reason
            .as_deref()
            .unwrap()
            .contains("cut off at max_tokens")
    }));
    let four = of(4);
    assert_eq!(
        four.iter()
            .filter(|o| o.status == OutcomeStatus::Succeeded)
            .count(),
        size(4) - 1
    );
    assert_eq!(four.last().unwrap().reason.as_deref(), Some("not answered"));
    for b in 5..n {
        assert!(of(b).iter().all(|o| o.status == OutcomeStatus::Succeeded));
    }
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("unknown custom_id \"dynbatch-9999-0000000000000000\"")),
        "{:?}",
        report.warnings
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("not a Batch API result"))
    );
    // One line per batch but the missing one; no retries, splits or re-asks.
    assert_eq!(report.usage.calls_made, (n - 1) as u64);
    assert_eq!(
        (
            report.usage.retries,
            report.usage.splits,
            report.usage.reasks
        ),
        (0, 0, 0)
    );
    // Prompt and completion tokens of the answered lines, at half price.
    let answered = (n - 2) as u64; // all but the error line and the missing one
    assert_eq!(report.usage.prompt_tokens, 1000 * answered);
    let full = (1000.0 * 0.15 + 500.0 * 0.60) * answered as f64 / 1e6;
    assert!((report.usage.estimated_cost_usd.unwrap() - full * 0.5).abs() < 1e-12);
    assert!(
        report
            .patterns
            .iter()
            .any(|p| p.template.as_deref() == Some("I Made Espresso With a [X] Setup"))
    );
}

/// A line of a finished batch is an outcome, whatever its status: a 429 or a 401 inside a
/// result file neither waits for a rate limit nor stops the import, and limits in the config
/// do not pace answers that are already there.
#[tokio::test]
async fn import_never_waits_or_stops_on_a_lines_status() {
    let input = bundled();
    let plan = Batcher::default().plan(&input).unwrap();
    let n = plan.batches.len();
    let config = RunConfig::builder()
        .requests_per_minute(Some(1))
        .tokens_per_minute(Some(1))
        .build()
        .unwrap();
    let ids = BatchInput::new(&plan, &input, "home espresso", &config, &encoder())
        .unwrap()
        .custom_ids()
        .to_vec();
    let custom_id = |_: &dynbatch::BatchPlan<'_>, b: usize| ids[b].clone();
    let status_line = |b: usize, status: u16| {
        json!({"id": "batch_req_1", "custom_id": custom_id(&plan, b), "response": {"status_code": status,
               "request_id": "req_1", "body": {"error": {"message": "no", "type": "requests"}}}, "error": null})
        .to_string()
    };
    let mut output = vec![status_line(0, 429), status_line(1, 401)];
    for b in 2..n {
        let size = plan.batches[b].clusters.len();
        output.push(ok_line(&custom_id(&plan, b), &answer(1..=size), "stop"));
    }
    let output = output.join("\n");
    let import = import(
        plan.clone(),
        &input,
        "home espresso",
        &config,
        read_batch_file("output", &output),
    );
    let report = tokio::time::timeout(std::time::Duration::from_secs(20), import)
        .await
        .expect("the import finished")
        .unwrap();
    report.check_accounting().unwrap();
    let reason = |b: usize| {
        report
            .outcomes
            .iter()
            .find(|o| o.batch == b)
            .and_then(|o| o.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason(0).starts_with("other: the batch failed dynbatch-0000-")
            && reason(0).contains(": http_429: rate_limited: "),
        "{}",
        reason(0)
    );
    assert!(
        reason(1).contains(": http_401: authentication: "),
        "{}",
        reason(1)
    );
    let succeeded = report
        .outcomes
        .iter()
        .filter(|o| o.status == OutcomeStatus::Succeeded)
        .count();
    let failed: usize = (0..2).map(|b| plan.batches[b].clusters.len()).sum();
    assert_eq!(succeeded + failed, report.outcomes.len());
}
