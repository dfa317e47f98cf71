//! Routes that endpoints declare in their metadata (every `google.api.http` binding, see
//! [`micro::api::transcode::Binding`]): `GET /v1/items/{id}` reaches `Shop.GetItem` with `id`
//! merged into the request. The table follows the registry through a watch, so requests never
//! read it; the templates themselves are [`micro::api::Template`]. A template that is not well
//! formed is left out with a warning.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use micro::api::transcode::Binding;
use micro::api::Template;
use micro::registry::{SharedRegistry, Value};

/// One declared route.
#[derive(Debug)]
pub(crate) struct Declared {
    pub(crate) service: String,
    pub(crate) endpoint: String,
    pub(crate) template: Template,
    pub(crate) binding: Binding,
    /// The request's and the reply's field trees, if the service registered them.
    pub(crate) request: Option<Value>,
    pub(crate) response: Option<Value>,
}

/// What the table knows of a request's method and path.
pub(crate) enum Found {
    /// A route, and the fields its path binds.
    Route(Arc<Declared>, BTreeMap<String, String>),
    /// Routes for the path, none for the method: the methods they take.
    OtherMethods(Vec<String>),
    Nothing,
}

/// Declared routes of every service in the namespace.
pub(crate) struct Table {
    routes: RwLock<Vec<Arc<Declared>>>,
    /// The records of each service, for the API's description.
    records: RwLock<BTreeMap<String, Vec<micro::registry::Service>>>,
    /// Bumped at every change of `records`.
    generation: std::sync::atomic::AtomicU64,
    /// The last document built: the generation and the routes flag it was built for.
    doc: std::sync::Mutex<Option<(u64, bool, bytes::Bytes)>>,
    namespace: String,
    registry: SharedRegistry,
}

impl Table {
    /// A table filled from `registry` and kept current by a watch.
    pub(crate) fn start(registry: SharedRegistry, namespace: &str) -> Arc<Table> {
        let table = Arc::new(Table {
            routes: RwLock::new(vec![]),
            records: RwLock::new(BTreeMap::new()),
            generation: Default::default(),
            doc: Default::default(),
            namespace: namespace.to_string(),
            registry,
        });
        let t = table.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(services) = t.registry.list_services().await {
                    for s in services {
                        t.refresh(&s.name).await;
                    }
                }
                match t.registry.watch(None).await {
                    Ok(mut w) => {
                        while let Some(Ok(ev)) = w.next().await {
                            t.refresh(&ev.service.name).await;
                        }
                    }
                    Err(e) => tracing_free_warn(&format!("registry watch failed: {}", e.detail)),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        table
    }

    fn in_namespace(&self, service: &str) -> bool {
        self.namespace.is_empty() || service.starts_with(&format!("{}.", self.namespace))
    }

    async fn refresh(&self, service: &str) {
        if !self.in_namespace(service) {
            return;
        }
        let versions = self.registry.get_service(service).await.unwrap_or_default();
        let declared: Vec<Arc<Declared>> =
            versions.iter().flat_map(|v| v.endpoints.iter()).flat_map(|e| declared(service, e)).collect();
        let mut records = self.records.write().unwrap_or_else(|e| e.into_inner());
        if versions.is_empty() {
            records.remove(service);
        } else {
            records.insert(service.to_string(), versions);
        }
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        drop(records);
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.retain(|r| r.service != service);
        routes.extend(declared);
    }

    /// The declared route for `method path`, with its path variables.
    pub(crate) fn find(&self, method: &str, path: &str) -> Found {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut others = vec![];
        // A path whose last segment ends in a verb a template declares is that template's
        // (`/v1/{name=books/*}:publish`), not a match of `*` for `b1:publish`.
        let verbs = routes.iter().any(|r| r.template.has_verb() && r.template.matches_path(path).is_some());
        for r in routes.iter().filter(|r| r.template.has_verb() || !verbs) {
            if r.template.answers(method) {
                if let Some(vars) = r.template.matches_path(path) {
                    return Found::Route(r.clone(), vars);
                }
            } else if !others.iter().any(|m: &String| m.eq_ignore_ascii_case(r.template.method()))
                && r.template.matches_path(path).is_some()
            {
                others.push(r.template.method().to_ascii_uppercase());
            }
        }
        if others.is_empty() {
            drop(routes);
            // A client that escaped the slashes of a multi-segment variable (`shelves%2Fs1`).
            if path.contains("%2F") || path.contains("%2f") {
                return self.find(method, &path.replace("%2F", "/").replace("%2f", "/"));
            }
            Found::Nothing
        } else {
            Found::OtherMethods(others)
        }
    }

    /// The request's field tree of `service`'s `endpoint`, as registered.
    pub(crate) fn request_of(&self, service: &str, endpoint: &str) -> Option<Value> {
        self.endpoint(service, endpoint, |e| e.request.clone()).flatten()
    }

    /// The registry's record of `service`'s `endpoint`, if it showed one.
    fn endpoint<T>(&self, service: &str, endpoint: &str, f: impl FnOnce(&micro::registry::Endpoint) -> T) -> Option<T> {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        records.get(service)?.iter().flat_map(|v| &v.endpoints).find(|e| e.name == endpoint).map(f)
    }

    /// Whether the registry shows `service` with `endpoint`.
    pub(crate) fn knows(&self, service: &str, endpoint: &str) -> bool {
        self.endpoint(service, endpoint, |_| ()).is_some()
    }

    /// Whether the registry shows `service`'s `endpoint` as unary (not a stream).
    pub(crate) fn is_unary(&self, service: &str, endpoint: &str) -> bool {
        self.endpoint(service, endpoint, |e| e.metadata.get("stream").is_none_or(|s| s != "true")).unwrap_or(false)
    }

    /// The OpenAPI document of every service in the namespace, with the declared routes when
    /// `routes` (the `meta` handler serves them): built again only after the registry changed.
    pub(crate) fn openapi(&self, routes: bool) -> bytes::Bytes {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let mut cache = self.doc.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, r, doc)) = &*cache {
            if *g == generation && *r == routes {
                return doc.clone();
            }
        }
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        let all: Vec<micro::registry::Service> = records.values().flatten().cloned().collect();
        drop(records);
        let title =
            if self.namespace.is_empty() { "micro api".to_string() } else { format!("micro api: {}", self.namespace) };
        let doc = micro::api::openapi::document(&title, env!("CARGO_PKG_VERSION"), &self.namespace, &all, routes);
        let doc = bytes::Bytes::from(doc.to_string());
        *cache = Some((generation, routes, doc.clone()));
        doc
    }
}

/// The routes one endpoint declares.
fn declared(service: &str, e: &micro::registry::Endpoint) -> Vec<Arc<Declared>> {
    Binding::of(&e.metadata)
        .into_iter()
        .filter_map(|binding| match Template::parse(&binding.method, &binding.path) {
            Ok(template) => Some(Arc::new(Declared {
                service: service.to_string(),
                endpoint: e.name.clone(),
                template,
                binding,
                request: e.request.clone(),
                response: e.response.clone(),
            })),
            Err(why) => {
                tracing_free_warn(&format!("{service} {}: {why}", e.name));
                None
            }
        })
        .collect()
}

fn tracing_free_warn(detail: &str) {
    eprintln!("api: {detail}");
}
