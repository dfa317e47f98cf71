//! Routes that endpoints declare in their metadata (from `google.api.http`): a path template
//! with the grammar of the HttpRule reference, matched against a request's method and path, with
//! the fields its variables bind.
//!
//! ```text
//! Template = "/" Segments [ ":" Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! ```
//!
//! `{name}` binds one segment, `{name=shelves/*/books/*}` the segments its pattern matches (joined
//! by `/`), `**` the rest of the path (zero or more segments, last only), and a trailing `:verb`
//! must be present. Field paths may be nested (`{book.id}`). A one-segment variable's value is
//! percent-decoded; a multi-segment one keeps `%2F` so its slashes stay unambiguous. A path that
//! cannot match yields `None`, never a panic; a template that is not well formed is an error.

use std::collections::BTreeMap;

use super::query::decode_segment;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: any one segment.
    One,
    /// `**`: the rest of the path.
    Rest,
}

/// A variable: its field path and the segments it spans (`start..end`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field: String,
    start: usize,
    end: usize,
}

/// A parsed route template with its HTTP method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    method: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

impl Template {
    /// Parses `path` for `method` (any method name, compared without regard to case); a clear
    /// error if the template is not well formed.
    pub fn parse(method: &str, path: &str) -> Result<Template, String> {
        let bad = |why: &str| format!("route template {path}: {why}");
        let rest = path.strip_prefix('/').ok_or_else(|| bad("it must start with /"))?;
        let (body, verb) = split_verb(rest);
        let mut t = Template { method: method.to_string(), segments: vec![], variables: vec![], verb };
        let parts = if body.is_empty() { vec![] } else { split_top(body).map_err(|e| bad(&e))? };
        for part in parts {
            if let Some(var) = part.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                let (field, pattern) = var.split_once('=').unwrap_or((var, "*"));
                if field.is_empty() || !field.split('.').all(is_ident) {
                    return Err(bad(&format!("{{{var}}} does not name a field")));
                }
                let start = t.segments.len();
                for p in pattern.split('/') {
                    t.segments.push(segment(p).map_err(|e| bad(&e))?);
                }
                t.variables.push(Variable { field: field.to_string(), start, end: t.segments.len() });
            } else {
                t.segments.push(segment(part).map_err(|e| bad(&e))?);
            }
        }
        if t.segments.iter().rev().skip(1).any(|s| *s == Segment::Rest) {
            return Err(bad("** may only be the last segment"));
        }
        Ok(t)
    }

    /// The method this template answers.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whether the template ends in a `:verb`.
    pub fn has_verb(&self) -> bool {
        self.verb.is_some()
    }

    /// The fields its variables bind, in order (`book.id`).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| v.field.as_str())
    }

    /// How many path segments the template has (its variables' patterns included).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The path variables if `method path` matches.
    pub fn matches(&self, method: &str, path: &str) -> Option<BTreeMap<String, String>> {
        if !self.answers(method) {
            return None;
        }
        self.matches_path(path)
    }

    /// Whether the template takes `method` (`custom { kind: "*" }` takes every method).
    pub fn answers(&self, method: &str) -> bool {
        self.method == "*" || self.method.eq_ignore_ascii_case(method)
    }

    /// The path variables if `path` matches, whatever the method.
    pub fn matches_path(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let path = path.strip_prefix('/')?;
        let path = match &self.verb {
            Some(verb) => path.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => path,
        };
        let parts: Vec<&str> = if path.is_empty() { vec![] } else { path.split('/').collect() };
        let mut spans = Vec::with_capacity(self.segments.len());
        let mut i = 0;
        for seg in &self.segments {
            match seg {
                Segment::Rest => {
                    spans.push((i, parts.len()));
                    i = parts.len();
                }
                _ if i >= parts.len() => return None,
                Segment::Literal(l) if l != parts[i] => return None,
                _ => {
                    spans.push((i, i + 1));
                    i += 1;
                }
            }
        }
        if i != parts.len() {
            return None;
        }
        let mut vars = BTreeMap::new();
        for v in &self.variables {
            let from = spans.get(v.start).map_or(i, |s| s.0);
            let to = if v.end > v.start { spans[v.end - 1].1 } else { from };
            let value = if to - from == 1 && v.end - v.start == 1 && self.segments[v.start] != Segment::Rest {
                decode_segment(parts[from])
            } else {
                parts[from..to].iter().map(|p| decode_keeping_slashes(p)).collect::<Vec<_>>().join("/")
            };
            vars.insert(v.field.clone(), value);
        }
        Some(vars)
    }

    /// The template as OpenAPI writes paths, one parameter per segment a request chooses:
    /// `/v1/{book.id}:publish`, and a multi-segment variable spelled out (as grpc-gateway's
    /// `expand_slashed_path_patterns` does): `{name=shelves/*/books/*}` becomes
    /// `shelves/{shelf}/books/{book}`. Unbound `*` and `**` stay as they are.
    pub fn openapi_path(&self) -> (String, Vec<PathParam>) {
        let mut out = String::new();
        let mut params: Vec<PathParam> = vec![];
        let mut i = 0;
        while i < self.segments.len() {
            let Some(v) = self.variables.iter().find(|v| v.start == i && v.end > v.start) else {
                out.push('/');
                out.push_str(self.segments[i].text());
                i += 1;
                continue;
            };
            let whole = v.end - v.start == 1;
            for j in v.start..v.end {
                out.push('/');
                match &self.segments[j] {
                    Segment::Literal(l) => out.push_str(l),
                    _ => {
                        let mut name = match (whole, j.checked_sub(1).map(|k| &self.segments[k])) {
                            (false, Some(Segment::Literal(prev))) if j > v.start => singular(prev),
                            _ => v.field.clone(),
                        };
                        while params.iter().any(|p| p.name == name) {
                            name.push('_');
                        }
                        out.push_str(&format!("{{{name}}}"));
                        let rest = self.segments[j] == Segment::Rest;
                        params.push(PathParam { name, field: v.field.clone(), whole, rest });
                    }
                }
            }
            i = v.end;
        }
        if out.is_empty() {
            out.push('/');
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        (out, params)
    }
}

