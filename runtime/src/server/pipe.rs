//! The pipe between a streaming handler and its reply body: replies are encoded straight into
//! one shared buffer, and the body takes what has gathered there as one DATA frame.
//!
//! Not a `tokio::sync::mpsc` channel, which the server used before: a channel costs every reply
//! an allocation of its own, a semaphore permit, a copy into the batch and often a wake-up, and
//! tokio's cooperative budget cut a burst into frames of a few dozen replies. Here a reply costs
//! one uncontended lock and its encoding in place; a burst leaves in frames of up to [`BATCH`]
//! bytes, and a handler that gets ahead of its client waits once that much is unread.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use crate::Error;

/// Replies gathered up to this many bytes leave as one frame; a sender waits beyond it.
pub(crate) const BATCH: usize = 32 * 1024;
/// The smallest allocation the buffer grows by (as tonic's encoder buffer).
const CHUNK: usize = 8 * 1024;

#[derive(Default)]
struct State {
    buf: BytesMut,
    /// Live [`Sender`]s: the stream ends when the last is gone and the buffer is empty.
    senders: usize,
    /// The [`Receiver`] is gone: the client went away.
    closed: bool,
    /// The receiver, waiting for replies.
    reader: Option<Waker>,
    /// Senders waiting for room.
    room: Vec<Waker>,
    /// Where the buffer ended before the write under way: a write that panicked is undone by
    /// the next lock, so no half frame is ever sent.
    writing: Option<usize>,
}

/// The state and the signal of the receiver's end (a `Notify`, whose waiters leave it when
/// they are dropped, unlike wakers kept in the state).
struct Shared {
    state: Mutex<State>,
    gone: tokio::sync::Notify,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|poisoned| {
        shared.state.clear_poison();
        let mut state = poisoned.into_inner();
        if let Some(len) = state.writing.take() {
            state.buf.truncate(len);
        }
        state
    })
}

fn park(waiting: &mut Vec<Waker>, cx: &Context<'_>) {
    if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
        waiting.push(cx.waker().clone());
    }
}

/// The handler's end.
pub(crate) struct Sender {
    state: Arc<Shared>,
}

/// The reply body's end.
pub(crate) struct Receiver {
    state: Arc<Shared>,
}

/// A new pipe.
pub(crate) fn pipe() -> (Sender, Receiver) {
    let state = Mutex::new(State { senders: 1, ..State::default() });
    let state = Arc::new(Shared { state, gone: tokio::sync::Notify::new() });
    (Sender { state: state.clone() }, Receiver { state })
}

impl Sender {
    /// Writes one reply with `write` once the buffer has room (`write` is called once, when
    /// this is ready); a `write` that fails leaves nothing behind. Fails once the receiver is
    /// gone.
    pub(crate) fn poll_write(
        &self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut BytesMut) -> Result<(), Error>,
    ) -> Poll<Result<(), Error>> {
        let mut state = lock(&self.state);
        if state.closed {
            return Poll::Ready(Err(Error::new(super::ID, 499, "the client closed the stream")));
        }
        if state.buf.len() >= BATCH {
            park(&mut state.room, cx);
            return Poll::Pending;
        }
        if state.buf.capacity() - state.buf.len() < CHUNK / 8 {
            state.buf.reserve(CHUNK);
        }
        let before = state.buf.len();
        state.writing = Some(before);
        let res = write(&mut state.buf);
        state.writing = None;
        if res.is_err() {
            state.buf.truncate(before);
        } else if let Some(reader) = state.reader.take() {
            drop(state);
            reader.wake();
        }
        Poll::Ready(res)
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Completes once the receiver is gone.
    pub(crate) async fn closed(&self) {
        loop {
            let gone = self.state.gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if self.is_closed() {
                return;
            }
            gone.await;
        }
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        lock(&self.state).senders += 1;
        Sender { state: self.state.clone() }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.senders -= 1;
        if state.senders == 0 {
            if let Some(reader) = state.reader.take() {
                drop(state);
                reader.wake();
            }
        }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("closed", &self.is_closed()).finish()
    }
}

