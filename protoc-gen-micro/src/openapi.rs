//! The OpenAPI document of the services being generated, written at build time
//! ([`crate::Config::openapi`]): the registry records the generated code will register (field
//! trees from the descriptors, the metadata of [`crate::server`]) handed to the runtime's own
//! builder, `micro::api::openapi`, so the file and `micro api`'s `/openapi.json` agree.

use micro::registry::{Endpoint, Service};
use prost_reflect::DescriptorPool;

use crate::Error;

/// The document for the services of `files` in `encoded`, registered as `service`.
pub(crate) fn document(encoded: &[u8], files: &[String], service: &str) -> Result<String, Error> {
    let reflect = DescriptorPool::decode(encoded).map_err(|e| Error::new(format!("invalid descriptors: {e}")))?;
    let mut pool = micro::server::descriptors::DescriptorPool::default();
    pool.add_encoded(encoded).map_err(|e| Error::new(format!("invalid descriptor set: {e}")))?;
    let set = <prost_types::FileDescriptorSet as prost::Message>::decode(encoded)
        .map_err(|e| Error::new(format!("invalid descriptor set: {e}")))?;
    let mut endpoints = vec![];
    for file in set.file.iter().filter(|f| files.iter().any(|n| n == f.name())) {
        for svc in crate::ir::services(&reflect, file) {
            for m in &svc.methods {
                endpoints.push(Endpoint {
                    name: format!("{}.{}", svc.name, m.name),
                    request: Some(pool.value_of(&m.input)),
                    response: Some(pool.value_of(&m.output)),
                    metadata: crate::server::metadata(m).into_iter().collect(),
                });
            }
        }
    }
    let record = Service { name: service.to_string(), endpoints, ..Default::default() };
    let namespace = service.rsplit_once('.').map_or("", |(ns, _)| ns);
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.0.0".into());
    let doc = micro::api::openapi::document(service, &version, namespace, &[record], true);
    serde_json::to_string_pretty(&doc).map_err(|e| Error::new(format!("cannot write the OpenAPI document: {e}")))
}
