//! Subscribers: typed handlers of broker messages, registered on a server.
//!
//! A subscriber is a free async function ([`register_subscriber`], shown in the registry as the
//! endpoint `Func`, as Go Micro names function subscribers) or a struct implementing [`Handle`]
//! ([`register_struct_subscriber`], shown as `Type.Handle`). Either way the endpoint carries the
//! metadata `subscriber=true,topic=<topic>` and the message's field tree. Messages are decoded by
//! their `Content-Type` (JSON or protobuf) into the handler's argument; headers become metadata.

use std::future::Future;
use std::sync::Arc;

use super::{Request, Server};
use crate::broker::{self, Event, SubscribeOptions, CONTENT_TYPE_HEADER};
use crate::codec::{Codec, Described, Message};
use crate::metadata::Metadata;
use crate::Error;

/// A subscription of a server: what the broker is asked for when the service starts.
#[derive(Clone)]
pub struct Subscriber {
    /// The topic.
    pub topic: String,
    /// The endpoint name shown in the registry (`Func`, `Example.Handle`).
    pub name: String,
    /// Fully qualified protobuf type of the message, for its field tree.
    pub message_type: Option<String>,
    /// Queue group and acknowledgement.
    pub options: SubscribeOptions,
    /// What runs for each message.
    pub handler: broker::Handler,
}

impl Subscriber {
    /// A subscriber of `topic` named `name`.
    pub fn new(topic: impl Into<String>, name: impl Into<String>, handler: broker::Handler) -> Self {
        Subscriber {
            topic: topic.into(),
            name: name.into(),
            message_type: None,
            options: SubscribeOptions::default(),
            handler,
        }
    }

    /// Sets the protobuf type of the message (`package.Message`), for its field tree.
    pub fn message_type(mut self, full_name: impl Into<String>) -> Self {
        self.message_type = Some(full_name.into());
        self
    }

    /// Joins a queue group: the group gets each message once.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.options.queue = Some(queue.into());
        self
    }

    /// Leaves messages whose handler failed unacknowledged.
    pub fn manual_ack(mut self) -> Self {
        self.options.auto_ack = false;
        self
    }
}

/// A struct that handles messages of type `M` (Go Micro's subscriber with a `Handle` method).
pub trait Handle<M>: Send + Sync + 'static {
    /// Handles one message.
    fn handle(&self, message: Request<M>) -> impl Future<Output = Result<(), Error>> + Send;
}

/// The request a subscriber gets: the decoded message, with the headers as metadata.
fn decode<M: Message>(event: &Event) -> Result<Request<M>, Error> {
    let codec = match event.message.get(CONTENT_TYPE_HEADER).and_then(Codec::from_content_type) {
        Some((c, _)) => c,
        None => Codec::Proto,
    };
    let message: M = codec.decode(&event.message.body)?;
    let metadata: Metadata = event.message.header.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ok(Request::from_parts(message, metadata, None))
}

/// A broker handler that decodes each message into `M` and runs `f` (for [`Subscriber::new`]).
pub fn typed<M, F, Fut>(f: F) -> broker::Handler
where
    M: Message,
    F: Fn(Request<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |event: Event| {
        let f = f.clone();
        Box::pin(async move { f(decode::<M>(&event)?).await })
    })
}

/// The last path segment of a type name, without generic arguments.
fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_string()
}

/// Subscribes the async function `f` to `topic`; its endpoint is `Func`.
pub fn register_subscriber<M, F, Fut>(server: &Server, topic: &str, f: F)
where
    M: Message + prost::Name + Described,
    F: Fn(Request<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    server.add_descriptors(M::file_descriptor_set());
    server.subscribe(Subscriber::new(topic, "Func", typed(f)).message_type(M::full_name()));
}

/// Subscribes `handler` (a struct implementing [`Handle`]) to `topic`; its endpoint is
/// `Type.Handle`.
pub fn register_struct_subscriber<M, H>(server: &Server, topic: &str, handler: H)
where
    M: Message + prost::Name + Described,
    H: Handle<M>,
{
    let name = format!("{}.Handle", short_type_name::<H>());
    let handler = Arc::new(handler);
    let mut sub = Subscriber::new(
        topic,
        name,
        typed(move |req: Request<M>| {
            let handler = handler.clone();
            async move { handler.handle(req).await }
        }),
    );
    sub.message_type = Some(M::full_name());
    server.add_descriptors(M::file_descriptor_set());
    server.subscribe(sub);
}

#[cfg(test)]
mod tests {
    struct Example;

    #[test]
    fn struct_names() {
        assert_eq!(super::short_type_name::<Example>(), "Example");
        assert_eq!(super::short_type_name::<Vec<Example>>(), "Vec");
    }
}
