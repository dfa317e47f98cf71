//! The protocols a call may arrive in on the server's one port, and the translation of each to
//! and from what handlers speak (gRPC frames and trailers, or one bare message).
//!
//! | wire | request `Content-Type` | status travels in |
//! |---|---|---|
//! | gRPC | `application/grpc[+proto\|+json]` | HTTP/2 trailers |
//! | gRPC-Web | `application/grpc-web[+proto\|+json]`, `application/grpc-web-text[+proto]` | a last `0x80` frame |
//! | Connect unary | `application/proto\|json` with `Connect-Protocol-Version`, or `GET ?encoding=…&message=…` | HTTP status + JSON |
//! | Connect streams | `application/connect+proto\|+json` | a last end-of-stream envelope |
//! | micro HTTP | `application/json`, `application/protobuf`, ... | HTTP status + Go Micro error JSON |
//!
//! Every wire takes gzip both ways ([`crate::transport::compression`]) and the same message limit
//! (after inflating). The handlers see no difference: streams always get gRPC frames, unary
//! handlers one message.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::Frame;

use crate::codec::{Codec, Protocol};
use crate::transport::compression::{self, Encoding};
use crate::transport::connect;
use crate::transport::grpc::{self, FrameDecoder};
use crate::transport::grpc_web::{self, TextDecoder};
use crate::transport::Body;
use crate::Error;

/// The protocol of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// gRPC over HTTP/2.
    Grpc,
    /// gRPC-Web; `text` for the base64 variants.
    GrpcWeb {
        /// Whether bodies are base64.
        text: bool,
    },
    /// A Connect unary call (POST or GET).
    Connect,
    /// A Connect stream.
    ConnectStream,
    /// micro's plain HTTP: the body is the message.
    Http,
}

/// What a call's headers say about how to read it and answer it.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) wire: Wire,
    pub(crate) codec: Codec,
    /// How the peer compressed what it sends.
    pub(crate) request_encoding: Encoding,
    /// How replies may be compressed.
    pub(crate) reply_encoding: Encoding,
    /// A Connect `GET` call's message (from its query).
    pub(crate) get: Option<Bytes>,
}

const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
const CONNECT_CONTENT_ENCODING: HeaderName = HeaderName::from_static("connect-content-encoding");
const CONNECT_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("connect-accept-encoding");
const CONNECT_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("connect-protocol-version");

/// The headers that name each wire's compression: what is sent, what is accepted.
fn encoding_headers(wire: Wire) -> (HeaderName, HeaderName) {
    match wire {
        Wire::Grpc | Wire::GrpcWeb { .. } => (GRPC_ENCODING, GRPC_ACCEPT_ENCODING),
        Wire::ConnectStream => (CONNECT_CONTENT_ENCODING, CONNECT_ACCEPT_ENCODING),
        Wire::Connect | Wire::Http => (http::header::CONTENT_ENCODING, http::header::ACCEPT_ENCODING),
    }
}

/// The wire and codec a `Content-Type` names.
fn from_content_type(ct: &str, headers: &HeaderMap) -> Option<(Wire, Codec)> {
    let ct = ct.split(';').next().unwrap_or("").trim();
    let ct: std::borrow::Cow<'_, str> =
        if ct.bytes().any(|b| b.is_ascii_uppercase()) { ct.to_ascii_lowercase().into() } else { ct.into() };
    let sub = ct.strip_prefix("application/")?;
    let codec_of = |s: Option<&str>| match s {
        None | Some("proto") => Some(Codec::Proto),
        Some("json") => Some(Codec::Json),
        Some(_) => None,
    };
    let (base, suffix) = sub.split_once('+').map_or((sub, None), |(b, s)| (b, Some(s)));
    Some(match base {
        "grpc" => (Wire::Grpc, codec_of(suffix)?),
        "grpc-web" => (Wire::GrpcWeb { text: false }, codec_of(suffix)?),
        "grpc-web-text" => (Wire::GrpcWeb { text: true }, codec_of(suffix)?),
        "connect" => (Wire::ConnectStream, codec_of(Some(suffix?))?),
        _ if suffix.is_none() && headers.contains_key(CONNECT_PROTOCOL_VERSION) => match base {
            "proto" => (Wire::Connect, Codec::Proto),
            "json" => (Wire::Connect, Codec::Json),
            _ => return None,
        },
        _ => match Codec::from_content_type(&ct)? {
            (codec, Protocol::Http) => (Wire::Http, codec),
            (codec, Protocol::Grpc) => (Wire::Grpc, codec),
        },
    })
}

