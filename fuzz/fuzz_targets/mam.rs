//! Fuzz target: `kleiber::fuzzing::mam` (see src/fuzzing.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kleiber::fuzzing::mam(data));
