//! `{{ fqdn }}`: a function that answers one `{{ Alias }}.Call`, then exits.

/// Code generated from `proto/{{ alias }}/{{ alias }}.proto`.
pub mod proto {
    micro::include_proto!("{{ proto_package }}");
}

use micro::{Error, Request};

/// Implements the `{{ Alias }}` service of the proto file.
#[derive(Debug, Default, Clone, Copy)]
pub struct {{ Alias }};

impl proto::{{ Alias }}Handler for {{ Alias }} {
    async fn call(&self, request: Request<proto::Request>) -> Result<proto::Response, Error> {
        Ok(proto::Response { msg: format!("Hello {}", request.name) })
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let {% if plugins %}mut {% endif %}options = micro::options::Options::default();
{%- for p in plugins %}
    options.set("{{ p.0 }}", "{{ p.1 }}")?;
{%- endfor %}
    let service = micro::Service::builder().name("{{ fqdn }}").options(options).from_process().build()?;
    let function = micro::Function::from_service(service);
    proto::register_{{ alias_snake }}_handler(function.server(), {{ Alias }});
    function.run().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{{ Alias }}Handler;

    #[tokio::test]
    async fn call_greets_by_name() {
        let reply = {{ Alias }}.call(Request::new(proto::Request { name: "John".into() })).await.unwrap();
        assert_eq!(reply.msg, "Hello John");
    }
}
