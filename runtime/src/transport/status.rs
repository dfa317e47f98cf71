//! A failed call's status in the standard detail messages every protocol carries:
//! `google.rpc.Status` (gRPC's `grpc-status-details-bin`, also in gRPC-Web's trailer frame) and
//! `google.rpc.ErrorInfo` (a Connect error's `details`), so that a peer that never heard of Go
//! Micro's error JSON still gets all four of its fields.
//!
//! The ErrorInfo has reason `MICRO_ERROR`, domain the error's `id`, and metadata `id`, `code`,
//! `detail` and `status`. The two messages are declared here with prost's derive, as their
//! `google/rpc/*.proto` declare them, rather than pulling in a crate of googleapis types.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;

use crate::Error;

/// The `type_url` of the detail.
pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// The ErrorInfo reason of a micro error.
pub const REASON: &str = "MICRO_ERROR";

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message for people.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Detail messages.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorInfo {
    /// Why, in UPPER_SNAKE_CASE.
    #[prost(string, tag = "1")]
    pub reason: String,
    /// Who: the error's `id`.
    #[prost(string, tag = "2")]
    pub domain: String,
    /// The error's fields.
    #[prost(map = "string, string", tag = "3")]
    pub metadata: HashMap<String, String>,
}

/// The error as an encoded ErrorInfo.
pub fn error_info(err: &Error) -> Bytes {
    let metadata = HashMap::from([
        ("id".to_string(), err.id.clone()),
        ("code".to_string(), err.code.to_string()),
        ("detail".to_string(), err.detail.clone()),
        ("status".to_string(), err.status.clone()),
    ]);
    let info = ErrorInfo { reason: REASON.into(), domain: err.id.clone(), metadata };
    Bytes::from(info.encode_to_vec())
}

/// The error back from an encoded ErrorInfo, if it is a micro error's.
pub fn from_error_info(bytes: &[u8]) -> Option<Error> {
    let info = ErrorInfo::decode(bytes).ok().filter(|i| i.reason == REASON)?;
    let mut err = Error::new(
        info.metadata.get("id").cloned().unwrap_or(info.domain),
        info.metadata.get("code")?.parse().ok()?,
        info.metadata.get("detail").cloned().unwrap_or_default(),
    );
    if let Some(status) = info.metadata.get("status") {
        err.status.clone_from(status);
    }
    Some(err)
}

/// The `grpc-status-details-bin` value of an error: its `google.rpc.Status`, unpadded base64.
pub fn details_bin(err: &Error) -> String {
    let status = RpcStatus {
        code: err.grpc_code() as i32,
        message: err.detail.clone(),
        details: vec![prost_types::Any { type_url: ERROR_INFO_TYPE.into(), value: error_info(err).to_vec() }],
    };
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_info_round_trip() {
        let err = Error::from_grpc("svc", crate::error::GrpcCode::Aborted, "try again");
        assert_eq!(from_error_info(&error_info(&err)), Some(err.clone()));
        let bin = base64::engine::general_purpose::STANDARD_NO_PAD.decode(details_bin(&err)).unwrap();
        let status = RpcStatus::decode(&bin[..]).unwrap();
        assert_eq!((status.code, status.message.as_str()), (10, "try again"));
        assert_eq!(from_error_info(&status.details[0].value), Some(err));
    }
}
