//! IR → Rust: the client struct, the handler trait and the registration function of a service.

use heck::{ToSnakeCase, ToUpperCamelCase};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

use crate::ir::{Kind, Method, Service};

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

fn doc(comment: &str) -> TokenStream {
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
    if emit.client {
        out.extend(client(svc, types));
    }
    if emit.server {
        out.extend(server(svc, types));
    }
    out
}

/// The Rust names of what is generated for one service, free of collisions: the client and the
/// handler are `<Service>Client` and `<Service>Handler` unless the package has a type of that name
/// (then `<Service>RpcClient`, `<Service>RpcHandler`); each rpc's method is its snake_case name,
/// with `_` added while it is taken (by `new`, or another rpc); its variant with call options is
/// `<snake_case name>_with` (`_with_options`, then `_` added, if that is taken); its constant is
/// the method's name in upper case.
struct Names {
    client: Ident,
    handler: Ident,
    methods: Vec<MethodNames>,
}

struct MethodNames {
    call: Ident,
    with: Ident,
    konst: Ident,
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

fn grpc_path(svc: &Service, m: &Method) -> String {
    if svc.package.is_empty() {
        format!("/{}/{}", svc.name, m.name)
    } else {
        format!("/{}.{}/{}", svc.package, svc.name, m.name)
    }
}

fn client(svc: &Service, types: &dyn TypeResolver) -> TokenStream {
    let names = names(svc);
    let client = names.client.clone();
    let full = if svc.package.is_empty() { svc.name.clone() } else { format!("{}.{}", svc.package, svc.name) };
    let struct_doc = doc(&if svc.comment.is_empty() {
        format!("Client of `{full}`.")
    } else {
        format!("Client of `{full}`.\n\n{}", svc.comment)
    });
    let deprecated = svc.deprecated.then(|| quote! { #[deprecated] });
    let consts = svc.methods.iter().zip(&names.methods).map(|(m, n)| {
        let c = &n.konst;
        let endpoint = format!("{}.{}", svc.name, m.name);
        let path = grpc_path(svc, m);
        let d = format!(" The `{endpoint}` method.");
        quote! {
            #[doc = #d]
            pub const #c: ::micro::client::Method = ::micro::client::Method { endpoint: #endpoint, path: #path };
        }
    });
    let methods = svc.methods.iter().zip(&names.methods).map(|(m, n)| {
        let (name, with, c) = (&n.call, &n.with, &n.konst);
        let req = types.resolve(&svc.package, &m.input);
        let resp = types.resolve(&svc.package, &m.output);
        let d = doc(&m.comment);
        let dep = m.deprecated.then(|| quote! { #[deprecated] });
        let with_doc = format!(" [`Self::{}`] with call options (timeout, metadata, address).", name.to_string().trim_start_matches("r#"));
        match m.kind {
            Kind::Unary => quote! {
                #d #dep
                pub async fn #name(&self, request: #req) -> ::core::result::Result<#resp, ::micro::Error> {
                    self.#with(request, ::micro::CallOptions::default()).await
                }
                #[doc = #with_doc] #dep
                pub async fn #with(&self, request: #req, options: ::micro::CallOptions) -> ::core::result::Result<#resp, ::micro::Error> {
                    self.client.call(&self.service, &Self::#c, &request, options).await
                }
            },
            Kind::ServerStreaming => quote! {
                #d #dep
                pub async fn #name(&self, request: #req) -> ::core::result::Result<::micro::Streaming<#resp>, ::micro::Error> {
                    self.#with(request, ::micro::CallOptions::default()).await
                }
                #[doc = #with_doc] #dep
                pub async fn #with(&self, request: #req, options: ::micro::CallOptions) -> ::core::result::Result<::micro::Streaming<#resp>, ::micro::Error> {
                    self.client.server_stream(&self.service, &Self::#c, &request, options).await
                }
            },
            Kind::ClientStreaming => quote! {
                #d #dep
                pub async fn #name(&self) -> ::core::result::Result<(::micro::client::ClientSender<#req>, ::micro::client::ClientReply<#resp>), ::micro::Error> {
                    self.#with(::micro::CallOptions::default()).await
                }
                #[doc = #with_doc] #dep
                pub async fn #with(&self, options: ::micro::CallOptions) -> ::core::result::Result<(::micro::client::ClientSender<#req>, ::micro::client::ClientReply<#resp>), ::micro::Error> {
                    self.client.client_stream(&self.service, &Self::#c, options).await
                }
            },
            Kind::Bidi => quote! {
                #d #dep
                pub async fn #name(&self) -> ::core::result::Result<(::micro::client::ClientSender<#req>, ::micro::Streaming<#resp>), ::micro::Error> {
                    self.#with(::micro::CallOptions::default()).await
                }
                #[doc = #with_doc] #dep
                pub async fn #with(&self, options: ::micro::CallOptions) -> ::core::result::Result<(::micro::client::ClientSender<#req>, ::micro::Streaming<#resp>), ::micro::Error> {
                    self.client.bidi_stream(&self.service, &Self::#c, options).await
                }
            },
        }
    });
    quote! {
        #struct_doc
        #deprecated
        #[derive(Debug, Clone)]
        pub struct #client {
            service: ::std::string::String,
            client: ::micro::Client,
        }
        #deprecated
        #[allow(deprecated)]
        impl #client {
            #(#consts)*
            /// A client of the service registered as `service`, calling through `client`.
            pub fn new(service: impl ::core::convert::Into<::std::string::String>, client: ::micro::Client) -> Self {
                register_types();
                Self { service: service.into(), client }
            }
            #(#methods)*
        }
    }
}

