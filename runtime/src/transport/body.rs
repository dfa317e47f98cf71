//! The one HTTP body type the runtime sends, on both the server and the client side.
//!
//! Unary messages are a single buffer (optionally followed by trailers) and need no allocation
//! beyond the buffer; streams are channels or boxed bodies.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::Error;

/// Why a body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// It is longer than the limit.
    TooLarge,
    /// It did not arrive within the timeout.
    TimedOut,
    /// The connection broke (the reason).
    Broken(String),
}

/// Reads a whole body of at most `limit` bytes within `timeout`. A body that has already
/// arrived, as most unary ones have, is read without arming a timer.
pub async fn read_whole<B>(body: B, limit: usize, timeout: std::time::Duration) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let collect = http_body_util::Limited::new(body, limit).collect();
    let mut collect = std::pin::pin!(collect);
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let read = match first {
        Poll::Ready(r) => r,
        Poll::Pending => tokio::time::timeout(timeout, collect).await.map_err(|_| ReadError::TimedOut)?,
    };
    match read {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Broken(e.to_string())),
    }
}

/// A body: empty, one buffer, one buffer then trailers, a channel of frames, or any boxed body.
pub struct Body {
    kind: Kind,
}

type BoxBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = Error> + Send>>;

enum Kind {
    Once(Option<Bytes>, Option<HeaderMap>),
    Channel(mpsc::Receiver<Frame<Bytes>>),
    Boxed(BoxBody),
}

impl Body {
    /// A body with nothing in it.
    pub fn empty() -> Self {
        Body { kind: Kind::Once(None, None) }
    }

    /// A body of one buffer.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Body { kind: Kind::Once((!data.is_empty()).then_some(data), None) }
    }

    /// A body of one buffer followed by trailers.
    pub fn with_trailers(data: Option<Bytes>, trailers: HeaderMap) -> Self {
        Body { kind: Kind::Once(data, Some(trailers)) }
    }

    /// A body fed by a channel of frames; it ends when every sender is dropped.
    pub fn channel(rx: mpsc::Receiver<Frame<Bytes>>) -> Self {
        Body { kind: Kind::Channel(rx) }
    }

    /// Any other body.
    pub fn boxed<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = Error> + Send + 'static,
    {
        Body { kind: Kind::Boxed(Box::pin(body)) }
    }
}

/// What [`Body::on_end`] is told when a body ends: its trailers, if any came, and whether it
/// ended (`false`: dropped before the end, or broken).
pub struct Ending<'a> {
    /// The trailers, if the body sent some.
    pub trailers: Option<&'a HeaderMap>,
    /// Whether the body reached its end.
    pub complete: bool,
}

impl Body {
    /// The same body, running `f` once when it ends, fails or is dropped (metrics and traces of
    /// streams use it).
    pub fn on_end(self, f: impl FnOnce(Ending<'_>) + Send + 'static) -> Body {
        Body::boxed(Watched { inner: self, trailers: None, complete: false, f: Some(Box::new(f)) })
    }
}

type EndFn = Box<dyn FnOnce(Ending<'_>) + Send>;

struct Watched {
    inner: Body,
    trailers: Option<HeaderMap>,
    complete: bool,
    f: Option<EndFn>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref() {
                    self.trailers = Some(t.clone());
                }
            }
            Poll::Ready(None) => self.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            f(Ending {
                trailers: self.trailers.as_ref(),
                complete: self.complete || http_body::Body::is_end_stream(&self.inner),
            });
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.kind {
            Kind::Once(data, trailers) => {
                Poll::Ready(data.take().map(Frame::data).or_else(|| trailers.take().map(Frame::trailers)).map(Ok))
            }
            Kind::Channel(rx) => rx.poll_recv(cx).map(|f| f.map(Ok)),
            Kind::Boxed(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Once(d, t) => d.is_none() && t.is_none(),
            Kind::Channel(_) => false,
            Kind::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Once(d, None) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Boxed(b) => b.size_hint(),
            _ => SizeHint::default(),
        }
    }
}
