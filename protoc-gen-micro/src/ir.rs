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

/// An HTTP route from a `google.api.http` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `/v1/items/{id}`.
    pub path: String,
    /// `*`, a field name, or empty.
    pub body: String,
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
    /// `google.api.http` route, if any.
    pub http: Option<HttpRoute>,
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

fn http_route(pool: &DescriptorPool, options: &prost_reflect::DynamicMessage) -> Option<HttpRoute> {
    let ext = pool.get_extension_by_name("google.api.http")?;
    if !options.has_extension(&ext) {
        return None;
    }
    let rule = options.get_extension(&ext);
    let ReflectValue::Message(rule) = rule.as_ref() else {
        return None;
    };
    for verb in ["get", "put", "post", "delete", "patch"] {
        if let Some(ReflectValue::String(path)) = rule.get_field_by_name(verb).as_deref() {
            if !path.is_empty() {
                let body = match rule.get_field_by_name("body").as_deref() {
                    Some(ReflectValue::String(b)) => b.clone(),
                    _ => String::new(),
                };
                return Some(HttpRoute { method: verb.to_ascii_uppercase(), path: path.clone(), body });
            }
        }
    }
    None
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
                            http: http_route(pool, &m.options()),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}
