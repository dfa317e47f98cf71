//! `go.micro.api.example`: an API service for the gateway's `api` handler (`micro api --handler api`):
//! it receives the whole HTTP request and writes the whole HTTP response.

/// Code generated from `proto/example/example.proto`.
pub mod proto {
    micro::include_proto!("go.micro.api.example");
}

use micro::{Error, Request};

/// Implements the `Example` API.
#[derive(Debug, Default, Clone, Copy)]
pub struct Example;

impl proto::ExampleHandler for Example {
    async fn call(&self, request: Request<proto::Request>) -> Result<proto::Response, Error> {
        let name = request
            .get
            .get("name")
            .and_then(|p| p.values.first())
            .cloned()
            .unwrap_or_else(|| "stranger".to_string());
        let content_type = proto::Pair { key: "Content-Type".into(), values: vec!["application/json".into()] };
        Ok(proto::Response {
            status_code: 200,
            header: [("Content-Type".to_string(), content_type)].into(),
            body: format!(r#"{{"message":"Hello {name}","method":"{}"}}"#, request.method),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let options = micro::options::Options::default();
    let service = micro::Service::builder().name("go.micro.api.example").options(options).from_process().build()?;
    proto::register_example_handler(service.server(), Example);
    service.run().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ExampleHandler;

    #[tokio::test]
    async fn answers_with_a_json_body() {
        let mut req = proto::Request { method: "GET".into(), ..Default::default() };
        req.get.insert("name".into(), proto::Pair { key: "name".into(), values: vec!["John".into()] });
        let resp = Example.call(Request::new(req)).await.unwrap();
        assert_eq!(resp.status_code, 200);
        assert_eq!(resp.body, r#"{"message":"Hello John","method":"GET"}"#);
    }
}
