//! gRPC server reflection, v1 and v1alpha (same messages, two paths), answered from the
//! descriptors generated code registered. Standard tools can list and describe our services.

use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::{bidi_stream, Endpoint, Request, Server, ServerStream};
use crate::transport::grpc::Streaming;
use crate::Error;

/// `ServerReflectionRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReflectionRequest {
    /// Host (ignored).
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub host: String,
    /// What is asked.
    #[prost(oneof = "ReflectionQuery", tags = "3, 4, 5, 6, 7")]
    #[serde(default)]
    pub message_request: Option<ReflectionQuery>,
}

/// The question of a [`ReflectionRequest`].
#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReflectionQuery {
    /// A file by name.
    #[prost(string, tag = "3")]
    FileByFilename(String),
    /// The file defining a symbol.
    #[prost(string, tag = "4")]
    FileContainingSymbol(String),
    /// The file defining an extension.
    #[prost(message, tag = "5")]
    FileContainingExtension(ExtensionRequest),
    /// Extension numbers of a type.
    #[prost(string, tag = "6")]
    AllExtensionNumbersOfType(String),
    /// Every service.
    #[prost(string, tag = "7")]
    ListServices(String),
}

/// `ExtensionRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionRequest {
    /// Extended type.
    #[prost(string, tag = "1")]
    pub containing_type: String,
    /// Extension field number.
    #[prost(int32, tag = "2")]
    pub extension_number: i32,
}

/// `ServerReflectionResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReflectionResponse {
    /// Host.
    #[prost(string, tag = "1")]
    pub valid_host: String,
    /// The request answered.
    #[prost(message, optional, tag = "2")]
    pub original_request: Option<ReflectionRequest>,
    /// The answer.
    #[prost(oneof = "ReflectionAnswer", tags = "4, 5, 6, 7")]
    pub message_response: Option<ReflectionAnswer>,
}

/// The answer of a [`ReflectionResponse`].
#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReflectionAnswer {
    /// Encoded `FileDescriptorProto`s.
    #[prost(message, tag = "4")]
    FileDescriptorResponse(FileDescriptorResponse),
    /// Extension numbers.
    #[prost(message, tag = "5")]
    AllExtensionNumbersResponse(ExtensionNumberResponse),
    /// Services.
    #[prost(message, tag = "6")]
    ListServicesResponse(ListServiceResponse),
    /// An error.
    #[prost(message, tag = "7")]
    ErrorResponse(ErrorResponse),
}

/// `FileDescriptorResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDescriptorResponse {
    /// Encoded files.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub file_descriptor_proto: Vec<Vec<u8>>,
}

/// `ExtensionNumberResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionNumberResponse {
    /// Type.
    #[prost(string, tag = "1")]
    pub base_type_name: String,
    /// Numbers.
    #[prost(int32, repeated, tag = "2")]
    pub extension_number: Vec<i32>,
}

/// `ListServiceResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServiceResponse {
    /// Services.
    #[prost(message, repeated, tag = "1")]
    pub service: Vec<ServiceResponse>,
}

/// `ServiceResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct ServiceResponse {
    /// Fully qualified service name.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `ErrorResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub error_code: i32,
    /// Message.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

const BUILTIN_SERVICES: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

fn answer(server: &Server, req: &ReflectionRequest) -> ReflectionAnswer {
    let pool = server.descriptors();
    let not_found = |what: String| {
        ReflectionAnswer::ErrorResponse(ErrorResponse { error_code: 5, error_message: format!("{what} not found") })
    };
    let files = |f: &prost_types::FileDescriptorProto| {
        ReflectionAnswer::FileDescriptorResponse(FileDescriptorResponse {
            file_descriptor_proto: pool.with_dependencies(f).into_iter().map(|f| f.encode_to_vec()).collect(),
        })
    };
    match &req.message_request {
        Some(ReflectionQuery::ListServices(_)) => {
            let mut names = pool.services();
            names.extend(BUILTIN_SERVICES.iter().map(|s| s.to_string()));
            ReflectionAnswer::ListServicesResponse(ListServiceResponse {
                service: names.into_iter().map(|name| ServiceResponse { name }).collect(),
            })
        }
        Some(ReflectionQuery::FileByFilename(name)) => match pool.file_by_name(name) {
            Some(f) => files(f),
            None => not_found(format!("file {name}")),
        },
        Some(ReflectionQuery::FileContainingSymbol(sym)) => match pool.file_containing(sym) {
            Some(f) => files(f),
            None => not_found(format!("symbol {sym}")),
        },
        Some(ReflectionQuery::FileContainingExtension(ext)) => {
            not_found(format!("extension {}({})", ext.containing_type, ext.extension_number))
        }
        Some(ReflectionQuery::AllExtensionNumbersOfType(t)) => {
            ReflectionAnswer::AllExtensionNumbersResponse(ExtensionNumberResponse {
                base_type_name: t.clone(),
                extension_number: vec![],
            })
        }
        None => ReflectionAnswer::ErrorResponse(ErrorResponse {
            error_code: 3,
            error_message: "empty reflection request".into(),
        }),
    }
}

pub(super) fn register(server: &Server) {
    for version in ["v1", "v1alpha"] {
        let srv = server.clone();
        let handler = bidi_stream(
            move |mut req: Request<Streaming<ReflectionRequest>>, out: ServerStream<ReflectionResponse>| {
                let srv = srv.clone();
                async move {
                    while let Some(q) = req.get_mut().message().await? {
                        let message_response = Some(answer(&srv, &q));
                        out.send(ReflectionResponse {
                            valid_host: q.host.clone(),
                            original_request: Some(q),
                            message_response,
                        })
                        .await?;
                    }
                    Ok::<_, Error>(())
                }
            },
        );
        server.handle(
            Endpoint::new(format!("grpc.reflection.{version}.ServerReflection.ServerReflectionInfo"), handler)
                .path(format!("/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"))
                .internal(),
        );
    }
}
