//! Subscribers of `{{ topic }}`: a struct (endpoint `{{ Alias }}.Handle`) and a function
//! (endpoint `Func`). Both log what they receive.

use micro::{Error, Request};

use crate::proto;

/// Handles messages with a method.
#[derive(Debug, Default, Clone, Copy)]
pub struct {{ Alias }};

impl micro::Handle<proto::Message> for {{ Alias }} {
    async fn handle(&self, message: Request<proto::Message>) -> Result<(), Error> {
        micro::tracing::info!(topic = crate::TOPIC, say = %message.say, "{{ Alias }}.Handle received a message");
        Ok(())
    }
}

/// Handles messages with a function.
pub async fn handler(message: Request<proto::Message>) -> Result<(), Error> {
    micro::tracing::info!(topic = crate::TOPIC, say = %message.say, "Func received a message");
    Ok(())
}
