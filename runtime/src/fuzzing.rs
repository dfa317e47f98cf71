//! Entry points for the fuzz targets in `fuzz/` and the corpus replay tests; not a public API.
//!
//! One function per target: it feeds the fuzzer's bytes to one decoder and panics if a property
//! fails (a decoder never panics; what decodes survives encoding and decoding again unchanged).
//! Each returns whether the input decoded, so tests can check that valid inputs are accepted.

use std::fmt::Debug;

use bytes::Bytes;
use mdns_sd::TxtProperty;

use crate::codec::{Codec, Message};
use crate::transport::grpc::{frame, unframe_one, FrameDecoder};

/// gRPC framing. The first byte sets the size of the pieces the input arrives in (1 to 256
/// bytes), the second the message size limit (2 to the power of it mod 23); the rest is the
/// stream. Decoding in pieces and at once agree, the messages re-framed are exactly the bytes
/// consumed, and `unframe_one` accepts the stream iff it is one whole message.
pub fn grpc_frame(data: &[u8]) -> bool {
    let [piece, limit, stream @ ..] = data else { return false };
    let max = 1usize << (limit % 23);
    let whole = split_frames(&[stream], max);
    let pieces: Vec<&[u8]> = stream.chunks(usize::from(*piece) + 1).collect();
    assert_eq!(split_frames(&pieces, max), whole, "decoding in pieces differs from decoding at once");

    let (messages, end) = &whole;
    let reframed: Vec<u8> = messages.iter().flat_map(|m| frame(m)).collect();
    assert!(stream.starts_with(&reframed), "re-framed messages differ from the bytes they came from");
    assert!(messages.iter().all(|m| m.len() <= max), "a message over the limit was accepted");
    if let FrameEnd::Partial(left) = end {
        assert_eq!(reframed.len() + left, stream.len(), "bytes went missing between messages");
    }

    let one = unframe_one(Bytes::copy_from_slice(stream), max);
    match (&one, messages.as_slice(), end) {
        (Ok(m), [only], FrameEnd::Partial(0)) => assert_eq!(m, only, "unframe_one and the decoder disagree"),
        (Ok(_), _, _) => panic!("unframe_one accepted a stream that is not exactly one message"),
        (Err(_), [_], FrameEnd::Partial(0)) => panic!("unframe_one rejected exactly one message"),
        (Err(_), _, _) => {}
    }
    !messages.is_empty() && matches!(end, FrameEnd::Partial(0))
}

/// How a stream of frames ended: with bytes left that are not a whole frame, or an error.
#[derive(Debug, PartialEq)]
enum FrameEnd {
    Partial(usize),
    Error(String),
}

fn split_frames(pieces: &[&[u8]], max: usize) -> (Vec<Bytes>, FrameEnd) {
    let mut decoder = FrameDecoder::new();
    let mut messages = vec![];
    let mut pushed = 0;
    for piece in pieces {
        decoder.push(Bytes::copy_from_slice(piece));
        pushed += piece.len();
        loop {
            match decoder.next_message(max) {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => return (messages, FrameEnd::Error(e.detail)),
            }
        }
    }
    let consumed: usize = messages.iter().map(|m| m.len() + 5).sum();
    assert_eq!(decoder.has_partial(), pushed > consumed, "has_partial is wrong");
    (messages, FrameEnd::Partial(pushed - consumed))
}

/// The JSON codec, decoding into `M`. What decodes encodes, decodes again to the same JSON, and
/// survives protobuf encoding too (protobuf decoding may only refuse messages nested deeper than
/// prost's recursion limit, which is lower than serde_json's).
pub fn json_codec<M: Message + Debug>(data: &[u8]) -> bool {
    let Ok(msg) = Codec::Json.decode::<M>(data) else { return false };
    let json = Codec::Json.encode(&msg).unwrap_or_else(|e| panic!("{msg:?} decoded but does not encode: {}", e.detail));
    let back: M =
        Codec::Json.decode(&json).unwrap_or_else(|e| panic!("the encoding of {msg:?} does not decode: {}", e.detail));
    assert_eq!(json_value(&encode_json(&back)), json_value(&json), "JSON changed in a round trip");

    let proto = Codec::Proto.encode(&msg).unwrap_or_else(|e| panic!("{msg:?} does not encode: {}", e.detail));
    match Codec::Proto.decode::<M>(&proto) {
        Ok(from_proto) => {
            assert_eq!(json_value(&encode_json(&from_proto)), json_value(&json), "protobuf changed {msg:?}")
        }
        Err(e) => assert!(e.detail.contains("recursion limit"), "the protobuf encoding does not decode: {}", e.detail),
    }
    true
}

fn encode_json<M: Message + Debug>(msg: &M) -> Bytes {
    Codec::Json.encode(msg).unwrap_or_else(|e| panic!("{msg:?} does not encode: {}", e.detail))
}

fn json_value(json: &[u8]) -> serde_json::Value {
    serde_json::from_slice(json).unwrap_or_else(|e| panic!("the codec wrote invalid JSON: {e}"))
}

/// The gateway's path resolver. The input is `namespace\npath` (or a path under `go.micro.api`).
/// Surrounding slashes do not matter, a path resolves iff none of its segments is empty, `.` or
/// `..`, and the service is in the namespace.
pub fn gateway_path(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let (namespace, path) = text.split_once('\n').unwrap_or(("go.micro.api", text));
    let route = crate::api::resolve(namespace, path);
    assert_eq!(
        crate::api::resolve(namespace, &format!("/{path}/")),
        route,
        "slashes around the path changed the route"
    );
    let valid = path.trim_matches('/').split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    assert_eq!(route.is_some(), valid, "a path resolved iff its segments are valid");
    let Some(route) = route else { return false };
    let service = match namespace {
        "" => Some(route.service.as_str()),
        ns => route.service.strip_prefix(ns).and_then(|s| s.strip_prefix('.')),
    };
    assert!(service.is_some_and(|s| !s.is_empty()), "{route:?} names no service in {namespace:?}");
    assert!(route.method.contains('.'), "{route:?} is not Service.Method");
    true
}

