//! The ceiling of this stack: the Greeter on bare hyper HTTP/2 with hand-coded protobuf, on a
//! current-thread runtime, no framework: `bench-bare-server ADDR`. `SayHelloStream` writes its
//! replies ("Hello " and each letter of the name) straight into frames of up to 32 KiB.

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Reads field 1 (string) of a HelloRequest.
fn name(msg: &[u8]) -> &[u8] {
    if msg.first() != Some(&0x0a) {
        return b"";
    }
    let (mut len, mut at, mut shift) = (0usize, 1, 0);
    while let Some(&b) = msg.get(at) {
        len |= ((b & 0x7f) as usize) << shift;
        at += 1;
        if b < 0x80 {
            return msg.get(at..at + len).unwrap_or(b"");
        }
        shift += 7;
        if shift > 28 {
            break;
        }
    }
    b""
}

type Reply = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// The replies of `SayHelloStream`, one per letter of `who`, in frames of up to 32 KiB.
fn stream_replies(who: Bytes) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    let letters: Vec<char> = String::from_utf8_lossy(&who).chars().collect();
    let mut at = 0;
    futures_util::stream::poll_fn(move |_| {
        if at == letters.len() {
            return std::task::Poll::Ready(None);
        }
        let mut out = BytesMut::with_capacity(32 * 1024 + 64);
        while at < letters.len() && out.len() < 32 * 1024 {
            let mut utf8 = [0u8; 4];
            put_hello(&mut out, letters[at].encode_utf8(&mut utf8).as_bytes());
            at += 1;
        }
        std::task::Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
    })
}

async fn handle(req: http::Request<Incoming>) -> Result<http::Response<Reply>, Infallible> {
    let streaming = req.uri().path().ends_with("/SayHelloStream");
    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let msg = if body.len() >= 5 { body.slice(5..) } else { body.clone() };
    let who = name(&msg);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let trailers = async move { Some(Ok(trailers)) };
    let body = if streaming {
        http_body_util::StreamBody::new(stream_replies(msg.slice_ref(who))).with_trailers(trailers).boxed_unsync()
    } else {
        let mut out = BytesMut::with_capacity(who.len() + 13);
        put_hello(&mut out, who);
        Full::new(out.freeze()).with_trailers(trailers).boxed_unsync()
    };
    let mut resp = http::Response::new(body);
    resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
    Ok(resp)
}

/// Appends one `HelloReply { message: "Hello " + who }` gRPC frame (`who` under 122 bytes).
fn put_hello(out: &mut BytesMut, who: &[u8]) {
    let len = 6 + who.len();
    out.put_u8(0);
    out.put_u32((len + 2) as u32);
    out.put_u8(0x0a);
    out.put_u8(len as u8);
    out.put_slice(b"Hello ");
    out.put_slice(who);
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
