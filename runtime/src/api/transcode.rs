//! HTTP ↔ RPC transcoding with the rules of `google.api.http` (the HttpRule reference, as
//! Envoy's transcoder and grpc-gateway apply them): which binding an endpoint declares, how a
//! request's path variables, query and body become the JSON request, and which part of the
//! reply is the HTTP body.
//!
//! - `body: "*"`: the body is the request; path variables are set on it; no query parameters.
//! - `body: "field"`: the body is that field; the other fields come from the path and query.
//! - no body: every field comes from the path and the query.
//! - Query keys name fields, nested with dots (`page.size=3`); repeated fields take the key
//!   more than once; values are converted by the field's type (numbers, bools, enums by name,
//!   the well-known types written as strings, wrappers as their value).
//! - `response_body: "field"`: the HTTP body is that field of the reply.
//!
//! Types come from the endpoint's field tree in the registry ([`crate::registry::Value`]); without
//! one (a service that registered none), values pass as strings and the service decides. A
//! request that cannot be mapped (an unknown field, a value of the wrong type, a message or map
//! in the query) is refused with a 400 that names the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::registry::Value as Schema;
use crate::Error;

/// The id of transcoding errors (the gateway's).
pub const ID: &str = "go.micro.api";

/// The most fields a dotted name may nest (`a.b.c`): a stranger's query cannot build deeper JSON.
pub const MAX_NESTING: usize = 16;

/// One HTTP binding of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `GET`, `POST`, ... or a custom method.
    pub method: String,
    /// The path template (`/v1/{name=shelves/*}`).
    pub path: String,
    /// `*`, a field name, or empty (no body).
    #[serde(default)]
    pub body: String,
    /// The reply field that is the HTTP body, or empty for the whole reply.
    #[serde(default)]
    pub response_body: String,
}

impl Binding {
    /// The bindings an endpoint's metadata declares: the `http` list the code generator writes,
    /// else Go Micro's `method`/`path`/`body` keys (comma-separated lists, every pair).
    pub fn of(metadata: &BTreeMap<String, String>) -> Vec<Binding> {
        if let Some(list) = metadata.get("http").and_then(|j| serde_json::from_str::<Vec<Binding>>(j).ok()) {
            return list;
        }
        let Some(paths) = metadata.get("path") else { return vec![] };
        let methods = metadata.get("method").map_or("POST", String::as_str);
        let body = metadata.get("body").cloned().unwrap_or_default();
        let mut out = vec![];
        for m in methods.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            for p in paths.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (method, path, body) = (m.to_ascii_uppercase(), p.to_string(), body.clone());
                out.push(Binding { method, path, body, response_body: String::new() });
            }
        }
        out
    }
}

