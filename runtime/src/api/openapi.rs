//! The OpenAPI 3.1 description of what a gateway serves: every unary endpoint of the services
//! given, at each of its declared routes (`google.api.http`, see [`super::transcode`]) or, for an
//! endpoint that declares none, at the path the `rpc` handler resolves to it (`POST
//! /shop/get-item`). Built from registry records alone (field trees, HTTP bindings and the
//! `description` metadata the code generator writes from proto comments), so `micro api` can
//! serve it as services come and go and `micro-build` can write it at build time from the same
//! records.
//!
//! Schemas are the JSON forms of proto3's JSON mapping, as services print and parse them: JSON
//! names, 64-bit integers as strings or numbers, enums by name, well-known types in their own
//! forms, `null` for a field left at its default; objects take no other properties. Errors are
//! Go Micro's `{id, code, detail, status}`.
//! Streaming endpoints (reached over websocket) and custom HTTP methods (which OpenAPI 3.1 cannot
//! name) are left out.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use super::route::Template;
use super::transcode::{field, json_name, kind, Binding, Kind};
use crate::registry::{Endpoint, Service, Value as Schema};

/// The methods OpenAPI 3.1 has a place for.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// How deep nested messages become dotted query parameters.
const QUERY_DEPTH: usize = 3;

/// The document for `services` (each name's records; the first record of an endpoint wins),
/// reached through a gateway of `namespace`, titled `title`; with their declared routes when
/// `routes` (the `meta` handler), else at the `rpc` handler's paths only.
pub fn document(title: &str, version: &str, namespace: &str, services: &[Service], routes: bool) -> Json {
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    // OpenAPI holds `/v1/{name}` and `/v1/{book.name}` to be one path: operations of a path
    // already there under other variable names take its names.
    let mut shapes: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for service in services {
        for e in &service.endpoints {
            let streams = e.metadata.get("stream").is_some_and(|s| s == "true");
            let subscriber = e.metadata.contains_key("subscriber");
            if streams || subscriber || !seen.insert((service.name.clone(), e.name.clone())) {
                continue;
            }
            for (path, method, mut op) in operations(namespace, &service.name, e, routes) {
                let first = shapes.entry(shape(&path)).or_insert_with(|| path.clone()).clone();
                if first != path {
                    rename_path_params(&mut op, &variables(&first));
                }
                paths.entry(first).or_default().entry(method).or_insert(op);
            }
        }
    }
    let paths: Map<String, Json> = paths.into_iter().map(|(p, ops)| (p, Json::Object(ops))).collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": {"Error": error_schema()}},
    })
}

/// A path with its variables' names left out: `/v1/{}`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if inside => {}
            c => out.push(c),
        }
    }
    out
}

/// The variables of an OpenAPI path, in order.
fn variables(path: &str) -> Vec<String> {
    path.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(v, _)| v.to_string())).collect()
}

/// Gives an operation's path parameters, in order, the names of another path's variables.
fn rename_path_params(op: &mut Json, names: &[String]) {
    let Some(params) = op.get_mut("parameters").and_then(Json::as_array_mut) else { return };
    for (p, name) in params.iter_mut().filter(|p| p["in"] == "path").zip(names) {
        p["name"] = json!(name);
    }
}

/// Go Micro's error, as every error response carries it.
fn error_schema() -> Json {
    json!({
        "type": "object",
        "description": "An error: who raised it, its HTTP status, what happened, and its status text.",
        "properties": {
            "id": {"type": "string"},
            "code": {"type": "integer"},
            "detail": {"type": "string"},
            "status": {"type": "string"},
        },
    })
}

/// The operations of one endpoint: `(path, method, operation)`.
fn operations(namespace: &str, service: &str, e: &Endpoint, routes: bool) -> Vec<(String, String, Json)> {
    let bindings = if routes { Binding::of(&e.metadata) } else { vec![] };
    let alias = alias(namespace, service);
    if bindings.is_empty() {
        let Some(path) = rpc_path(namespace, service, &e.name) else { return vec![] };
        let binding =
            Binding { method: "POST".into(), path: path.clone(), body: "*".into(), response_body: String::new() };
        let op = operation(alias, e, &binding, &Template::parse("POST", &path).ok(), 0);
        return vec![(path, "post".into(), op)];
    }
    let mut out = vec![];
    for (i, b) in bindings.iter().enumerate() {
        let method = b.method.to_ascii_lowercase();
        let Ok(template) = Template::parse(&b.method, &b.path) else { continue };
        if !METHODS.contains(&method.as_str()) {
            continue;
        }
        out.push((template.openapi_path().0, method, operation(alias, e, b, &Some(template), i)));
    }
    out
}

