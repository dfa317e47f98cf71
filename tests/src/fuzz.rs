//! The fuzz targets (`fuzz/`) as the test suite sees them: their checks by name, the message the
//! JSON target decodes into, and the seed inputs the corpus grew from, each with whether it must
//! decode.

use std::collections::BTreeMap;
use std::time::Duration;

use micro::registry::mdns::encode_txt;
use micro::registry::{Endpoint, Node, Service, Value};
use micro::transport::grpc::frame;

/// `fuzz/proto/fuzz.proto`, compiled.
#[allow(clippy::all)]
pub mod proto {
    micro::include_proto!("fuzz");
}

/// The fuzz targets, as named in `fuzz/Cargo.toml`.
/// (`websocket_bridge` is the tools' own: its seeds and replay live with the `micro` CLI.)
pub const TARGETS: [&str; 7] =
    ["grpc_frame", "json_codec", "gateway_path", "gateway_query", "gateway_route", "mdns_txt", "etcd_record"];

/// The check a target runs on each input; it returns whether the input decoded.
pub fn check(target: &str) -> fn(&[u8]) -> bool {
    match target {
        "grpc_frame" => micro::fuzzing::grpc_frame,
        "json_codec" => {
            proto::register_types();
            micro::fuzzing::json_codec::<proto::Everything>
        }
        "gateway_path" => micro::fuzzing::gateway_path,
        "gateway_query" => micro::fuzzing::gateway_query,
        "gateway_route" => micro::fuzzing::gateway_route,
        "mdns_txt" => micro::fuzzing::mdns_txt,
        "etcd_record" => micro::fuzzing::etcd_record,
        _ => panic!("no fuzz target is named {target}"),
    }
}

/// The seed inputs of a target, each with whether it must decode.
pub fn seeds(target: &str) -> Vec<(Vec<u8>, bool)> {
    match target {
        "grpc_frame" => grpc_frame_seeds(),
        "json_codec" => JSON_SEEDS.iter().map(|(s, ok)| (s.as_bytes().to_vec(), *ok)).collect(),
        "gateway_path" => PATH_SEEDS.iter().map(|(s, ok)| (s.as_bytes().to_vec(), *ok)).collect(),
        "gateway_query" => QUERY_SEEDS.iter().map(|(s, ok)| (s.to_vec(), *ok)).collect(),
        "gateway_route" => ROUTE_SEEDS.iter().map(|(s, ok)| (s.as_bytes().to_vec(), *ok)).collect(),
        "mdns_txt" => mdns_txt_seeds(),
        "etcd_record" => etcd_record_seeds(),
        _ => panic!("no fuzz target is named {target}"),
    }
}

/// Two bytes of settings (piece size, size limit as a power of two), then the stream.
fn stream(piece: u8, limit: u8, frames: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![piece, limit];
    for f in frames {
        out.extend_from_slice(f);
    }
    out
}

