//! The Connect protocol's wire details (connectrpc.com/docs/protocol): error JSON, the
//! end-of-stream message, `Connect-Timeout-Ms`, and unary `GET` queries.
//!
//! Unary calls are a POST of the bare message (`application/proto`, `application/json`) with
//! `Connect-Protocol-Version: 1`, answered with the bare reply or, on failure, an HTTP status
//! from the code and a JSON error. Streams (`application/connect+proto`, `+json`) are envelopes
//! like gRPC's frames (flag `0x01` compressed, `0x02` end of stream) answered with HTTP 200,
//! their status in a last JSON envelope. Side-effect-free methods may also be called with
//! `GET ?encoding=json&message=…`.

use std::time::Duration;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::compression::Encoding;
use crate::codec::Codec;
use crate::error::GrpcCode;
use crate::Error;

/// The version this side speaks, in `Connect-Protocol-Version`.
pub const PROTOCOL_VERSION: &str = "1";

/// The envelope flag of the end-of-stream message.
pub const FLAG_END_STREAM: u8 = 0x02;

/// Parses `Connect-Timeout-Ms`: 1 to 10 digits of milliseconds.
pub fn parse_timeout(v: &str) -> Option<Duration> {
    (!v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Duration::from_millis(v.parse().unwrap_or(u64::MAX)))
}

/// The error object: `{"code","message","details"}`, the details holding the micro error as a
/// `google.rpc.ErrorInfo` (see [`super::status`]).
pub fn error_value(err: &Error) -> Value {
    let code = err.grpc_code();
    let code = if code == GrpcCode::Ok { GrpcCode::Unknown } else { code };
    let info = base64::engine::general_purpose::STANDARD_NO_PAD.encode(super::status::error_info(err));
    json!({
        "code": code.connect_name(),
        "message": err.detail,
        "details": [{ "type": "google.rpc.ErrorInfo", "value": info }],
    })
}

/// The body and HTTP status of a failed unary call: the status the code maps to, except for a
/// media type the server does not speak, which the spec answers with 415 itself.
pub fn unary_error(err: &Error) -> (u16, Bytes) {
    let status = if err.code == 415 { 415 } else { err.grpc_code().connect_http() };
    (status, Bytes::from(error_value(err).to_string()))
}

/// The end-of-stream envelope for a stream's outcome.
pub fn end_stream(result: Result<(), &Error>) -> Bytes {
    let body = match result {
        Ok(()) => json!({}),
        Err(e) => json!({ "error": error_value(e) }),
    }
    .to_string();
    let mut b = BytesMut::with_capacity(5 + body.len());
    b.put_u8(FLAG_END_STREAM);
    b.put_u32(body.len() as u32);
    b.put_slice(body.as_bytes());
    b.freeze()
}

/// A unary call made with `GET`.
#[derive(Debug)]
pub struct GetQuery {
    /// The codec `encoding` names.
    pub codec: Codec,
    /// The encoding `compression` names.
    pub compression: Encoding,
    /// The request message, decoded from `message` (still compressed if `compression` says so).
    pub message: Bytes,
}

/// Whether a query is a Connect `GET` call's (it names an `encoding` and a `message`).
pub fn is_get_query(query: &str) -> bool {
    let mut keys = query.split('&').map(|kv| kv.split('=').next().unwrap_or(""));
    let (mut encoding, mut message) = (false, false);
    for k in &mut keys {
        encoding |= k == "encoding";
        message |= k == "message";
    }
    encoding && message
}

/// Parses a `GET` call's query: `encoding` (`json`, `proto`), `message` (percent-encoded, or
/// URL-safe base64 with `base64=1`), `compression`, `connect=v1`.
pub fn parse_get(query: &str) -> Result<GetQuery, Error> {
    let bad = |what: String| Error::bad_request(super::ID, what);
    let (mut codec, mut compression, mut message, mut base64) = (None, Encoding::Identity, None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode_str(&v.replace('+', " ")).collect::<Vec<u8>>();
        let text = || String::from_utf8_lossy(&v).into_owned();
        match k {
            "encoding" => {
                codec = Some(match &v[..] {
                    b"json" => Codec::Json,
                    b"proto" => Codec::Proto,
                    _ => return Err(bad(format!("unknown encoding {:?} (use json or proto)", text()))),
                })
            }
            "compression" => {
                compression = Encoding::parse(Some(&text())).ok_or_else(|| super::compression::unsupported(&text()))?
            }
            "base64" => base64 = v == b"1",
            "connect" if v != b"v1" => return Err(bad(format!("unknown Connect version {:?} (use v1)", text()))),
            "message" => message = Some(v),
            _ => {}
        }
    }
    let codec = codec.ok_or_else(|| bad("the query names no encoding".into()))?;
    let message = message.ok_or_else(|| bad("the query has no message".into()))?;
    let message = if base64 { decode_url_base64(&message)? } else { message };
    Ok(GetQuery { codec, compression, message: Bytes::from(message) })
}

/// Decodes URL-safe base64, padded or not (the spec allows both).
fn decode_url_base64(text: &[u8]) -> Result<Vec<u8>, Error> {
    let trimmed: Vec<u8> = text.iter().copied().filter(|b| *b != b'=').collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&trimmed)
        .map_err(|e| Error::bad_request(super::ID, format!("the message is not valid base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_queries_and_errors() {
        assert_eq!(parse_timeout("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("12345678901"), None);
        assert_eq!(parse_timeout("-1"), None);
        let q = parse_get("connect=v1&encoding=json&message=%7B%22a%22%3A1%7D").unwrap();
        assert_eq!((q.codec, &q.message[..]), (Codec::Json, &br#"{"a":1}"#[..]));
        let q = parse_get("encoding=proto&base64=1&message=CgJoaQ").unwrap();
        assert_eq!(&q.message[..], b"\x0a\x02hi");
        assert_eq!(parse_get("encoding=xml&message=1").unwrap_err().code, 400);
        assert_eq!(parse_get("encoding=json&message=a&compression=br").unwrap_err().code, 501);
        assert_eq!(parse_get("encoding=proto&base64=1&message=%%%").unwrap_err().code, 400);
        assert!(is_get_query("encoding=json&message=") && !is_get_query("a=b"));
        let (status, body) = unary_error(&Error::from_grpc("s", GrpcCode::FailedPrecondition, "no"));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, v["code"].as_str(), v["message"].as_str()), (400, Some("failed_precondition"), Some("no")));
        let end = end_stream(Ok(()));
        assert_eq!(&end[..], b"\x02\x00\x00\x00\x02{}");
    }
}