/// The wire a request most likely speaks, to refuse it in kind.
pub(crate) fn guess_of(headers: &HeaderMap) -> Wire {
    guess(header(headers, &http::header::CONTENT_TYPE).unwrap_or(""), headers)
}

/// The wire an unreadable request most likely speaks, to answer it in kind.
fn guess(ct: &str, headers: &HeaderMap) -> Wire {
    let ct = ct.to_ascii_lowercase();
    if ct.starts_with("application/grpc-web-text") {
        Wire::GrpcWeb { text: true }
    } else if ct.starts_with("application/grpc-web") {
        Wire::GrpcWeb { text: false }
    } else if ct.starts_with("application/grpc") {
        Wire::Grpc
    } else if ct.starts_with("application/connect+") {
        Wire::ConnectStream
    } else if headers.contains_key(CONNECT_PROTOCOL_VERSION) {
        Wire::Connect
    } else {
        Wire::Http
    }
}

impl Call {
    /// Reads a call's protocol, codec and compression from its method, query and headers; the
    /// error comes with the wire to answer it in.
    pub(crate) fn of(method: &http::Method, uri: &http::Uri, headers: &HeaderMap) -> Result<Call, (Wire, Error)> {
        if method == http::Method::GET {
            if let Some(q) = uri.query().filter(|q| connect::is_get_query(q)) {
                let get = connect::parse_get(q).map_err(|e| (Wire::Connect, e))?;
                let reply_encoding = Encoding::accepted(header(headers, &http::header::ACCEPT_ENCODING));
                let (codec, request_encoding) = (get.codec, get.compression);
                return Ok(Call {
                    wire: Wire::Connect,
                    codec,
                    request_encoding,
                    reply_encoding,
                    get: Some(get.message),
                });
            }
        }
        let ct = header(headers, &http::header::CONTENT_TYPE).unwrap_or("");
        if ct == "application/grpc" && !headers.contains_key(GRPC_ENCODING) {
            // The common case, with nothing more to read.
            let reply_encoding = Encoding::accepted(header(headers, &GRPC_ACCEPT_ENCODING));
            let (request_encoding, get) = (Encoding::Identity, None);
            return Ok(Call { wire: Wire::Grpc, codec: Codec::Proto, request_encoding, reply_encoding, get });
        }
        let Some((wire, codec)) = from_content_type(ct, headers) else {
            let detail = if ct.is_empty() {
                "missing Content-Type (use application/json, application/proto or application/grpc)".to_string()
            } else {
                format!("unsupported Content-Type {ct:?} (use application/json, application/proto, application/grpc, application/grpc-web or application/connect+proto)")
            };
            return Err((guess(ct, headers), Error::new("", 415, detail)));
        };
        if wire == Wire::Connect && header(headers, &CONNECT_PROTOCOL_VERSION) != Some(connect::PROTOCOL_VERSION) {
            return Err((wire, Error::bad_request("", "Connect-Protocol-Version must be 1")));
        }
        let (sent, accepted) = encoding_headers(wire);
        let request_encoding = Encoding::parse(header(headers, &sent))
            .ok_or_else(|| (wire, compression::unsupported(header(headers, &sent).unwrap_or(""))))?;
        let reply_encoding = Encoding::accepted(header(headers, &accepted));
        Ok(Call { wire, codec, request_encoding, reply_encoding, get: None })
    }

