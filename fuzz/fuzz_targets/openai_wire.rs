//! Fuzz target: see `dynbatch::fuzzing::openai_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynbatch::fuzzing::openai_wire(data));
