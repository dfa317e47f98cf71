//! etcd values decoded into a registry record. See `micro::fuzzing::etcd_record` for the input format and the properties checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    micro::fuzzing::etcd_record(data);
});
