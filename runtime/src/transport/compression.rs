//! Message compression: gzip, the one encoding every gRPC, gRPC-Web and Connect peer speaks.
//!
//! The encoding of what a peer sends is named by `grpc-encoding` (gRPC, gRPC-Web),
//! `Content-Encoding` (Connect unary) or `Connect-Content-Encoding` (Connect streams); what it
//! accepts back by the matching `*-accept-encoding` header. Replies are compressed only for peers
//! that accept gzip and only from [`MIN_COMPRESS`] bytes up, below which gzip costs more than it
//! saves. A compressed message is held to the message size limit once inflated: a small bomb
//! cannot make the server allocate more than the limit. The codec is `flate2` on its pure-Rust
//! backend.

use std::io::{Read, Write};

use bytes::Bytes;

use crate::Error;

/// Replies shorter than this are sent as they are.
pub const MIN_COMPRESS: usize = 1024;

/// The encodings this side speaks, for `*-accept-encoding` headers.
pub const ACCEPT: &str = "gzip";

/// A message encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As is.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
}

impl Encoding {
    /// The encoding a header value names: `None` for one this side does not speak.
    pub fn parse(value: Option<&str>) -> Option<Encoding> {
        match value.map(str::trim) {
            None | Some("") | Some("identity") => Some(Encoding::Identity),
            Some(v) if v.eq_ignore_ascii_case("gzip") => Some(Encoding::Gzip),
            Some(_) => None,
        }
    }

    /// The encoding to reply with, from the peer's accept list (`gzip, br;q=1`).
    pub fn accepted(list: Option<&str>) -> Encoding {
        let gzip = list.is_some_and(|l| {
            l.split(',').any(|e| {
                let mut parts = e.split(';');
                let named = parts.next().is_some_and(|n| n.trim().eq_ignore_ascii_case("gzip"));
                // `gzip;q=0` refuses it (RFC 9110 §12.4.2).
                let refused = parts.any(|p| {
                    p.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
                });
                named && !refused
            })
        });
        if gzip {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
        }
    }

    /// Whether a reply of `len` bytes is compressed with this encoding.
    pub fn compresses(self, len: usize) -> bool {
        self == Encoding::Gzip && len >= MIN_COMPRESS
    }
}

/// The error for an encoding this side does not speak (gRPC `UNIMPLEMENTED`).
pub fn unsupported(name: &str) -> Error {
    Error::new(super::ID, 501, format!("unsupported compression {name:?} (this server speaks gzip and identity)"))
}

/// gzip-compresses `data`.
pub fn compress(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 32), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// Inflates gzip `data` of at most `max` bytes once inflated: beyond it the message is refused
/// (413, gRPC `RESOURCE_EXHAUSTED`) without inflating the rest; data that is not gzip is a 400.
pub fn decompress(data: &[u8], max: usize) -> Result<Bytes, Error> {
    let mut out = Vec::with_capacity((data.len() * 4).min(max) + 1);
    let mut dec = flate2::read::GzDecoder::new(data).take(max as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| Error::bad_request(super::ID, format!("the message is not valid gzip: {e}")))?;
    if out.len() > max {
        return Err(Error::too_large(super::ID, format!("the message inflates to more than the limit of {max} bytes")));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let data = vec![b'a'; 100_000];
        let packed = compress(&data);
        assert!(packed.len() < 1000);
        assert_eq!(decompress(&packed, 100_000).unwrap(), &data[..]);
        assert_eq!(decompress(&packed, 99_999).unwrap_err().code, 413);
        assert_eq!(decompress(b"not gzip", 10).unwrap_err().code, 400);
        assert_eq!(Encoding::parse(Some("br")), None);
        assert_eq!(Encoding::parse(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::accepted(Some("br, gzip;q=0.5")), Encoding::Gzip);
        assert_eq!(Encoding::accepted(Some("br")), Encoding::Identity);
        assert_eq!(Encoding::accepted(Some("gzip;q=0, br")), Encoding::Identity);
    }
}