    /// The protocol unary handlers are asked to encode their reply in: gRPC frames only where
    /// the reply goes out as the handler frames it.
    pub(crate) fn handler_protocol(&self) -> Protocol {
        if self.wire == Wire::Grpc && self.reply_encoding == Encoding::Identity {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    }

    /// The largest unary body to read for a message limit of `max`.
    pub(crate) fn body_limit(&self, max: usize) -> usize {
        match self.wire {
            Wire::GrpcWeb { text: true } => (max + 5).div_ceil(3) * 4 + 4,
            Wire::Grpc | Wire::GrpcWeb { .. } | Wire::ConnectStream => max + 5,
            Wire::Connect | Wire::Http => max,
        }
    }

    /// A whole unary body as the one message it holds, decoded and inflated.
    pub(crate) fn unary_message(&mut self, body: Bytes, max: usize) -> Result<Bytes, Error> {
        if let Some(message) = self.get.take() {
            return inflate(message, self.request_encoding, max);
        }
        match self.wire {
            Wire::GrpcWeb { text: true } => {
                let mut text = TextDecoder::default();
                let bytes = text.push(&body)?;
                if text.has_partial() {
                    return Err(Error::bad_request(crate::transport::ID, "the gRPC-Web text body ends inside a group"));
                }
                grpc::unframe_one_encoded(bytes, max, self.request_encoding)
            }
            Wire::Grpc | Wire::GrpcWeb { .. } | Wire::ConnectStream => {
                grpc::unframe_one_encoded(body, max, self.request_encoding)
            }
            Wire::Connect | Wire::Http => inflate(body, self.request_encoding, max),
        }
    }

    /// The content type of replies.
    fn content_type(&self) -> &'static str {
        match (self.wire, self.codec) {
            (Wire::Grpc, c) => c.content_type(Protocol::Grpc),
            (Wire::GrpcWeb { text: false }, Codec::Proto) => "application/grpc-web+proto",
            (Wire::GrpcWeb { text: false }, Codec::Json) => "application/grpc-web+json",
            (Wire::GrpcWeb { text: true }, Codec::Proto) => "application/grpc-web-text+proto",
            (Wire::GrpcWeb { text: true }, Codec::Json) => "application/grpc-web-text+json",
            (Wire::ConnectStream, Codec::Proto) => "application/connect+proto",
            (Wire::ConnectStream, Codec::Json) => "application/connect+json",
            (Wire::Connect, Codec::Proto) => "application/proto",
            (Wire::Connect, Codec::Json) => "application/json",
            (Wire::Http, c) => c.content_type(Protocol::Http),
        }
    }

    /// Whether the peer spoke of compression, so replies say what this side accepts.
    fn negotiating(&self) -> bool {
        self.request_encoding != Encoding::Identity || self.reply_encoding != Encoding::Identity
    }

    /// A response with this call's content type, and the compression headers of `encoding`
    /// (what this side accepts too, when `advertise`).
    fn response(&self, body: Body, encoding: Encoding) -> http::Response<Body> {
        self.response_advertising(body, encoding, self.negotiating())
    }

