//! gRPC wire details: length-prefixed frames, `grpc-timeout`, and status trailers. Public for
//! programs that move gRPC messages themselves (a proxy, a bridge): [`frame`], [`FrameDecoder`]
//! and the status helpers are the ones the server and the client use.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use http::{HeaderMap, HeaderValue};
use http_body::Body as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::compression::Encoding;
use crate::codec::{Codec, Decode};
use crate::error::GrpcCode;
use crate::Error;

/// Characters that must be percent-encoded in `grpc-message` (everything outside 0x20..0x7E, and `%`).
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// The largest message accepted unless configured otherwise: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Splits a byte stream into gRPC messages, inflating the compressed ones.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    encoding: Encoding,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder { buf: BytesMut::new(), encoding: Encoding::Identity }
    }
}

impl FrameDecoder {
    /// A decoder with nothing buffered, for a stream that names no compression.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for a stream whose compressed messages are in `encoding`.
    pub fn with_encoding(encoding: Encoding) -> Self {
        FrameDecoder { buf: BytesMut::new(), encoding }
    }

    /// Adds bytes read from the wire.
    pub fn push(&mut self, data: Bytes) {
        self.buf.extend_from_slice(&data);
    }

    /// Whether bytes are buffered that do not yet form a whole message.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next whole message, if one is buffered (inflated; at most `max` bytes either way).
    pub fn next_message(&mut self, max: usize) -> Result<Option<Bytes>, Error> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let (compressed, len) = check_header(&self.buf[..5], max)?;
        if self.buf.len() < 5 + len {
            self.buf.reserve(5 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(5);
        let message = self.buf.split_to(len).freeze();
        if compressed {
            return inflate(&message, self.encoding, max).map(Some);
        }
        Ok(Some(message))
    }
}

/// A message that arrived compressed, inflated.
fn inflate(message: &[u8], encoding: Encoding, max: usize) -> Result<Bytes, Error> {
    match encoding {
        Encoding::Gzip => super::compression::decompress(message, max),
        // The gRPC spec's answer to a compressed message nobody announced: INTERNAL.
        Encoding::Identity => Err(Error::internal_server_error(
            super::ID,
            "a message arrived compressed, but the request names no compression (grpc-encoding)",
        )),
    }
}

/// The frame header's flags and length: whether the message is compressed, and how long it is.
fn check_header(header: &[u8], max: usize) -> Result<(bool, usize), Error> {
    let compressed = match header[0] {
        0 => false,
        1 => true,
        f => return Err(Error::bad_request(super::ID, format!("malformed frame: flag byte {f}"))),
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > max {
        return Err(too_large(len, max));
    }
    Ok((compressed, len))
}

/// The error for a message over the size limit.
pub fn too_large(len: usize, max: usize) -> Error {
    Error::too_large(super::ID, format!("message of {len} bytes is larger than the limit of {max} bytes"))
}

/// One message, already encoded, as a gRPC frame (flag byte, big-endian length, message).
pub fn frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(message.len() + 5);
    b.extend_from_slice(&[0]);
    b.extend_from_slice(&(message.len() as u32).to_be_bytes());
    b.extend_from_slice(message);
    b.freeze()
}

/// Takes exactly one gRPC message out of a whole unary body.
pub fn unframe_one(body: Bytes, max: usize) -> Result<Bytes, Error> {
    unframe_one_encoded(body, max, Encoding::Identity)
}

/// Takes exactly one message out of a whole unary body whose compressed messages are in
/// `encoding`, inflated.
pub fn unframe_one_encoded(mut body: Bytes, max: usize, encoding: Encoding) -> Result<Bytes, Error> {
    if body.len() < 5 {
        return Err(Error::bad_request(
            super::ID,
            if body.is_empty() { "missing gRPC message".to_string() } else { "truncated gRPC frame".to_string() },
        ));
    }
    let (compressed, len) = check_header(&body[..5], max)?;
    if body.len() != 5 + len {
        return Err(Error::bad_request(
            super::ID,
            format!("gRPC frame says {len} bytes but the body has {}", body.len() - 5),
        ));
    }
    body.advance(5);
    if compressed {
        return inflate(&body, encoding, max);
    }
    Ok(body)
}

/// One message as a frame, compressed when `encoding` compresses a message of its size.
pub fn frame_encoded(message: &[u8], encoding: Encoding) -> Bytes {
    let mut b = BytesMut::with_capacity(message.len() + 5);
    frame_encoded_into(message, encoding, &mut b);
    b.freeze()
}

/// Appends one message as a frame to `out`, compressed when `encoding` compresses a message of
/// its size.
pub fn frame_encoded_into(message: &[u8], encoding: Encoding, out: &mut BytesMut) {
    let packed;
    let (flag, message) = if encoding.compresses(message.len()) {
        packed = super::compression::compress(message);
        (1u8, &packed[..])
    } else {
        (0u8, message)
    };
    out.reserve(message.len() + 5);
    out.extend_from_slice(&[flag]);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
}

/// Parses a `grpc-timeout` value such as `100m` or `5S`.
pub fn parse_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a duration as a `grpc-timeout` value (at most 8 digits).
pub fn format_timeout(d: Duration) -> String {
    if d.as_nanos() < 100_000_000 {
        format!("{}n", d.as_nanos())
    } else if d.as_micros() < 100_000_000 {
        format!("{}u", d.as_micros())
    } else if d.as_millis() < 100_000_000 {
        format!("{}m", d.as_millis())
    } else {
        format!("{}S", d.as_secs().min(99_999_999))
    }
}

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Trailers (or trailers-only headers) that report `result`.
pub fn status_headers(result: Result<(), &Error>, headers: &mut HeaderMap) {
    match result {
        Ok(()) => {
            headers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
        }
        Err(e) => {
            let code = e.grpc_code() as i32;
            headers.insert(GRPC_STATUS, HeaderValue::from(code));
            let msg = utf8_percent_encode(&e.detail, GRPC_MESSAGE).to_string();
            if let Ok(v) = HeaderValue::from_str(&msg) {
                headers.insert("grpc-message", v);
            }
            let json = utf8_percent_encode(&e.to_json(), GRPC_MESSAGE).to_string();
            if let Ok(v) = HeaderValue::from_str(&json) {
                headers.insert("micro-error", v);
            }
            if let Ok(v) = HeaderValue::from_str(&super::status::details_bin(e)) {
                headers.insert("grpc-status-details-bin", v);
            }
        }
    }
}

/// Reads a gRPC status from trailers or trailers-only headers; `None` if no status is present.
pub fn status_from_headers(headers: &HeaderMap, peer: &str) -> Option<Result<(), Error>> {
    let status = headers.get("grpc-status")?;
    let code = status.to_str().ok().and_then(|s| s.parse::<i32>().ok()).unwrap_or(2);
    if code == 0 {
        return Some(Ok(()));
    }
    if let Some(json) = headers.get("micro-error").and_then(|v| v.to_str().ok()) {
        let json = percent_decode_str(json).decode_utf8_lossy();
        if let Some(err) = Error::from_json(&json) {
            return Some(Err(err));
        }
    }
    let msg = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| percent_decode_str(m).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    Some(Err(Error::from_grpc(peer, GrpcCode::from_i32(code), &msg)))
}

/// The response of a streaming call: its body, `None` for a trailers-only success, or its error.
pub(crate) type ResponseFuture = futures_util::future::BoxFuture<'static, Result<Option<StreamBody>, Error>>;

/// The error of a [`StreamBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body of gRPC frames from any transport (an HTTP/2 stream, a NATS subscription, ...).
pub type StreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Any body as a [`StreamBody`].
pub fn stream_body<B>(body: B) -> StreamBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    body.map_err(Into::into).boxed_unsync()
}

