//! Human-readable views of registry records, laid out as Go Micro's `micro get service`.

use std::fmt::Write as _;

use micro::registry::{Service, Value};

fn join_metadata<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    m.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn field(v: &Value, depth: usize, out: &mut String) {
    let indent = "\t".repeat(depth + 1);
    if v.values.is_empty() {
        let _ = writeln!(out, "{indent}{} {}", v.name.to_lowercase(), v.r#type);
        return;
    }
    let _ = writeln!(out, "{indent}{} {} {{", v.name.to_lowercase(), v.r#type);
    for child in &v.values {
        field(child, depth + 1, out);
    }
    let _ = writeln!(out, "{indent}}}");
}

fn shape(v: Option<&Value>) -> String {
    match v {
        Some(v) if !v.values.is_empty() => {
            let mut out = String::from("{\n");
            for f in &v.values {
                field(f, 0, &mut out);
            }
            out.push('}');
            out
        }
        _ => "{}".to_string(),
    }
}

/// `micro get service` output for every version of one service.
pub(crate) fn service(versions: &[Service]) -> String {
    let Some(first) = versions.first() else {
        return String::new();
    };
    let mut lines = vec![format!("service  {}", first.name)];
    for v in versions {
        if !v.version.is_empty() {
            lines.push(format!("\nversion {}", v.version));
        }
        lines.push("\nID\tAddress\tMetadata".to_string());
        for n in &v.nodes {
            lines.push(format!("{}\t{}\t{}", n.id, n.address, join_metadata(&n.metadata)));
        }
    }
    let newest = versions.last().unwrap_or(first);
    for e in &newest.endpoints {
        lines.push(format!("\nEndpoint: {}", e.name));
        if !e.metadata.is_empty() {
            lines.push(format!("Metadata: {}", join_metadata(&e.metadata)));
        }
        lines.push(String::new());
        lines.push(format!("Request: {}\n\nResponse: {}\n", shape(e.request.as_ref()), shape(e.response.as_ref())));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use micro::registry::{Endpoint, Node};

    use super::*;

    fn v(name: &str, ty: &str, values: Vec<Value>) -> Value {
        Value { name: name.into(), r#type: ty.into(), values }
    }

    #[test]
    fn get_service_layout_matches_go_micro() {
        let svc = Service {
            name: "go.micro.srv.example".into(),
            version: "latest".into(),
            metadata: BTreeMap::new(),
            endpoints: vec![
                Endpoint {
                    name: "Example.Call".into(),
                    request: Some(v("Request", "Request", vec![v("name", "string", vec![])])),
                    response: Some(v("Response", "Response", vec![v("msg", "string", vec![])])),
                    metadata: BTreeMap::new(),
                },
                Endpoint {
                    name: "Example.Stream".into(),
                    request: Some(v(
                        "StreamingRequest",
                        "StreamingRequest",
                        vec![v("inner", "Inner", vec![v("count", "int64", vec![])])],
                    )),
                    response: None,
                    metadata: BTreeMap::from([("stream".into(), "true".into())]),
                },
            ],
            nodes: vec![Node {
                id: "go.micro.srv.example-1".into(),
                address: "127.0.0.1:5000".into(),
                metadata: BTreeMap::from([("broker".into(), "http".into()), ("registry".into(), "mdns".into())]),
            }],
        };
        let expected = "service  go.micro.srv.example\n\nversion latest\n\nID\tAddress\tMetadata\ngo.micro.srv.example-1\t127.0.0.1:5000\tbroker=http,registry=mdns\n\nEndpoint: Example.Call\n\nRequest: {\n\tname string\n}\n\nResponse: {\n\tmsg string\n}\n\n\nEndpoint: Example.Stream\nMetadata: stream=true\n\nRequest: {\n\tinner Inner {\n\t\tcount int64\n\t}\n}\n\nResponse: {}\n";
        assert_eq!(service(&[svc]), expected);
    }
}
