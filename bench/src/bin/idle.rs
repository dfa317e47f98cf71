//! Idle connections: `bench-idle ADDR N` opens N HTTP/2 connections to ADDR, makes one unary
//! `SayHello` call on each, prints `ready` once every call was answered, and then holds the
//! connections, idle, until its standard input closes.

use std::io::{BufRead, Write};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One `HelloRequest { name: "world" }` gRPC frame.
const HELLO: &[u8] = b"\x00\x00\x00\x00\x07\x0a\x05world";

async fn connect(addr: &str) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("an HTTP/2 handshake");
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}/helloworld.Greeter/SayHello"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(HELLO)))
        .expect("a request");
    let resp = send.send_request(req).await.expect("an answer");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("a reply body");
    let ok = body.trailers().and_then(|t| t.get("grpc-status")).is_some_and(|s| s == "0");
    assert!(status.is_success() && ok, "the call succeeds");
    send
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("ADDR");
    let n: usize = args.next().and_then(|n| n.parse().ok()).expect("N");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let mut held = Vec::with_capacity(n);
        // A few hundred handshakes at a time: the listener's backlog is not the subject here.
        for batch in (0..n).collect::<Vec<_>>().chunks(256) {
            let opened = futures_util::future::join_all(batch.iter().map(|_| connect(&addr))).await;
            held.extend(opened);
        }
        println!("ready {}", held.len());
        let _ = std::io::stdout().flush();
        // The connections stay open, their tasks running, while the server's memory is read.
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().lock().read_line(&mut String::new())).await;
        drop(held);
    });
}
