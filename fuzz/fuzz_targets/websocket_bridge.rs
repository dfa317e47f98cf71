//! The API gateway's websocket bridge. See `micro_cli::fuzzing::websocket_bridge` for the input format and the properties checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    micro_cli::fuzzing::websocket_bridge(data);
});
