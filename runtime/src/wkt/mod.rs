//! The protobuf well-known types (`Timestamp`, `Duration`, `Struct`, `Empty`, ...) as generated code
//! uses them, with the proto3 JSON mapping.
//!
//! Most come from `pbjson-types`. Three are the runtime's own, because pbjson-types writes them
//! in forms the mapping does not allow (checked against Python protobuf's `json_format` by
//! `tests/tests/wkt_json.rs`):
//! - [`Timestamp`]: RFC 3339 in UTC with `Z` and 0, 3, 6 or 9 fractional digits
//!   (`1972-01-01T10:00:20.021Z`; pbjson-types writes `+00:00`).
//! - [`FieldMask`]: one string of lowerCamelCase paths joined by commas (`"fDouble,inner.name"`;
//!   pbjson-types writes `{"paths": [...]}`).
//! - [`Any`]: the packed message's JSON with an `@type` field (or its JSON in `value`, for a
//!   well-known type with a JSON form of its own); pbjson-types writes `{"typeUrl", "value"}`.
//!   That needs the packed type's Rust type: generated code registers every message of a package
//!   when a client or handler of the package is made (`register_types()` of the package module,
//!   which code may call itself); the well-known types are always known. See [`any`].

pub mod any;
mod field_mask;
mod timestamp;

pub use pbjson_types::*;

pub use any::Any;
pub use field_mask::FieldMask;
pub use timestamp::Timestamp;
