//! The RPC handler of `{{ fqdn }}`.

use micro::{Error, Request, ServerStream, Streaming};

use crate::proto::{self, {{ Alias }}Handler};

/// Implements the `{{ Alias }}` service of the proto file.
#[derive(Debug, Default, Clone, Copy)]
pub struct {{ Alias }};

impl {{ Alias }}Handler for {{ Alias }} {
    async fn call(&self, request: Request<proto::Request>) -> Result<proto::Response, Error> {
        micro::tracing::info!(name = %request.name, "received {{ Alias }}.Call");
        Ok(proto::Response { msg: format!("Hello {}", request.name) })
    }

    async fn stream(
        &self,
        request: Request<proto::StreamingRequest>,
        stream: ServerStream<proto::StreamingResponse>,
    ) -> Result<(), Error> {
        micro::tracing::info!(count = request.count, "received {{ Alias }}.Stream");
        for count in 0..request.count {
            stream.send(proto::StreamingResponse { count }).await?;
        }
        Ok(())
    }

    async fn ping_pong(
        &self,
        request: Request<Streaming<proto::Ping>>,
        stream: ServerStream<proto::Pong>,
    ) -> Result<(), Error> {
        let mut pings = request.into_inner();
        while let Some(ping) = pings.message().await? {
            micro::tracing::info!(stroke = ping.stroke, "received {{ Alias }}.PingPong");
            stream.send(proto::Pong { stroke: ping.stroke }).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn call_greets_by_name() {
        let reply = {{ Alias }}.call(Request::new(proto::Request { name: "John".into() })).await.unwrap();
        assert_eq!(reply.msg, "Hello John");
    }
}
