//! Codecs: how a message becomes bytes and back.
//!
//! Two codecs exist, chosen per request from the content type: protobuf ([`proto`]) and the proto3
//! JSON mapping ([`json`]). Generated messages implement both (prost for protobuf, pbjson-made serde
//! impls for JSON), so neither codec needs reflection at run time.

pub mod json;
pub mod proto;

use bytes::{BufMut, Bytes, BytesMut};

use crate::Error;

/// The id of the codecs' errors (a message that does not decode, or does not encode).
pub const ID: &str = "go.micro.codec";

/// What every message that crosses the wire implements; generated messages do.
pub trait Message:
    prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

impl<T> Message for T where
    T: prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

/// A message that knows the protobuf descriptors of its package (generated messages do), so
/// that tools can show its fields.
pub trait Described {
    /// The encoded `FileDescriptorSet` of the message's package and its imports.
    fn file_descriptor_set() -> &'static [u8];
}

/// What a received stream element decodes into: any [`Message`], or a [`RawMessage`].
pub trait Decode: Sized + Send + 'static {
    /// Decodes one message body.
    fn decode(codec: Codec, bytes: Bytes) -> Result<Self, Error>;
}

impl<M: Message> Decode for M {
    fn decode(codec: Codec, bytes: Bytes) -> Result<Self, Error> {
        codec.decode(&bytes)
    }
}

/// A message body kept as the bytes that arrived (JSON or protobuf, as the codec says).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawMessage(pub Bytes);

impl Decode for RawMessage {
    fn decode(_: Codec, bytes: Bytes) -> Result<Self, Error> {
        Ok(RawMessage(bytes))
    }
}

/// A wire encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Protocol buffers binary encoding.
    Proto,
    /// The proto3 JSON mapping.
    Json,
}

/// The wire protocol a request arrived with, which decides framing and error reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: length-prefixed frames, status in trailers.
    Grpc,
    /// Plain HTTP: the body is the message, errors are HTTP statuses with error JSON.
    Http,
}

impl Codec {
    /// The codec and protocol for a content type, or `None` for one the runtime does not speak.
    ///
    /// JSON: `application/json`, `application/json-rpc`, `application/grpc+json`.
    /// Protobuf: `application/protobuf`, `application/proto`, `application/x-protobuf`,
    /// `application/octet-stream`, `application/grpc`, `application/grpc+proto`.
    pub fn from_content_type(ct: &str) -> Option<(Codec, Protocol)> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        let ct = ct.strip_prefix("application/")?;
        Some(match ct {
            "grpc" | "grpc+proto" => (Codec::Proto, Protocol::Grpc),
            "grpc+json" => (Codec::Json, Protocol::Grpc),
            "json" | "json-rpc" => (Codec::Json, Protocol::Http),
            "protobuf" | "proto" | "x-protobuf" | "octet-stream" => (Codec::Proto, Protocol::Http),
            _ => return None,
        })
    }

    /// The content type for this codec on a protocol.
    pub fn content_type(self, protocol: Protocol) -> &'static str {
        match (self, protocol) {
            (Codec::Proto, Protocol::Grpc) => "application/grpc",
            (Codec::Json, Protocol::Grpc) => "application/grpc+json",
            (Codec::Proto, Protocol::Http) => "application/protobuf",
            (Codec::Json, Protocol::Http) => "application/json",
        }
    }

    /// Appends the encoded message to `buf`.
    pub fn encode_into<M: Message>(self, msg: &M, buf: &mut BytesMut) -> Result<(), Error> {
        match self {
            Codec::Proto => proto::encode_into(msg, buf),
            Codec::Json => json::encode_into(msg, buf),
        }
    }

    /// Encodes a message.
    pub fn encode<M: Message>(self, msg: &M) -> Result<Bytes, Error> {
        let mut buf = BytesMut::new();
        self.encode_into(msg, &mut buf)?;
        Ok(buf.freeze())
    }

    /// Encodes a message as one gRPC frame (flag byte, big-endian length, message).
    pub fn encode_framed<M: Message>(self, msg: &M) -> Result<Bytes, Error> {
        let mut buf = BytesMut::with_capacity(5 + msg.encoded_len());
        self.encode_framed_into(msg, &mut buf)?;
        Ok(buf.freeze())
    }

    /// Appends a message to `buf` as one gRPC frame.
    pub fn encode_framed_into<M: Message>(self, msg: &M, buf: &mut BytesMut) -> Result<(), Error> {
        let start = buf.len();
        buf.put_slice(&[0; 5]);
        self.encode_into(msg, buf)?;
        let len = (buf.len() - start - 5) as u32;
        buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Decodes a message; malformed input is a 400 error naming what was wrong.
    pub fn decode<M: Message>(self, bytes: &[u8]) -> Result<M, Error> {
        match self {
            Codec::Proto => proto::decode(bytes),
            Codec::Json => json::decode(bytes),
        }
    }
}
