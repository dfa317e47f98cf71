//! The Greeter on micro, for the benchmark: `bench-micro-server ADDR`.

#[allow(missing_docs, unreachable_pub, dead_code, clippy::all)]
mod helloworld {
    micro::include_proto!("helloworld");
}

use helloworld::{GreeterHandler, HelloReply, HelloRequest};

struct Greeter;

impl GreeterHandler for Greeter {
    async fn say_hello(&self, request: micro::Request<HelloRequest>) -> Result<HelloReply, micro::Error> {
        Ok(HelloReply { message: format!("Hello {}", request.name) })
    }

    async fn say_hello_stream(
        &self,
        request: micro::Request<HelloRequest>,
        stream: micro::ServerStream<HelloReply>,
    ) -> Result<(), micro::Error> {
        for i in 0..1000 {
            stream.send(HelloReply { message: format!("Hello {} {i}", request.name) }).await?;
        }
        Ok(())
    }
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let server = micro::Server::new(micro::server::ServerOptions { address: addr, ..Default::default() });
    helloworld::register_greeter_handler(&server, Greeter);
    let bound = server.start().expect("listens");
    println!("{bound}");
    loop {
        std::thread::park();
    }
}
