//! `{{ fqdn }}`: the {{ Alias }} service.

mod handler;
mod subscriber;

/// Code generated from `proto/{{ alias }}/{{ alias }}.proto`.
pub mod proto {
    micro::include_proto!("{{ proto_package }}");
}

/// The topic the subscribers listen to.
pub const TOPIC: &str = "{{ topic }}";

#[tokio::main]
async fn main() -> Result<(), micro::Error> {
    let {% if plugins %}mut {% endif %}options = micro::options::Options::default();
{%- for p in plugins %}
    options.set("{{ p.0 }}", "{{ p.1 }}")?;
{%- endfor %}
    let service = micro::Service::builder()
        .name("{{ fqdn }}")
        .version("latest")
        .options(options)
        .from_process()
        .build()?;

    proto::register_{{ alias_snake }}_handler(service.server(), handler::{{ Alias }});
    micro::register_subscriber(service.server(), TOPIC, subscriber::handler);
    micro::register_struct_subscriber(service.server(), TOPIC, subscriber::{{ Alias }});

    service.run().await
}
