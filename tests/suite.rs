//! The integration tests, as one test binary: one link instead of one per file, and the
//! tests of every file run side by side. Each module is a file of this directory, with its
//! own documentation; `cargo test --all-features --test suite <module>` runs one of them.
//!
//! `shared_key_loopback` and `anthropic_loopback` time real processes against a loopback
//! server and must not share the machine with the CPU-bound properties here: they are the
//! `loopback` binary (`tests/loopback.rs`).
//!
//! A new test file is not found by itself (`autotests = false`): add it below.

// Helpers several test files share, each compiled once.
#[path = "support/batch_server.rs"]
mod batch_server;
#[path = "support/loopback.rs"]
mod loopback;
#[path = "support/runs.rs"]
mod runs;
#[path = "support/bundled.rs"]
mod support_bundled;
#[path = "support/message_batches.rs"]
mod support_message_batches;

#[path = "anthropic.rs"]
mod anthropic;
#[path = "backend_conformance.rs"]
mod backend_conformance;
#[path = "bad_input.rs"]
mod bad_input;
#[path = "batch_api.rs"]
mod batch_api;
#[path = "batch_api_http.rs"]
mod batch_api_http;
#[path = "big_answers.rs"]
mod big_answers;
#[path = "consolidate.rs"]
mod consolidate;
#[path = "coverage.rs"]
mod coverage;
#[path = "embeddings.rs"]
mod embeddings;
#[path = "eval.rs"]
mod eval;
#[path = "failures.rs"]
mod failures;
#[path = "fault_regimes.rs"]
mod fault_regimes;
#[path = "fuzz_regressions.rs"]
mod fuzz_regressions;
#[path = "html.rs"]
mod html;
#[path = "invariants.rs"]
mod invariants;
#[path = "journal.rs"]
mod journal;
#[path = "kill.rs"]
mod kill;
#[path = "layering.rs"]
mod layering;
#[path = "message_batches.rs"]
mod message_batches;
#[path = "openai.rs"]
mod openai;
#[path = "openai_rate_limits.rs"]
mod openai_rate_limits;
#[path = "origin.rs"]
mod origin;
#[path = "output_modes.rs"]
mod output_modes;
#[path = "probe.rs"]
mod probe;
#[path = "prompt.rs"]
mod prompt;
#[path = "rate_limits.rs"]
mod rate_limits;
#[path = "read.rs"]
mod read;
#[path = "real_server.rs"]
mod real_server;
#[path = "runner.rs"]
mod runner;
#[path = "runner_props.rs"]
mod runner_props;
#[path = "scenarios.rs"]
mod scenarios;
#[path = "semantic_merge.rs"]
mod semantic_merge;
#[path = "shared_key.rs"]
mod shared_key;
#[path = "stalled.rs"]
mod stalled;
#[path = "tokens.rs"]
mod tokens;