/// The JSON name protoc gives a field (`page_size` → `pageSize`).
pub fn json_name(proto: &str) -> String {
    let mut out = String::with_capacity(proto.len());
    let mut upper = false;
    for c in proto.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// What a field holds, read from its field tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `string`, `int64`, `bool`, ...
    Scalar(&'a str),
    /// An enum and its value names.
    Enum(&'a [Schema]),
    /// A message and its fields (empty when the tree was cut off or the message is empty).
    Message(&'a [Schema]),
    /// A well-known type (`google.protobuf.Timestamp`).
    WellKnown(&'a str),
    /// `map[K]V`.
    Map,
}

/// A field's kind and whether it is repeated.
pub fn kind(field: &Schema) -> (Kind<'_>, bool) {
    let (ty, repeated) = match field.r#type.strip_prefix("[]") {
        Some(t) => (t, true),
        None => (field.r#type.as_str(), false),
    };
    let legacy = matches!(ty, "Timestamp" | "Duration")
        && field.values.len() == 2
        && field.values[0].name == "seconds"
        && field.values[1].name == "nanos";
    let kind = if ty.starts_with("map[") {
        Kind::Map
    } else if ty.starts_with("google.protobuf.") {
        Kind::WellKnown(ty)
    } else if legacy {
        // What older runtimes registered for the well-known types.
        Kind::WellKnown(if ty == "Timestamp" { "google.protobuf.Timestamp" } else { "google.protobuf.Duration" })
    } else if is_scalar(ty) {
        Kind::Scalar(ty)
    } else if !field.values.is_empty() && field.values.iter().all(|v| v.r#type == "enum") {
        Kind::Enum(&field.values)
    } else {
        Kind::Message(&field.values)
    };
    (kind, repeated)
}

fn is_scalar(ty: &str) -> bool {
    matches!(
        ty,
        "double"
            | "float"
            | "int64"
            | "uint64"
            | "int32"
            | "fixed64"
            | "fixed32"
            | "bool"
            | "string"
            | "bytes"
            | "uint32"
            | "sfixed32"
            | "sfixed64"
            | "sint32"
            | "sint64"
    )
}

/// The scalar a wrapper type (`Int32Value`, short name) holds, as its JSON form is that scalar's.
pub fn wrapped(wkt: &str) -> Option<&'static str> {
    Some(match wkt {
        "BoolValue" => "bool",
        "StringValue" => "string",
        "BytesValue" => "bytes",
        "Int32Value" => "int32",
        "UInt32Value" => "uint32",
        "Int64Value" => "int64",
        "UInt64Value" => "uint64",
        "FloatValue" => "float",
        "DoubleValue" => "double",
        _ => return None,
    })
}

/// The field called `name` (its proto or JSON name) among `fields`.
pub fn field<'a>(fields: &'a [Schema], name: &str) -> Option<&'a Schema> {
    fields.iter().find(|f| f.name == name).or_else(|| fields.iter().find(|f| json_name(&f.name) == name))
}

fn bad(detail: String) -> Error {
    Error::bad_request(ID, detail)
}

/// The JSON request for a call through `binding`: its body, query and path variables mapped
/// onto the fields of `schema` (the request's field tree, if the service registered one).
pub fn request(
    binding: &Binding,
    schema: Option<&Schema>,
    vars: &BTreeMap<String, String>,
    query: &str,
    body: &[u8],
) -> Result<Map<String, Json>, Error> {
    let fields = schema.map(|s| s.values.as_slice()).filter(|f| !f.is_empty());
    let blank = body.iter().all(u8::is_ascii_whitespace);
    let mut object = match binding.body.as_str() {
        "*" if blank => Map::new(),
        "*" => match serde_json::from_slice::<Json>(body) {
            Ok(Json::Object(m)) => m,
            Ok(_) => return Err(bad("the request body must be a JSON object".into())),
            Err(e) => return Err(bad(format!("invalid JSON: {e}"))),
        },
        "" if blank => Map::new(),
        "" => return Err(bad(format!("{} {} takes no body", binding.method, binding.path))),
        name => {
            if fields.is_some_and(|f| field(f, name).is_none()) {
                return Err(bad(format!("the route's body field {name} is not a field of the request")));
            }
            let mut m = Map::new();
            if !blank {
                let v =
                    serde_json::from_slice::<Json>(body).map_err(|e| bad(format!("invalid JSON in {name}: {e}")))?;
                if v.is_null() {
                    return Err(bad(format!("the body is the request's {name}: null is not one")));
                }
                let key = fields.and_then(|f| field(f, name)).map_or(name, |f| f.name.as_str());
                m.insert(key.to_string(), v);
            }
            m
        }
    };
    for v in object.values_mut() {
        integral(v);
    }
    if let Some(fields) = fields {
        drop_nulls(&mut object, fields);
        canonicalize(&mut object, fields, "")?;
        check(&object, fields, "")?;
    }
    if !query.is_empty() {
        if binding.body == "*" {
            return Err(bad(format!(
                "{} {} takes no query parameters: its body is the request",
                binding.method, binding.path
            )));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (super::query::decode_component(k), super::query::decode_component(v));
            let key = canonical(fields, &k);
            let top = key.split('.').next().unwrap_or_default();
            let bound = |p: &String| {
                let p = canonical(fields, p);
                p == key || p.starts_with(&format!("{key}.")) || key.starts_with(&format!("{p}."))
            };
            if vars.keys().any(bound) || (!binding.body.is_empty() && top == canonical(fields, &binding.body)) {
                return Err(bad(format!("query parameter {k} is bound by the path or the body")));
            }
            set(&mut object, fields, &k, &v, "query parameter", true)?;
        }
    }
    for (path, value) in vars {
        set(&mut object, fields, path, value, "path variable", false)?;
    }
    Ok(object)
}

/// Checks a request's JSON against its fields as the OpenAPI document describes them
/// ([`super::openapi`]): known fields only, each of its type and range, 64-bit integers as
/// numbers or canonical decimal strings, enums by name; the first problem, named.
pub fn check(object: &Map<String, Json>, fields: &[Schema], prefix: &str) -> Result<(), Error> {
    for (name, v) in object {
        let path = format!("{prefix}{name}");
        let f = field(fields, name).ok_or_else(|| bad(format!("{path} is not a field of the request")))?;
        let (k, repeated) = kind(f);
        let problem = match (v, repeated, k) {
            (Json::Null, _, _) => None,
            (Json::Array(items), true, _) => {
                items.iter().enumerate().find_map(|(i, item)| value(item, k, &format!("{path}[{i}]")).err())
            }
            (_, true, _) => Some(bad(format!("{path} is a list"))),
            (Json::Object(m), false, Kind::Map) => {
                let (_, v) = f.r#type.split_once(']').unwrap_or(("", "string"));
                let inner = Schema { name: f.name.clone(), r#type: v.to_string(), values: f.values.clone() };
                let vk = kind(&inner).0;
                m.iter().find_map(|(key, item)| value(item, vk, &format!("{path}.{key}")).err())
            }
            (_, false, _) => value(v, k, &path).err(),
        };
        if let Some(e) = problem {
            return Err(e);
        }
    }
    Ok(())
}

/// One value of kind `k`.
fn value(v: &Json, k: Kind<'_>, path: &str) -> Result<(), Error> {
    let wrong = |what: &str| Err(bad(format!("{path} must be {what}")));
    match (k, v) {
        (Kind::Message(sub), Json::Object(m)) if !sub.is_empty() => check(m, sub, &format!("{path}.")),
        // A type whose fields are not known (an enum or message of an older runtime's tree, or
        // one cut off for depth): the service decides.
        (Kind::Message([]), _) => Ok(()),
        (Kind::Message(_) | Kind::Map, Json::Object(_)) => Ok(()),
        (Kind::Message(_) | Kind::Map, _) => wrong("an object"),
        (Kind::Enum(values), Json::String(s)) if values.iter().any(|e| &e.name == s) => Ok(()),
        (Kind::Enum(values), _) => {
            let names: Vec<&str> = values.iter().map(|e| e.name.as_str()).collect();
            wrong(&format!("one of {}", names.join(", ")))
        }
        (Kind::Scalar(s), v) => scalar_value(s, v).or_else(wrong),
        (Kind::WellKnown(w), v) => match (w.trim_start_matches("google.protobuf."), v) {
            ("Timestamp" | "Duration" | "FieldMask", Json::String(_)) => Ok(()),
            // A message of an older runtime's tree that looks like one: the service decides.
            ("Timestamp" | "Duration", Json::Object(_)) => Ok(()),
            ("Timestamp" | "Duration" | "FieldMask", _) => wrong("a string"),
            ("Struct" | "Empty", Json::Object(_)) | ("ListValue", Json::Array(_)) => Ok(()),
            ("Struct" | "Empty", _) => wrong("an object"),
            ("ListValue", _) => wrong("a list"),
            (name, v) => match wrapped(name) {
                Some(scalar) => scalar_value(scalar, v).or_else(wrong),
                None => Ok(()),
            },
        },
    }
}

/// A scalar's JSON, or what it must be.
fn scalar_value(s: &str, v: &Json) -> Result<(), &'static str> {
    let int = |min: i64, max: u64| match v.as_i64().map(|n| n >= min).or(v.as_u64().map(|n| n <= max)) {
        Some(true) if v.as_i64().is_none_or(|n| n >= min) && v.as_u64().is_none_or(|n| n <= max) => Ok(()),
        _ => Err("an integer in range"),
    };
    match s {
        "string" if v.is_string() => Ok(()),
        "string" => Err("a string"),
        "bytes" => match v.as_str() {
            Some(b) if is_base64(b) => Ok(()),
            _ => Err("base64 text"),
        },
        "bool" if v.is_boolean() => Ok(()),
        "bool" => Err("true or false"),
        "int32" | "sint32" | "sfixed32" => match v {
            Json::String(t) if t.parse::<i32>().is_ok_and(|n| n.to_string() == *t) => Ok(()),
            Json::String(_) => Err("an integer, or one written as a string without leading zeros"),
            _ => int(i32::MIN.into(), i32::MAX as u64),
        },
        "uint32" | "fixed32" => match v {
            Json::String(t) if t.parse::<u32>().is_ok_and(|n| n.to_string() == *t) => Ok(()),
            Json::String(_) => Err("an integer, or one written as a string without leading zeros"),
            _ => int(0, u32::MAX.into()),
        },
        "int64" | "sint64" | "sfixed64" => match v {
            Json::String(t) if t.parse::<i64>().is_ok_and(|n| n.to_string() == *t) => Ok(()),
            Json::String(_) => Err("an integer, or one written as a string without leading zeros"),
            _ => int(i64::MIN, i64::MAX as u64),
        },
        "uint64" | "fixed64" => match v {
            Json::String(t) if t.parse::<u64>().is_ok_and(|n| n.to_string() == *t) => Ok(()),
            Json::String(_) => Err("an integer, or one written as a string without leading zeros"),
            _ => int(0, u64::MAX),
        },
        _ if matches!(v.as_str(), Some("NaN" | "Infinity" | "-Infinity")) => Ok(()),
        "float" => match v.as_f64() {
            Some(f) if f.abs() <= 3.4e38 => Ok(()),
            _ => Err("a number in a float's range, NaN, Infinity or -Infinity"),
        },
        _ if v.is_number() => Ok(()),
        _ => Err("a number, NaN, Infinity or -Infinity"),
    }
}

fn is_base64(s: &str) -> bool {
    s.len().is_multiple_of(4)
        && s.trim_end_matches('=').bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && s.len() - s.trim_end_matches('=').len() <= 2
}

/// Leaves out the fields set to `null`, which proto3's JSON mapping reads as their defaults (not
/// every parser does), except where `null` is a value (`google.protobuf.Value`, `Struct`).
pub fn drop_nulls(object: &mut Map<String, Json>, fields: &[Schema]) {
    object.retain(|name, v| {
        let Some(f) = field(fields, name) else { return true };
        let (k, repeated) = kind(f);
        if matches!(
            k,
            Kind::WellKnown("google.protobuf.Value" | "google.protobuf.Struct" | "google.protobuf.ListValue")
        ) {
            return true;
        }
        match (v, k) {
            (Json::Null, _) => false,
            (Json::Object(inner), Kind::Message(sub)) if !repeated && !sub.is_empty() => {
                drop_nulls(inner, sub);
                true
            }
            (Json::Array(items), Kind::Message(sub)) if repeated && !sub.is_empty() => {
                for item in items.iter_mut() {
                    if let Json::Object(inner) = item {
                        drop_nulls(inner, sub);
                    }
                }
                true
            }
            _ => true,
        }
    });
}

/// Writes numbers such as `3.0` as the integers they are (JSON Schema counts them as integers;
/// proto JSON parsers of integer fields may not).
fn integral(v: &mut Json) {
    match v {
        Json::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0) {
                *v = Json::Number((f as i64).into());
            }
        }
        Json::Array(items) => items.iter_mut().for_each(integral),
        Json::Object(m) => m.values_mut().for_each(integral),
        _ => {}
    }
}

