//! The API gateway's query and form parser. See `micro::fuzzing::gateway_query` for the properties checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    micro::fuzzing::gateway_query(data);
});
