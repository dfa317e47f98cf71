//! Publishing: typed messages to a topic through the client's broker.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::{Client, Publish};
use crate::broker::{Message, CONTENT_TYPE_HEADER, ID_HEADER, RESERVED_HEADERS, TOPIC_HEADER};
use crate::codec::{Codec, Message as Msg, Protocol};
use crate::metadata::Metadata;
use crate::Error;

/// Publishes to one topic.
///
/// ```no_run
/// # async fn f(client: micro::Client, msg: micro::wkt::Empty) -> Result<(), micro::Error> {
/// micro::Publisher::new("topic.go.micro.srv.example", client).publish(&msg).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    topic: String,
    client: Client,
}

impl Publisher {
    /// A publisher of `topic` using `client`'s broker.
    pub fn new(topic: impl Into<String>, client: Client) -> Self {
        Publisher { topic: topic.into(), client }
    }

    /// Publishes a message encoded as protobuf.
    pub async fn publish<M: Msg>(&self, message: &M) -> Result<(), Error> {
        self.publish_with(message, &Metadata::new()).await
    }

    /// Publishes a message with metadata (carried as headers).
    pub async fn publish_with<M: Msg>(&self, message: &M, metadata: &Metadata) -> Result<(), Error> {
        let body = Codec::Proto.encode(message)?;
        self.publish_raw(body, Codec::Proto.content_type(Protocol::Http), metadata).await
    }

    /// Publishes a body already encoded as `content_type`.
    pub async fn publish_bytes(&self, body: Bytes, content_type: &str, metadata: &Metadata) -> Result<(), Error> {
        self.publish_raw(body, content_type, metadata).await
    }

    /// Publishes a JSON body as it is (tools publish this way).
    pub async fn publish_json(&self, json: &[u8], metadata: &Metadata) -> Result<(), Error> {
        self.publish_raw(Bytes::copy_from_slice(json), "application/json", metadata).await
    }

    async fn publish_raw(&self, body: Bytes, content_type: &str, metadata: &Metadata) -> Result<(), Error> {
        crate::broker::check_topic(&self.topic)?;
        // Metadata keys are lowercase; the broker's own headers are not the caller's to set.
        let mut header: std::collections::BTreeMap<String, String> = metadata
            .iter()
            .filter(|(k, _)| !RESERVED_HEADERS.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        header.insert(TOPIC_HEADER.into(), self.topic.clone());
        header.insert(ID_HEADER.into(), uuid::Uuid::new_v4().to_string());
        header.insert(CONTENT_TYPE_HEADER.into(), content_type.into());
        let message = Message { header, body };
        let mut chain: Arc<dyn Publish> = Arc::new(Direct(self.client.clone()));
        for w in self.client.wrappers.iter() {
            chain = w.wrap_publish(chain);
        }
        chain.publish(&self.topic, message).await
    }
}

/// The end of the publishing chain: the proxy the options name, else the client's broker.
struct Direct(Client);

impl Publish for Direct {
    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            if let Some(proxy) = self.0.options().proxy.clone() {
                return self.0.publish_via_proxy(&proxy, topic, &message).await;
            }
            let broker = self
                .0
                .broker()
                .ok_or_else(|| Error::internal_server_error(super::ID, "this client has no broker to publish with"))?;
            broker.publish(topic, message).await
        })
    }

    fn system(&self) -> &'static str {
        match (&self.0.options().proxy, self.0.broker()) {
            (Some(_), _) => "proxy",
            (None, Some(broker)) => broker.name(),
            (None, None) => "none",
        }
    }
}
