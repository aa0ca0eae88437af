//! Clients probe TLS on the plain-HTTP port (podman, skopeo and docker try `https://` first):
//! actix-http's HTTP/1 dispatcher logs each such connection's unparseable bytes as
//! `stream error: ...` at ERROR. That is a client's mistake, not an error of ours, so this
//! layer logs it again at DEBUG and drops the ERROR; every other event passes untouched.

use std::fmt::Write;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

const DISPATCHER: &str = "actix_http::h1::dispatcher";
const CONNECTION_ERROR: &str = "stream error";

pub struct ClientNoiseAtDebug;

impl<S: Subscriber> Layer<S> for ClientNoiseAtDebug {
    fn event_enabled(&self, event: &Event<'_>, _cx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if meta.target() != DISPATCHER || *meta.level() != Level::ERROR {
            return true;
        }
        let mut message = Message::default();
        event.record(&mut message);
        if !message.0.starts_with(CONNECTION_ERROR) {
            return true;
        }
        tracing::debug!(target: DISPATCHER, "{}", message.0);
        false
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}
