//! The gRPC-Web protocol's wire details (grpc/grpc `doc/PROTOCOL-WEB.md`): gRPC's frames in the
//! body both ways, the status as a last frame flagged `0x80` holding the trailers as HTTP/1
//! header lines, and the `-text` variants whose bodies are base64.
//!
//! A base64 body may be several padded chunks one after another (a streaming peer encodes each
//! chunk as it goes), so [`TextDecoder`] decodes group by group, and replies are encoded the same
//! way: each chunk padded on its own.

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;

use crate::Error;

/// The flag of the frame that carries the trailers.
pub const FLAG_TRAILERS: u8 = 0x80;

/// The frame that ends a gRPC-Web reply: the status of `result` as header lines.
pub fn trailer_frame(result: Result<(), &Error>) -> Bytes {
    let mut trailers = HeaderMap::new();
    super::grpc::status_headers(result, &mut trailers);
    trailers_frame(&trailers)
}

/// Trailers as a gRPC-Web trailer frame (names lower case, `name: value\r\n` each).
pub fn trailers_frame(trailers: &HeaderMap) -> Bytes {
    let len: usize = trailers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(FLAG_TRAILERS);
    b.put_u32(len as u32);
    for (k, v) in trailers {
        b.put_slice(k.as_str().as_bytes());
        b.put_slice(b": ");
        b.put_slice(v.as_bytes());
        b.put_slice(b"\r\n");
    }
    b.freeze()
}

/// Bytes as padded base64, for `-text` replies.
pub fn encode_text(data: &[u8]) -> Bytes {
    Bytes::from(base64::engine::general_purpose::STANDARD.encode(data))
}

/// Decodes a `-text` body as it arrives: whole 4-character groups, padded chunks one after
/// another allowed, whitespace ignored.
#[derive(Debug, Default)]
pub struct TextDecoder {
    pending: Vec<u8>,
}

impl TextDecoder {
    /// Decodes what `data` completes; what is left of a group waits for the next call.
    pub fn push(&mut self, data: &[u8]) -> Result<Bytes, Error> {
        self.pending.extend(data.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        let whole = self.pending.len() / 4 * 4;
        let mut out = Vec::with_capacity(whole / 4 * 3);
        let mut start = 0;
        // Split after each padded group: each run up to one is valid base64 on its own.
        while start < whole {
            let end = (start..whole).step_by(4).find(|&g| self.pending[g + 3] == b'=').map_or(whole, |g| g + 4);
            base64::engine::general_purpose::STANDARD.decode_vec(&self.pending[start..end], &mut out).map_err(|e| {
                Error::bad_request(super::ID, format!("the gRPC-Web text body is not valid base64: {e}"))
            })?;
            start = end;
        }
        self.pending.drain(..whole);
        Ok(Bytes::from(out))
    }

    /// Whether characters are left that do not make a whole group.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_chunks_and_trailers() {
        let mut d = TextDecoder::default();
        let two = [encode_text(b"ab"), encode_text(b"cde")].concat();
        assert_eq!(&d.push(&two[..3]).unwrap()[..], b"");
        assert_eq!(&d.push(&two[3..]).unwrap()[..], b"abcde");
        assert!(!d.has_partial());
        assert_eq!(d.push(b"!!!!").unwrap_err().code, 400);
        let t = trailer_frame(Ok(()));
        assert_eq!(&t[..], b"\x80\x00\x00\x00\x10grpc-status: 0\r\n");
    }
}