/// The mDNS TXT record decoder. The input is TXT record data as it arrives in a DNS answer
/// (length-prefixed `key=value` strings, the first of each key counting, keys compared
/// case-insensitively, as mdns-sd reads them). What decodes, encoded again, decodes to the same
/// record and TTL.
pub fn mdns_txt(data: &[u8]) -> bool {
    let entries = parse_txt(data);
    let get = |key: &str| entries.iter().find(|(k, _)| k.to_lowercase() == key).and_then(|(_, v)| *v);
    let Ok((record, ttl)) = crate::registry::mdns::decode_txt(get) else { return false };
    if serde_json::to_vec(&record).map_or(0, |json| json.len()) > crate::registry::mdns::MAX_RECORD {
        return true;
    }
    let again = txt_rdata(&crate::registry::mdns::encode_txt(&record, ttl, 0));
    let entries = parse_txt(&again);
    let get = |key: &str| entries.iter().find(|(k, _)| k.to_lowercase() == key).and_then(|(_, v)| *v);
    let back = crate::registry::mdns::decode_txt(get).unwrap_or_else(|e| panic!("re-encoded {record:?}: {}", e.detail));
    assert_eq!(back, (record, ttl), "the record changed in a round trip");
    true
}

/// TXT entries as DNS TXT record data: each `key=value` (or bare `key`) prefixed by its length.
pub fn txt_rdata(props: &[TxtProperty]) -> Vec<u8> {
    let mut out = vec![];
    for p in props {
        let mut entry = p.key().as_bytes().to_vec();
        if let Some(v) = p.val() {
            entry.push(b'=');
            entry.extend_from_slice(v);
        }
        let len = u8::try_from(entry.len()).unwrap_or_else(|_| panic!("TXT entry {} is over 255 bytes", p.key()));
        out.push(len);
        out.extend_from_slice(&entry);
    }
    out
}

/// The entries of TXT record data, as mdns-sd splits them: a zero length or one running past the
/// end stops the list, keys that are not UTF-8 are skipped, a value follows the first `=`.
fn parse_txt(mut data: &[u8]) -> Vec<(&str, Option<&[u8]>)> {
    let mut entries = vec![];
    while let [len, rest @ ..] = data {
        let len = usize::from(*len);
        if len == 0 || len > rest.len() {
            break;
        }
        let (entry, next) = rest.split_at(len);
        data = next;
        let (key, value) = match entry.iter().position(|&b| b == b'=') {
            Some(i) => (&entry[..i], Some(&entry[i + 1..])),
            None => (entry, None),
        };
        if let Ok(key) = std::str::from_utf8(key) {
            entries.push((key, value));
        }
    }
    entries
}

/// The etcd record decoder. What decodes, stored again as the registry stores it, decodes to
/// the same record.
#[cfg(feature = "etcd")]
pub fn etcd_record(data: &[u8]) -> bool {
    let Ok(record) = crate::registry::etcd::decode_record(data) else { return false };
    let stored = serde_json::to_vec(&record).unwrap_or_else(|e| panic!("{record:?} does not encode: {e}"));
    let back = crate::registry::etcd::decode_record(&stored).unwrap_or_else(|e| panic!("{}", e.detail));
    assert_eq!(back, record, "the record changed in a round trip");
    true
}

/// The gateway's query and form parser (`micro::api::pairs_to_json`), fed the input as a query
/// string. Any text decodes; decoding, encoding each pair again as a browser would, and decoding
/// once more gives the same object (so nothing is lost or invented on the way). Returns whether
/// the input held a pair.
pub fn gateway_query(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let parsed = crate::api::pairs_to_json(&text);
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut again = Vec::new();
    for (k, v) in &parsed {
        let values = match v {
            serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect(),
            other => vec![other.as_str().unwrap_or_default().to_string()],
        };
        for value in values {
            again.push(format!("{}={}", encode(k), encode(&value)));
        }
    }
    let back = crate::api::pairs_to_json(&again.join("&"));
    // A key given once whose value was an array cannot be told apart from a repeated key; the
    // encoding above repeats it, which decodes to the same array.
    assert_eq!(back, parsed, "pairs changed when encoded and decoded again");
    !parsed.is_empty()
}

/// The gateway's route templates (`micro::api::Template`). The input is `method\ntemplate\npath`.
/// Parsing and matching never panic; the method matches without regard to case; the variables
/// bound are named in the template; and a template without `**` matches only paths with as
/// many segments as it has. Returns whether the path matched.
pub fn gateway_route(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let (method, template, path) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let Ok(t) = crate::api::Template::parse(method, template) else { return false };
    let _ = t.openapi_path();
    let vars = t.matches(method, path);
    assert_eq!(t.matches(&method.to_ascii_uppercase(), path), vars, "the method's case changed the match");
    let Some(vars) = vars else { return false };
    for name in vars.keys() {
        assert!(template.contains(&format!("{{{name}")), "{name} is bound but not in {template:?}");
    }
    if !template.contains("**") {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let count = if rest.is_empty() { 0 } else { rest.split('/').count() };
        assert_eq!(t.segment_count(), count, "{path:?} matched {template:?} with another number of segments");
    }
    true
}
