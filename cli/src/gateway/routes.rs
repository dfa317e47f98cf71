//! Routes that endpoints declare in their metadata (`method`, `path`, `body`, from
//! `google.api.http` options): `GET /v1/items/{id}` reaches `Shop.GetItem` with `id` merged into
//! the request. The table follows the registry through a watch, so requests never read it; the
//! templates themselves are [`micro::api::Template`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use micro::api::Template;
use micro::registry::SharedRegistry;

/// One declared route.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub(crate) service: String,
    pub(crate) endpoint: String,
    pub(crate) template: Template,
}

/// Declared routes of every service in the namespace.
pub(crate) struct Table {
    routes: RwLock<Vec<Declared>>,
    namespace: String,
    registry: SharedRegistry,
}

impl Table {
    /// A table filled from `registry` and kept current by a watch.
    pub(crate) fn start(registry: SharedRegistry, namespace: &str) -> Arc<Table> {
        let table = Arc::new(Table { routes: RwLock::new(vec![]), namespace: namespace.to_string(), registry });
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
                    Err(e) => tracing_free_warn(&e.detail),
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
        let declared: Vec<Declared> = match self.registry.get_service(service).await {
            Ok(versions) => versions
                .iter()
                .flat_map(|v| v.endpoints.iter())
                .filter_map(|e| {
                    let path = e.metadata.get("path")?;
                    let method = e.metadata.get("method").map_or("POST", String::as_str);
                    Some(Declared {
                        service: service.to_string(),
                        endpoint: e.name.clone(),
                        template: Template::parse(method, path),
                    })
                })
                .collect(),
            Err(_) => vec![],
        };
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.retain(|r| r.service != service);
        routes.extend(declared);
    }

    /// The declared route for `method path`, with its path variables.
    pub(crate) fn find(&self, method: &str, path: &str) -> Option<(Declared, BTreeMap<String, String>)> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes.iter().find_map(|r| r.template.matches(method, path).map(|vars| (r.clone(), vars)))
    }
}

fn tracing_free_warn(detail: &str) {
    eprintln!("api: registry watch failed: {detail}");
}