/// A typed stream of messages read from an HTTP body of gRPC frames.
///
/// On the server it carries a client's stream of requests; on the client a server's stream of
/// replies, whose end is checked against the status trailer (an error status becomes the last item).
pub struct Streaming<M> {
    pending: Option<ResponseFuture>,
    body: Option<StreamBody>,
    decoder: FrameDecoder,
    codec: Codec,
    max: usize,
    peer: Option<String>,
    /// The stream's failure, reported once every message before it is out.
    status: Option<Error>,
    _m: PhantomData<fn() -> M>,
}

impl<M> std::fmt::Debug for Streaming<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming").field("codec", &self.codec).finish()
    }
}

impl<M: Decode> Streaming<M> {
    /// A stream of requests arriving at a server.
    pub(crate) fn server(body: StreamBody, codec: Codec, max: usize, encoding: Encoding) -> Self {
        Streaming {
            pending: None,
            body: Some(body),
            decoder: FrameDecoder::with_encoding(encoding),
            codec,
            max,
            peer: None,
            status: None,
            _m: PhantomData,
        }
    }

    /// A stream of replies arriving at a client from `peer`, once `response` yields the body; its
    /// trailers hold the call's status.
    pub(crate) fn client(response: ResponseFuture, codec: Codec, max: usize, peer: String) -> Self {
        Streaming {
            pending: Some(response),
            body: None,
            decoder: FrameDecoder::new(),
            codec,
            max,
            peer: Some(peer),
            status: None,
            _m: PhantomData,
        }
    }