fn grpc_frame_seeds() -> Vec<(Vec<u8>, bool)> {
    let echo = frame(b"\x0a\x05hello\x20\x2a");
    let json = frame(br#"{"message":"hello"}"#);
    let empty = frame(b"");
    let big = frame(&[7; 300]);
    vec![
        (stream(255, 22, &[&echo]), true),
        (stream(0, 22, &[&json]), true),
        (stream(3, 10, &[&empty]), true),
        (stream(4, 16, &[&echo, &empty, &json, &big]), true),
        (stream(7, 9, &[&big]), true),
        (stream(7, 8, &[&big]), false),
        (stream(1, 22, &[&echo[..echo.len() - 1]]), false),
        (stream(2, 22, &[b"\x01\x00\x00\x00\x01x"]), false),
        (stream(2, 22, &[b"\x80\x00\x00\x00\x00"]), false),
        (stream(9, 22, &[b"\x00\xff\xff\xff\xff"]), false),
        (stream(9, 22, &[&echo, b"\x00\x00"]), false),
        (vec![1], false),
    ]
}

const JSON_SEEDS: &[(&str, bool)] = &[
    (
        r#"{"fDouble":1.5,"fFloat":-2.25,"fInt32":-7,"fInt64":"-9007199254740993","fUint32":4294967295,
        "fUint64":"18446744073709551615","fSint32":-1,"fSint64":"-2","fFixed32":3,"fFixed64":"4","fSfixed32":-5,
        "fSfixed64":"-6","fBool":true,"fString":"héllo \u0000 \ud83d\ude00","fBytes":"aGVsbG8=","level":"LEVEL_HIGH",
        "inner":{"name":"a","level":"LEVEL_LOW","children":[{"name":"b"}],"named":{"c":{"name":"c"}}},
        "maybeInt64":"0","maybeString":"","maybeLevel":"LEVEL_UNSPECIFIED","int64s":["1","-2",3],"uint32s":[1,2],
        "doubles":[0.1,"NaN","Infinity","-Infinity",1e300],"floats":[1.5,"NaN"],"bools":[true,false],
        "strings":["x","y"],"blobs":["","AA==","_-8"],"levels":["LEVEL_LOW",2,0],"inners":[{},{"name":"z"}],
        "byName":{"k":{"name":"v"}},"byId":{"-1":"minus one","9223372036854775807":"max"},
        "levelsByCode":{"0":"LEVEL_HIGH","7":1},"byFlag":{"true":"AQ==","false":""},"bySint":{"-3":2.5},
        "text":"chosen","at":"2024-02-29T23:59:59.123456789Z","took":"-1.5s",
        "extra":{"a":1,"b":[true,null,"s",{"c":{}}]},"value":[1,"two",{"three":3}],"list":[null,false],
        "mask":"fDouble,inner.name","any":{"@type":"type.googleapis.com/fuzz.Inner","name":"a"},
        "wrappedInt64":"12","wrappedUint32":13,"wrappedDouble":1.25,"wrappedFloat":"Infinity","wrappedBool":false,
        "wrappedString":"w","wrappedBytes":"d3c=","times":["1970-01-01T00:00:00Z","2000-01-01T00:00:00+01:00"],
        "values":{"n":null,"s":"s","l":[1,[2]]}}"#,
        true,
    ),
    (r#"{"f_int64":12,"f_uint64":"12","maybe_level":1,"picked":{"name":"p"}}"#, true),
    (r#"{"blob":"AAEC","inner":null,"at":null,"took":null}"#, true),
    (r#"{"nothing":{},"took":"3.000000001s"}"#, true),
    (r#"{"pickedLevel":"LEVEL_LOW"}"#, true),
    ("{}", true),
    ("", true),
    ("{", false),
    ("[]", false),
    (r#"{"fInt32":"x"}"#, false),
    (r#"{"fInt32":2147483648}"#, false),
    (r#"{"fUint64":-1}"#, false),
    (r#"{"noSuchField":1}"#, false),
    (r#"{"at":"yesterday"}"#, false),
    (r#"{"text":"a","blob":"AA=="}"#, false),
    (r#"{"fBytes":"not base64!"}"#, false),
];

const PATH_SEEDS: &[(&str, bool)] = &[
    ("/greeter/say/hello", true),
    ("/v1/foo", true),
    ("/v1/foo/bar", true),
    ("/foo.Bar/Baz", true),
    ("/example", true),
    ("/example/call", true),
    ("/foo-bar/baz-qux", true),
    ("/a/b/c/d", true),
    ("go.micro.srv\n/example/call", true),
    ("\n/greeter/Greeter/SayHello", true),
    ("/", false),
    ("", false),
    ("/a//b", false),
    ("/../x", false),
    ("/a/./b", false),
];

/// Query strings and form bodies; "decode" means they hold a pair.
const QUERY_SEEDS: &[(&[u8], bool)] = &[
    (b"a=1&b=x+y&a=2", true),
    (b"name=John%20Smith&tags=a&tags=b", true),
    (b"c=%E2%9C%93&d&=v", true),
    (b"a=%a\xc3\xa9", true),
    (b"%zz=%4&%ff=%00", true),
    (b"k=%26%3D%2B", true),
    (b"", false),
    (b"&&&", false),
];

/// `method\ntemplate\npath`; "decode" means the path matched.
const ROUTE_SEEDS: &[(&str, bool)] = &[
    ("GET\n/v1/items/{id}\n/v1/items/42", true),
    ("get\n/v1/items/{id}\n/v1/items/a%20b", true),
    ("GET\n/v1/{name=shelves/*}\n/v1/s1", false),
    ("GET\n/files/**\n/files/a/b/c", true),
    ("POST\n/v1/*/x\n/v1/any/x", true),
    ("GET\n/v1/items/{id}\n/v1/items/%a\u{e9}", true),
    ("GET\n/v1/items/{id}\n/v1/items", false),
    ("GET\n/v1/items/{id}\n/v1/items/1/2", false),
    ("PUT\n/v1\n/v2", false),
    ("GET\n/v1/{name=shelves/*}\n/v1/shelves/s1", true),
    ("POST\n/v1/{book.id}:publish\n/v1/b1:publish", true),
    ("POST\n/v1/{book.id}:publish\n/v1/b1", false),
    ("GET\n/v1/{path=**}\n/v1/a/b", true),
    ("GET\nv1/{\n/v1/x", false),
    ("", false),
];

fn record(name: &str, endpoints: usize, node: &str) -> Service {
    Service {
        name: name.into(),
        version: "1.0.0".into(),
        metadata: BTreeMap::from([("team".into(), "core".into())]),
        endpoints: (0..endpoints)
            .map(|i| Endpoint {
                name: format!("Greeter.Method{i}"),
                request: Some(Value {
                    name: "Request".into(),
                    r#type: "Request".into(),
                    values: vec![Value { name: "name".into(), r#type: "string".into(), values: vec![] }],
                }),
                response: Some(Value { name: "Reply".into(), r#type: "Reply".into(), values: vec![] }),
                metadata: BTreeMap::from([("stream".into(), (i % 2 == 0).to_string())]),
            })
            .collect(),
        nodes: vec![Node {
            id: node.into(),
            address: "127.0.0.1:8080".into(),
            metadata: BTreeMap::from([("transport".into(), "http".into())]),
        }],
    }
}

fn mdns_txt_seeds() -> Vec<(Vec<u8>, bool)> {
    let txt = |s: &Service, ttl| micro::fuzzing::txt_rdata(&encode_txt(s, Duration::from_secs(ttl), 1));
    let greeter = record("greeter", 1, "greeter-1");
    let two_nodes = Service { nodes: [greeter.nodes.clone(), greeter.nodes.clone()].concat(), ..greeter.clone() };
    let shouting: Vec<_> = encode_txt(&greeter, Duration::from_secs(30), 1)
        .iter()
        .map(|p| (p.key().to_uppercase(), p.val().unwrap_or_default()).into())
        .collect();
    let mut first_wins = micro::fuzzing::txt_rdata(&[("v", "1").into()]);
    first_wins.extend(txt(&greeter, 30));
    let mut cut = txt(&record("big", 40, "big-1"), 60);
    cut.truncate(cut.len() - 10);
    vec![
        (txt(&greeter, 30), true),
        (txt(&record("big", 40, "big-1"), 60), true),
        (txt(&record("topic:events", 0, "subscriber"), 0), true),
        (micro::fuzzing::txt_rdata(&shouting), true),
        (first_wins, true),
        (txt(&two_nodes, 30), false),
        (txt(&Service { name: String::new(), ..greeter.clone() }, 30), false),
        (cut, false),
        (micro::fuzzing::txt_rdata(&[("v", "1").into(), ("n", "1").into(), ("r0", "garbage").into()]), false),
        (micro::fuzzing::txt_rdata(&[("v", "1").into(), ("n", "999999").into()]), false),
        (micro::fuzzing::txt_rdata(&[("v", "2").into()]), false),
        (vec![], false),
    ]
}

fn etcd_record_seeds() -> Vec<(Vec<u8>, bool)> {
    let json = |s: &Service| serde_json::to_vec(s).expect("records encode");
    let go_style = r#"{"name":"go.micro.srv.greeter","version":"latest","metadata":{},"endpoints":[{"name":
        "Greeter.Hello","request":{"name":"Request","type":"Request","values":[{"name":"name","type":"string"}]},"response":{"name":"Response","type":"Response"},"metadata":{}}],"nodes":[{"id":
        "go.micro.srv.greeter-1","address":"10.0.0.1:54321","metadata":{"registry":"etcd"}}]}"#;
    vec![
        (json(&record("greeter", 1, "greeter-1")), true),
        (json(&record("big", 40, "big-1")), true),
        (br#"{"name":"bare"}"#.to_vec(), true),
        (go_style.as_bytes().to_vec(), true),
        (br#"{"name":""}"#.to_vec(), false),
        (b"{}".to_vec(), false),
        (br#"{"name":"x","nodes":[{"id":1}]}"#.to_vec(), false),
        (b"[".to_vec(), false),
    ]
}
