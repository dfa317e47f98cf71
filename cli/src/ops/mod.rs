//! Operations the tools share: the command line (`cmd`), the bot, the dashboard and the gateway
//! all call these, and none of them calls another's.

pub(crate) mod health;
pub(crate) mod list;
pub(crate) mod time;
pub(crate) mod words;

/// Prints JSON indented with tabs, as Go Micro does.
pub(crate) fn pretty(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    let _ = v.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}
