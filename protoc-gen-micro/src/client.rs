//! The client emitter: `<Service>Client`, with the method constants and, per rpc, a call and its
//! `_with` variant taking call options. One function per method kind, as tonic-build has.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ir::{Kind, Method, Service};
use crate::service::{doc, full_name, grpc_path, MethodNames, Names, TypeResolver};

/// What every kind's emitter gets for one rpc.
struct Rpc<'a> {
    names: &'a MethodNames,
    req: TokenStream,
    resp: TokenStream,
    /// Doc comment and `#[deprecated]` of the call.
    attrs: TokenStream,
    /// Doc comment and `#[deprecated]` of the `_with` variant.
    with_attrs: TokenStream,
}

/// The client struct of `svc`.
pub(crate) fn service(svc: &Service, names: &Names, types: &dyn TypeResolver) -> TokenStream {
    let client = &names.client;
    let full = full_name(svc);
    let struct_doc = doc(&if svc.comment.is_empty() {
        format!("Client of `{full}`.")
    } else {
        format!("Client of `{full}`.\n\n{}", svc.comment)
    });
    let deprecated = svc.deprecated.then(|| quote! { #[deprecated] });
    let consts = svc.methods.iter().zip(&names.methods).map(|(m, n)| constant(svc, m, n));
    let methods = svc.methods.iter().zip(&names.methods).map(|(m, n)| {
        let rpc = rpc(svc, m, n, types);
        match m.kind {
            Kind::Unary => unary(&rpc),
            Kind::ServerStreaming => server_streaming(&rpc),
            Kind::ClientStreaming => client_streaming(&rpc),
            Kind::Bidi => bidi_streaming(&rpc),
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

/// The `::micro::client::Method` constant of an rpc.
fn constant(svc: &Service, m: &Method, n: &MethodNames) -> TokenStream {
    let c = &n.konst;
    let endpoint = format!("{}.{}", svc.name, m.name);
    let path = grpc_path(svc, m);
    let d = format!(" The `{endpoint}` method.");
    quote! {
        #[doc = #d]
        pub const #c: ::micro::client::Method = ::micro::client::Method { endpoint: #endpoint, path: #path };
    }
}

fn rpc<'a>(svc: &Service, m: &Method, n: &'a MethodNames, types: &dyn TypeResolver) -> Rpc<'a> {
    let d = doc(&m.comment);
    let dep = m.deprecated.then(|| quote! { #[deprecated] });
    let with_doc = format!(
        " [`Self::{}`] with call options (timeout, metadata, address).",
        n.call.to_string().trim_start_matches("r#")
    );
    Rpc {
        names: n,
        req: types.resolve(&svc.package, &m.input),
        resp: types.resolve(&svc.package, &m.output),
        attrs: quote! { #d #dep },
        with_attrs: quote! { #[doc = #with_doc] #dep },
    }
}

fn unary(rpc: &Rpc<'_>) -> TokenStream {
    let (name, with, c, req, resp) = (&rpc.names.call, &rpc.names.with, &rpc.names.konst, &rpc.req, &rpc.resp);
    let (attrs, with_attrs) = (&rpc.attrs, &rpc.with_attrs);
    quote! {
        #attrs
        pub async fn #name(&self, request: #req) -> ::core::result::Result<#resp, ::micro::Error> {
            self.#with(request, ::micro::CallOptions::default()).await
        }
        #with_attrs
        pub async fn #with(&self, request: #req, options: ::micro::CallOptions) -> ::core::result::Result<#resp, ::micro::Error> {
            self.client.call(&self.service, &Self::#c, &request, options).await
        }
    }
}

fn server_streaming(rpc: &Rpc<'_>) -> TokenStream {
    let (name, with, c, req, resp) = (&rpc.names.call, &rpc.names.with, &rpc.names.konst, &rpc.req, &rpc.resp);
    let (attrs, with_attrs) = (&rpc.attrs, &rpc.with_attrs);
    quote! {
        #attrs
        pub async fn #name(&self, request: #req) -> ::core::result::Result<::micro::Streaming<#resp>, ::micro::Error> {
            self.#with(request, ::micro::CallOptions::default()).await
        }
        #with_attrs
        pub async fn #with(&self, request: #req, options: ::micro::CallOptions) -> ::core::result::Result<::micro::Streaming<#resp>, ::micro::Error> {
            self.client.server_stream(&self.service, &Self::#c, &request, options).await
        }
    }
}

fn client_streaming(rpc: &Rpc<'_>) -> TokenStream {
    let (name, with, c, req, resp) = (&rpc.names.call, &rpc.names.with, &rpc.names.konst, &rpc.req, &rpc.resp);
    let (attrs, with_attrs) = (&rpc.attrs, &rpc.with_attrs);
    quote! {
        #attrs
        pub async fn #name(&self) -> ::core::result::Result<(::micro::client::ClientSender<#req>, ::micro::client::ClientReply<#resp>), ::micro::Error> {
            self.#with(::micro::CallOptions::default()).await
        }
        #with_attrs
        pub async fn #with(&self, options: ::micro::CallOptions) -> ::core::result::Result<(::micro::client::ClientSender<#req>, ::micro::client::ClientReply<#resp>), ::micro::Error> {
            self.client.client_stream(&self.service, &Self::#c, options).await
        }
    }
}

fn bidi_streaming(rpc: &Rpc<'_>) -> TokenStream {
    let (name, with, c, req, resp) = (&rpc.names.call, &rpc.names.with, &rpc.names.konst, &rpc.req, &rpc.resp);
    let (attrs, with_attrs) = (&rpc.attrs, &rpc.with_attrs);
    quote! {
        #attrs
        pub async fn #name(&self) -> ::core::result::Result<(::micro::client::ClientSender<#req>, ::micro::Streaming<#resp>), ::micro::Error> {
            self.#with(::micro::CallOptions::default()).await
        }
        #with_attrs
        pub async fn #with(&self, options: ::micro::CallOptions) -> ::core::result::Result<(::micro::client::ClientSender<#req>, ::micro::Streaming<#resp>), ::micro::Error> {
            self.client.bidi_stream(&self.service, &Self::#c, options).await
        }
    }
}