    /// The next message; `Ok(None)` at the clean end of the stream.
    pub async fn message(&mut self) -> Result<Option<M>, Error> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await.transpose()
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<M, Error>>> {
        if let Some(pending) = self.pending.as_mut() {
            let res = ready!(pending.as_mut().poll(cx));
            self.pending = None;
            match res {
                Ok(Some(body)) => self.body = Some(body),
                Ok(None) => return Poll::Ready(None),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        loop {
            match self.decoder.next_message(self.max) {
                Ok(Some(bytes)) => return Poll::Ready(Some(M::decode(self.codec, bytes))),
                Ok(None) => {}
                Err(e) => {
                    self.body = None;
                    self.decoder = FrameDecoder::new();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let Some(body) = self.body.as_mut() else {
                // Every whole message is out; what is left is the end of the stream.
                if self.decoder.has_partial() {
                    self.decoder = FrameDecoder::new();
                    return Poll::Ready(Some(Err(Error::bad_request(super::ID, "stream ended inside a gRPC frame"))));
                }
                return Poll::Ready(self.status.take().map(Err));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.decoder.push(data),
                    Err(frame) => {
                        self.body = None;
                        if let Some(peer) = &self.peer {
                            let trailers = frame.into_trailers().unwrap_or_default();
                            self.status = match status_from_headers(&trailers, peer) {
                                Some(Ok(())) => None,
                                Some(Err(e)) => Some(e),
                                None => Some(Error::internal_server_error(
                                    peer.clone(),
                                    "stream ended without a gRPC status",
                                )),
                            };
                        }
                    }
                },
                Some(Err(e)) => {
                    self.body = None;
                    self.decoder = FrameDecoder::new();
                    // A body that decodes a protocol (gRPC-Web text) fails with the error itself.
                    let e = match e.downcast::<Error>() {
                        Ok(e) => return Poll::Ready(Some(Err(*e))),
                        Err(e) => e,
                    };
                    let id = self.peer.clone().unwrap_or_else(|| crate::error::SERVER_ID.into());
                    return Poll::Ready(Some(Err(Error::new(id, 499, format!("stream broken: {e}")))));
                }
                None => {
                    self.body = None;
                    if let Some(peer) = &self.peer {
                        self.status =
                            Some(Error::internal_server_error(peer.clone(), "stream ended without a gRPC status"));
                    }
                }
            }
        }
    }
}

impl<M: Decode> Stream for Streaming<M> {
    type Item = Result<M, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_message(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_trip() {
        for s in ["100m", "5S", "1H", "2M", "300u", "7n"] {
            let d = parse_timeout(s).unwrap();
            assert_eq!(parse_timeout(&format_timeout(d)), Some(d), "{s}");
        }
        assert_eq!(parse_timeout("5"), None);
        assert_eq!(parse_timeout("x5S"), None);
        assert_eq!(parse_timeout("123456789S"), None);
    }

    #[test]
    fn decoder_splits_and_rejects() {
        let mut d = FrameDecoder::new();
        d.push(Bytes::from_static(&[0, 0, 0, 0, 2, b'h']));
        assert_eq!(d.next_message(10).unwrap(), None);
        d.push(Bytes::from_static(&[b'i', 0, 0, 0, 0, 0]));
        assert_eq!(d.next_message(10).unwrap().unwrap(), Bytes::from_static(b"hi"));
        assert_eq!(d.next_message(10).unwrap().unwrap(), Bytes::new());
        d.push(Bytes::from_static(&[0, 0, 0, 1, 0]));
        assert_eq!(d.next_message(10).unwrap_err().code, 413);
        assert_eq!(unframe_one(Bytes::from_static(&[0, 0, 0]), 10).unwrap_err().code, 400);
        assert_eq!(unframe_one(Bytes::from_static(&[0, 0, 0, 0, 3, 1]), 10).unwrap_err().code, 400);
        assert_eq!(unframe_one(Bytes::from_static(&[1, 0, 0, 0, 0]), 10).unwrap_err().code, 500);
        assert_eq!(unframe_one(Bytes::from_static(&[2, 0, 0, 0, 0]), 10).unwrap_err().code, 400);
        let big = vec![7u8; 4000];
        let packed = frame_encoded(&big, Encoding::Gzip);
        assert_eq!(packed[0], 1);
        assert_eq!(unframe_one_encoded(packed.clone(), 4000, Encoding::Gzip).unwrap(), &big[..]);
        assert_eq!(unframe_one_encoded(packed, 3999, Encoding::Gzip).unwrap_err().code, 413);
    }

    #[test]
    fn status_round_trip() {
        let err = Error::not_found("svc", "no user ünïcode 100%");
        let mut h = HeaderMap::new();
        status_headers(Err(&err), &mut h);
        assert_eq!(h["grpc-status"], "5");
        assert_eq!(status_from_headers(&h, "peer").unwrap().unwrap_err(), err);
        h.remove("micro-error");
        let e = status_from_headers(&h, "peer").unwrap().unwrap_err();
        assert_eq!((e.code, e.detail.as_str(), e.id.as_str()), (404, "no user ünïcode 100%", "peer"));
    }
}
