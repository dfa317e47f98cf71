//! Publishing: typed messages to a topic through the client's broker.

use bytes::Bytes;

use super::Client;
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
        if let Some(proxy) = self.client.options().proxy.clone() {
            return self.client.publish_via_proxy(&proxy, &self.topic, &message).await;
        }
        let broker = self
            .client
            .broker()
            .ok_or_else(|| Error::internal_server_error(super::ID, "this client has no broker to publish with"))?;
        broker.publish(&self.topic, message).await
    }
}
