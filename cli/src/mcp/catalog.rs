//! The tools `micro mcp` offers: one per unary endpoint of the services in the registry that pass
//! the namespace and the allow and deny lists, kept current by a registry watch. A tool's name is
//! `service.Endpoint` (the service without the namespace, made to fit MCP's rules), its
//! description the proto comment the code generator put in the endpoint's record, and its input
//! and output schemas the JSON forms of the request's and reply's field trees (the same schemas
//! as the gateway's OpenAPI document, [`micro::api::openapi`]). Listeners hear of a change only
//! when the tools themselves change, not at every renewal of a registration.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use micro::registry::{Endpoint, Service, SharedRegistry};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{json, Value as Json};
use tokio::sync::watch;

/// MCP's longest tool name.
const MAX_NAME: usize = 128;

/// The most tools served; a registry that names more is cut off there (with a warning).
pub(crate) const MAX_TOOLS: usize = 4096;

/// Which endpoints become tools.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Only services under this namespace (`go.micro.srv`), named without it; empty: all.
    pub(crate) namespace: String,
    /// Tool-name patterns (`*` matches any run of characters) a tool must match one of; empty: all.
    pub(crate) allow: Vec<String>,
    /// Tool-name patterns no tool may match.
    pub(crate) deny: Vec<String>,
}

impl Filter {
    fn in_namespace(&self, service: &str) -> bool {
        self.namespace.is_empty() || service.strip_prefix(&self.namespace).is_some_and(|rest| rest.starts_with('.'))
    }

    fn admits(&self, tool: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|p| glob(p, tool))) && !self.deny.iter().any(|p| glob(p, tool))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// One tool and the endpoint it calls.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// What `tools/list` shows.
    pub(crate) tool: Tool,
    /// The service called (its full name).
    pub(crate) service: String,
    /// `Service.Method`.
    pub(crate) endpoint: String,
}

/// The tools by name.
pub(crate) type Tools = BTreeMap<String, Arc<Entry>>;

/// The tools of the services in `records` that `filter` admits.
pub(crate) fn tools_of(filter: &Filter, records: &BTreeMap<String, Vec<Service>>) -> Tools {
    let mut tools = Tools::new();
    for (service, versions) in records.iter().filter(|(name, _)| filter.in_namespace(name)) {
        for e in versions.iter().flat_map(|v| v.endpoints.iter()) {
            let streams = e.metadata.get("stream").is_some_and(|s| s == "true");
            if streams || e.metadata.contains_key("subscriber") {
                continue;
            }
            let name = tool_name(&filter.namespace, service, &e.name);
            if !filter.admits(&name) || tools.contains_key(&name) {
                continue;
            }
            if tools.len() == MAX_TOOLS {
                micro::tracing::warn!(
                    "the registry names more than {MAX_TOOLS} endpoints; the rest are not served as tools"
                );
                return tools;
            }
            let tool = tool(&name, service, e);
            tools.insert(name, Arc::new(Entry { tool, service: service.clone(), endpoint: e.name.clone() }));
        }
    }
    tools
}

