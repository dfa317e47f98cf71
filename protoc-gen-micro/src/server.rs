//! The server emitter: the `<Service>Handler` trait and `register_<service>_handler`, which
//! registers each rpc as an endpoint. One function per method kind for the trait method and for
//! the endpoint's handler, as tonic-build has.

use heck::ToSnakeCase;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::ir::{Kind, Method, Service};
use crate::service::{doc, full_name, grpc_path, Names, TypeResolver};

/// The handler trait and the registration function of `svc`.
pub(crate) fn service(svc: &Service, names: &Names, types: &dyn TypeResolver) -> TokenStream {
    let trait_name = &names.handler;
    let register = format_ident!("register_{}_handler", svc.name.to_snake_case());
    let full = full_name(svc);
    let trait_doc = doc(&if svc.comment.is_empty() {
        format!("Handler of `{full}`: implement it and pass it to [`{register}`].")
    } else {
        format!("Handler of `{full}`: implement it and pass it to [`{register}`].\n\n{}", svc.comment)
    });
    let register_doc =
        format!(" Registers `handler` on `server` as the endpoints of `{full}` (`{}.Method`).", svc.name);
    let trait_methods = svc.methods.iter().zip(&names.methods).map(|(m, n)| {
        let (req, resp) = (types.resolve(&svc.package, &m.input), types.resolve(&svc.package, &m.output));
        let sig = match m.kind {
            Kind::Unary => unary_method(&n.call, &req, &resp),
            Kind::ServerStreaming => server_streaming_method(&n.call, &req, &resp),
            Kind::ClientStreaming => client_streaming_method(&n.call, &req, &resp),
            Kind::Bidi => bidi_streaming_method(&n.call, &req, &resp),
        };
        let d = doc(&m.comment);
        quote! { #d #sig }
    });
    let registrations = svc.methods.iter().zip(&names.methods).map(|(m, n)| {
        let req = types.resolve(&svc.package, &m.input);
        let handler = match m.kind {
            Kind::Unary => unary_handler(&n.call, &req),
            Kind::ServerStreaming => server_streaming_handler(&n.call, &req),
            Kind::ClientStreaming => client_streaming_handler(&n.call, &req),
            Kind::Bidi => bidi_streaming_handler(&n.call, &req),
        };
        registration(svc, m, handler)
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

/// `impl Future<Output = Result<T, micro::Error>> + Send`, what every handler method returns.
fn result(t: TokenStream) -> TokenStream {
    quote! { impl ::core::future::Future<Output = ::core::result::Result<#t, ::micro::Error>> + ::core::marker::Send }
}

fn unary_method(name: &Ident, req: &TokenStream, resp: &TokenStream) -> TokenStream {
    let r = result(resp.clone());
    quote! { fn #name(&self, request: ::micro::Request<#req>) -> #r; }
}

fn server_streaming_method(name: &Ident, req: &TokenStream, resp: &TokenStream) -> TokenStream {
    let r = result(quote! { () });
    quote! { fn #name(&self, request: ::micro::Request<#req>, stream: ::micro::ServerStream<#resp>) -> #r; }
}

fn client_streaming_method(name: &Ident, req: &TokenStream, resp: &TokenStream) -> TokenStream {
    let r = result(resp.clone());
    quote! { fn #name(&self, request: ::micro::Request<::micro::Streaming<#req>>) -> #r; }
}

fn bidi_streaming_method(name: &Ident, req: &TokenStream, resp: &TokenStream) -> TokenStream {
    let r = result(quote! { () });
    quote! { fn #name(&self, request: ::micro::Request<::micro::Streaming<#req>>, stream: ::micro::ServerStream<#resp>) -> #r; }
}

fn unary_handler(name: &Ident, req: &TokenStream) -> TokenStream {
    quote! {
        ::micro::server::unary(move |request: ::micro::Request<#req>| { let handler = handler.clone(); async move { handler.#name(request).await } })
    }
}

fn server_streaming_handler(name: &Ident, req: &TokenStream) -> TokenStream {
    quote! {
        ::micro::server::server_stream(move |request: ::micro::Request<#req>, stream| { let handler = handler.clone(); async move { handler.#name(request, stream).await } })
    }
}

fn client_streaming_handler(name: &Ident, req: &TokenStream) -> TokenStream {
    quote! {
        ::micro::server::client_stream(move |request: ::micro::Request<::micro::Streaming<#req>>| { let handler = handler.clone(); async move { handler.#name(request).await } })
    }
}

fn bidi_streaming_handler(name: &Ident, req: &TokenStream) -> TokenStream {
    quote! {
        ::micro::server::bidi_stream(move |request: ::micro::Request<::micro::Streaming<#req>>, stream| { let handler = handler.clone(); async move { handler.#name(request, stream).await } })
    }
}

/// Registers one rpc's `handler` as an endpoint, with its path, types and registry metadata
/// (`stream=true`, its HTTP route).
fn registration(svc: &Service, m: &Method, handler: TokenStream) -> TokenStream {
    let endpoint = format!("{}.{}", svc.name, m.name);
    let path = grpc_path(svc, m);
    let (input, output) = (&m.input, &m.output);
    let meta = metadata(m).into_iter().map(|(k, v)| quote! { .metadata(#k, #v) });
    quote! {
        {
            let handler = handler.clone();
            server.handle(
                ::micro::server::Endpoint::new(#endpoint, #handler)
                    .path(#path)
                    .types(#input, #output)
                    #(#meta)*
            );
        }
    }
}

/// The registry metadata of one rpc's endpoint: `stream=true` for streams; Go Micro's `method`,
/// `path` and `body` for the first HTTP binding (so its gateways route it too) and every binding
/// as the JSON list `micro api` reads (`http`:
/// `[{"method":"GET","path":"/v1/{name=shelves/*}","body":"","response_body":""}]`); the proto
/// comment as `description`.
pub(crate) fn metadata(m: &Method) -> Vec<(String, String)> {
    let mut meta = Vec::new();
    if m.kind != Kind::Unary {
        meta.push(("stream".to_string(), "true".to_string()));
    }
    if let Some(route) = m.http.first() {
        meta.push(("method".into(), route.method.clone()));
        meta.push(("path".into(), route.path.clone()));
        if !route.body.is_empty() {
            meta.push(("body".into(), route.body.clone()));
        }
        let all: Vec<serde_json::Value> = m
            .http
            .iter()
            .map(|r| {
                serde_json::json!({"method": r.method, "path": r.path, "body": r.body, "response_body": r.response_body})
            })
            .collect();
        meta.push(("http".into(), serde_json::Value::Array(all).to_string()));
    }
    if !m.comment.is_empty() {
        meta.push(("description".into(), m.comment.clone()));
    }
    meta
}
