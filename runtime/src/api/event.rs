//! The event the gateway's `event` handler publishes (Go Micro's `go.micro.api.Event`): the
//! request's body with a name, an id, a time and the request's headers, so subscribers can tell
//! `/user/login` from `/user/logout` (both published to `<namespace>.user`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A header's values (Go Micro's `go.micro.api.Pair`).
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct Pair {
    /// The header's name.
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub key: String,
    /// Its values, in order.
    #[prost(string, repeated, tag = "2")]
    #[serde(default)]
    pub values: Vec<String>,
}

/// `go.micro.api.Event`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct Event {
    /// What happened: the path after the topic's segment, dots between segments (`login`).
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub name: String,
    /// A unique id (a UUID).
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub id: String,
    /// When it was published, in Unix seconds.
    #[prost(int64, tag = "3")]
    #[serde(default)]
    pub timestamp: i64,
    /// The request's headers (as the gateway passes them on).
    #[prost(btree_map = "string, message", tag = "4")]
    #[serde(default)]
    pub header: BTreeMap<String, Pair>,
    /// The request's body.
    #[prost(string, tag = "5")]
    #[serde(default)]
    pub data: String,
}

impl prost::Name for Pair {
    const NAME: &'static str = "Pair";
    const PACKAGE: &'static str = "go.micro.api";
}

impl prost::Name for Event {
    const NAME: &'static str = "Event";
    const PACKAGE: &'static str = "go.micro.api";
}

impl crate::codec::Described for Event {
    fn file_descriptor_set() -> &'static [u8] {
        static SET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        SET.get_or_init(descriptor_set)
    }
}

/// `go/micro/api/api.proto` (its `Pair` and `Event`), as a `FileDescriptorSet`, so subscribers of
/// events show the event's fields in the registry.
fn descriptor_set() -> Vec<u8> {
    use prost::Message as _;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, MessageOptions};
    let field = |name: &str, number: i32, ty: Type, label: Label, type_name: Option<&str>| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        r#type: Some(ty as i32),
        label: Some(label as i32),
        type_name: type_name.map(str::to_string),
        json_name: Some(name.into()),
        ..Default::default()
    };
    let pair = DescriptorProto {
        name: Some("Pair".into()),
        field: vec![
            field("key", 1, Type::String, Label::Optional, None),
            field("values", 2, Type::String, Label::Repeated, None),
        ],
        ..Default::default()
    };
    let header_entry = DescriptorProto {
        name: Some("HeaderEntry".into()),
        field: vec![
            field("key", 1, Type::String, Label::Optional, None),
            field("value", 2, Type::Message, Label::Optional, Some(".go.micro.api.Pair")),
        ],
        options: Some(MessageOptions { map_entry: Some(true), ..Default::default() }),
        ..Default::default()
    };
    let event = DescriptorProto {
        name: Some("Event".into()),
        field: vec![
            field("name", 1, Type::String, Label::Optional, None),
            field("id", 2, Type::String, Label::Optional, None),
            field("timestamp", 3, Type::Int64, Label::Optional, None),
            field("header", 4, Type::Message, Label::Repeated, Some(".go.micro.api.Event.HeaderEntry")),
            field("data", 5, Type::String, Label::Optional, None),
        ],
        nested_type: vec![header_entry],
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("go/micro/api/api.proto".into()),
        package: Some("go.micro.api".into()),
        message_type: vec![pair, event],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    FileDescriptorSet { file: vec![file] }.encode_to_vec()
}

/// The topic (`<namespace>.<first segment>`) and the event's name (the rest, joined with dots)
/// of a path; `None` when the path names no topic.
pub fn topic_and_name(namespace: &str, path: &str) -> Option<(String, String)> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let first = segments.next()?;
    let name = segments.collect::<Vec<_>>().join(".");
    let topic = if namespace.is_empty() { first.to_string() } else { format!("{namespace}.{first}") };
    Some((topic, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_describes_the_event() {
        let mut pool = crate::server::descriptors::DescriptorPool::default();
        pool.add_encoded(<Event as crate::codec::Described>::file_descriptor_set()).unwrap();
        let tree = pool.value_of(".go.micro.api.Event");
        let names: Vec<&str> = tree.values.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["name", "id", "timestamp", "header", "data"], "{tree:?}");
    }

    #[test]
    fn paths_become_topics_and_names() {
        assert_eq!(topic_and_name("go.micro.evt", "/user/login"), Some(("go.micro.evt.user".into(), "login".into())));
        assert_eq!(topic_and_name("ns", "/user/a/b/"), Some(("ns.user".into(), "a.b".into())));
        assert_eq!(topic_and_name("", "/user"), Some(("user".into(), String::new())));
        assert_eq!(topic_and_name("ns", "/"), None);
    }
}
