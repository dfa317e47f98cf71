//! `google.protobuf.Any` with the proto3 JSON mapping, and the registry of the types it can hold.
//!
//! In JSON an `Any` is the packed message's own JSON object with an `@type` field naming it
//! (`{"@type": "type.googleapis.com/shop.Item", "id": "7"}`), or, for a well-known type with a
//! JSON form of its own (Duration, Timestamp, FieldMask, Struct, Value, ListValue, the wrappers,
//! Any), `{"@type": ..., "value": <that form>}`. Writing or reading that needs the packed type,
//! so the types an `Any` may hold are registered by their type URL: the well-known types always
//! are; generated code registers every message of a package ([`register`]) when a client or a
//! handler of the package is made, and code may call the package's `register_types()` itself. An
//! `Any` holding a type that is not registered is an error, in JSON only: protobuf carries it as
//! bytes.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use bytes::Bytes;

use crate::codec::Message;

/// A message of any type, packed: its type URL and its protobuf encoding.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Any {
    /// `type.googleapis.com/<full name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The message, protobuf-encoded.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

impl prost::Name for Any {
    const NAME: &'static str = "Any";
    const PACKAGE: &'static str = "google.protobuf";
}

impl Any {
    /// Packs `message`.
    pub fn from_msg<M: prost::Message + prost::Name>(message: &M) -> Any {
        Any { type_url: M::type_url(), value: message.encode_to_vec().into() }
    }

    /// Unpacks the message, if it is an `M`.
    pub fn to_msg<M: prost::Message + prost::Name + Default>(&self) -> Result<M, String> {
        if self.type_url != M::type_url() {
            return Err(format!("the Any holds {}, not {}", self.type_url, M::type_url()));
        }
        M::decode(self.value.clone()).map_err(|e| format!("the Any's {} does not decode: {e}", self.type_url))
    }
}

/// How a registered type turns protobuf bytes into JSON and back.
#[derive(Clone, Copy)]
struct Codec {
    to_json: fn(&[u8]) -> Result<serde_json::Value, String>,
    from_json: fn(serde_json::Value) -> Result<Vec<u8>, String>,
    /// A well-known type with a JSON form of its own: it goes in `value`.
    wrapped: bool,
}

/// The most `Any`s inside one another that JSON is written or read for (each level decodes
/// afresh, so prost's own recursion limit does not apply across them).
pub const MAX_DEPTH: usize = 32;

thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f` one `Any` deeper, refusing beyond [`MAX_DEPTH`].
fn nested<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let depth = DEPTH.with(|d| d.get());
    if depth >= MAX_DEPTH {
        return Err(format!("Anys nested more than {MAX_DEPTH} deep"));
    }
    DEPTH.with(|d| d.set(depth + 1));
    let out = f();
    DEPTH.with(|d| d.set(depth));
    out
}

fn to_json<M: Message>(bytes: &[u8]) -> Result<serde_json::Value, String> {
    nested(|| {
        let m = M::decode(bytes).map_err(|e| format!("does not decode: {e}"))?;
        serde_json::to_value(&m).map_err(|e| e.to_string())
    })
}

fn from_json<M: Message>(json: serde_json::Value) -> Result<Vec<u8>, String> {
    nested(|| {
        let m: M = serde_json::from_value(json).map_err(|e| e.to_string())?;
        Ok(m.encode_to_vec())
    })
}

fn registry() -> &'static RwLock<HashMap<String, Codec>> {
    static REGISTRY: OnceLock<RwLock<HashMap<String, Codec>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut known = HashMap::new();
        let mut wkt = |name: &str, c: Codec| {
            known.insert(format!("google.protobuf.{name}"), c);
        };
        macro_rules! wrapped {
            ($($name:literal => $t:ty),* $(,)?) => {
                $( wkt($name, Codec { to_json: to_json::<$t>, from_json: from_json::<$t>, wrapped: true }); )*
            };
        }
        wrapped!(
            "Duration" => super::Duration, "Timestamp" => super::Timestamp, "FieldMask" => super::FieldMask,
            "Struct" => super::Struct, "Value" => super::Value, "ListValue" => super::ListValue,
            "DoubleValue" => super::DoubleValue, "FloatValue" => super::FloatValue,
            "Int64Value" => super::Int64Value, "UInt64Value" => super::UInt64Value,
            "Int32Value" => super::Int32Value, "UInt32Value" => super::UInt32Value,
            "BoolValue" => super::BoolValue, "StringValue" => super::StringValue,
            "BytesValue" => super::BytesValue, "Any" => Any,
        );
        wkt("Empty", Codec { to_json: to_json::<super::Empty>, from_json: from_json::<super::Empty>, wrapped: false });
        RwLock::new(known)
    })
}

/// Makes `M` something an [`Any`] can hold in JSON (generated code calls it for every message).
pub fn register<M: Message + prost::Name>() {
    let name = M::full_name();
    let known = registry().read().unwrap_or_else(|e| e.into_inner()).contains_key(&name);
    if !known {
        let codec = Codec { to_json: to_json::<M>, from_json: from_json::<M>, wrapped: false };
        registry().write().unwrap_or_else(|e| e.into_inner()).insert(name, codec);
    }
}

/// The codec of the type a type URL names (by the name after its last `/`, whatever the host).
fn codec_of(url: &str) -> Result<Codec, String> {
    let name = url.rsplit('/').next().unwrap_or(url);
    registry().read().unwrap_or_else(|e| e.into_inner()).get(name).copied().ok_or_else(|| {
        format!("an Any holds {url}, a type this program has not registered (call its package's register_types())")
    })
}

impl serde::Serialize for Any {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let codec = codec_of(&self.type_url).map_err(S::Error::custom)?;
        let json = (codec.to_json)(&self.value).map_err(|e| S::Error::custom(format!("{}: {e}", self.type_url)))?;
        let mut object = serde_json::Map::new();
        object.insert("@type".into(), self.type_url.clone().into());
        match json {
            serde_json::Value::Object(fields) if !codec.wrapped => object.extend(fields),
            other => {
                object.insert("value".into(), other);
            }
        }
        object.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Any {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let Some(serde_json::Value::String(url)) = object.remove("@type") else {
            return Err(D::Error::custom("an Any needs its \"@type\""));
        };
        let codec = codec_of(&url).map_err(D::Error::custom)?;
        let json = if codec.wrapped {
            object.remove("value").unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Object(object)
        };
        let value = (codec.from_json)(json).map_err(|e| D::Error::custom(format!("{url}: {e}")))?;
        Ok(Any { type_url: url, value: value.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_types_go_in_value_and_messages_inline() {
        use prost::Message as _;
        let packed = |name: &str, value: Vec<u8>| Any {
            type_url: format!("type.googleapis.com/google.protobuf.{name}"),
            value: value.into(),
        };
        let d = packed("Duration", super::super::Duration { seconds: 1, nanos: 500_000_000 }.encode_to_vec());
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1.500s"})
        );
        assert_eq!(serde_json::from_value::<Any>(json).unwrap(), d);
        let e = packed("Empty", vec![]);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"@type": "type.googleapis.com/google.protobuf.Empty"})
        );
        let unknown = Any { type_url: "type.googleapis.com/nobody.Knows".into(), value: Bytes::new() };
        assert!(serde_json::to_string(&unknown).unwrap_err().to_string().contains("has not registered"));
        assert!(serde_json::from_str::<Any>(r#"{"value":1}"#).is_err());
        let elsewhere = Any { type_url: "example.com/x/google.protobuf.Empty".into(), value: Bytes::new() };
        assert!(serde_json::to_string(&elsewhere).is_ok(), "the type is found by its name, whatever the host");

        // Anys inside Anys: refused past the depth limit, not a stack overflow.
        let mut deep = packed("Empty", vec![]);
        for _ in 0..MAX_DEPTH + 5 {
            deep =
                Any { type_url: "type.googleapis.com/google.protobuf.Any".into(), value: deep.encode_to_vec().into() };
        }
        assert!(serde_json::to_string(&deep).unwrap_err().to_string().contains("nested more than"));
    }
}
