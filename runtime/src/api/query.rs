//! Query strings and `application/x-www-form-urlencoded` bodies → a JSON object, as the gateway
//! merges them into requests: `a=1&b=x+y&a=2` → `{"a": ["1", "2"], "b": "x y"}`.
//!
//! Decoding follows the WHATWG URL standard's `application/x-www-form-urlencoded` parser: `+` is a
//! space, `%XX` escapes are decoded (a `%` not followed by two hex digits stays as it is), and
//! bytes that are not UTF-8 become U+FFFD. Any input decodes; nothing panics.

use serde_json::{Map, Value};

/// One key or value: `+` → space, then percent-escapes decoded.
pub fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// A path segment: percent-escapes decoded (`+` stays a plus, as in paths).
pub fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Pairs → a JSON object; a key given more than once becomes an array of its values, in order.
pub fn pairs_to_json(query: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode_component(k), Value::String(decode_component(v)));
        match out.get_mut(&k) {
            Some(Value::Array(a)) => a.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_decode_like_a_browser_encodes() {
        let m = pairs_to_json("a=1&b=x+y&a=2&c=%E2%9C%93&d&e=%zz%4&=v");
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"a": ["1", "2"], "b": "x y", "c": "✓", "d": "", "e": "%zz%4", "": "v"})
        );
        assert_eq!(decode_component("%aé"), "%aé", "a stray % before a multi-byte character");
        assert_eq!(decode_component("%ff"), "\u{fffd}");
        assert_eq!(decode_segment("a+b%20c"), "a+b c");
    }
}
