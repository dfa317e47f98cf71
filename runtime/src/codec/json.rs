//! The JSON codec: the proto3 JSON mapping (lowerCamelCase out, both names in, 64-bit integers as
//! strings, enums by name, bytes as base64, well-known types in their special forms, NaN and the
//! infinities as `"NaN"`, `"Infinity"` and `"-Infinity"`).

use bytes::{BufMut, BytesMut};
use serde::ser::{self, Serialize, Serializer};

use super::Message;
use crate::Error;

/// Appends the JSON encoding of `msg` to `buf`.
pub fn encode_into<M: Message>(msg: &M, buf: &mut BytesMut) -> Result<(), Error> {
    msg.serialize(Proto3(&mut serde_json::Serializer::new(buf.writer())))
        .map_err(|e| Error::internal_server_error(super::ID, format!("json encode: {e}")))
}

/// Decodes JSON; an empty body is the empty message.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(M::default());
    }
    serde_json::from_slice(bytes).map_err(|e| Error::bad_request(super::ID, format!("invalid JSON: {e}")))
}

/// A serializer that writes non-finite floats as the strings proto3 JSON prescribes and passes
/// everything else to the serializer it wraps. The generated (pbjson) impls hand floats to serde
/// as numbers, and serde_json writes a non-finite one as `null`, which no decoder reads back.
struct Proto3<S>(S);

/// A value serialized through [`Proto3`], so nested floats are caught too.
struct Nested<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Proto3(serializer))
    }
}

fn non_finite(v: f64) -> Option<&'static str> {
    match v {
        v if v.is_nan() => Some("NaN"),
        f64::INFINITY => Some("Infinity"),
        f64::NEG_INFINITY => Some("-Infinity"),
        _ => None,
    }
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.0.$method($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for Proto3<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Proto3<S::SerializeSeq>;
    type SerializeTuple = Proto3<S::SerializeTuple>;
    type SerializeTupleStruct = Proto3<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Proto3<S::SerializeTupleVariant>;
    type SerializeMap = Proto3<S::SerializeMap>;
    type SerializeStruct = Proto3<S::SerializeStruct>;
    type SerializeStructVariant = Proto3<S::SerializeStructVariant>;

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        match non_finite(v.into()) {
            Some(s) => self.0.serialize_str(s),
            None => self.0.serialize_f32(v),
        }
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        match non_finite(v) {
            Some(s) => self.0.serialize_str(s),
            None => self.0.serialize_f64(v),
        }
    }

    forward! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Nested(value))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Nested(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_variant(name, index, variant, &Nested(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Proto3)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Proto3)
    }

    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Proto3)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0.serialize_tuple_variant(name, index, variant, len).map(Proto3)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Proto3)
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Proto3)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0.serialize_struct_variant(name, index, variant, len).map(Proto3)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! compound {
    ($($trait:ident::$method:ident($($key:ident)?);)*) => {
        $(impl<S: ser::$trait> ser::$trait for Proto3<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? value: &T) -> Result<(), S::Error> {
                self.0.$method($($key,)? &Nested(value))
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        })*
    };
}

compound! {
    SerializeSeq::serialize_element();
    SerializeTuple::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(key);
    SerializeStructVariant::serialize_field(key);
}

impl<S: ser::SerializeMap> ser::SerializeMap for Proto3<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&Nested(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&Nested(value))
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_are_strings_that_decode_again() {
        for (v, json) in [(f64::NAN, "\"NaN\""), (f64::INFINITY, "\"Infinity\""), (f64::NEG_INFINITY, "\"-Infinity\"")]
        {
            let mut buf = BytesMut::new();
            encode_into(&pbjson_types::DoubleValue { value: v }, &mut buf).unwrap();
            assert_eq!(&buf[..], json.as_bytes());
            let back: pbjson_types::DoubleValue = decode(&buf).unwrap();
            assert_eq!(back.value.to_bits(), v.to_bits());
        }
        let mut buf = BytesMut::new();
        encode_into(&pbjson_types::FloatValue { value: f32::NEG_INFINITY }, &mut buf).unwrap();
        assert_eq!(&buf[..], b"\"-Infinity\"");
        encode_into(&pbjson_types::DoubleValue { value: 0.5 }, &mut buf).unwrap();
        assert_eq!(&buf[..], b"\"-Infinity\"0.5");
    }
}
