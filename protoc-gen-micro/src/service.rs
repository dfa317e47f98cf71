//! IR → Rust for one service: the names it gets and the emitters it goes through — the client
//! ([`crate::client`]) and the server ([`crate::server`]), each with one function per method kind.
//! A new target is a new emitter module called from [`generate`]; a new method kind is one more
//! function in each.

use heck::{ToSnakeCase, ToUpperCamelCase};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

use crate::ir::{Method, Service};

/// Which halves to emit.
#[derive(Debug, Clone, Copy)]
pub struct Emit {
    /// The `XClient`.
    pub client: bool,
    /// The `XHandler` trait and `register_x_handler`.
    pub server: bool,
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "else", "enum", "false", "fn", "for", "if", "impl", "in", "let", "loop",
    "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct", "trait", "true", "type", "unsafe",
    "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override", "priv", "typeof",
    "unsized", "virtual", "yield", "async", "await", "dyn", "try", "gen",
];

/// A snake_case identifier, escaped as prost escapes them.
pub fn snake_ident(name: &str) -> Ident {
    let s = name.to_snake_case();
    match s.as_str() {
        "self" | "super" | "crate" | "extern" | "_" => format_ident!("{}_", s),
        k if KEYWORDS.contains(&k) => Ident::new_raw(k, Span::call_site()),
        _ => format_ident!("{}", s),
    }
}

/// An UpperCamelCase identifier, escaped as prost escapes them.
pub fn camel_ident(name: &str) -> Ident {
    let s = name.to_upper_camel_case();
    if s == "Self" {
        format_ident!("Self_")
    } else {
        format_ident!("{}", s)
    }
}

pub(crate) fn doc(comment: &str) -> TokenStream {
    let lines = comment.lines().map(|l| format!(" {}", l.trim_end()));
    quote! { #( #[doc = #lines] )* }
}

/// Resolves a fully qualified proto type to a Rust path from the module of a package.
pub trait TypeResolver {
    /// The Rust path of `proto_type` (leading dot) as seen from `from_package`.
    fn resolve(&self, from_package: &str, proto_type: &str) -> TokenStream;
}

/// Emits the code of one service.
pub fn generate(svc: &Service, types: &dyn TypeResolver, emit: Emit) -> TokenStream {
    let mut out = TokenStream::new();
    let names = names(svc);
    if emit.client {
        out.extend(crate::client::service(svc, &names, types));
    }
    if emit.server {
        out.extend(crate::server::service(svc, &names, types));
    }
    out
}

/// The Rust names of what is generated for one service, free of collisions: the client and the
/// handler are `<Service>Client` and `<Service>Handler` unless the package has a type of that name
/// (then `<Service>RpcClient`, `<Service>RpcHandler`); each rpc's method is its snake_case name,
/// with `_` added while it is taken (by `new`, or another rpc); its variant with call options is
/// `<snake_case name>_with` (`_with_options`, then `_` added, if that is taken); its constant is
/// the method's name in upper case.
pub(crate) struct Names {
    pub(crate) client: Ident,
    pub(crate) handler: Ident,
    pub(crate) methods: Vec<MethodNames>,
}

pub(crate) struct MethodNames {
    pub(crate) call: Ident,
    pub(crate) with: Ident,
    pub(crate) konst: Ident,
}

fn ident_of(s: &str) -> Ident {
    match s {
        "self" | "super" | "crate" | "extern" | "_" => format_ident!("{}_", s),
        k if KEYWORDS.contains(&k) => Ident::new_raw(k, Span::call_site()),
        _ => format_ident!("{}", s),
    }
}

fn names(svc: &Service) -> Names {
    let camel = svc.name.to_upper_camel_case();
    let free = |suffix: &str| {
        let mut name = format!("{camel}{suffix}");
        while svc.taken.contains(&name) {
            name = format!("{camel}Rpc{}", &name[camel.len()..]);
        }
        format_ident!("{}", name)
    };
    let mut used: std::collections::BTreeSet<String> = ["new".to_string()].into();
    let mut calls = vec![];
    for m in &svc.methods {
        let base = m.name.to_snake_case();
        let mut call = base.clone();
        while used.contains(&call) {
            call.push('_');
        }
        used.insert(call.clone());
        calls.push((base, call));
    }
    let methods = calls
        .iter()
        .map(|(base, call)| {
            let mut with = format!("{base}_with");
            if used.contains(&with) {
                with = format!("{base}_with_options");
            }
            while used.contains(&with) {
                with.push('_');
            }
            used.insert(with.clone());
            MethodNames { call: ident_of(call), with: ident_of(&with), konst: format_ident!("{}", call.to_uppercase()) }
        })
        .collect();
    Names { client: free("Client"), handler: free("Handler"), methods }
}

/// The gRPC path of a method, `/package.Service/Method`.
pub(crate) fn grpc_path(svc: &Service, m: &Method) -> String {
    if svc.package.is_empty() {
        format!("/{}/{}", svc.name, m.name)
    } else {
        format!("/{}.{}/{}", svc.package, svc.name, m.name)
    }
}

/// The fully qualified name of a service, `package.Service`.
pub(crate) fn full_name(svc: &Service) -> String {
    if svc.package.is_empty() {
        svc.name.clone()
    } else {
        format!("{}.{}", svc.package, svc.name)
    }
}
