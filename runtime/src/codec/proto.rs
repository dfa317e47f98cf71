//! The protobuf codec (prost).

use bytes::BytesMut;

use super::Message;
use crate::Error;

/// Appends the protobuf encoding of `msg` to `buf`.
pub fn encode_into<M: Message>(msg: &M, buf: &mut BytesMut) -> Result<(), Error> {
    msg.encode(buf).map_err(|e| Error::internal_server_error(super::ID, format!("protobuf encode: {e}")))
}

/// Decodes protobuf bytes.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, Error> {
    M::decode(bytes).map_err(|e| Error::bad_request(super::ID, format!("invalid protobuf message: {e}")))
}
