//! gRPC frames split into messages, in pieces and at once. See `micro::fuzzing::grpc_frame` for the input format and the properties checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    micro::fuzzing::grpc_frame(data);
});
