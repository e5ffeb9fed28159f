//! The WebSockets the runtime owns for its objects. They belong to the runtime, not to an
//! instance, with the attachment the object gave them, so they survive eviction the way
//! hibernatable sockets do. Each has a bounded outgoing queue and a close signal kept apart
//! from it, so a consumer too slow to drain its queue is closed instead of buffered forever.

use std::sync::{Arc, Mutex};

use auth_core::objects::SocketId;
use tokio::sync::{mpsc, Notify};

/// Frames queued per socket before the consumer counts as too slow.
pub const SOCKET_QUEUE: usize = 256;
/// Close code for a consumer that fell too far behind ("try again later").
pub const CLOSE_TOO_SLOW: u16 = 1013;

/// Tells a socket's writer to close, with a code and reason. Kept apart from the frame queue so
/// a close still gets through when the queue is full (the slow-consumer case).
#[derive(Debug, Default)]
pub struct CloseSignal {
    frame: Mutex<Option<(u16, String)>>,
    notify: Notify,
}

impl CloseSignal {
    /// The requested frame; a panic elsewhere while it was held does not make it unreadable.
    fn frame(&self) -> std::sync::MutexGuard<'_, Option<(u16, String)>> {
        self.frame.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a close; the first request wins.
    pub fn close(&self, code: u16, reason: &str) {
        let mut frame = self.frame();
        if frame.is_none() {
            *frame = Some((code, reason.to_owned()));
        }
        drop(frame);
        self.notify.notify_one();
    }

    /// The requested close, if any.
    pub fn requested(&self) -> Option<(u16, String)> {
        self.frame().clone()
    }

    /// Waits until a close is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested().is_some() {
                return;
            }
            notified.await;
        }
    }
}

pub(super) struct SocketEntry {
    pub(super) tx: mpsc::Sender<String>,
    pub(super) close: Arc<CloseSignal>,
    pub(super) attachment: String,
}

/// A socket accepted during a call: its id, its outgoing frames and its close signal.
pub struct Accepted {
    pub socket: SocketId,
    pub frames: mpsc::Receiver<String>,
    pub close: Arc<CloseSignal>,
}
