//! The small intermediate form the generator works from: services, methods, streaming kinds,
//! comments and HTTP routes, read from descriptors (with their options and source info).

use prost_reflect::{DescriptorPool, Value as ReflectValue};
use prost_types::FileDescriptorProto;

/// How a method streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One request, one reply.
    Unary,
    /// One request, many replies.
    ServerStreaming,
    /// Many requests, one reply.
    ClientStreaming,
    /// Many both ways.
    Bidi,
}

/// One HTTP binding of a `google.api.http` rule (the rule itself or one of its
/// `additional_bindings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// `GET`, `POST`, ..., or a `custom` kind.
    pub method: String,
    /// `/v1/items/{id}`.
    pub path: String,
    /// `*`, a field name, or empty.
    pub body: String,
    /// The reply field that is the HTTP body, or empty for the whole reply.
    pub response_body: String,
}

/// One rpc.
#[derive(Debug, Clone)]
pub struct Method {
    /// Name as written in the proto (`SayHello`).
    pub name: String,
    /// Fully qualified input type with a leading dot.
    pub input: String,
    /// Fully qualified output type with a leading dot.
    pub output: String,
    /// Streaming kind.
    pub kind: Kind,
    /// Leading comment.
    pub comment: String,
    /// `option deprecated = true`.
    pub deprecated: bool,
    /// `google.api.http` bindings, the rule's own first, then its `additional_bindings`.
    pub http: Vec<HttpRoute>,
}

/// One service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Name as written (`Greeter`).
    pub name: String,
    /// Proto package (may be empty).
    pub package: String,
    /// Leading comment.
    pub comment: String,
    /// `option deprecated = true`.
    pub deprecated: bool,
    /// Its rpcs.
    pub methods: Vec<Method>,
    /// Names of the package's top-level messages and enums (generated names must avoid them).
    pub taken: std::collections::BTreeSet<String>,
}

/// The comments of the element at `path`: the leading one, then the trailing one.
fn comment(file: &FileDescriptorProto, path: &[i32]) -> String {
    let Some(info) = &file.source_code_info else {
        return String::new();
    };
    let Some(location) = info.location.iter().find(|l| l.path == path) else {
        return String::new();
    };
    let tidy =
        |c: &str| c.lines().map(|l| l.strip_prefix(' ').unwrap_or(l)).collect::<Vec<_>>().join("\n").trim().to_string();
    [location.leading_comments.as_deref(), location.trailing_comments.as_deref()]
        .into_iter()
        .flatten()
        .map(tidy)
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Names of the top-level messages and enums of `package`.
fn taken(pool: &DescriptorPool, package: &str) -> std::collections::BTreeSet<String> {
    let messages = pool
        .all_messages()
        .filter(|m| m.parent_message().is_none() && m.package_name() == package)
        .map(|m| m.name().to_string());
    let enums = pool
        .all_enums()
        .filter(|e| e.parent_message().is_none() && e.package_name() == package)
        .map(|e| e.name().to_string());
    messages.chain(enums).collect()
}

fn http_routes(pool: &DescriptorPool, options: &prost_reflect::DynamicMessage) -> Vec<HttpRoute> {
    let Some(ext) = pool.get_extension_by_name("google.api.http") else {
        return vec![];
    };
    if !options.has_extension(&ext) {
        return vec![];
    }
    let rule = options.get_extension(&ext);
    let ReflectValue::Message(rule) = rule.as_ref() else {
        return vec![];
    };
    let mut out = vec![];
    binding(rule, &mut out);
    if let Some(ReflectValue::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
        for extra in more {
            if let ReflectValue::Message(extra) = extra {
                binding(extra, &mut out);
            }
        }
    }
    out
}

/// The binding of one `HttpRule` (its verb or `custom` pattern), if it has one.
fn binding(rule: &prost_reflect::DynamicMessage, out: &mut Vec<HttpRoute>) {
    let text = |m: &prost_reflect::DynamicMessage, name: &str| match m.get_field_by_name(name).as_deref() {
        Some(ReflectValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let mut pattern = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .map(|verb| (verb.to_ascii_uppercase(), text(rule, verb)))
        .find(|(_, path)| !path.is_empty());
    if pattern.is_none() {
        if let Some(ReflectValue::Message(custom)) = rule.get_field_by_name("custom").as_deref() {
            pattern =
                Some((text(custom, "kind"), text(custom, "path"))).filter(|(k, p)| !k.is_empty() && !p.is_empty());
        }
    }
    if let Some((method, path)) = pattern {
        out.push(HttpRoute { method, path, body: text(rule, "body"), response_body: text(rule, "response_body") });
    }
}

/// The services of `file`, read through `pool` (which keeps options' extensions).
pub fn services(pool: &DescriptorPool, file: &FileDescriptorProto) -> Vec<Service> {
    let Some(fd) = pool.get_file_by_name(file.name()) else {
        return vec![];
    };
    let taken = taken(pool, file.package());
    fd.services()
        .enumerate()
        .map(|(si, s)| {
            let sproto = s.service_descriptor_proto();
            Service {
                taken: taken.clone(),
                name: s.name().to_string(),
                package: file.package().to_string(),
                comment: comment(file, &[6, si as i32]),
                deprecated: sproto.options.as_ref().is_some_and(|o| o.deprecated()),
                methods: s
                    .methods()
                    .enumerate()
                    .map(|(mi, m)| {
                        let mproto = m.method_descriptor_proto();
                        let kind = match (m.is_client_streaming(), m.is_server_streaming()) {
                            (false, false) => Kind::Unary,
                            (false, true) => Kind::ServerStreaming,
                            (true, false) => Kind::ClientStreaming,
                            (true, true) => Kind::Bidi,
                        };
                        Method {
                            name: m.name().to_string(),
                            input: format!(".{}", m.input().full_name()),
                            output: format!(".{}", m.output().full_name()),
                            kind,
                            comment: comment(file, &[6, si as i32, 2, mi as i32]),
                            deprecated: mproto.options.as_ref().is_some_and(|o| o.deprecated()),
                            http: http_routes(pool, &m.options()),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}
