//! mDNS TXT record data decoded into a registry record. See `micro::fuzzing::mdns_txt` for the input format and the properties checked.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    micro::fuzzing::mdns_txt(data);
});
