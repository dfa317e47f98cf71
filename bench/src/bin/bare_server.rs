//! The ceiling of this stack: the Greeter on bare hyper HTTP/2 with hand-coded protobuf, on a
//! current-thread runtime, no framework: `bench-bare-server ADDR`.

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Reads field 1 (string) of a HelloRequest.
fn name(msg: &[u8]) -> &[u8] {
    if msg.len() >= 2 && msg[0] == 0x0a && (msg[1] as usize) + 2 <= msg.len() && msg[1] < 0x80 {
        &msg[2..2 + msg[1] as usize]
    } else {
        b""
    }
}

type Reply = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

async fn handle(req: http::Request<Incoming>) -> Result<http::Response<Reply>, Infallible> {
    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let msg = if body.len() >= 5 { &body[5..] } else { &body[..] };
    let who = name(msg);
    let len = 6 + who.len();
    let mut out = BytesMut::with_capacity(len + 7);
    out.put_u8(0);
    out.put_u32((len + 2) as u32);
    out.put_u8(0x0a);
    out.put_u8(len as u8);
    out.put_slice(b"Hello ");
    out.put_slice(who);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = Full::new(out.freeze()).map_frame(|f| f).with_trailers(async move { Some(Ok(trailers)) }).boxed_unsync();
    let _ = Frame::<Bytes>::data;
    let mut resp = http::Response::new(body);
    resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
    Ok(resp)
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("listens");
        println!("{}", listener.local_addr().expect("address"));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                    .await;
            });
        }
    });
}
