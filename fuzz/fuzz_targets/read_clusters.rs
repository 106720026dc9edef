//! Fuzz target: see `dynbatch::fuzzing::read_clusters`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynbatch::fuzzing::read_clusters(data));
