//! The Greeter on plain tonic 0.14 (`#[tokio::main]`, as its examples do): `bench-tonic-server ADDR`.

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod helloworld {
    include!(concat!(env!("OUT_DIR"), "/tonic/helloworld.rs"));
}

use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};
use tonic::{Request, Response, Status};

struct G;

#[tonic::async_trait]
impl Greeter for G {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply { message: format!("Hello {}", request.get_ref().name) }))
    }

    type SayHelloStreamStream =
        std::pin::Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<HelloReply, Status>> + Send>>;

    async fn say_hello_stream(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<Self::SayHelloStreamStream>, Status> {
        let name = request.into_inner().name;
        let replies: Vec<Result<HelloReply, Status>> =
            name.chars().map(|letter| Ok(HelloReply { message: format!("Hello {letter}") })).collect();
        Ok(Response::new(Box::pin(futures_util::stream::iter(replies))))
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("listens");
    println!("{}", listener.local_addr().expect("address"));
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .add_service(GreeterServer::new(G))
        .serve_with_incoming(incoming)
        .await
        .expect("serves");
}