fn server(svc: &Service, types: &dyn TypeResolver) -> TokenStream {
    let names = names(svc);
    let trait_name = names.handler.clone();
    let register = format_ident!("register_{}_handler", svc.name.to_snake_case());
    let full = if svc.package.is_empty() { svc.name.clone() } else { format!("{}.{}", svc.package, svc.name) };
    let trait_doc = doc(&if svc.comment.is_empty() {
        format!("Handler of `{full}`: implement it and pass it to [`{register}`].")
    } else {
        format!("Handler of `{full}`: implement it and pass it to [`{register}`].\n\n{}", svc.comment)
    });
    let register_doc =
        format!(" Registers `handler` on `server` as the endpoints of `{full}` (`{}.Method`).", svc.name);
    let trait_methods = svc.methods.iter().zip(&names.methods).map(|(m, n)| {
        let name = &n.call;
        let req = types.resolve(&svc.package, &m.input);
        let resp = types.resolve(&svc.package, &m.output);
        let d = doc(&m.comment);
        let result = |t: TokenStream| quote! { impl ::core::future::Future<Output = ::core::result::Result<#t, ::micro::Error>> + ::core::marker::Send };
        match m.kind {
            Kind::Unary => {
                let r = result(resp);
                quote! { #d fn #name(&self, request: ::micro::Request<#req>) -> #r; }
            }
            Kind::ServerStreaming => {
                let r = result(quote! { () });
                quote! { #d fn #name(&self, request: ::micro::Request<#req>, stream: ::micro::ServerStream<#resp>) -> #r; }
            }
            Kind::ClientStreaming => {
                let r = result(resp);
                quote! { #d fn #name(&self, request: ::micro::Request<::micro::Streaming<#req>>) -> #r; }
            }
            Kind::Bidi => {
                let r = result(quote! { () });
                quote! { #d fn #name(&self, request: ::micro::Request<::micro::Streaming<#req>>, stream: ::micro::ServerStream<#resp>) -> #r; }
            }
        }
    });
    let registrations = svc.methods.iter().zip(&names.methods).map(|(m, n)| {
        let name = &n.call;
        let req = types.resolve(&svc.package, &m.input);
        let endpoint = format!("{}.{}", svc.name, m.name);
        let path = grpc_path(svc, m);
        let (input, output) = (&m.input, &m.output);
        let (ctor, closure) = match m.kind {
            Kind::Unary => (
                quote! { unary },
                quote! { move |request: ::micro::Request<#req>| { let handler = handler.clone(); async move { handler.#name(request).await } } },
            ),
            Kind::ServerStreaming => (
                quote! { server_stream },
                quote! { move |request: ::micro::Request<#req>, stream| { let handler = handler.clone(); async move { handler.#name(request, stream).await } } },
            ),
            Kind::ClientStreaming => (
                quote! { client_stream },
                quote! { move |request: ::micro::Request<::micro::Streaming<#req>>| { let handler = handler.clone(); async move { handler.#name(request).await } } },
            ),
            Kind::Bidi => (
                quote! { bidi_stream },
                quote! { move |request: ::micro::Request<::micro::Streaming<#req>>, stream| { let handler = handler.clone(); async move { handler.#name(request, stream).await } } },
            ),
        };
        let mut meta = Vec::new();
        if m.kind != Kind::Unary {
            meta.push(quote! { .metadata("stream", "true") });
        }
        if let Some(route) = &m.http {
            let (method, p, body) = (&route.method, &route.path, &route.body);
            meta.push(quote! { .metadata("method", #method).metadata("path", #p) });
            if !body.is_empty() {
                meta.push(quote! { .metadata("body", #body) });
            }
        }
        quote! {
            {
                let handler = handler.clone();
                server.handle(
                    ::micro::server::Endpoint::new(#endpoint, ::micro::server::#ctor(#closure))
                        .path(#path)
                        .types(#input, #output)
                        #(#meta)*
                );
            }
        }
    });
    quote! {
        #trait_doc
        pub trait #trait_name: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#trait_methods)*
        }
        #[doc = #register_doc]
        pub fn #register<H: #trait_name>(server: &::micro::Server, handler: H) {
            let handler = ::std::sync::Arc::new(handler);
            server.add_descriptors(FILE_DESCRIPTOR_SET);
            register_types();
            #(#registrations)*
        }
    }
}