    fn response_advertising(&self, body: Body, encoding: Encoding, advertise: bool) -> http::Response<Body> {
        let mut resp = http::Response::new(body);
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(self.content_type()));
        if self.wire != Wire::Http {
            let (sent, accepted) = encoding_headers(self.wire);
            if advertise {
                h.insert(accepted, HeaderValue::from_static(compression::ACCEPT));
            }
            if encoding != Encoding::Identity {
                h.insert(sent, HeaderValue::from_static(encoding.name()));
            }
        } else if encoding != Encoding::Identity {
            h.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static(encoding.name()));
        }
        if matches!(self.wire, Wire::Connect | Wire::Http) && self.reply_encoding != Encoding::Identity {
            h.insert(http::header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        resp
    }

    /// The answer to a unary call whose handler replied `reply` (in [`Call::handler_protocol`]).
    pub(crate) fn unary_reply(&self, reply: Bytes) -> http::Response<Body> {
        let compress = self.reply_encoding.compresses(reply.len());
        let encoding = if compress { self.reply_encoding } else { Encoding::Identity };
        match self.wire {
            Wire::Grpc => {
                let framed = match self.handler_protocol() {
                    Protocol::Grpc => reply,
                    Protocol::Http => grpc::frame_encoded(&reply, encoding),
                };
                let mut trailers = HeaderMap::with_capacity(1);
                grpc::status_headers(Ok(()), &mut trailers);
                self.response(Body::with_trailers(Some(framed), trailers), encoding)
            }
            Wire::GrpcWeb { .. } | Wire::ConnectStream => {
                // One message and the wire's last frame, in one buffer.
                let last = if self.wire == Wire::ConnectStream {
                    connect::end_stream(Ok(()))
                } else {
                    grpc_web::trailer_frame(Ok(()))
                };
                let mut body = BytesMut::with_capacity(5 + reply.len() + last.len());
                grpc::frame_encoded_into(&reply, encoding, &mut body);
                body.extend_from_slice(&last);
                let body = if self.wire == (Wire::GrpcWeb { text: true }) {
                    grpc_web::encode_text(&body)
                } else {
                    body.freeze()
                };
                self.response(Body::full(body), encoding)
            }
            Wire::Connect | Wire::Http => {
                let body = if compress { compression::compress(&reply) } else { reply };
                self.response(Body::full(body), encoding)
            }
        }
    }

    /// The answer to a streaming call whose handler answers with `body` (gRPC frames, then the
    /// status trailers).
    pub(crate) fn stream_reply(&self, body: Body) -> http::Response<Body> {
        let encoding = self.reply_encoding;
        if self.wire == Wire::Grpc && encoding == Encoding::Identity {
            return self.response(body, encoding);
        }
        let end = match self.wire {
            Wire::GrpcWeb { .. } => End::GrpcWeb,
            Wire::ConnectStream => End::Connect,
            _ => End::Trailers,
        };
        let text = self.wire == (Wire::GrpcWeb { text: true });
        let reframe = (encoding != Encoding::Identity).then(FrameDecoder::new);
        let translated = Translated { inner: body, end, text, reframe, encoding, done: false };
        self.response(Body::boxed(translated), encoding)
    }

    /// A streaming request body in the frames handlers read (base64 decoded for `-text`).
    pub(crate) fn stream_request(&self, body: hyper::body::Incoming) -> grpc::StreamBody {
        if self.wire != (Wire::GrpcWeb { text: true }) {
            return grpc::stream_body(body);
        }
        grpc::stream_body(TextBody { inner: body, text: TextDecoder::default() })
    }
}

/// A `-text` request body, decoded as it arrives; a group that is not base64 fails the stream
/// with that error.
struct TextBody {
    inner: hyper::body::Incoming,
    text: TextDecoder,
}

impl http_body::Body for TextBody {
    type Data = Bytes;
    type Error = grpc::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, grpc::BoxError>>> {
        let this = &mut *self;
        Poll::Ready(match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Some(this.text.push(&data).map(Frame::data).map_err(Into::into)),
                Err(frame) => Some(Ok(frame)),
            },
            Some(Err(e)) => Some(Err(e.into())),
            None => None,
        })
    }
}

