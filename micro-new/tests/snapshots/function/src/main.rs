//! `go.micro.fnc.example`: a function that answers one `Example.Call`, then exits.

/// Code generated from `proto/example/example.proto`.
pub mod proto {
    micro::include_proto!("go.micro.fnc.example");
}

use micro::{Error, Request};

/// Implements the `Example` service of the proto file.
#[derive(Debug, Default, Clone, Copy)]
pub struct Example;

impl proto::ExampleHandler for Example {
    async fn call(&self, request: Request<proto::Request>) -> Result<proto::Response, Error> {
        Ok(proto::Response { msg: format!("Hello {}", request.name) })
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let options = micro::options::Options::default();
    let service = micro::Service::builder().name("go.micro.fnc.example").options(options).from_process().build()?;
    let function = micro::Function::from_service(service);
    proto::register_example_handler(function.server(), Example);
    function.run().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ExampleHandler;

    #[tokio::test]
    async fn call_greets_by_name() {
        let reply = Example.call(Request::new(proto::Request { name: "John".into() })).await.unwrap();
        assert_eq!(reply.msg, "Hello John");
    }
}
