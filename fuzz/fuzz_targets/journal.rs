//! Fuzz target: see `dynbatch::fuzzing::journal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynbatch::fuzzing::journal(data));
