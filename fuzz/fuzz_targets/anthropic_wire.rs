//! Fuzz target: see `dynbatch::fuzzing::anthropic_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynbatch::fuzzing::anthropic_wire(data));
