//! The API gateway's route templates. See `micro::fuzzing::gateway_route` for the input format and the properties checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    micro::fuzzing::gateway_route(data);
});