/// `service.Endpoint` without the namespace, in MCP's characters (`A-Z a-z 0-9 _ - .`, others
/// become `_`), at most 128 of them (a longer name keeps its end, where the endpoint is).
pub(crate) fn tool_name(namespace: &str, service: &str, endpoint: &str) -> String {
    let alias = match service.strip_prefix(namespace).and_then(|s| s.strip_prefix('.')) {
        Some(alias) if !namespace.is_empty() && !alias.is_empty() => alias,
        _ => service,
    };
    let name: String = format!("{alias}.{endpoint}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .collect();
    match name.len().checked_sub(MAX_NAME) {
        Some(extra) if extra > 0 => name[extra..].to_string(),
        _ => name,
    }
}

fn tool(name: &str, service: &str, e: &Endpoint) -> Tool {
    let description = e
        .metadata
        .get("description")
        .filter(|d| !d.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| format!("Calls {} of {service}.", e.name));
    let input = object(e.request.as_ref().map(|v| micro::api::openapi::object_schema(v, false)));
    let mut tool =
        Tool::new(name.to_string(), description, Arc::new(input)).with_title(format!("{service} {}", e.name));
    if let Some(reply) = &e.response {
        tool = tool.with_raw_output_schema(Arc::new(object(Some(micro::api::openapi::object_schema(reply, true)))));
    }
    // An endpoint that declares GET is safe to call again; nothing else is known of the others.
    if e.metadata.get("method").is_some_and(|m| m.eq_ignore_ascii_case("GET")) {
        let mut a = ToolAnnotations::new();
        a.read_only_hint = Some(true);
        a.idempotent_hint = Some(true);
        tool = tool.with_annotations(a);
    }
    tool
}

/// `schema` as the JSON object MCP wants, `{"type": "object"}` when there is none.
fn object(schema: Option<Json>) -> JsonObject {
    match schema {
        Some(Json::Object(o)) if o.get("type") == Some(&json!("object")) => o,
        _ => json!({"type": "object"}).as_object().cloned().unwrap_or_default(),
    }
}

/// The tools, following the registry.
pub(crate) struct Catalog {
    records: RwLock<BTreeMap<String, Vec<Service>>>,
    tools: RwLock<Arc<Tools>>,
    changed: watch::Sender<u64>,
    filter: Filter,
    registry: SharedRegistry,
}

impl Catalog {
    /// The tools `registry` names now, without following it (for `micro mcp list` and `call`).
    pub(crate) async fn load(registry: SharedRegistry, filter: Filter) -> Result<Arc<Catalog>, micro::Error> {
        let catalog = Catalog::new(registry, filter);
        for s in catalog.registry.list_services().await? {
            catalog.refresh(&s.name).await;
        }
        Ok(catalog)
    }

    /// A catalog filled from `registry` (before it returns, so the first `tools/list` has the
    /// tools) and kept current by a watch.
    pub(crate) async fn start(registry: SharedRegistry, filter: Filter) -> Arc<Catalog> {
        let catalog = Catalog::new(registry, filter);
        catalog.fill().await;
        let c = catalog.clone();
        tokio::spawn(async move {
            loop {
                match c.registry.watch(None).await {
                    Ok(mut w) => {
                        // What changed before the watch began.
                        c.fill().await;
                        while let Some(Ok(ev)) = w.next().await {
                            c.refresh(&ev.service.name).await;
                        }
                    }
                    Err(e) => micro::tracing::warn!("registry watch failed: {}", e.detail),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        catalog
    }

    /// Refreshes every service listed now, and those known that no longer are (gone while no
    /// watch was open).
    async fn fill(&self) {
        let Ok(services) = self.registry.list_services().await else { return };
        let mut names: std::collections::BTreeSet<String> = services.into_iter().map(|s| s.name).collect();
        names.extend(self.records.read().unwrap_or_else(|e| e.into_inner()).keys().cloned());
        for name in names {
            self.refresh(&name).await;
        }
    }

    fn new(registry: SharedRegistry, filter: Filter) -> Arc<Catalog> {
        Arc::new(Catalog {
            records: RwLock::default(),
            tools: RwLock::default(),
            changed: watch::Sender::new(0),
            filter,
            registry,
        })
    }

    async fn refresh(&self, service: &str) {
        if !self.filter.in_namespace(service) {
            return;
        }
        // A 404 says the service is gone; any other failure leaves what is known of it.
        let versions = match self.registry.get_service(service).await {
            Ok(versions) => versions,
            Err(e) if e.code == 404 => vec![],
            Err(_) => return,
        };
        let tools = {
            let mut records = self.records.write().unwrap_or_else(|e| e.into_inner());
            if versions.is_empty() {
                records.remove(service);
            } else {
                records.insert(service.to_string(), versions);
            }
            tools_of(&self.filter, &records)
        };
        let mut current = self.tools.write().unwrap_or_else(|e| e.into_inner());
        if **current != tools {
            *current = Arc::new(tools);
            drop(current);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// The tools now.
    pub(crate) fn tools(&self) -> Arc<Tools> {
        self.tools.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Told of every change of the tools.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use micro::registry::Value;

    fn service(name: &str, endpoints: Vec<Endpoint>) -> Service {
        Service { name: name.into(), version: "latest".into(), endpoints, ..Default::default() }
    }

    fn endpoint(name: &str, meta: &[(&str, &str)]) -> Endpoint {
        let field = |n: &str| Value { name: n.into(), r#type: "string".into(), values: vec![] };
        Endpoint {
            name: name.into(),
            request: Some(Value { name: "Request".into(), r#type: "Request".into(), values: vec![field("name")] }),
            response: Some(Value { name: "Response".into(), r#type: "Response".into(), values: vec![field("msg")] }),
            metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn records(services: Vec<Service>) -> BTreeMap<String, Vec<Service>> {
        services.into_iter().map(|s| (s.name.clone(), vec![s])).collect()
    }

    #[test]
    fn names_fit_mcp() {
        assert_eq!(tool_name("go.micro.srv", "go.micro.srv.example", "Example.Call"), "example.Example.Call");
        assert_eq!(tool_name("", "go.micro.srv.example", "Example.Call"), "go.micro.srv.example.Example.Call");
        assert_eq!(tool_name("go.micro", "other.svc", "A.B"), "other.svc.A.B");
        assert_eq!(tool_name("", "my svc/x", "E.M"), "my_svc_x.E.M");
        let long = tool_name("", &"s".repeat(200), "Greeter.Hello");
        assert_eq!(long.len(), MAX_NAME);
        assert!(long.ends_with("s.Greeter.Hello"));
    }

    #[test]
    fn unary_endpoints_become_tools_with_schemas_and_comments() {
        let tools = tools_of(
            &Filter { namespace: "go.micro.srv".into(), ..Default::default() },
            &records(vec![
                service(
                    "go.micro.srv.example",
                    vec![
                        endpoint("Example.Call", &[("description", "Answers with a greeting.")]),
                        endpoint("Example.Stream", &[("stream", "true")]),
                        endpoint("Example.Handle", &[("subscriber", "true")]),
                    ],
                ),
                service("go.micro.api.other", vec![endpoint("Other.Call", &[])]),
            ]),
        );
        assert_eq!(tools.keys().collect::<Vec<_>>(), ["example.Example.Call"]);
        let e = &tools["example.Example.Call"];
        assert_eq!((e.service.as_str(), e.endpoint.as_str()), ("go.micro.srv.example", "Example.Call"));
        assert_eq!(e.tool.description.as_deref(), Some("Answers with a greeting."));
        assert_eq!(e.tool.input_schema["type"], "object");
        assert_eq!(e.tool.input_schema["properties"]["name"], json!({"type": "string"}));
        let output = e.tool.output_schema.as_ref().expect("an output schema");
        assert_eq!(output["properties"]["msg"], json!({"type": ["string", "null"]}));
    }

    #[test]
    fn allow_and_deny_lists_filter_by_name() {
        let all = records(vec![service(
            "shop",
            vec![endpoint("Shop.GetItem", &[]), endpoint("Shop.DeleteItem", &[]), endpoint("Shop.ListItems", &[])],
        )]);
        let names = |allow: &[&str], deny: &[&str]| {
            let f = Filter {
                namespace: String::new(),
                allow: allow.iter().map(|s| s.to_string()).collect(),
                deny: deny.iter().map(|s| s.to_string()).collect(),
            };
            tools_of(&f, &all).into_keys().collect::<Vec<_>>()
        };
        assert_eq!(names(&[], &["*.Delete*"]), ["shop.Shop.GetItem", "shop.Shop.ListItems"]);
        assert_eq!(names(&["shop.Shop.Get*", "*List*"], &[]), ["shop.Shop.GetItem", "shop.Shop.ListItems"]);
        assert_eq!(names(&["shop.*"], &["shop.*"]), Vec::<String>::new());
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXc") && glob("*", "") && !glob("ab", "abc"));
    }
}
