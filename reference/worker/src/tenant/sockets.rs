//! The tenant's event WebSockets: hibernatable sockets of this object, behind the core's
//! `SocketHub`.

use std::cell::RefCell;

use auth_core::objects::{DurableObject as CoreObject, SocketHub, SocketId};
use serde::{Deserialize, Serialize};
use worker::{State, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use super::TenantState;
use crate::storage::WorkerEntropy;

/// Where a socket belongs, kept with the socket across hibernation.
#[derive(Serialize, Deserialize)]
pub(super) struct SocketMeta {
    /// The socket's id as a decimal string (JavaScript numbers cannot hold every u64).
    id: String,
    attachment: String,
}

/// The tenant's sockets, through the hibernation API.
pub(super) struct Hub<'a> {
    pub(super) state: &'a State,
    pub(super) upgrade: bool,
    pub(super) client: RefCell<Option<WebSocket>>,
}

impl Hub<'_> {
    fn find(&self, id: SocketId) -> Option<WebSocket> {
        let want = id.to_string();
        self.state.get_websockets().into_iter().find(|ws| {
            ws.deserialize_attachment::<SocketMeta>()
                .ok()
                .flatten()
                .is_some_and(|m| m.id == want)
        })
    }
}

impl SocketHub for Hub<'_> {
    fn accept(&self, attachment: &str) -> Option<SocketId> {
        if !self.upgrade || self.client.borrow().is_some() {
            return None;
        }
        let pair = WebSocketPair::new().ok()?;
        let mut bytes = [0u8; 8];
        auth_core::ports::Entropy::fill(&WorkerEntropy, &mut bytes);
        let id = u64::from_le_bytes(bytes) >> 11; // 53 bits: exact in JavaScript too
        self.state.accept_web_socket(&pair.server);
        pair.server
            .serialize_attachment(SocketMeta {
                id: id.to_string(),
                attachment: attachment.to_owned(),
            })
            .ok()?;
        *self.client.borrow_mut() = Some(pair.client);
        Some(id)
    }

    fn sockets(&self) -> Vec<(SocketId, String)> {
        self.state
            .get_websockets()
            .into_iter()
            .filter_map(|ws| ws.deserialize_attachment::<SocketMeta>().ok().flatten())
            .filter_map(|m| Some((m.id.parse().ok()?, m.attachment)))
            .collect()
    }

    fn send(&self, socket: SocketId, text: &str) -> bool {
        // The platform buffers outbound frames itself and tells nothing about a slow reader,
        // so there is no queue to overflow here.
        self.find(socket)
            .is_some_and(|ws| ws.send_with_str(text).is_ok())
    }

    fn close(&self, socket: SocketId, code: u16, reason: &str) {
        if let Some(ws) = self.find(socket) {
            let _ = ws.close(Some(code), Some(reason));
        }
    }
}

impl TenantState {
    /// A frame from a client: the core object answers it.
    pub(super) async fn on_socket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let Some(meta) = ws.deserialize_attachment::<SocketMeta>().ok().flatten() else {
            return Ok(());
        };
        let Ok(id) = meta.id.parse::<SocketId>() else {
            return Ok(());
        };
        let text = match message {
            WebSocketIncomingMessage::String(t) => t,
            // A binary frame is not JSON text: the object answers it with an error frame.
            WebSocketIncomingMessage::Binary(_) => "\u{0}binary".to_owned(),
        };
        if self.ensure_open().is_err() {
            return Ok(());
        }
        {
            let guard = self.inner.borrow();
            if let Some(inner) = guard.as_ref() {
                let _ = inner.call(&self.state, false, |o, env| {
                    o.websocket_message(env, id, &meta.attachment, &text);
                    Ok(())
                });
            }
        }
        self.sync_alarm().await;
        Ok(())
    }

    /// A client closed its socket: complete the handshake and tell the core object.
    pub(super) async fn on_socket_close(&self, ws: WebSocket, code: usize) -> worker::Result<()> {
        // Complete the closing handshake; the platform does not do it for us.
        let code = u16::try_from(code)
            .ok()
            .filter(|c| *c != 1005 && *c != 1006)
            .unwrap_or(1000);
        let _ = ws.close(Some(code), Some(""));
        let Some(meta) = ws.deserialize_attachment::<SocketMeta>().ok().flatten() else {
            return Ok(());
        };
        let Ok(id) = meta.id.parse::<SocketId>() else {
            return Ok(());
        };
        if self.ensure_open().is_ok() {
            let guard = self.inner.borrow();
            if let Some(inner) = guard.as_ref() {
                let _ = inner.call(&self.state, false, |o, env| {
                    o.websocket_closed(env, id);
                    Ok(())
                });
            }
        }
        self.copy_to_d1().await;
        self.sync_alarm().await;
        Ok(())
    }
}