/// Sets the field at the dotted `path` of `object` to `raw`, converted by the field's type; a
/// repeated field given again (`append`) takes one more element.
fn set(
    object: &mut Map<String, Json>,
    fields: Option<&[Schema]>,
    path: &str,
    raw: &str,
    what: &str,
    append: bool,
) -> Result<(), Error> {
    let names: Vec<&str> = path.split('.').collect();
    if names.len() > MAX_NESTING {
        return Err(bad(format!("{what} {path}: more than {MAX_NESTING} nested fields")));
    }
    let (last, parents) = names.split_last().ok_or_else(|| bad(format!("an empty {what}")))?;
    let mut fields = fields;
    let mut target = object;
    for name in parents {
        let next = match fields {
            Some(f) => {
                let s = field(f, name).ok_or_else(|| bad(format!("{what} {path}: {name} is not a field")))?;
                match kind(s) {
                    (Kind::Message(sub), false) => Some(sub).filter(|s| !s.is_empty()),
                    _ => return Err(bad(format!("{what} {path}: {name} is not a message"))),
                }
            }
            None => None,
        };
        let key = fields.and_then(|f| field(f, name)).map_or(*name, |f| f.name.as_str());
        let entry = target.entry(key.to_string()).or_insert_with(|| Json::Object(Map::new()));
        let Json::Object(inner) = entry else {
            return Err(bad(format!("{what} {path}: {name} is set twice")));
        };
        target = inner;
        fields = next;
    }
    let Some(fields) = fields else {
        target.insert(last.to_string(), Json::String(raw.to_string()));
        return Ok(());
    };
    let f = field(fields, last).ok_or_else(|| bad(format!("{what} {path} is not a field of the request")))?;
    let (k, repeated) = kind(f);
    let value = scalar(k, raw).map_err(|why| bad(format!("{what} {path}: {why}")))?;
    match target.get_mut(&f.name) {
        Some(Json::Array(items)) if repeated && append => items.push(value),
        Some(_) if append => return Err(bad(format!("{what} {path} is given more than once"))),
        _ if repeated => {
            target.insert(f.name.clone(), Json::Array(vec![value]));
        }
        _ => {
            target.insert(f.name.clone(), value);
        }
    }
    Ok(())
}

