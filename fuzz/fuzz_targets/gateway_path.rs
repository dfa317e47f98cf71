//! The API gateway's path resolver. See `micro::fuzzing::gateway_path` for the input format and the properties checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    micro::fuzzing::gateway_path(data);
});
