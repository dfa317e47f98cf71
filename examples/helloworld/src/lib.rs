//! The helloworld example: generated code for `proto/helloworld.proto` and the Greeter handler.

#![allow(missing_docs)]

/// Code generated from `proto/helloworld.proto` by build.rs.
pub mod helloworld {
    micro::include_proto!("helloworld");
}

use helloworld::{GreeterHandler, HelloReply, HelloRequest};

/// Greets.
#[derive(Debug, Default, Clone, Copy)]
pub struct Greeter;

impl GreeterHandler for Greeter {
    async fn say_hello(&self, request: micro::Request<HelloRequest>) -> Result<HelloReply, micro::Error> {
        Ok(HelloReply { message: format!("Hello {}", request.name) })
    }

    async fn say_hello_stream(
        &self,
        request: micro::Request<HelloRequest>,
        stream: micro::ServerStream<HelloReply>,
    ) -> Result<(), micro::Error> {
        for letter in request.name.chars() {
            stream.send(HelloReply { message: format!("Hello {letter}") }).await?;
        }
        Ok(())
    }
}
