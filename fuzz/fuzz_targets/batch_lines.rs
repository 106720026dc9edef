//! Fuzz target: see `dynbatch::fuzzing::batch_lines`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynbatch::fuzzing::batch_lines(data));
