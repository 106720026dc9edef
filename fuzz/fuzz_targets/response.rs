//! Fuzz target: see `dynbatch::fuzzing::response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynbatch::fuzzing::response(data));
