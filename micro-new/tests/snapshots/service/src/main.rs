//! `go.micro.srv.example`: the Example service.

mod handler;
mod subscriber;

/// Code generated from `proto/example/example.proto`.
pub mod proto {
    micro::include_proto!("go.micro.srv.example");
}

/// The topic the subscribers listen to.
pub const TOPIC: &str = "topic.go.micro.srv.example";

#[tokio::main]
async fn main() -> Result<(), micro::Error> {
    let options = micro::options::Options::default();
    let service = micro::Service::builder()
        .name("go.micro.srv.example")
        .version("latest")
        .options(options)
        .from_process()
        .build()?;

    proto::register_example_handler(service.server(), handler::Example);
    micro::register_subscriber(service.server(), TOPIC, subscriber::handler);
    micro::register_struct_subscriber(service.server(), TOPIC, subscriber::Example);

    service.run().await
}
