#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pulpish_server::fuzzing::fuzz_content_range(data));
