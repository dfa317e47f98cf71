//! Routes that endpoints declare in their metadata (`method`, `path`, from `google.api.http`):
//! a template such as `/v1/items/{id}` or `/files/**`, matched against a request's method and
//! path, with the variables it binds (percent-decoded).
//!
//! Segments are literals, `{name}` or `{name=...}` (one segment bound to `name`), `*` (any one
//! segment) and `**` (the rest of the path). A variable's value is decoded from its segment; a
//! path that cannot match yields `None`, never a panic.

use std::collections::BTreeMap;

use super::query::decode_segment;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(String),
    /// `*` (one segment) or `**` (the rest).
    Wild(bool),
}

/// A parsed route template with its HTTP method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    method: String,
    segments: Vec<Segment>,
}

impl Template {
    /// Parses `path` for `method` (any method name; compared without regard to case).
    pub fn parse(method: &str, path: &str) -> Template {
        let segments = path
            .trim_matches('/')
            .split('/')
            .map(|s| {
                if let Some(var) = s.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                    Segment::Variable(var.split('=').next().unwrap_or(var).to_string())
                } else if s == "**" {
                    Segment::Wild(true)
                } else if s == "*" {
                    Segment::Wild(false)
                } else {
                    Segment::Literal(s.to_string())
                }
            })
            .collect();
        Template { method: method.to_string(), segments }
    }

    /// The method this template answers.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path variables if `method path` matches.
    pub fn matches(&self, method: &str, path: &str) -> Option<BTreeMap<String, String>> {
        if !self.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut vars = BTreeMap::new();
        let mut i = 0;
        for seg in &self.segments {
            match seg {
                Segment::Wild(true) => return Some(vars),
                _ if i >= parts.len() => return None,
                Segment::Literal(l) if l != parts[i] => return None,
                Segment::Variable(name) => {
                    vars.insert(name.clone(), decode_segment(parts[i]));
                }
                _ => {}
            }
            i += 1;
        }
        (i == parts.len()).then_some(vars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_with_variables() {
        let r = Template::parse("GET", "/v1/items/{id}");
        assert_eq!(r.matches("GET", "/v1/items/42").unwrap()["id"], "42");
        assert_eq!(r.matches("get", "/v1/items/a%20b").unwrap()["id"], "a b");
        assert_eq!(r.matches("GET", "/v1/items/%aé").unwrap()["id"], "%aé");
        assert!(r.matches("POST", "/v1/items/42").is_none());
        assert!(r.matches("GET", "/v1/items").is_none());
        assert!(r.matches("GET", "/v1/items/42/x").is_none());
        assert!(Template::parse("GET", "/files/**").matches("GET", "/files/a/b/c").is_some());
    }
}