impl Receiver {
    /// What was written since the last call; `None` once every sender is gone and all was read.
    pub(crate) fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut state = lock(&self.state);
        if !state.buf.is_empty() {
            let taken = state.buf.split().freeze();
            let room = std::mem::take(&mut state.room);
            drop(state);
            room.into_iter().for_each(Waker::wake);
            return Poll::Ready(Some(taken));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        state.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.buf = BytesMut::new();
        let waiting = std::mem::take(&mut state.room);
        drop(state);
        waiting.into_iter().for_each(Waker::wake);
        self.state.gone.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    use futures_util::task::noop_waker_ref;

    fn cx() -> Context<'static> {
        Context::from_waker(noop_waker_ref())
    }

    fn write(tx: &Sender, bytes: &[u8]) -> Poll<Result<(), Error>> {
        tx.poll_write(&mut cx(), |buf| {
            buf.extend_from_slice(bytes);
            Ok(())
        })
    }

    #[test]
    fn replies_written_together_are_taken_as_one_and_the_end_follows_the_last_sender() {
        let (tx, mut rx) = pipe();
        let other = tx.clone();
        assert!(write(&tx, b"ab").is_ready());
        assert!(write(&other, b"cd").is_ready());
        assert_eq!(rx.poll_take(&mut cx()), Poll::Ready(Some(Bytes::from_static(b"abcd"))));
        assert_eq!(rx.poll_take(&mut cx()), Poll::Pending, "senders are alive");
        drop(tx);
        assert!(write(&other, b"e").is_ready());
        drop(other);
        assert_eq!(rx.poll_take(&mut cx()), Poll::Ready(Some(Bytes::from_static(b"e"))), "what was written is read");
        assert_eq!(rx.poll_take(&mut cx()), Poll::Ready(None));
    }

    #[test]
    fn a_sender_waits_once_a_batch_is_unread_and_goes_on_when_it_is_taken() {
        let (tx, mut rx) = pipe();
        let big = vec![7u8; BATCH];
        assert!(write(&tx, &big).is_ready());
        assert!(write(&tx, b"x").is_pending(), "a whole batch is waiting");
        assert!(matches!(rx.poll_take(&mut cx()), Poll::Ready(Some(b)) if b.len() == BATCH));
        assert!(write(&tx, b"x").is_ready());
    }

    #[test]
    fn a_write_that_panics_leaves_nothing_behind() {
        let (tx, mut rx) = pipe();
        assert!(write(&tx, b"ok").is_ready());
        let tx = std::sync::Arc::new(tx);
        let panicking = tx.clone();
        let _ = std::thread::spawn(move || {
            let _ = panicking.poll_write(&mut cx(), |buf| {
                buf.extend_from_slice(b"half");
                panic!("an encoder that panics");
            });
        })
        .join();
        assert_eq!(rx.poll_take(&mut cx()), Poll::Ready(Some(Bytes::from_static(b"ok"))));
        assert!(write(&tx, b"next").is_ready(), "the pipe still works");
        assert_eq!(rx.poll_take(&mut cx()), Poll::Ready(Some(Bytes::from_static(b"next"))));
    }

    #[test]
    fn a_failed_write_leaves_nothing_and_a_gone_receiver_fails_senders() {
        let (tx, mut rx) = pipe();
        assert!(write(&tx, b"ok").is_ready());
        let failed = tx.poll_write(&mut cx(), |buf| {
            buf.extend_from_slice(b"half");
            Err(Error::internal_server_error("test", "no"))
        });
        assert!(matches!(failed, Poll::Ready(Err(_))));
        assert_eq!(rx.poll_take(&mut cx()), Poll::Ready(Some(Bytes::from_static(b"ok"))));
        assert!(!tx.is_closed());
        let mut closed = Box::pin(tx.closed());
        assert!(closed.as_mut().poll(&mut cx()).is_pending());
        drop(rx);
        assert!(tx.is_closed());
        assert!(closed.as_mut().poll(&mut cx()).is_ready(), "a waiting closed() completes");
        assert!(Box::pin(tx.closed()).as_mut().poll(&mut cx()).is_ready());
        assert!(matches!(write(&tx, b"late"), Poll::Ready(Err(e)) if e.code == 499));
    }
}
