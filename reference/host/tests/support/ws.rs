//! A WebSocket client for `GET /v1/events`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::service::Service;

/// The close code of a socket whose key or tenant ended (revoked, expired, suspended).
pub const CLOSE_CREDENTIAL_ENDED: u16 = 1008;

impl Service {
    /// The upgrade request of `GET /v1/events`, with `key` (if any) in the Authorization
    /// header.
    fn events_request(&self, key: Option<&str>) -> tungstenite::handshake::client::Request {
        let mut req = format!("ws://{}/v1/events", self.addr())
            .into_client_request()
            .unwrap();
        if let Some(k) = key {
            req.headers_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        req
    }

    /// Opens `GET /v1/events` as a WebSocket with `key` (if any) in the Authorization header.
    pub async fn ws(&self, key: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let req = self.events_request(key);
        let (stream, resp) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .expect("the handshake ends")?;
        assert_eq!(resp.status().as_u16(), 101);
        Ok(Ws { stream })
    }

    /// A connected socket, with its `connected` message read and checked.
    pub async fn ws_connected(&self, key: &str, tenant_id: &str) -> Ws {
        let mut ws = self.ws(Some(key)).await.expect("upgrade");
        let hello = ws.next_json().await;
        assert_eq!(hello["type"], "connected", "{hello}");
        assert_eq!(hello["tenantId"], tenant_id, "{hello}");
        assert!(
            hello["keyId"].as_str().unwrap().starts_with("key:"),
            "{hello}"
        );
        assert!(hello["timestamp"].is_i64(), "{hello}");
        ws
    }

    /// A socket over a TCP connection with a tiny receive buffer, for a reader that stops
    /// reading: the server's frames pile up in its own queue instead of the kernel's.
    pub async fn ws_slow_reader(&self, key: &str) -> Ws {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(2048).unwrap();
        let tcp = sock.connect(self.addr().parse().unwrap()).await.unwrap();
        let req = self.events_request(Some(key));
        let (stream, resp) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
            .await
            .expect("upgrade");
        assert_eq!(resp.status().as_u16(), 101);
        Ws { stream }
    }

    /// The HTTP status a failed upgrade answered with.
    pub async fn ws_refused(&self, key: Option<&str>) -> u16 {
        match self.ws(key).await {
            Ok(_) => panic!("the upgrade should have been refused"),
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("unexpected handshake error {e}"),
        }
    }
}
/// One WebSocket client connection.
#[derive(Debug)]
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the next frame (other than pings and pongs) was.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Close(Option<u16>),
    /// The connection ended without a close frame, or failed.
    Ended,
    /// Nothing arrived in time.
    Silent,
}

impl Ws {
    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.stream
            .send(Message::Binary(bytes.to_vec()))
            .await
            .expect("send");
    }

    pub async fn next_frame(&mut self, wait: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => return Frame::Silent,
                Ok(None) | Ok(Some(Err(_))) => return Frame::Ended,
                Ok(Some(Ok(msg))) => match msg {
                    Message::Text(t) => {
                        return Frame::Json(
                            serde_json::from_str(&t)
                                .unwrap_or_else(|_| panic!("frames are JSON: {t}")),
                        )
                    }
                    Message::Close(c) => return Frame::Close(c.map(|f| u16::from(f.code))),
                    Message::Binary(b) => panic!("unexpected binary frame {b:?}"),
                    _ => continue,
                },
            }
        }
    }

    /// The next JSON message; fails after 5 s.
    pub async fn next_json(&mut self) -> Value {
        match self.next_frame(Duration::from_secs(5)).await {
            Frame::Json(v) => v,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next `event` message's record.
    pub async fn next_event(&mut self) -> Value {
        let v = self.next_json().await;
        assert_eq!(v["type"], "event", "{v}");
        v["record"].clone()
    }

    /// Waits for the close frame, skipping any events still queued; answers its code.
    pub async fn closed_with(&mut self) -> Option<u16> {
        for _ in 0..1000 {
            match self.next_frame(Duration::from_secs(5)).await {
                Frame::Json(v) if v["type"] == "event" => continue,
                Frame::Json(v) => panic!("unexpected message before the close: {v}"),
                Frame::Close(code) => return code,
                Frame::Ended => return None,
                Frame::Silent => panic!("the socket was not closed"),
            }
        }
        panic!("too many events before the close");
    }

    /// Sends a ping and expects the very next message to be the pong: nothing else was queued.
    pub async fn ping_pong(&mut self) {
        self.send_text(r#"{"type":"ping"}"#).await;
        let v = self.next_json().await;
        assert_eq!(v["type"], "pong", "the next message is the pong: {v}");
        assert!(v["timestamp"].is_i64(), "{v}");
    }

    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}