/// A service's name without the namespace (`ns.shop` → `shop`).
fn alias<'a>(namespace: &str, service: &'a str) -> &'a str {
    match service.strip_prefix(namespace).and_then(|r| r.strip_prefix('.')) {
        Some(rest) if !namespace.is_empty() => rest,
        _ => service,
    }
}

/// The path the `rpc` handler resolves to `service`'s `endpoint`, if there is one.
fn rpc_path(namespace: &str, service: &str, endpoint: &str) -> Option<String> {
    let alias = alias(namespace, service);
    let (svc, method) = endpoint.split_once('.')?;
    let base = alias.replace('.', "/");
    let candidates = [
        format!("/{base}/{}", kebab(method)),
        format!("/{base}/{}/{}", kebab(svc), kebab(method)),
        format!("/{base}/{svc}/{method}"),
    ];
    candidates
        .into_iter()
        .find(|p| super::resolve(namespace, p).is_some_and(|r| r.service == service && r.method == endpoint))
}

/// `GetItem` → `get-item`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('-');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// One operation: parameters from the path and query, the body, the replies.
fn operation(alias: &str, e: &Endpoint, b: &Binding, template: &Option<Template>, index: usize) -> Json {
    let fields: &[Schema] = e.request.as_ref().map_or(&[], |r| r.values.as_slice());
    let mut params = vec![];
    let mut bound = vec![];
    if let Some(t) = template {
        for p in t.openapi_path().1 {
            let mut schema =
                if p.whole { path_schema(fields, &p.field) } else { json!({"type": "string", "minLength": 1}) };
            if schema["type"] == "string" && !p.rest {
                // One segment: a value with a slash is another path.
                schema["minLength"] = json!(1);
                schema["pattern"] = json!("^[^/]+$");
            }
            let description = if p.whole {
                format!("The request's {}.", p.field)
            } else {
                format!("One segment of the request's {} ({}).", p.field, t.openapi_path().0)
            };
            params.push(
                json!({"name": p.name, "in": "path", "required": true, "schema": schema, "description": description}),
            );
            if !bound.contains(&p.field) {
                bound.push(p.field);
            }
        }
    }
    if b.body != "*" && !b.path.is_empty() {
        let skip: Vec<String> = bound.iter().cloned().chain((!b.body.is_empty()).then(|| b.body.clone())).collect();
        query_params(fields, "", &skip, 0, &mut params);
    }
    let mut op = Map::new();
    let id = format!("{alias}.{}", e.name);
    op.insert("operationId".into(), json!(if index == 0 { id } else { format!("{id}.{index}") }));
    op.insert("tags".into(), json!([alias]));
    if let Some(d) = e.metadata.get("description") {
        op.insert("summary".into(), json!(d.lines().next().unwrap_or_default()));
        op.insert("description".into(), json!(d));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Json::Array(params));
    }
    let body = match b.body.as_str() {
        "" => None,
        "*" => Some(message_schema(fields, e.request.as_ref().is_some_and(|r| !r.values.is_empty()))),
        name => field(fields, name).map(schema_of),
    };
    if let Some(schema) = body {
        op.insert(
            "requestBody".into(),
            json!({"required": false, "content": {"application/json": {"schema": schema}}}),
        );
    }
    let reply: &[Schema] = e.response.as_ref().map_or(&[], |r| r.values.as_slice());
    let reply_schema = if b.response_body.is_empty() {
        message_schema(reply, e.response.as_ref().is_some_and(|r| !r.values.is_empty()))
    } else {
        field(reply, &b.response_body).map_or(json!({}), schema_of)
    };
    op.insert(
        "responses".into(),
        json!({
            "200": {"description": "The reply.", "content": {"application/json": {"schema": reply_schema}}},
            "default": {
                "description": "An error.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        }),
    );
    Json::Object(op)
}

/// The schema of the field a path variable binds (`book.id`).
fn path_schema(fields: &[Schema], path: &str) -> Json {
    let mut fields = fields;
    let names: Vec<&str> = path.split('.').collect();
    for (i, name) in names.iter().enumerate() {
        let Some(f) = field(fields, name) else { return json!({"type": "string"}) };
        if i + 1 == names.len() {
            return schema_of(f);
        }
        match kind(f) {
            (Kind::Message(sub), false) => fields = sub,
            _ => return json!({"type": "string"}),
        }
    }
    json!({"type": "string"})
}

/// The query parameters of the fields not bound elsewhere: scalars, enums, repeated ones and
/// the well-known types written as strings, nested messages' fields with dots.
fn query_params(fields: &[Schema], prefix: &str, skip: &[String], depth: usize, out: &mut Vec<Json>) {
    for f in fields {
        let name = format!("{prefix}{}", json_name(&f.name));
        let proto = format!("{prefix}{}", f.name);
        if skip.iter().any(|s| *s == name || *s == proto || s.starts_with(&format!("{proto}."))) {
            continue;
        }
        match kind(f) {
            (Kind::Message(sub), false) if depth < QUERY_DEPTH && !sub.is_empty() => {
                let nested: Vec<String> =
                    skip.iter().filter_map(|s| s.strip_prefix(&format!("{proto}.")).map(str::to_string)).collect();
                query_params(sub, &format!("{name}."), &nested, depth + 1, out);
            }
            (Kind::Message(_) | Kind::Map, _) => {}
            (Kind::WellKnown(w), _) if !query_wkt(w) => {}
            (_, repeated) => {
                let mut schema = schema_of(f);
                if repeated {
                    out.push(json!({"name": name, "in": "query", "schema": schema, "style": "form", "explode": true}));
                } else {
                    if let Json::Object(m) = &mut schema {
                        m.remove("description");
                    }
                    out.push(json!({"name": name, "in": "query", "schema": schema}));
                }
            }
        }
    }
}

fn query_wkt(w: &str) -> bool {
    !matches!(w, "google.protobuf.Struct" | "google.protobuf.Value" | "google.protobuf.ListValue")
        && !matches!(w, "google.protobuf.Any" | "google.protobuf.Empty")
}

/// The schema of a message's JSON form from its field tree (any object when its fields are not
/// known): each field may also be `null` when `nullable_fields`, as replies may print it, or only
/// its own type, for what a caller writes (an MCP tool's input).
pub fn object_schema(message: &Schema, nullable_fields: bool) -> Json {
    fields_schema(&message.values, !message.values.is_empty(), nullable_fields)
}

/// A message's fields as a JSON object that takes no other properties (any object when its
/// fields are not known).
fn message_schema(fields: &[Schema], known: bool) -> Json {
    fields_schema(fields, known, true)
}

fn fields_schema(fields: &[Schema], known: bool, nullable_fields: bool) -> Json {
    if !known && fields.is_empty() {
        return json!({"type": "object"});
    }
    let field = |f: &Schema| if nullable_fields { nullable(schema_of(f)) } else { schema_of(f) };
    let props: Map<String, Json> = fields.iter().map(|f| (json_name(&f.name), field(f))).collect();
    json!({"type": "object", "properties": props, "additionalProperties": false})
}

/// A field's schema that also takes `null`, which proto3's JSON mapping reads as the default.
fn nullable(mut schema: Json) -> Json {
    if let Some(list) = schema.get_mut("enum").and_then(Json::as_array_mut) {
        list.push(Json::Null);
    }
    match schema.get_mut("type") {
        Some(Json::Array(types)) => types.push(json!("null")),
        Some(t @ Json::String(_)) => *t = json!([t.clone(), "null"]),
        _ => {}
    }
    if let Some(any) = schema.get_mut("anyOf").and_then(Json::as_array_mut) {
        any.push(json!({"type": "null"}));
    }
    schema
}

/// A field's schema in proto3's JSON mapping.
pub fn schema_of(f: &Schema) -> Json {
    let (k, repeated) = kind(f);
    let one = match k {
        Kind::Scalar(s) => scalar_schema(s),
        Kind::Enum(values) => {
            json!({"type": "string", "enum": values.iter().map(|v| v.name.as_str()).collect::<Vec<_>>()})
        }
        Kind::Message(fields) => message_schema(fields, !fields.is_empty()),
        Kind::WellKnown(w) => wkt_schema(w),
        Kind::Map => {
            let value = f.r#type.split_once(']').map_or("string", |(_, v)| v);
            let inner = Schema { name: f.name.clone(), r#type: value.to_string(), values: f.values.clone() };
            json!({"type": "object", "additionalProperties": schema_of(&inner)})
        }
    };
    if repeated {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

fn scalar_schema(s: &str) -> Json {
    // Integers as numbers or canonical decimal strings (proto3 JSON takes both).
    let int = |min: i64, max: u64, format: &str| {
        let pattern = if min < 0 {
            format!("^(0|{}|-({}))$", up_to(&max.to_string()), up_to(&min.unsigned_abs().to_string()))
        } else {
            format!("^(0|{})$", up_to(&max.to_string()))
        };
        json!({"type": ["integer", "string"], "format": format, "pattern": pattern, "minimum": min, "maximum": max})
    };
    let special = json!({"enum": ["NaN", "Infinity", "-Infinity"]});
    match s {
        "string" => json!({"type": "string"}),
        "bytes" => {
            json!({"type": "string", "format": "byte", "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"})
        }
        "bool" => json!({"type": "boolean"}),
        "int32" | "sint32" | "sfixed32" => int(i32::MIN.into(), i32::MAX as u64, "int32"),
        "uint32" | "fixed32" => int(0, u32::MAX.into(), "uint32"),
        "int64" | "sint64" | "sfixed64" => int(i64::MIN, i64::MAX as u64, "int64"),
        "uint64" | "fixed64" => int(0, u64::MAX, "uint64"),
        "float" => json!({"anyOf": [
            {"type": "number", "format": "float", "minimum": -3.4e38, "maximum": 3.4e38},
            special,
        ]}),
        _ => json!({"anyOf": [{"type": "number", "format": "double"}, special]}),
    }
}

/// A regular expression of the decimal numbers from 1 to `max`, without leading zeros.
fn up_to(max: &str) -> String {
    let digits: Vec<u8> = max.bytes().map(|b| b - b'0').collect();
    let n = digits.len();
    let mut alts = vec![];
    match n {
        0 | 1 => {}
        2 => alts.push("[1-9]".to_string()),
        _ => alts.push(format!("[1-9][0-9]{{0,{}}}", n - 2)),
    }
    for (i, &d) in digits.iter().enumerate() {
        let low = u8::from(i == 0);
        if d > low {
            let range = if d - 1 == low { low.to_string() } else { format!("[{low}-{}]", d - 1) };
            let rest = n - i - 1;
            let tail = if rest > 0 { format!("[0-9]{{{rest}}}") } else { String::new() };
            alts.push(format!("{}{range}{tail}", &max[..i]));
        }
    }
    alts.push(max.to_string());
    alts.join("|")
}

fn wkt_schema(w: &str) -> Json {
    match w.trim_start_matches("google.protobuf.") {
        "Timestamp" => json!({"type": "string", "format": "date-time"}),
        "Duration" => json!({"type": "string", "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$"}),
        "FieldMask" => json!({"type": "string"}),
        "Empty" => json!({"type": "object", "properties": {}, "additionalProperties": false}),
        "Struct" => json!({"type": "object"}),
        "ListValue" => json!({"type": "array"}),
        "Value" => json!({}),
        "Any" => json!({"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]}),
        name => scalar_schema(super::transcode::wrapped(name).unwrap_or("double")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, ty: &str, values: Vec<Schema>) -> Schema {
        Schema { name: name.into(), r#type: ty.into(), values }
    }

    fn endpoint(name: &str, md: &[(&str, &str)]) -> Endpoint {
        Endpoint {
            name: name.into(),
            request: Some(f("Req", "Req", vec![f("name", "string", vec![]), f("page_size", "int32", vec![])])),
            response: Some(f("Reply", "Reply", vec![f("items", "[]string", vec![])])),
            metadata: md.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn routes_and_rpc_paths() {
        let svc = Service {
            name: "ns.shop".into(),
            endpoints: vec![
                endpoint("Shop.GetItem", &[("description", "Reads an item.\n\nMore.")]),
                endpoint("Admin.Reset", &[]),
                endpoint(
                    "Shop.List",
                    &[("http", r#"[{"method":"GET","path":"/v1/{name=shelves/*}/items","response_body":"items"}]"#)],
                ),
                endpoint("Shop.Watch", &[("stream", "true")]),
            ],
            ..Default::default()
        };
        let doc = document("api", "1", "ns", std::slice::from_ref(&svc), true);
        assert_eq!(document("api", "1", "ns", &[svc], false)["paths"].as_object().unwrap().len(), 3, "rpc paths only");
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(
            paths.keys().collect::<Vec<_>>(),
            ["/shop/admin/reset", "/shop/get-item", "/v1/shelves/{shelf}/items"]
        );
        let get = &doc["paths"]["/shop/get-item"]["post"];
        assert_eq!(get["summary"], "Reads an item.");
        assert_eq!(get["operationId"], "shop.Shop.GetItem");
        let list = &doc["paths"]["/v1/shelves/{shelf}/items"]["get"];
        assert_eq!(list["parameters"][0]["name"], "shelf");
        assert_eq!(list["parameters"][1]["name"], "pageSize");
        assert_eq!(list["responses"]["200"]["content"]["application/json"]["schema"]["type"], "array");
        assert_eq!(kebab("getHTTPStatus"), "get-httpstatus");
        assert_eq!(up_to("250"), "[1-9][0-9]{0,1}|1[0-9]{2}|2[0-4][0-9]{1}|250");
        assert_eq!(up_to("7"), "[1-6]|7");
    }
}