/// One parameter of an OpenAPI path: its name, the field it fills, and whether it is the
/// whole field (else one segment of a multi-segment variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathParam {
    /// The parameter's name in the path (`shelf`).
    pub name: String,
    /// The field it fills (`name`).
    pub field: String,
    /// It is the field's whole value.
    pub whole: bool,
    /// It stands for `**` (any number of segments).
    pub rest: bool,
}

/// `shelves` → `shelf`, `books` → `book`, `libraries` → `library`.
fn singular(word: &str) -> String {
    if let Some(stem) = word.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = word.strip_suffix("ves") {
        format!("{stem}f")
    } else if let Some(stem) = word.strip_suffix("ses") {
        format!("{stem}s")
    } else if let Some(stem) = word.strip_suffix('s').filter(|s| !s.is_empty()) {
        stem.to_string()
    } else {
        format!("{word}_id")
    }
}

impl Segment {
    fn text(&self) -> &str {
        match self {
            Segment::Literal(l) => l,
            Segment::One => "*",
            Segment::Rest => "**",
        }
    }
}

/// Splits `a/{b=c/*}/d` at the slashes outside braces.
fn split_top(body: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut depth, mut from) = (vec![], 0usize, 0);
    for (i, c) in body.char_indices() {
        match c {
            '{' if depth == 0 => depth = 1,
            '{' => return Err("variables cannot nest".into()),
            '}' if depth == 1 => depth = 0,
            '}' => return Err("an unmatched }".into()),
            '/' if depth == 0 => {
                out.push(&body[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("an unclosed {".into());
    }
    out.push(&body[from..]);
    Ok(out)
}

/// The trailing `:verb` of the last segment, outside any variable.
fn split_verb(rest: &str) -> (&str, Option<String>) {
    let last = rest.rsplit('/').next().unwrap_or(rest);
    if last.contains('}') && !last.ends_with('}') || !last.contains('{') {
        if let Some((_, verb)) = last.rsplit_once(':') {
            if !verb.contains('}') && !verb.is_empty() {
                return (&rest[..rest.len() - verb.len() - 1], Some(verb.to_string()));
            }
        }
    }
    (rest, None)
}

fn segment(s: &str) -> Result<Segment, String> {
    Ok(match s {
        "*" => Segment::One,
        "**" => Segment::Rest,
        "" => return Err("an empty segment".into()),
        l if l.contains(['{', '}', '=']) => return Err(format!("a segment {l} that is not a literal")),
        l => Segment::Literal(l.to_string()),
    })
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A segment of a multi-segment variable: decoded, except `%2F`, which stays.
fn decode_keeping_slashes(s: &str) -> String {
    s.split("%2F").flat_map(|p| p.split("%2f")).map(decode_segment).collect::<Vec<_>>().join("%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(method: &str, path: &str) -> Template {
        Template::parse(method, path).unwrap()
    }

    #[test]
    fn templates_match_with_variables() {
        let r = t("GET", "/v1/items/{id}");
        assert_eq!(r.matches("GET", "/v1/items/42").unwrap()["id"], "42");
        assert_eq!(r.matches("get", "/v1/items/a%20b").unwrap()["id"], "a b");
        assert_eq!(r.matches("GET", "/v1/items/%aé").unwrap()["id"], "%aé");
        assert!(r.matches("POST", "/v1/items/42").is_none());
        assert!(r.matches("GET", "/v1/items").is_none());
        assert!(r.matches("GET", "/v1/items/42/x").is_none());
        assert!(t("GET", "/files/**").matches("GET", "/files/a/b/c").is_some());
        assert!(t("GET", "/files/**").matches("GET", "/files").is_some(), "** matches zero segments");
        assert!(t("*", "/any").matches("PURGE", "/any").is_some(), "custom kind * takes every method");
    }

    #[test]
    fn nested_fields_patterns_and_verbs() {
        let r = t("GET", "/v1/{name=shelves/*/books/*}");
        assert_eq!(r.matches("GET", "/v1/shelves/s1/books/b%201").unwrap()["name"], "shelves/s1/books/b 1");
        assert!(r.matches("GET", "/v1/shelves/s1/books").is_none());
        assert!(r.matches("GET", "/v1/racks/s1/books/b1").is_none());
        let r = t("POST", "/v1/{book.shelf}/books/{book.id}:publish");
        let vars = r.matches("POST", "/v1/s1/books/b2:publish").unwrap();
        assert_eq!((vars["book.shelf"].as_str(), vars["book.id"].as_str()), ("s1", "b2"));
        assert!(r.matches("POST", "/v1/s1/books/b2").is_none(), "the verb is required");
        assert!(r.matches("POST", "/v1/s1/books/b2:other").is_none());
        assert_eq!(r.fields().collect::<Vec<_>>(), ["book.shelf", "book.id"]);
        let r = t("GET", "/v1/{path=files/**}");
        assert_eq!(r.matches("GET", "/v1/files/a/b%2Fc").unwrap()["path"], "files/a/b%2Fc");
        assert_eq!(t("GET", "/x/{id}:get").matches("GET", "/x/a:b:get").unwrap()["id"], "a:b");
    }

    #[test]
    fn openapi_paths() {
        assert_eq!(t("GET", "/v1/items/{id}").openapi_path().0, "/v1/items/{id}");
        let (p, params) = t("GET", "/v1/{name=shelves/*/books/*}/x/{book.id}:publish").openapi_path();
        assert_eq!(p, "/v1/shelves/{shelf}/books/{book}/x/{book.id}:publish");
        assert_eq!(params[0], PathParam { name: "shelf".into(), field: "name".into(), whole: false, rest: false });
        assert!(params[2].whole);
        assert_eq!(t("GET", "/files/{path=**}").openapi_path().0, "/files/{path}");
        assert_eq!(t("GET", "/c/*/**").openapi_path().0, "/c/*/**");
    }

    #[test]
    fn bad_templates_are_errors() {
        for bad in ["v1/x", "/v1/{", "/v1/{a{b}}", "/v1/**/x", "/v1//x", "/v1/{9}", "/v1/{}", "/v1/a=b"] {
            assert!(Template::parse("GET", bad).is_err(), "{bad}");
        }
    }
}
