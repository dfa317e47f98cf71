//! JSON decoded into `fuzz.Everything` (proto/fuzz.proto) by the JSON codec. See
//! `micro::fuzzing::json_codec` for the properties checked.

#![no_main]

#[allow(clippy::all)]
mod proto {
    micro::include_proto!("fuzz");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    micro::fuzzing::json_codec::<proto::Everything>(data);
});
