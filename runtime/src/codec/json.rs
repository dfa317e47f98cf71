//! The JSON codec: the proto3 JSON mapping (lowerCamelCase out, both names in, 64-bit integers as
//! strings, enums by name, bytes as base64, well-known types in their special forms).

use bytes::{BufMut, BytesMut};

use super::Message;
use crate::Error;

/// Appends the JSON encoding of `msg` to `buf`.
pub fn encode_into<M: Message>(msg: &M, buf: &mut BytesMut) -> Result<(), Error> {
    serde_json::to_writer(buf.writer(), msg)
        .map_err(|e| Error::internal_server_error("go.micro.codec", format!("json encode: {e}")))
}

/// Decodes JSON; an empty body is the empty message.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(M::default());
    }
    serde_json::from_slice(bytes).map_err(|e| Error::bad_request("go.micro.codec", format!("invalid JSON: {e}")))
}
