//! Call metadata: a string map that travels in request and response headers.
//!
//! Metadata wraps the request's own [`http::HeaderMap`], so reading it on the server costs no copy.
//! Keys are case-insensitive (HTTP/2 lowercases them). Transport headers (`content-type`, `te`,
//! `grpc-*`, `micro-error`, ...) are not metadata and are hidden from iteration.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// A case-insensitive map of string keys to string values.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    headers: HeaderMap,
}

/// Headers that belong to the transport, never to metadata.
pub(crate) fn is_transport_header(name: &str) -> bool {
    name.starts_with("grpc-")
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
