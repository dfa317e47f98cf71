//! Protobuf descriptors known to a server: the source of endpoint field trees and of server
//! reflection answers. Generated code hands each package's encoded `FileDescriptorSet` to the
//! server; this pool indexes files by name and by the symbols they define.

use std::collections::HashMap;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

use crate::registry::Value;

/// How deep field trees go before a recursive message is cut off.
const MAX_DEPTH: usize = 8;

/// Files, and the symbols each defines.
#[derive(Debug, Default)]
pub struct DescriptorPool {
    files: Vec<FileDescriptorProto>,
    by_name: HashMap<String, usize>,
    symbols: HashMap<String, usize>,
    messages: HashMap<String, (usize, Vec<usize>)>,
    /// Enum full name → its value names.
    enums: HashMap<String, Vec<String>>,
}

impl DescriptorPool {
    /// Adds every file of an encoded `FileDescriptorSet` (files already known are kept).
    pub fn add_encoded(&mut self, bytes: &[u8]) -> Result<(), prost::DecodeError> {
        let set = FileDescriptorSet::decode(bytes)?;
        for file in set.file {
            self.add_file(file);
        }
        Ok(())
    }

    /// Adds one file.
    pub fn add_file(&mut self, file: FileDescriptorProto) {
        let name = file.name().to_string();
        if self.by_name.contains_key(&name) {
            return;
        }
        let idx = self.files.len();
        let pkg = file.package();
        let prefix = if pkg.is_empty() { String::new() } else { format!("{pkg}.") };
        for (i, m) in file.message_type.iter().enumerate() {
            self.index_message(idx, &prefix, m, vec![i]);
        }
        for e in &file.enum_type {
            self.index_enum(idx, &prefix, e);
        }
        for s in &file.service {
            let svc = format!("{prefix}{}", s.name());
            for m in &s.method {
                self.symbols.insert(format!("{svc}.{}", m.name()), idx);
            }
            self.symbols.insert(svc, idx);
        }
        self.by_name.insert(name, idx);
        self.files.push(file);
    }

    fn index_message(&mut self, file: usize, prefix: &str, m: &DescriptorProto, path: Vec<usize>) {
        let full = format!("{prefix}{}", m.name());
        for e in &m.enum_type {
            self.index_enum(file, &format!("{full}."), e);
        }
        for (i, nested) in m.nested_type.iter().enumerate() {
            let mut p = path.clone();
            p.push(i);
            self.index_message(file, &format!("{full}."), nested, p);
        }
        self.symbols.insert(full.clone(), file);
        self.messages.insert(full, (file, path));
    }

    fn index_enum(&mut self, file: usize, prefix: &str, e: &prost_types::EnumDescriptorProto) {
        let full = format!("{prefix}{}", e.name());
        self.symbols.insert(full.clone(), file);
        self.enums.insert(full, e.value.iter().map(|v| v.name().to_string()).collect());
    }

    /// A file by name.
    pub fn file_by_name(&self, name: &str) -> Option<&FileDescriptorProto> {
        self.by_name.get(name).map(|&i| &self.files[i])
    }

    /// The file that defines a fully qualified symbol (no leading dot).
    pub fn file_containing(&self, symbol: &str) -> Option<&FileDescriptorProto> {
        let symbol = symbol.trim_start_matches('.');
        self.symbols.get(symbol).map(|&i| &self.files[i])
    }

    /// Fully qualified names of every service.
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.files
                .iter()
                .flat_map(|f| {
                    let pkg = f.package().to_string();
                    f.service.iter().map(move |s| {
                        if pkg.is_empty() {
                            s.name().to_string()
                        } else {
                            format!("{pkg}.{}", s.name())
                        }
                    })
                })
                .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The gRPC paths (`/package.Service/Method`) of the methods declared free of side effects
    /// (`option idempotency_level = NO_SIDE_EFFECTS`), which Connect lets browsers call with `GET`.
    pub fn no_side_effects(&self) -> std::collections::HashSet<String> {
        use prost_types::method_options::IdempotencyLevel;
        let mut out = std::collections::HashSet::new();
        for f in &self.files {
            let prefix = if f.package().is_empty() { String::new() } else { format!("{}.", f.package()) };
            for s in &f.service {
                for m in &s.method {
                    if m.options.as_ref().is_some_and(|o| o.idempotency_level() == IdempotencyLevel::NoSideEffects) {
                        out.insert(format!("/{prefix}{}/{}", s.name(), m.name()));
                    }
                }
            }
        }
        out
    }

