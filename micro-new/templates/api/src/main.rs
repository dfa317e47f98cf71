//! `{{ fqdn }}`: an API service for the gateway's `api` handler (`micro api --handler api`):
//! it receives the whole HTTP request and writes the whole HTTP response.

/// Code generated from `proto/{{ alias }}/{{ alias }}.proto`.
pub mod proto {
    micro::include_proto!("{{ proto_package }}");
}

use micro::{Error, Request};

/// Implements the `{{ Alias }}` API.
#[derive(Debug, Default, Clone, Copy)]
pub struct {{ Alias }};

impl proto::{{ Alias }}Handler for {{ Alias }} {
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
            body: format!(r#"{{"{{"}}"message":"Hello {name}","method":"{}"{{"}}"}}"#, request.method),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let {% if plugins %}mut {% endif %}options = micro::options::Options::default();
{%- for p in plugins %}
    options.set("{{ p.0 }}", "{{ p.1 }}")?;
{%- endfor %}
    let service = micro::Service::builder().name("{{ fqdn }}").options(options).from_process().build()?;
    proto::register_{{ alias_snake }}_handler(service.server(), {{ Alias }});
    service.run().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{{ Alias }}Handler;

    #[tokio::test]
    async fn answers_with_a_json_body() {
        let mut req = proto::Request { method: "GET".into(), ..Default::default() };
        req.get.insert("name".into(), proto::Pair { key: "name".into(), values: vec!["John".into()] });
        let resp = {{ Alias }}.call(Request::new(req)).await.unwrap();
        assert_eq!(resp.status_code, 200);
        assert_eq!(resp.body, r#"{"message":"Hello John","method":"GET"}"#);
    }
}