/// The answer to a failed call, in its wire.
pub(crate) fn error_reply(wire: Wire, codec: Codec, err: &Error) -> http::Response<Body> {
    let call =
        Call { wire, codec, request_encoding: Encoding::Identity, reply_encoding: Encoding::Identity, get: None };
    match wire {
        Wire::Grpc => {
            let mut resp = call.response_advertising(Body::empty(), Encoding::Identity, true);
            grpc::status_headers(Err(err), resp.headers_mut());
            resp
        }
        Wire::GrpcWeb { text } => {
            let frame = grpc_web::trailer_frame(Err(err));
            let body = Body::full(if text { grpc_web::encode_text(&frame) } else { frame });
            let mut resp = call.response_advertising(body, Encoding::Identity, true);
            grpc::status_headers(Err(err), resp.headers_mut());
            resp
        }
        Wire::ConnectStream => {
            call.response_advertising(Body::full(connect::end_stream(Err(err))), Encoding::Identity, true)
        }
        Wire::Connect => {
            let (status, body) = connect::unary_error(err);
            let mut resp = http::Response::new(Body::full(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp.headers_mut().insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static(compression::ACCEPT));
            resp
        }
        Wire::Http => {
            let mut resp = http::Response::new(Body::full(err.to_json()));
            *resp.status_mut() = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn inflate(body: Bytes, encoding: Encoding, max: usize) -> Result<Bytes, Error> {
    match encoding {
        Encoding::Identity if body.len() > max => Err(grpc::too_large(body.len(), max)),
        Encoding::Identity => Ok(body),
        Encoding::Gzip => compression::decompress(&body, max),
    }
}

/// How a translated stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// With HTTP/2 trailers, as the handler's body does.
    Trailers,
    /// With a gRPC-Web trailer frame.
    GrpcWeb,
    /// With a Connect end-of-stream envelope.
    Connect,
}

/// A handler's reply body in another wire: messages recompressed when asked, the trailers
/// turned into the wire's last frame, base64 for `-text`.
struct Translated {
    inner: Body,
    end: End,
    text: bool,
    /// Splits the handler's frames to compress them one by one.
    reframe: Option<FrameDecoder>,
    encoding: Encoding,
    done: bool,
}

impl Translated {
    fn data(&mut self, data: Bytes) -> Bytes {
        let data = match self.reframe.as_mut() {
            None => data,
            Some(decoder) => {
                decoder.push(data);
                let mut out = BytesMut::new();
                while let Ok(Some(message)) = decoder.next_message(usize::MAX >> 1) {
                    grpc::frame_encoded_into(&message, self.encoding, &mut out);
                }
                out.freeze()
            }
        };
        if self.text {
            grpc_web::encode_text(&data)
        } else {
            data
        }
    }

    fn last(&mut self, trailers: HeaderMap) -> Frame<Bytes> {
        let frame = match self.end {
            End::Trailers => return Frame::trailers(trailers),
            End::GrpcWeb => grpc_web::trailers_frame(&trailers),
            End::Connect => {
                let status = grpc::status_from_headers(&trailers, "").unwrap_or(Ok(()));
                connect::end_stream(status.as_ref().map(|_| ()))
            }
        };
        Frame::data(if self.text { grpc_web::encode_text(&frame) } else { frame })
    }
}

impl http_body::Body for Translated {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Poll::Ready(Some(Ok(Frame::data(this.data(data))))),
                Err(frame) => {
                    this.done = true;
                    let trailers = frame.into_trailers().unwrap_or_default();
                    Poll::Ready(Some(Ok(this.last(trailers))))
                }
            },
            Poll::Ready(None) => {
                // A body that ends without trailers ends without a status: say so in the wire.
                this.done = true;
                let mut trailers = HeaderMap::new();
                let err = Error::internal_server_error("", "the stream ended without a status");
                grpc::status_headers(Err(&err), &mut trailers);
                Poll::Ready(Some(Ok(this.last(trailers))))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ct: &str, extra: &[(&'static str, &'static str)]) -> Result<Call, (Wire, Error)> {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_str(ct).unwrap());
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_static(v));
        }
        Call::of(&http::Method::POST, &"/a.B/C".parse().unwrap(), &h)
    }

    #[test]
    fn content_types_name_wires() {
        let w = |ct: &str| call(ct, &[("connect-protocol-version", "1")]).map(|c| (c.wire, c.codec)).ok();
        assert_eq!(w("application/grpc"), Some((Wire::Grpc, Codec::Proto)));
        assert_eq!(w("application/grpc-web+json"), Some((Wire::GrpcWeb { text: false }, Codec::Json)));
        assert_eq!(w("application/grpc-web-text"), Some((Wire::GrpcWeb { text: true }, Codec::Proto)));
        assert_eq!(w("application/connect+proto"), Some((Wire::ConnectStream, Codec::Proto)));
        assert_eq!(w("application/json; charset=utf-8"), Some((Wire::Connect, Codec::Json)));
        assert_eq!(w("application/grpc-web+xml"), None);
        let plain = call("application/json", &[]).unwrap();
        assert_eq!(plain.wire, Wire::Http);
        let (wire, err) = call("application/grpc", &[("grpc-encoding", "br")]).unwrap_err();
        assert_eq!((wire, err.code), (Wire::Grpc, 501));
        let gz = call("application/connect+json", &[("connect-accept-encoding", "gzip")]).unwrap();
        assert_eq!(gz.reply_encoding, Encoding::Gzip);
        assert_eq!(call("application/proto", &[("connect-protocol-version", "2")]).unwrap_err().1.code, 400);
    }
}
