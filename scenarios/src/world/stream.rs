//! An open event stream (`GET /v1/events` over WebSocket), owned by the World.

use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};

/// An open event stream.
pub struct Stream {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Frames received and not yet consumed by a step.
    pub seen: Vec<Value>,
}

impl Stream {
    /// A stream over an upgraded connection, no frame read yet.
    pub(crate) fn new(
        ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Self {
        Stream {
            ws,
            seen: Vec::new(),
        }
    }

    /// Sends a text frame.
    pub(crate) async fn send_text(&mut self, text: String) -> Result<(), tungstenite::Error> {
        self.ws.send(Message::text(text)).await
    }

    /// The next message from the target (`None`: the stream ended).
    pub(crate) async fn next_message(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        self.ws.next().await
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("seen", &self.seen).finish()
    }
}