/// A dotted field path with each known field under its proto name (`book.pageSize` →
/// `book.page_size`).
fn canonical(fields: Option<&[Schema]>, path: &str) -> String {
    let mut fields = fields;
    let mut out = vec![];
    for name in path.split('.') {
        match fields.and_then(|f| field(f, name)) {
            Some(f) => {
                out.push(f.name.clone());
                fields = match kind(f) {
                    (Kind::Message(sub), false) if !sub.is_empty() => Some(sub),
                    _ => None,
                };
            }
            None => {
                out.push(name.to_string());
                fields = None;
            }
        }
    }
    out.join(".")
}

/// Renames the fields of a JSON request given by their JSON names to their proto names, so one
/// field never reaches the service under two names; both names at once is an error.
fn canonicalize(object: &mut Map<String, Json>, fields: &[Schema], prefix: &str) -> Result<(), Error> {
    let keys: Vec<String> = object.keys().cloned().collect();
    for key in keys {
        let Some(f) = field(fields, &key) else { continue };
        if f.name != key {
            if object.contains_key(&f.name) {
                return Err(bad(format!("{prefix}{} is given twice (as {key} too)", f.name)));
            }
            if let Some(v) = object.remove(&key) {
                object.insert(f.name.clone(), v);
            }
        }
        let (k, repeated) = kind(f);
        let Kind::Message(sub) = k else { continue };
        if sub.is_empty() {
            continue;
        }
        let inner = format!("{prefix}{}.", f.name);
        match object.get_mut(&f.name) {
            Some(Json::Object(m)) if !repeated => canonicalize(m, sub, &inner)?,
            Some(Json::Array(items)) if repeated => {
                for item in items.iter_mut() {
                    if let Json::Object(m) = item {
                        canonicalize(m, sub, &inner)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A value from a path or a query as the JSON of a field of kind `k`.
fn scalar(k: Kind<'_>, raw: &str) -> Result<Json, String> {
    let number = |ok: bool| if ok { Ok(()) } else { Err(format!("{raw:?} is not a number of that type")) };
    Ok(match k {
        Kind::Scalar("string" | "bytes") => Json::String(raw.into()),
        Kind::Scalar("bool") => match raw {
            "true" | "1" => Json::Bool(true),
            "false" | "0" => Json::Bool(false),
            _ => return Err(format!("{raw:?} is not true or false")),
        },
        Kind::Scalar("int32" | "sint32" | "sfixed32") => {
            number(raw.parse::<i32>().is_ok())?;
            Json::Number(raw.parse::<i32>().unwrap_or_default().into())
        }
        Kind::Scalar("uint32" | "fixed32") => {
            number(raw.parse::<u32>().is_ok())?;
            Json::Number(raw.parse::<u32>().unwrap_or_default().into())
        }
        Kind::Scalar("int64" | "sint64" | "sfixed64") => {
            number(raw.parse::<i64>().is_ok())?;
            Json::String(raw.into())
        }
        Kind::Scalar("uint64" | "fixed64") => {
            number(raw.parse::<u64>().is_ok())?;
            Json::String(raw.into())
        }
        Kind::Scalar(_) => match raw {
            "NaN" | "Infinity" | "-Infinity" => Json::String(raw.into()),
            _ => {
                let v = raw.parse::<f64>().ok().and_then(serde_json::Number::from_f64);
                Json::Number(v.ok_or_else(|| format!("{raw:?} is not a number"))?)
            }
        },
        Kind::Enum(values) => {
            if values.iter().any(|v| v.name == raw) {
                Json::String(raw.into())
            } else {
                let names: Vec<&str> = values.iter().map(|v| v.name.as_str()).collect();
                return Err(format!("{raw:?} is not one of {}", names.join(", ")));
            }
        }
        Kind::WellKnown(wkt) => match wkt.trim_start_matches("google.protobuf.") {
            "Timestamp" | "Duration" | "FieldMask" => Json::String(raw.into()),
            name => match wrapped(name) {
                Some(s) => scalar(Kind::Scalar(s), raw)?,
                None => return Err(format!("a google.protobuf.{name} is sent in the body")),
            },
        },
        Kind::Message([]) => Json::String(raw.into()),
        Kind::Message(_) => return Err("it is a message: name one of its fields (a.b=...)".into()),
        Kind::Map => return Err("it is a map: send it in the body".into()),
    })
}

/// The HTTP body of a reply: the whole reply, or its `response_body` field (the field's default
/// when the reply leaves it out, as proto JSON does for defaults).
pub fn response(binding: &Binding, schema: Option<&Schema>, reply: &[u8]) -> Result<Vec<u8>, Error> {
    let name = binding.response_body.as_str();
    if name.is_empty() {
        return Ok(reply.to_vec());
    }
    let object: Map<String, Json> = serde_json::from_slice(reply)
        .map_err(|e| Error::internal_server_error(ID, format!("the reply is not a JSON object: {e}")))?;
    let value = object.get(&json_name(name)).or_else(|| object.get(name)).cloned();
    let value = value.unwrap_or_else(|| {
        let f = schema.and_then(|s| field(&s.values, name));
        f.map_or(Json::Null, default_json)
    });
    Ok(value.to_string().into_bytes())
}

/// The JSON of a field left at its default.
fn default_json(f: &Schema) -> Json {
    match kind(f) {
        (_, true) => Json::Array(vec![]),
        (Kind::Map | Kind::Message(_), _) => Json::Object(Map::new()),
        (Kind::Scalar("bool"), _) => Json::Bool(false),
        (Kind::Scalar("string" | "bytes"), _) => Json::String(String::new()),
        (Kind::Scalar("int64" | "uint64" | "sint64" | "fixed64" | "sfixed64"), _) => Json::String("0".into()),
        (Kind::Scalar(_), _) => Json::Number(0.into()),
        (Kind::Enum(values), _) => values.first().map_or(Json::Number(0.into()), |v| Json::String(v.name.clone())),
        (Kind::WellKnown(_), _) => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, ty: &str, values: Vec<Schema>) -> Schema {
        Schema { name: name.into(), r#type: ty.into(), values }
    }

    fn book() -> Schema {
        let colour = vec![f("COLOR_UNSPECIFIED", "enum", vec![]), f("COLOR_RED", "enum", vec![])];
        f(
            "Req",
            "Req",
            vec![
                f("shelf", "string", vec![]),
                f("page_size", "int32", vec![]),
                f("big", "int64", vec![]),
                f("ratio", "double", vec![]),
                f("tags", "[]string", vec![]),
                f("on", "bool", vec![]),
                f("color", "Color", colour),
                f("at", "google.protobuf.Timestamp", vec![]),
                f("limit", "google.protobuf.Int32Value", vec![]),
                f("book", "Book", vec![f("id", "string", vec![]), f("title", "string", vec![])]),
                f("labels", "map[string]string", vec![]),
            ],
        )
    }

    fn binding(method: &str, path: &str, body: &str) -> Binding {
        Binding { method: method.into(), path: path.into(), body: body.into(), response_body: String::new() }
    }

    #[test]
    fn query_and_path_are_typed() {
        let vars = BTreeMap::from([("book.id".to_string(), "b1".to_string())]);
        let q = "pageSize=3&big=9007199254740993&tags=a&tags=b&on=true&color=COLOR_RED&at=2020-01-01T00:00:00Z&limit=5&book.title=T%20x";
        let got = request(&binding("GET", "/v1/{book.id}", ""), Some(&book()), &vars, q, b"").unwrap();
        assert_eq!(
            Json::Object(got),
            serde_json::json!({"page_size": 3, "big": "9007199254740993", "tags": ["a", "b"], "on": true,
                "color": "COLOR_RED", "at": "2020-01-01T00:00:00Z", "limit": 5, "book": {"id": "b1", "title": "T x"}})
        );
    }

    #[test]
    fn bodies_follow_the_binding() {
        let vars = BTreeMap::from([("shelf".to_string(), "s1".to_string())]);
        let star = request(&binding("POST", "/{shelf}", "*"), Some(&book()), &vars, "", br#"{"shelf":"x","on":true}"#);
        assert_eq!(Json::Object(star.unwrap()), serde_json::json!({"shelf": "s1", "on": true}));
        let field = request(&binding("POST", "/{shelf}", "book"), Some(&book()), &vars, "on=1", br#"{"id":"b"}"#);
        assert_eq!(Json::Object(field.unwrap()), serde_json::json!({"shelf": "s1", "on": true, "book": {"id": "b"}}));
    }

    #[test]
    fn what_cannot_be_mapped_is_named() {
        let none = BTreeMap::new();
        let get = binding("GET", "/v1", "");
        for (q, word) in [
            ("nope=1", "nope"),
            ("pageSize=x", "pageSize"),
            ("page_size=99999999999", "page_size"),
            ("on=yes", "on"),
            ("color=BLUE", "COLOR_RED"),
            ("color=1", "COLOR_RED"),
            ("book=1", "book"),
            ("labels=1", "labels"),
            ("shelf=a&shelf=b", "shelf"),
            ("book.nope=1", "book.nope"),
            ("shelf.x=1", "shelf"),
        ] {
            let e = request(&get, Some(&book()), &none, q, b"").unwrap_err();
            assert_eq!(e.code, 400, "{q}");
            assert!(e.detail.contains(word), "{q}: {}", e.detail);
        }
        let e = request(&binding("POST", "/v1", "book"), Some(&book()), &none, "", b"null").unwrap_err();
        assert!(e.detail.contains("null"), "{}", e.detail);
        let e = request(&get, Some(&book()), &none, "", b"{}").unwrap_err();
        assert!(e.detail.contains("takes no body"), "{}", e.detail);
        let e = request(&binding("POST", "/v1", "*"), Some(&book()), &none, "on=1", b"{}").unwrap_err();
        assert!(e.detail.contains("no query parameters"), "{}", e.detail);
        let e = request(&binding("POST", "/v1", "*"), Some(&book()), &none, "", b"[1]").unwrap_err();
        assert!(e.detail.contains("JSON object"), "{}", e.detail);
    }

    #[test]
    fn bodies_are_checked_against_the_fields() {
        let star = binding("POST", "/v1", "*");
        let none = BTreeMap::new();
        for (body, word) in [
            (r#"{"nope":1}"#, "nope"),
            (r#"{"pageSize":"03"}"#, "page_size"),
            (r#"{"pageSize":3,"page_size":4}"#, "given twice"),
            (r#"{"page_size":3000000000}"#, "page_size"),
            (r#"{"ratio":"1.5"}"#, "ratio"),
            (r#"{"big":"0012"}"#, "big"),
            (r#"{"big":"9223372036854775808"}"#, "big"),
            (r#"{"tags":"a"}"#, "tags"),
            (r#"{"tags":[1]}"#, "tags[0]"),
            (r#"{"color":1}"#, "color"),
            (r#"{"book":{"id":3}}"#, "book.id"),
            (r#"{"labels":{"a":1}}"#, "labels.a"),
            (r#"{"at":5}"#, "at"),
            (r#"{"limit":"x"}"#, "limit"),
        ] {
            let e = request(&star, Some(&book()), &none, "", body.as_bytes()).unwrap_err();
            assert!(e.detail.contains(word), "{body}: {}", e.detail);
        }
        let ok = r#"{"big":"-9223372036854775808","pageSize":"3","tags":["a"],"color":"COLOR_RED","limit":null,"ratio":"NaN"}"#;
        assert!(request(&star, Some(&book()), &none, "", ok.as_bytes()).is_ok());
    }

    #[test]
    fn older_trees_are_taken_as_they_come() {
        let tree = f(
            "Req",
            "Req",
            vec![
                f("color", "Color", vec![]),
                f("at", "Timestamp", vec![f("seconds", "int64", vec![]), f("nanos", "int32", vec![])]),
            ],
        );
        let got = request(
            &binding("GET", "/v1", ""),
            Some(&tree),
            &BTreeMap::new(),
            "color=RED&at=2020-01-01T00:00:00Z",
            b"",
        );
        assert_eq!(Json::Object(got.unwrap()), serde_json::json!({"color": "RED", "at": "2020-01-01T00:00:00Z"}));
        let body = br#"{"color":"RED","at":"2020-01-01T00:00:00Z"}"#;
        assert!(request(&binding("POST", "/v1", "*"), Some(&tree), &BTreeMap::new(), "", body).is_ok());
    }

    #[test]
    fn names_are_canonical_and_nesting_is_bounded() {
        let vars = BTreeMap::from([("page_size".to_string(), "3".to_string())]);
        let e = request(&binding("GET", "/{page_size}", ""), Some(&book()), &vars, "pageSize=4", b"").unwrap_err();
        assert!(e.detail.contains("bound by the path"), "{}", e.detail);
        let deep = format!("{}=1", vec!["a"; 40].join("."));
        for schema in [None, Some(book())] {
            let e = request(&binding("GET", "/v1", ""), schema.as_ref(), &BTreeMap::new(), &deep, b"").unwrap_err();
            assert!(e.detail.contains("nested"), "{}", e.detail);
        }
    }

    #[test]
    fn nulls_are_defaults() {
        let mut schema = book();
        schema.values.push(f("any", "google.protobuf.Value", vec![]));
        let body = br#"{"shelf":null,"book":{"id":null,"title":"t"},"any":null}"#;
        let got = request(&binding("POST", "/v1", "*"), Some(&schema), &BTreeMap::new(), "", body).unwrap();
        assert_eq!(Json::Object(got), serde_json::json!({"book": {"title": "t"}, "any": null}));
    }

    #[test]
    fn without_a_schema_values_pass_as_strings() {
        let vars = BTreeMap::from([("a.b".to_string(), "1".to_string())]);
        let got = request(&binding("GET", "/{a.b}", ""), None, &vars, "c=2", b"").unwrap();
        assert_eq!(Json::Object(got), serde_json::json!({"a": {"b": "1"}, "c": "2"}));
    }

    #[test]
    fn response_bodies() {
        let mut b = binding("GET", "/v1", "");
        assert_eq!(response(&b, None, br#"{"a":1}"#).unwrap(), br#"{"a":1}"#);
        b.response_body = "tags".into();
        assert_eq!(response(&b, Some(&book()), br#"{"tags":["x"]}"#).unwrap(), br#"["x"]"#);
        assert_eq!(response(&b, Some(&book()), b"{}").unwrap(), b"[]");
        b.response_body = "page_size".into();
        assert_eq!(response(&b, Some(&book()), br#"{"pageSize":4}"#).unwrap(), b"4");
    }

    #[test]
    fn bindings_from_metadata() {
        let md =
            BTreeMap::from([("method".to_string(), "GET,put".to_string()), ("path".to_string(), "/a,/b".to_string())]);
        assert_eq!(Binding::of(&md).len(), 4);
        let md = BTreeMap::from([
            ("path".to_string(), "/a".to_string()),
            ("http".to_string(), r#"[{"method":"GET","path":"/x","body":"","response_body":"r"}]"#.to_string()),
        ]);
        assert_eq!(Binding::of(&md)[0].response_body, "r");
        assert_eq!(json_name("page_size_2x"), "pageSize2x");
    }
}
