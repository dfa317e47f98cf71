//! Calling any gRPC server that offers server reflection: the request JSON is turned into
//! protobuf with the descriptors the server reflects, and the reply back into JSON. Reflection v1
//! is tried first, then v1alpha (which many servers, Python grpcio among them, still serve).

use micro::client::{Client, Method};
use micro::codec::Codec;
use micro::server::reflection::{ReflectionAnswer, ReflectionQuery, ReflectionRequest, ReflectionResponse};
use micro::CallOptions;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};

const V1: Method = Method {
    endpoint: "ServerReflection.ServerReflectionInfo",
    path: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
};
const V1ALPHA: Method = Method {
    endpoint: "ServerReflection.ServerReflectionInfo",
    path: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};

/// A reflection session with one server.
struct Session {
    tx: micro::client::ClientSender<ReflectionRequest>,
    rx: micro::Streaming<ReflectionResponse>,
}

impl Session {
    async fn open(client: &Client, address: &str) -> anyhow::Result<Session> {
        let mut last = None;
        for method in [V1, V1ALPHA] {
            let (tx, rx) = client
                .bidi_stream::<ReflectionRequest, ReflectionResponse>(
                    "reflection",
                    &method,
                    CallOptions::new().address(address),
                )
                .await?;
            let mut s = Session { tx, rx };
            match s.ask(ReflectionQuery::ListServices(String::new())).await {
                Ok(_) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no reflection service")))
            .map_err(|e| anyhow::anyhow!("{address} offers no gRPC server reflection ({e})"))
    }

    async fn ask(&mut self, q: ReflectionQuery) -> anyhow::Result<ReflectionAnswer> {
        self.tx.send(ReflectionRequest { host: String::new(), message_request: Some(q) }).await?;
        let resp = self.rx.message().await?.ok_or_else(|| anyhow::anyhow!("reflection stream closed"))?;
        match resp.message_response {
            Some(ReflectionAnswer::ErrorResponse(e)) => anyhow::bail!("{}", e.error_message),
            Some(a) => Ok(a),
            None => anyhow::bail!("empty reflection answer"),
        }
    }

    async fn services(&mut self) -> anyhow::Result<Vec<String>> {
        match self.ask(ReflectionQuery::ListServices(String::new())).await? {
            ReflectionAnswer::ListServicesResponse(l) => Ok(l.service.into_iter().map(|s| s.name).collect()),
            _ => anyhow::bail!("unexpected reflection answer to list_services"),
        }
    }

    /// Every file needed to describe `symbol`, fetching missing imports by name.
    async fn pool_for(&mut self, symbol: &str) -> anyhow::Result<DescriptorPool> {
        let mut files: Vec<prost_types::FileDescriptorProto> = vec![];
        let mut pending = vec![ReflectionQuery::FileContainingSymbol(symbol.to_string())];
        while let Some(q) = pending.pop() {
            let ReflectionAnswer::FileDescriptorResponse(r) = self.ask(q).await? else {
                anyhow::bail!("unexpected reflection answer to a file query");
            };
            for bytes in r.file_descriptor_proto {
                let f = prost_types::FileDescriptorProto::decode(bytes.as_slice())?;
                if files.iter().any(|x| x.name == f.name) {
                    continue;
                }
                for dep in &f.dependency {
                    if !files.iter().any(|x| x.name.as_deref() == Some(dep)) {
                        pending.push(ReflectionQuery::FileByFilename(dep.clone()));
                    }
                }
                files.push(f);
            }
            pending.retain(|q| match q {
                ReflectionQuery::FileByFilename(n) => !files.iter().any(|x| x.name.as_deref() == Some(n)),
                _ => true,
            });
        }
        Ok(DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet { file: files })?)
    }
}

/// Finds the method `endpoint` (`Service.Method`) among the server's services; `service` may be
/// the fully qualified gRPC service name.
async fn method(client: &Client, address: &str, service: &str, endpoint: &str) -> anyhow::Result<MethodDescriptor> {
    let (svc_short, method) = endpoint
        .split_once('.')
        .ok_or_else(|| crate::UsageError(format!("endpoint {endpoint:?} is not Service.Method")))?;
    let mut session = Session::open(client, address).await?;
    let services = session.services().await?;
    let full = services
        .iter()
        .find(|s| *s == service || s.ends_with(&format!(".{service}")))
        .or_else(|| services.iter().find(|s| *s == svc_short || s.ends_with(&format!(".{svc_short}"))))
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!("{address} serves no service {svc_short} (it serves {})", services.join(", "))
        })?;
    let pool = session.pool_for(&full).await?;
    let svc = pool.get_service_by_name(&full).ok_or_else(|| anyhow::anyhow!("no descriptor for {full}"))?;
    let found =
        svc.methods().find(|m| m.name() == method).ok_or_else(|| anyhow::anyhow!("{full} has no method {method}"));
    found
}

/// Calls `endpoint` on the gRPC server at `address` with a JSON request, through reflection.
pub(crate) async fn call(
    client: &Client,
    address: &str,
    service: &str,
    endpoint: &str,
    json: &str,
    opts: CallOptions,
) -> anyhow::Result<serde_json::Value> {
    let m = method(client, address, service, endpoint).await?;
    if m.is_client_streaming() || m.is_server_streaming() {
        anyhow::bail!("{endpoint} is a streaming method; use `micro stream`");
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let request = DynamicMessage::deserialize(m.input(), &mut de)
        .map_err(|e| anyhow::anyhow!("the request does not fit {}: {e}", m.input().full_name()))?;
    let path = format!("/{}/{}", m.parent_service().full_name(), m.name());
    let reply = client.call_raw(service, endpoint, &path, Codec::Proto, &request.encode_to_vec(), opts).await?;
    let reply = DynamicMessage::decode(m.output(), reply)?;
    Ok(serde_json::to_value(&reply)?)
}
