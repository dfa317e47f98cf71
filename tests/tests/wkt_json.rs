//! Proto3 JSON against the reference: Python protobuf's `json_format`, over the same descriptors
//! (`fuzz/proto/fuzz.proto`'s `Everything`, which holds every well-known type and every kind of
//! field), both ways. What we write must be what the reference writes for the same message, and
//! what the reference writes must decode here into the same message.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use micro::codec::{Codec, Described};
use micro_tests::fuzz::proto::Everything;
use serde_json::{json, Value};

/// The reference, as a process answering one request per line.
struct Reference {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    _set: tempfile::NamedTempFile,
}

impl Reference {
    fn start() -> Reference {
        let set = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(set.path(), Everything::file_descriptor_set()).unwrap();
        let mut child = Command::new(micro_tests::python())
            .arg(micro_tests::repo_root().join("tests/python/json_format.py"))
            .arg(set.path())
            .arg("fuzz.Everything")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Reference { child, out, _set: set }
    }

    fn ask(&mut self, req: Value) -> Value {
        writeln!(self.child.stdin.as_mut().unwrap(), "{req}").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("the reference answered {line:?}: {e}"))
    }

    /// The reference's canonical JSON of a binary message.
    fn json_of(&mut self, binary: &[u8]) -> Value {
        use base64::Engine as _;
        let a = self.ask(json!({ "binary": base64::engine::general_purpose::STANDARD.encode(binary) }));
        let text = a["json"].as_str().unwrap_or_else(|| panic!("the reference refused our binary: {a}"));
        serde_json::from_str(text).unwrap()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Inputs that reach every rule of the mapping.
const CASES: &[&str] = &[
    r#"{"at":"1972-01-01T10:00:20.021Z"}"#,
    r#"{"at":"1970-01-01T00:00:00Z","times":["2000-01-01T00:00:00+01:00","1999-12-31T23:59:59.123456789Z","2024-02-29T12:00:00.120Z","0001-01-01T00:00:00Z","9999-12-31T23:59:59.999999999Z"]}"#,
    r#"{"took":"1.5s"}"#,
    r#"{"took":"-0.500s"}"#,
    r#"{"took":"3.000000001s"}"#,
    r#"{"took":"0s","at":"2024-05-05T05:05:05.000001Z"}"#,
    r#"{"extra":{"a":1,"b":[true,null,"s",{"c":{}}],"d":-2.5}}"#,
    r#"{"value":"text"}"#,
    r#"{"value":null}"#,
    r#"{"value":[1,"two",{"three":3}]}"#,
    r#"{"value":{"k":false}}"#,
    r#"{"list":[null,false,0.25]}"#,
    r#"{"values":{"n":null,"s":"s","l":[1,[2]]}}"#,
    r#"{"wrappedInt64":"12","wrappedUint32":13,"wrappedDouble":1.25,"wrappedBool":false,"wrappedString":"","wrappedBytes":"d3c="}"#,
    r#"{"wrappedFloat":"Infinity","wrappedDouble":"NaN"}"#,
    r#"{"mask":"fDouble,inner.name"}"#,
    r#"{"any":{"@type":"type.googleapis.com/fuzz.Inner","name":"a","level":"LEVEL_LOW"}}"#,
    r#"{"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1.5s"}}"#,
    r#"{"any":{"@type":"type.googleapis.com/google.protobuf.Timestamp","value":"2020-01-01T00:00:00Z"}}"#,
    r#"{"nothing":{}}"#,
    r#"{"fBytes":"aGVsbG8=","blobs":["","AA==","_-8"]}"#,
    r#"{"level":"LEVEL_HIGH","levels":["LEVEL_LOW",2,0],"maybeLevel":"LEVEL_UNSPECIFIED"}"#,
    r#"{"fInt64":"-9007199254740993","fUint64":"18446744073709551615","int64s":["1","-2",3],"fSint64":"-2","fFixed64":"4","fSfixed64":"-6"}"#,
    r#"{"fDouble":"NaN","doubles":["Infinity","-Infinity",0.1,1e300],"floats":[1.5,"NaN"],"fFloat":-2.25}"#,
    r#"{"byId":{"-1":"minus one","9223372036854775807":"max"},"byFlag":{"true":"AQ==","false":""},"bySint":{"-3":2.5},"levelsByCode":{"0":"LEVEL_HIGH","7":1}}"#,
    r#"{"inner":{"name":"a","children":[{"name":"b"}],"named":{"c":{"name":"c"}}},"maybeInt64":"0","maybeString":""}"#,
    r#"{"fString":"héllo \u0000 \ud83d\ude00","fBool":true,"fInt32":-7,"fUint32":4294967295}"#,
];

#[test]
fn our_json_is_the_references_both_ways() {
    micro_tests::fuzz::proto::register_types();
    let mut reference = Reference::start();
    let mut failures = vec![];
    for case in CASES {
        // Ours → the reference: our JSON of what we decoded is what it writes for our binary.
        let ours: Everything = match Codec::Json.decode(case.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("we refused {case}: {}", e.detail));
                continue;
            }
        };
        let our_json: Value = serde_json::from_slice(&Codec::Json.encode(&ours).unwrap()).unwrap();
        let our_binary = Codec::Proto.encode(&ours).unwrap();
        let theirs = reference.json_of(&our_binary);
        if our_json != theirs {
            failures.push(format!("{case}\n  we write  {our_json}\n  reference {theirs}"));
        }
        // The reference → ours: what it writes decodes here to the same message.
        let parsed = reference.ask(json!({ "json": case }));
        let Some(canonical) = parsed["json"].as_str() else {
            failures.push(format!("the reference refused {case}: {parsed}"));
            continue;
        };
        match Codec::Json.decode::<Everything>(canonical.as_bytes()) {
            Ok(back) => {
                let again = reference.json_of(&Codec::Proto.encode(&back).unwrap());
                let canonical: Value = serde_json::from_str(canonical).unwrap();
                if again != canonical {
                    failures.push(format!("{canonical} decoded here as {again}"));
                }
            }
            Err(e) => failures.push(format!("we refused the reference's {canonical}: {}", e.detail)),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}
