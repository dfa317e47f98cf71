//! Call metadata: a string map that travels in request and response headers.
//!
//! Metadata wraps the request's own [`http::HeaderMap`], so reading it on the server costs no copy.
//! Keys are case-insensitive (HTTP/2 lowercases them). Transport headers (`content-type`, `te`,
//! `grpc-*`, `micro-error`, ...) are not metadata and are hidden from iteration.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::Error;

/// The id of errors about metadata.
pub const ID: &str = "go.micro.metadata";

/// The metadata key (HTTP header) that carries credentials (`Bearer <token>`).
pub const AUTHORIZATION: &str = "authorization";

/// The metadata key of a micro call's timeout, as a duration (`5s`); gRPC calls use `grpc-timeout`.
pub const TIMEOUT: &str = "timeout";

/// A case-insensitive map of string keys to string values.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    headers: HeaderMap,
}

/// Headers that belong to the transport, never to metadata.
pub(crate) fn is_transport_header(name: &str) -> bool {
    name.starts_with("grpc-")
        || name.starts_with("connect-")
        || name.starts_with(':')
        || matches!(
            name,
            "content-type"
                | "content-length"
                | "te"
                | "host"
                | "connection"
                | "transfer-encoding"
                | "accept-encoding"
                | "content-encoding"
                | "x-grpc-web"
                | "user-agent"
                | "micro-error"
                | "upgrade"
                | "keep-alive"
        )
}

/// A header name as Go writes it: `micro-topic` → `Micro-Topic` (brokers' message headers, the
/// gateway's events).
pub fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Metadata over existing headers.
    pub fn from_headers(headers: HeaderMap) -> Self {
        Metadata { headers }
    }

    /// The value of a key, if present and valid UTF-8.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }

    /// Sets a key; keys or values that cannot travel in a header are ignored and reported as `false`.
    pub fn insert(&mut self, key: &str, value: &str) -> bool {
        match (HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()), HeaderValue::from_str(value)) {
            (Ok(k), Ok(v)) if !is_transport_header(k.as_str()) => {
                self.headers.insert(k, v);
                true
            }
            _ => false,
        }
    }

    /// Inserts a header as it is (no parsing again), unless it is a transport header.
    pub fn insert_header(&mut self, key: &HeaderName, value: &HeaderValue) -> bool {
        if is_transport_header(key.as_str()) {
            return false;
        }
        self.headers.insert(key.clone(), value.clone());
        true
    }

    /// Removes a key and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.headers.remove(key).and_then(|v| v.to_str().ok().map(str::to_string))
    }

    /// Every key and value, transport headers left out.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().filter_map(|(k, v)| {
            let k = k.as_str();
            if is_transport_header(k) {
                return None;
            }
            v.to_str().ok().map(|v| (k, v))
        })
    }

    /// Number of metadata entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there is no metadata.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies every entry into request or response headers.
    pub(crate) fn write_to(&self, headers: &mut HeaderMap) {
        for (k, v) in self.headers.iter() {
            if !is_transport_header(k.as_str()) {
                headers.append(k.clone(), v.clone());
            }
        }
    }

    /// The underlying headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Metadata {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut md = Metadata::new();
        for (k, v) in iter {
            md.insert(k.as_ref(), v.as_ref());
        }
        md
    }
}

/// Parses a duration (as options and the [`TIMEOUT`] header give them): bare seconds, or a number with `ms`, `s`, `m` or `h`.
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let s = s.trim();
    let bad = || Error::bad_request(ID, format!("invalid duration {s:?} (use 30, 500ms, 5s, 1m)"));
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_transport_headers_and_ignores_case() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("x-user", HeaderValue::from_static("ann"));
        h.insert("grpc-timeout", HeaderValue::from_static("1S"));
        let md = Metadata::from_headers(h);
        assert_eq!(md.iter().collect::<Vec<_>>(), vec![("x-user", "ann")]);
        assert_eq!(md.get("X-User"), Some("ann"));
        let mut md = Metadata::new();
        assert!(md.insert("Trace-Id", "1"));
        assert!(!md.insert("content-type", "x"));
        assert!(!md.insert("bad key", "x"));
        assert_eq!(md.get("trace-id"), Some("1"));
    }
}