    /// A file and everything it imports, transitively, each once, the file itself first.
    pub fn with_dependencies<'a>(&'a self, file: &'a FileDescriptorProto) -> Vec<&'a FileDescriptorProto> {
        let mut out: Vec<&FileDescriptorProto> = vec![];
        let mut queue = vec![file];
        while let Some(f) = queue.pop() {
            if out.iter().any(|o| o.name() == f.name()) {
                continue;
            }
            out.push(f);
            for dep in &f.dependency {
                if let Some(d) = self.file_by_name(dep) {
                    queue.push(d);
                }
            }
        }
        out
    }

    fn message(&self, name: &str) -> Option<&DescriptorProto> {
        let (file, path) = self.messages.get(name.trim_start_matches('.'))?;
        let mut m = self.files[*file].message_type.get(path[0])?;
        for &i in &path[1..] {
            m = m.nested_type.get(i)?;
        }
        Some(m)
    }

    /// The field tree of a message type, as the registry shows it: scalars by their proto name
    /// (`int64`), repeated fields as `[]T`, maps as `map[K]V`, messages by their short name with
    /// their fields, enums by their short name with their values listed as `{name, type: "enum"}`,
    /// and the well-known types (`google.protobuf.*`, whose JSON forms are their own) by their
    /// full name, without fields.
    pub fn value_of(&self, type_name: &str) -> Value {
        let short = type_name.rsplit('.').next().unwrap_or(type_name).to_string();
        Value { name: short.clone(), r#type: short, values: self.fields(type_name, 0) }
    }

    fn fields(&self, type_name: &str, depth: usize) -> Vec<Value> {
        let Some(m) = self.message(type_name) else {
            return vec![];
        };
        if depth >= MAX_DEPTH {
            return vec![];
        }
        m.field
            .iter()
            .map(|f| {
                let (ty, values) = self.field_type(f, depth);
                Value { name: f.name().to_string(), r#type: ty, values }
            })
            .collect()
    }

    fn field_type(&self, f: &prost_types::FieldDescriptorProto, depth: usize) -> (String, Vec<Value>) {
        let repeated = f.label() == Label::Repeated;
        let (base, values) = match f.r#type() {
            Type::Message => {
                let tn = f.type_name();
                if let Some(entry) = self.message(tn).filter(|m| m.options.as_ref().is_some_and(|o| o.map_entry())) {
                    let k = entry.field.first().map(|k| self.field_type(k, depth + 1).0).unwrap_or_default();
                    let (v, vals) = entry.field.get(1).map(|v| self.field_type(v, depth + 1)).unwrap_or_default();
                    return (format!("map[{k}]{v}"), vals);
                }
                if tn.starts_with(".google.protobuf.") {
                    (tn[1..].to_string(), vec![])
                } else {
                    (tn.rsplit('.').next().unwrap_or(tn).to_string(), self.fields(tn, depth + 1))
                }
            }
            Type::Enum => {
                let tn = f.type_name();
                let values = self.enums.get(tn.trim_start_matches('.')).into_iter().flatten();
                let values = values.map(|v| Value { name: v.clone(), r#type: "enum".into(), values: vec![] }).collect();
                (tn.rsplit('.').next().unwrap_or_default().to_string(), values)
            }
            other => (scalar_name(other).to_string(), vec![]),
        };
        (if repeated { format!("[]{base}") } else { base }, values)
    }
}

fn scalar_name(t: Type) -> &'static str {
    match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => "message",
    }
}
