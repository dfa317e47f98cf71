//! `google.protobuf.FieldMask` with the proto3 JSON mapping: one string, the paths in
//! lowerCamelCase joined by commas (`"fDouble,inner.name"` for `f_double` and `inner.name`).

/// A set of field paths.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct FieldMask {
    /// The paths, snake_case, dots between the fields of nested messages.
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

impl prost::Name for FieldMask {
    const NAME: &'static str = "FieldMask";
    const PACKAGE: &'static str = "google.protobuf";
}

fn camel(path: &str) -> Result<String, String> {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            return Err(format!("field mask path {path:?} is not snake_case"));
        }
        if c == '_' {
            if upper {
                return Err(format!("field mask path {path:?} has two underscores in a row"));
            }
            upper = true;
        } else if upper {
            if !c.is_ascii_lowercase() {
                return Err(format!("field mask path {path:?} has an underscore before {c:?}"));
            }
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if upper {
        return Err(format!("field mask path {path:?} ends with an underscore"));
    }
    Ok(out)
}

fn snake(path: &str) -> Result<String, String> {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c == '_' {
            return Err(format!("field mask path {path:?} must be lowerCamelCase in JSON"));
        }
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl serde::Serialize for FieldMask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let paths: Result<Vec<String>, String> = self.paths.iter().map(|p| camel(p)).collect();
        s.serialize_str(&paths.map_err(serde::ser::Error::custom)?.join(","))
    }
}

impl<'de> serde::Deserialize<'de> for FieldMask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text.is_empty() {
            return Ok(FieldMask { paths: vec![] });
        }
        let paths: Result<Vec<String>, String> = text.split(',').map(snake).collect();
        Ok(FieldMask { paths: paths.map_err(serde::de::Error::custom)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_camel_in_json() {
        let mask = FieldMask { paths: vec!["f_double".into(), "inner.name".into(), "a.b_c.d_e_f".into()] };
        let json = serde_json::to_string(&mask).unwrap();
        assert_eq!(json, r#""fDouble,inner.name,a.bC.dEF""#);
        assert_eq!(serde_json::from_str::<FieldMask>(&json).unwrap(), mask);
        assert_eq!(serde_json::from_str::<FieldMask>(r#""""#).unwrap().paths, Vec::<String>::new());
        assert!(serde_json::to_string(&FieldMask { paths: vec!["a__b".into()] }).is_err());
        assert!(serde_json::from_str::<FieldMask>(r#""a_b""#).is_err());
    }
}
