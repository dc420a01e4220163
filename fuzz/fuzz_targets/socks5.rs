//! Fuzz target: `kleiber::fuzzing::socks5` (see src/fuzzing.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kleiber::fuzzing::socks5(data));
